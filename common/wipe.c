#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "wipe.h"

void *
wipe_malloc(size_t n)
{
	return malloc(n);
}

void *
wipe_calloc(size_t nmemb, size_t size)
{
	return calloc(nmemb, size);
}

void
wipe_free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	free(p);
}

void *
wipe_realloc(void *old, size_t n)
{
	size_t have;
	void *p;

	if (old == NULL)
		return malloc(n);
	if (n == 0) {
		wipe_free(old);
		return NULL;
	}
	if ((p = malloc(n)) == NULL)
		return NULL;
	have = malloc_usable_size(old);
	memcpy(p, old, have < n ? have : n);
	wipe_free(old);
	return p;
}

char *
wipe_strdup(const char *s)
{
	return strdup(s);
}

void
wipe_json_init(void)
{
	json_set_alloc_funcs(wipe_malloc, wipe_free);
}

void __attribute__((noinline)) wipe_stack(void)
{
	char pad[WIPE_STACK_BYTES];

	explicit_bzero(pad, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
}
