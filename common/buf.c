#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "util.h"

static void
buf_reserve(struct buf *b, size_t extra)
{
	size_t need = b->b_len + extra + 1, cap;

	if (need <= b->b_cap)
		return;
	cap = b->b_cap ? b->b_cap : 256;
	while (cap < need)
		cap *= 2;
	b->b_data = xrealloc_wipe(b->b_data, b->b_cap, cap);
	b->b_cap = cap;
}

void
buf_append(struct buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n > 0)
		memcpy(b->b_data + b->b_len, p, n);
	b->b_len += n;
	b->b_data[b->b_len] = '\0';
}

void
buf_puts(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->b_data + b->b_len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->b_len += (size_t)n;
}

void
buf_reset(struct buf *b)
{
	if (b->b_data != NULL)
		explicit_bzero(b->b_data, b->b_len);
	b->b_len = 0;
}

void
buf_free(struct buf *b)
{
	free_wipe(b->b_data, b->b_len);
	b->b_data = NULL;
	b->b_len = b->b_cap = 0;
}

const char *
buf_str(const struct buf *b)
{
	return b->b_data != NULL ? b->b_data : "";
}

char *
buf_take(struct buf *b)
{
	char *s = b->b_data != NULL ? b->b_data : xstrdup("");

	b->b_data = NULL;
	b->b_len = b->b_cap = 0;
	return s;
}
