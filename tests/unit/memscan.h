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

/* A 16-bit hash of 4 bytes: the one-pass prefilter of memscan_count. */
static unsigned int
memscan_h4(const char *p)
{
	uint32_t x;

	memcpy(&x, p, 4);
	return (unsigned int)((x * 2654435761u) >> 16);
}

/* Number of places outside ref[0..len) holding MEMSCAN_PIECE consecutive
 * bytes of ref (the whole of it when shorter).  where gets the first
 * place's mapping, for the failure message.  One pass over the resident
 * pages of each mapping: a bitmap of the pieces' first four bytes picks
 * the places worth comparing. */
static size_t __attribute__((unused))
memscan_count(const char *ref, size_t len, char *where, size_t wherelen)
{
	size_t piece = len < MEMSCAN_PIECE ? len : MEMSCAN_PIECE;
	static uint8_t bloom[65536 / 8];
	unsigned char vec[MEMSCAN_CHUNK / 4096 + 2];
	char line[512], path[256];
	uintptr_t lo, hi, at, n, i, k;
	size_t found = 0, page = (size_t)sysconf(_SC_PAGESIZE), pg;
	char perms[8];
	FILE *maps;
	char *buf;
	int mem;

	if (where != NULL && wherelen > 0)
		where[0] = '\0';
	if (piece < 4)
		return (size_t)-1;
	memset(bloom, 0, sizeof(bloom));
	for (k = 0; k + piece <= len; k++)
		bloom[memscan_h4(ref + k) / 8] |=
		    (uint8_t)(1u << (memscan_h4(ref + k) % 8));
	/* Shared: the kernel never merges it with the heap's mappings. */
	buf = mmap(NULL, MEMSCAN_CHUNK + MEMSCAN_PIECE, PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
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
			/* Pages never touched hold nothing (and reading them
			 * would make them): skip a chunk with none resident.
			 */
			if (mincore((void *)at, n, vec) == 0) {
				for (pg = 0; pg < (n + page - 1) / page; pg++)
					if (vec[pg] & 1)
						break;
				if (pg == (n + page - 1) / page)
					continue;
			}
			if (pread(mem, buf, n, (off_t)at) != (ssize_t)n)
				continue;
			for (i = 0; i + piece <= n && i < MEMSCAN_CHUNK; i++) {
				unsigned int h = memscan_h4(buf + i);
				if (!(bloom[h / 8] & (1u << (h % 8))))
					continue;
				for (k = 0; k + piece <= len; k++)
					if (memcmp(buf + i, ref + k, piece) ==
					    0)
						break;
				if (k + piece > len)
					continue;
				if (at + i >= (uintptr_t)ref &&
				    at + i < (uintptr_t)ref + len)
					continue;
				if (found++ == 0 && where != NULL)
					snprintf(where, wherelen,
					    "0x%" PRIxPTR " in %s (%s)",
					    at + i,
					    path[0] ? path : "anonymous",
					    perms);
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
