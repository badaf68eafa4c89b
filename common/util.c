#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

void *
xmalloc(size_t n)
{
	void *p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		fatal("malloc");
	return p;
}

void *
xcalloc(size_t nmemb, size_t size)
{
	void *p;

	if ((p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size)) == NULL)
		fatal("calloc");
	return p;
}

void *
xrealloc(void *old, size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		fatalx("xrealloc: %zu * %zu overflows", nmemb, size);
	if ((p = realloc(old, nmemb * size == 0 ? 1 : nmemb * size)) == NULL)
		fatal("realloc");
	return p;
}

void *
xrealloc_wipe(void *old, size_t oldsize, size_t newsize)
{
	void *p = xmalloc(newsize);

	if (old != NULL) {
		memcpy(p, old, oldsize < newsize ? oldsize : newsize);
		explicit_bzero(old, oldsize);
		free(old);
	}
	return p;
}

void
free_wipe(void *p, size_t size)
{
	if (p == NULL)
		return;
	explicit_bzero(p, size);
	free(p);
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

char *
xstrndup(const char *s, size_t n)
{
	char *p;

	if ((p = strndup(s, n)) == NULL)
		fatal("strndup");
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n == -1)
		fatal("vasprintf");
	return s;
}

static uint64_t
clock_us(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000U;
}

uint64_t
now_ms(void)
{
	return clock_us(CLOCK_MONOTONIC) / 1000U;
}

uint64_t
now_us(void)
{
	return clock_us(CLOCK_MONOTONIC);
}

uint64_t
wall_ms(void)
{
	return clock_us(CLOCK_REALTIME) / 1000U;
}

int
ms_until(uint64_t deadline_ms, uint64_t now)
{
	if (deadline_ms <= now)
		return 0;
	if (deadline_ms - now > INT32_MAX)
		return INT32_MAX;
	return (int)(deadline_ms - now);
}

size_t
strlcpy_rp(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len < size - 1 ? len : size - 1;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

size_t
utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned int cp;

	if (n == 0)
		return 0;
	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
	    (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

size_t
utf8_copy(char *dst, const char *src, size_t size)
{
	const unsigned char *u = (const unsigned char *)src;
	size_t n = strlen(src), i = 0, o = 0, k;

	if (size == 0)
		return 0;
	while (i < n) {
		if ((k = utf8_seq_len(u + i, n - i)) == 0) {
			if (o + 1 >= size)
				break;
			dst[o++] = '?';
			i++;
			continue;
		}
		if (o + k >= size)
			break;
		memcpy(dst + o, u + i, k);
		o += k;
		i += k;
	}
	dst[o] = '\0';
	return o;
}

char *
rstrip(char *s)
{
	size_t n = strlen(s);

	while (n > 0 &&
	    (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' ||
	        s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

/* Reads fd to its end into a new buffer of at least hint bytes (grown as
 * needed, up to max); closes fd. */
static char *
read_all(int fd, size_t hint, size_t max, size_t *lenp)
{
	size_t len = 0, cap = hint > 0 && hint < max ? hint : 4096, n;
	ssize_t r;
	char *buf;
	int saved;

	buf = xmalloc(cap + 1);
	for (;;) {
		if (len == cap) {
			if (cap >= max) {
				/* Exactly max bytes is fine: look for EOF. */
				char extra;
				do
					r = read(fd, &extra, 1);
				while (r == -1 && errno == EINTR);
				if (r == 0)
					break;
				saved = r == -1 ? errno : EFBIG;
				free_wipe(buf, cap + 1);
				close(fd);
				errno = saved;
				return NULL;
			}
			n = cap * 2 > max ? max : cap * 2;
			buf = xrealloc_wipe(buf, cap + 1, n + 1);
			cap = n;
		}
		r = read(fd, buf + len, cap - len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			saved = errno;
			free_wipe(buf, cap + 1);
			close(fd);
			errno = saved;
			return NULL;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (len > max) {
		free_wipe(buf, cap + 1);
		errno = EFBIG;
		return NULL;
	}
	buf[len] = '\0';
	if (lenp != NULL)
		*lenp = len;
	return buf;
}

char *
read_file(const char *path, size_t max, size_t *lenp)
{
	struct stat st;
	int fd, saved;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return NULL;
	if (fstat(fd, &st) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return NULL;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		errno = EISDIR;
		return NULL;
	}
	return read_all(
	    fd, st.st_size > 0 ? (size_t)st.st_size : 0, max, lenp);
}

char *
read_fd(int fd, size_t max, size_t *lenp)
{
	return read_all(fd, 0, max, lenp);
}

void
rng_seed(uint64_t seed)
{
	rng_state = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
}

uint64_t
rng_next(void)
{
	uint64_t x = rng_state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

uint64_t
rng_range(uint64_t lo, uint64_t hi)
{
	if (hi <= lo)
		return lo;
	if (hi - lo == UINT64_MAX)
		return rng_next();
	return lo + rng_next() % (hi - lo + 1);
}

void
host_identity(char *out, size_t size)
{
	char host[65] = "";
	size_t i;

	if (gethostname(host, sizeof(host) - 1) == -1 || host[0] == '\0')
		strlcpy_rp(host, "runner-provisioner", sizeof(host));
	for (i = 0; host[i] != '\0'; i++)
		if (!((host[i] >= 'a' && host[i] <= 'z') ||
		        (host[i] >= 'A' && host[i] <= 'Z') ||
		        (host[i] >= '0' && host[i] <= '9') || host[i] == '-' ||
		        host[i] == '.'))
			host[i] = '-';
	snprintf(out, size, "%s_%08llx", host,
	    (unsigned long long)(rng_next() & 0xffffffffu));
}
