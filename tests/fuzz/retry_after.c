/*
 * Retry-After on a CircleCI 429 (http_retry_after_ms in common/http.c):
 * delta-seconds or an HTTP-date, as the header callback hands it over (at
 * most 63 bytes, surrounding blanks removed).  An accepted value is a
 * whole number of seconds no longer than the hour the poller is willing to
 * wait; delta-seconds read exactly; nothing else starting with a digit is
 * accepted.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"

#define RETRY_AFTER_MAX_MS 3600000ULL

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	char *v = fuzz_rest_str(&in);
	unsigned long long want;
	uint64_t ms = 12345;
	size_t digits, lead;
	int rv;

	rv = http_retry_after_ms(v, &ms);
	digits = strspn(v, "0123456789");
	if (rv == -1) {
		FUZZ_CHECK(ms == 12345, "\"%s\" rejected but delay set", v);
		FUZZ_CHECK(v[0] == '\0' || digits != strlen(v),
		    "delta-seconds \"%s\" rejected", v);
		free(v);
		return 0;
	}
	FUZZ_CHECK(rv == 0, "returned %d", rv);
	FUZZ_CHECK(ms <= RETRY_AFTER_MAX_MS && ms % 1000 == 0,
	    "\"%s\" gives a delay of %llu ms", v, (unsigned long long)ms);
	if (digits > 0) {
		FUZZ_CHECK(digits == strlen(v),
		    "\"%s\" accepted: digits followed by other text", v);
		lead = strspn(v, "0");
		want = digits - lead > 6 ? 3600 : strtoull(v + lead, NULL, 10);
		if (want > 3600)
			want = 3600;
		FUZZ_CHECK(ms == want * 1000, "\"%s\" read as %llu ms", v,
		    (unsigned long long)ms);
	}
	free(v);
	return 0;
}
