/*
 * What a core dump of this process would show: scans every writable
 * mapping (heap, stacks, data) for pieces of a secret, the way an attacker
 * with the dump would.  Pieces, not the whole: glibc writes list pointers
 * over the first 16 bytes of a freed chunk, so a token freed without
 * wiping often survives only in part.
 *
 * The secret itself must live in one place the test names (ref), which is
 * not counted; the copy buffer is a mapping of its own, also skipped.  So
 * is the main thread's stack: what the test itself leaves there (string
 * functions spill vector registers) is not the code's, and the code under
 * test keeps no token on the stack past a call.
 */
#ifndef RP_MEMSCAN_H
#define RP_MEMSCAN_H

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEMSCAN_PIECE      12
#define MEMSCAN_CHUNK      (1024 * 1024)
#define MEMSCAN_REGION_MAX (256ul * 1024 * 1024) /* skips sanitizer shadow */

/* Number of places outside ref[0..len) holding MEMSCAN_PIECE consecutive
 * bytes of ref (the whole of it when shorter).  where gets the first
 * place's mapping, for the failure message. */
static size_t __attribute__((unused))
memscan_count(const char *ref, size_t len, char *where, size_t wherelen)
{
	size_t piece = len < MEMSCAN_PIECE ? len : MEMSCAN_PIECE;
	char line[512], path[256];
	uintptr_t lo, hi, at, n, i, k;
	size_t found = 0;
	char perms[8];
	FILE *maps;
	char *buf;
	int mem;

	if (where != NULL && wherelen > 0)
		where[0] = '\0';
	buf = mmap(NULL, MEMSCAN_CHUNK + MEMSCAN_PIECE, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return (size_t)-1;
	maps = fopen("/proc/self/maps", "re");
	mem = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
	if (maps == NULL || mem == -1) {
		if (maps != NULL)
			fclose(maps);
		munmap(buf, MEMSCAN_CHUNK + MEMSCAN_PIECE);
		return (size_t)-1;
	}
	while (fgets(line, sizeof(line), maps) != NULL) {
		path[0] = '\0';
		if (sscanf(line,
		        "%" SCNxPTR "-%" SCNxPTR " %7s %*s %*s %*s %255s", &lo,
		        &hi, perms, path) < 3)
			continue;
		if (perms[0] != 'r' || perms[1] != 'w' ||
		    hi - lo > MEMSCAN_REGION_MAX || lo == (uintptr_t)buf ||
		    strcmp(path, "[vvar]") == 0 ||
		    strcmp(path, "[stack]") == 0 ||
		    strcmp(path, "[vsyscall]") == 0)
			continue;
		/* Chunks overlap by a piece so nothing hides on a seam. */
		for (at = lo; at < hi; at += MEMSCAN_CHUNK) {
			n = hi - at < MEMSCAN_CHUNK + piece
			    ? hi - at
			    : MEMSCAN_CHUNK + piece;
			if (pread(mem, buf, n, (off_t)at) != (ssize_t)n)
				continue;
			for (k = 0; k + piece <= len; k++) {
				const char *p = buf, *q;
				while ((q = memmem(p, n - (size_t)(p - buf),
				            ref + k, piece)) != NULL) {
					i = at + (uintptr_t)(q - buf);
					p = q + 1;
					if (i >= (uintptr_t)ref &&
					    i < (uintptr_t)ref + len)
						continue;
					if (i - at >= MEMSCAN_CHUNK)
						continue; /* next chunk's */
					if (found++ == 0 && where != NULL)
						snprintf(where, wherelen,
						    "0x%" PRIxPTR
						    " in %s (%s)",
						    i,
						    path[0] ? path
						            : "anonymous",
						    perms);
				}
			}
		}
	}
	fclose(maps);
	close(mem);
	memset(buf, 0, MEMSCAN_CHUNK + MEMSCAN_PIECE);
	munmap(buf, MEMSCAN_CHUNK + MEMSCAN_PIECE);
	return found;
}

/* Fills out[0..len) with random lowercase hex (a token no other memory
 * holds by chance) and NUL-terminates it. */
static void __attribute__((unused)) memscan_token(char *out, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char r;
	size_t i;
	int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

	for (i = 0; i < len; i++) {
		if (fd == -1 || read(fd, &r, 1) != 1)
			r = (unsigned char)(i * 37 + 11);
		out[i] = hex[r & 15];
	}
	out[len] = '\0';
	if (fd != -1)
		close(fd);
}

#endif
