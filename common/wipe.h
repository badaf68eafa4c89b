/*
 * Tokens pass through many hands: our buffers, libcurl's header copies,
 * jansson's strings of every document parsed or built (Secret lists, user
 * data), libyaml's scanner, OpenSSL's record buffers.  Every block this
 * process frees is wiped first, whoever frees it (wipe.c replaces free and
 * realloc; under AddressSanitizer, a free hook does it), so a freed copy
 * does not linger in the heap or a core dump.  Code that reuses a buffer
 * wipes it itself (buf.c).
 */
#ifndef RP_WIPE_H
#define RP_WIPE_H

#include <stddef.h>

/* AddressSanitizer builds (tests, fuzzing): gcc says so with
 * __SANITIZE_ADDRESS__, clang only through __has_feature. */
#if defined(__SANITIZE_ADDRESS__)
#define RP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RP_ASAN 1
#endif
#endif

/* Zeroes the stack below the caller, where parsing and formatting left
 * copies (string functions leave token bytes in vector registers, which
 * calls then spill).  Call after handling secrets. */
#define WIPE_STACK_BYTES (64 * 1024)
void wipe_stack(void);

#endif
