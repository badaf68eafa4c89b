/*
 * Shared by the libFuzzer harnesses, tests/fuzz/<name>.c.  A harness defines
 * LLVMFuzzerTestOneInput (and LLVMFuzzerInitialize when it needs set-up);
 * the same file links with libFuzzer in an RP_FUZZ build (clang) and with
 * replay.c everywhere else, which feeds it the committed seed and
 * regression inputs without libFuzzer.
 *
 * A harness checks what must hold for every input (a decoded message
 * re-encodes to the same bytes, a token survives cloud-init, no log line
 * holds a secret) with FUZZ_CHECK; a failed check aborts like a crash, so
 * libFuzzer keeps the input.
 */
#ifndef RP_FUZZ_H
#define RP_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                 \
	do {                                                                  \
		if (!(cond))                                                  \
			fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);    \
	} while (0)

/* Structured input, consumed from the front; reads past the end give 0. */
struct fuzz_in {
	const uint8_t *fi_p;
	size_t fi_n;
};

/* fuzz.c */
void fuzz_fail(const char *file, int line, const char *cond, const char *fmt,
    ...) __attribute__((noreturn, format(printf, 4, 5)));
/* Sends the logger's lines to /dev/null (harnesses of code that logs). */
void fuzz_quiet(void);
/* A NUL-terminated copy of n bytes (which may hold NULs); caller frees. */
char *fuzz_strndup(const void *, size_t n);
uint8_t fuzz_u8(struct fuzz_in *);
uint16_t fuzz_u16(struct fuzz_in *);
uint32_t fuzz_u32(struct fuzz_in *);
uint64_t fuzz_u64(struct fuzz_in *);
bool fuzz_bool(struct fuzz_in *);
/* Up to max bytes: a length byte (taken modulo max + 1), then the bytes;
 * *len is the count.  Borrowed: points into the input. */
const uint8_t *fuzz_bytes(struct fuzz_in *, size_t max, size_t *len);
/* As fuzz_bytes, as a new NUL-terminated string cut at the first NUL;
 * caller frees. */
char *fuzz_str(struct fuzz_in *, size_t max);
/* Whatever input is left; borrowed. */
const uint8_t *fuzz_rest(struct fuzz_in *, size_t *len);
/* Whatever input is left, up to its first NUL, as a new string; caller
 * frees. */
char *fuzz_rest_str(struct fuzz_in *);
/* Whether n bytes are UTF-8 as RFC 3629 has it (no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
bool fuzz_utf8_valid(const void *, size_t n);
/* A directory of its own for this process, made on first use and removed
 * at exit. */
const char *fuzz_tmpdir(void);

#endif
