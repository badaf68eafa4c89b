#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "log.h"
#include "util.h"

static char tmpdir[64];

static void rm_tmpdir(void);

/* Sanitizer builds: called before a sanitizer report ends the process. */
extern void __sanitizer_set_death_callback(void (*)(void))
    __attribute__((weak));

void
fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n%s:%d: check failed: %s\n  ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	rm_tmpdir();
	abort();
}

void
fuzz_quiet(void)
{
	static int fd = -1;

	if (fd == -1 && (fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) == -1)
		abort();
	log_set_fd(fd);
}

char *
fuzz_strndup(const void *p, size_t n)
{
	char *s = xmalloc(n + 1);

	if (n > 0)
		memcpy(s, p, n);
	s[n] = '\0';
	return s;
}

static uint64_t
take(struct fuzz_in *in, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n && in->fi_n > 0; i++) {
		v |= (uint64_t)in->fi_p[0] << (8 * i);
		in->fi_p++;
		in->fi_n--;
	}
	return v;
}

uint8_t
fuzz_u8(struct fuzz_in *in)
{
	return (uint8_t)take(in, 1);
}

uint16_t
fuzz_u16(struct fuzz_in *in)
{
	return (uint16_t)take(in, 2);
}

uint32_t
fuzz_u32(struct fuzz_in *in)
{
	return (uint32_t)take(in, 4);
}

uint64_t
fuzz_u64(struct fuzz_in *in)
{
	return take(in, 8);
}

bool
fuzz_bool(struct fuzz_in *in)
{
	return take(in, 1) & 1;
}

const uint8_t *
fuzz_bytes(struct fuzz_in *in, size_t max, size_t *len)
{
	const uint8_t *p;
	size_t n = (size_t)fuzz_u8(in) % (max + 1);

	if (n > in->fi_n)
		n = in->fi_n;
	p = in->fi_p;
	in->fi_p += n;
	in->fi_n -= n;
	*len = n;
	return p;
}

char *
fuzz_str(struct fuzz_in *in, size_t max)
{
	const uint8_t *p;
	size_t n;

	p = fuzz_bytes(in, max, &n);
	return fuzz_strndup(p, strnlen((const char *)p, n));
}

const uint8_t *
fuzz_rest(struct fuzz_in *in, size_t *len)
{
	const uint8_t *p = in->fi_p;

	*len = in->fi_n;
	in->fi_p += in->fi_n;
	in->fi_n = 0;
	return p;
}

char *
fuzz_rest_str(struct fuzz_in *in)
{
	const uint8_t *p;
	size_t n;

	p = fuzz_rest(in, &n);
	return fuzz_strndup(p, strnlen((const char *)p, n));
}

bool
fuzz_utf8_valid(const void *s, size_t n)
{
	const unsigned char *p = s;
	size_t i = 0, len, k;
	unsigned int cp;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((p[i] & 0xe0) == 0xc0)
			len = 2;
		else if ((p[i] & 0xf0) == 0xe0)
			len = 3;
		else if ((p[i] & 0xf8) == 0xf0)
			len = 4;
		else
			return false;
		if (len > n - i)
			return false;
		cp = p[i] & (0x7f >> len);
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
		    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += len;
	}
	return true;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
rm_tmpdir(void)
{
	if (tmpdir[0] != '\0')
		nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* Directories of runs that ended without exit handlers (libFuzzer leaves
 * with _Exit after a crash): removed by the next run. */
static void
rm_stale(const char *base)
{
	char path[sizeof(tmpdir) + 256];
	struct dirent *e;
	DIR *d;
	int pid;

	if ((d = opendir(base)) == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (sscanf(e->d_name, "rp-fuzz-%d", &pid) != 1 || pid <= 0 ||
		    kill(pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof(path), "%s/%s", base, e->d_name);
		nftw(path, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	}
	closedir(d);
}

const char *
fuzz_tmpdir(void)
{
	const char *base;

	if (tmpdir[0] != '\0')
		return tmpdir;
	if ((base = getenv("TMPDIR")) == NULL || base[0] == '\0' ||
	    strlen(base) > 40)
		base = "/tmp";
	rm_stale(base);
	snprintf(tmpdir, sizeof(tmpdir), "%s/rp-fuzz-%d", base, (int)getpid());
	if (mkdir(tmpdir, 0700) == -1) {
		perror(tmpdir);
		abort();
	}
	atexit(rm_tmpdir);
	if (__sanitizer_set_death_callback != NULL)
		__sanitizer_set_death_callback(rm_tmpdir);
	return tmpdir;
}
