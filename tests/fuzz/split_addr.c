/*
 * --ready-addr and --live-addr (flags_split_addr in common/flags.c):
 * "HOST:PORT", ":PORT", "[v6]:PORT".  What is accepted has a port of
 * decimal digits up to 65535 and a host that fits, and writing the parts
 * back in the same form splits to the same parts.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flags.h"
#include "fuzz.h"

static void
check(const char *addr, size_t hostlen)
{
	char host[256], host2[256], again[600];
	const char *port_text;
	uint16_t port = 0, port2 = 0;
	size_t i;

	memset(host, 0x5a, sizeof(host));
	if (flags_split_addr(addr, host, hostlen, &port) == -1)
		return;
	FUZZ_CHECK(memchr(host, '\0', hostlen) != NULL,
	    "\"%s\": host not terminated within %zu bytes", addr, hostlen);
	port_text = strrchr(addr, ':') + 1;
	for (i = 0; port_text[i] != '\0'; i++)
		FUZZ_CHECK(port_text[i] >= '0' && port_text[i] <= '9',
		    "\"%s\" accepted: port \"%s\" is not decimal digits", addr,
		    port_text);
	FUZZ_CHECK(i > 0, "\"%s\" accepted without a port", addr);
	FUZZ_CHECK((unsigned long)strtoul(port_text, NULL, 10) == port,
	    "\"%s\" read as port %u", addr, port);
	if (addr[0] == '[')
		snprintf(again, sizeof(again), "[%s]:%u", host, port);
	else {
		FUZZ_CHECK(strchr(host, ':') == NULL,
		    "\"%s\": unbracketed host \"%s\" has a colon", addr, host);
		snprintf(again, sizeof(again), "%s:%u", host, port);
	}
	FUZZ_CHECK(
	    flags_split_addr(again, host2, sizeof(host2), &port2) == 0 &&
	        strcmp(host, host2) == 0 && port == port2,
	    "\"%s\" split as \"%s\" %u, but \"%s\" does not", addr, host, port,
	    again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char *addr = fuzz_rest_str(&in);

	check(addr, 256); /* what flags.c passes */
	check(addr, 8);
	check(addr, 1);
	free(addr);
	return 0;
}
