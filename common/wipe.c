#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "wipe.h"

#if defined(RP_ASAN)
/* The sanitizer owns malloc: its free hook sees every block first. */
int __sanitizer_install_malloc_and_free_hooks(
    void (*)(const volatile void *, size_t), void (*)(const volatile void *));
size_t __sanitizer_get_allocated_size(const volatile void *);

static void
on_malloc(const volatile void *p, size_t n)
{
	(void)p;
	(void)n;
}

static void
on_free(const volatile void *p)
{
	if (p != NULL)
		explicit_bzero(
		    (void *)(uintptr_t)p, __sanitizer_get_allocated_size(p));
}

static void __attribute__((constructor)) wipe_hooks(void)
{
	__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
}
#else
/*
 * free and realloc, as every library of the process calls them, on top of
 * glibc's allocator (its __libc_* entry points: the same heap, so blocks
 * from malloc, calloc, strdup... are freed here alike).
 */
void *__libc_malloc(size_t);
void __libc_free(void *);

void
free(void *p)
{
	if (p == NULL)
		return;
	explicit_bzero(p, malloc_usable_size(p));
	__libc_free(p);
}

/* glibc's realloc frees a moved block as it was: move it here instead.  A
 * block that still fits stays where it is (shrinking would free its tail
 * unwiped). */
void *
realloc(void *old, size_t n)
{
	size_t have;
	void *p;

	if (old == NULL)
		return __libc_malloc(n);
	if (n == 0) {
		free(old);
		return NULL;
	}
	if (n <= (have = malloc_usable_size(old)))
		return old;
	if ((p = __libc_malloc(n)) == NULL)
		return NULL;
	memcpy(p, old, have);
	free(old);
	return p;
}
#endif

void __attribute__((noinline)) wipe_stack(void)
{
	char pad[WIPE_STACK_BYTES];

	explicit_bzero(pad, sizeof(pad));
	__asm__ volatile("" : : "r"(pad) : "memory");
}
