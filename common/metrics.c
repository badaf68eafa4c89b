#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define SAMPLE_LABELS_MAX 16 /* ours have METRIC_LABELS_MAX and le */

struct metric_series {
	struct metric_family *ms_family;
	char *ms_values[METRIC_LABELS_MAX];
	char *ms_labels; /* name{a="x",b="y" rendered once, without "}" */
	double ms_value; /* counter, gauge; histogram sum */
	unsigned long long ms_count;    /* histogram */
	unsigned long long *ms_buckets; /* histogram, per bound */
};

struct metric_family {
	enum metric_type mf_type;
	char *mf_name;
	char *mf_help;
	char *mf_labels[METRIC_LABELS_MAX];
	size_t mf_nlabels;
	double *mf_bounds;
	char **mf_bound_text; /* rendered once */
	size_t mf_nbounds;
	struct metric_series **mf_series;
	size_t mf_nseries;
};

struct metrics {
	struct metric_family **m_families;
	size_t m_nfamilies;
};

struct metrics *
metrics_new(void)
{
	return xcalloc(1, sizeof(struct metrics));
}

static void
series_free(struct metric_series *s)
{
	size_t i;

	for (i = 0; i < METRIC_LABELS_MAX; i++)
		free(s->ms_values[i]);
	free(s->ms_labels);
	free(s->ms_buckets);
	free(s);
}

void
metrics_free(struct metrics *m)
{
	struct metric_family *f;
	size_t i, j;

	if (m == NULL)
		return;
	for (i = 0; i < m->m_nfamilies; i++) {
		f = m->m_families[i];
		for (j = 0; j < f->mf_nseries; j++)
			series_free(f->mf_series[j]);
		for (j = 0; j < f->mf_nlabels; j++)
			free(f->mf_labels[j]);
		for (j = 0; j < f->mf_nbounds; j++)
			free(f->mf_bound_text[j]);
		free(f->mf_bound_text);
		free(f->mf_series);
		free(f->mf_bounds);
		free(f->mf_name);
		free(f->mf_help);
		free(f);
	}
	free(m->m_families);
	free(m);
}

/* Decimal digits without printf: most values are counts. */
static void
render_uint(struct buf *b, unsigned long long v)
{
	char d[24];
	size_t i = sizeof(d);

	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	buf_append(b, d + i, sizeof(d) - i);
}

static void
render_int(struct buf *b, long long v)
{
	if (v < 0) {
		buf_append(b, "-", 1);
		render_uint(b, 0ULL - (unsigned long long)v);
	} else
		render_uint(b, (unsigned long long)v);
}

static void
render_number(struct buf *b, double v)
{
	if (isinf(v))
		buf_puts(b, v > 0 ? "+Inf" : "-Inf");
	else if (isnan(v))
		buf_puts(b, "NaN");
	else if (fabs(v) < 1e15 && v == (double)(long long)v)
		render_int(b, (long long)v);
	else {
		/* The shortest text that reads back as the same double. */
		char num[40];
		int prec;
		for (prec = 9; prec < 17; prec++) {
			snprintf(num, sizeof(num), "%.*g", prec, v);
			if (strtod(num, NULL) == v)
				break;
		}
		if (prec == 17)
			snprintf(num, sizeof(num), "%.17g", v);
		buf_puts(b, num);
	}
}

/* Length of the UTF-8 sequence (RFC 3629) at s, at most n bytes, or 0. */
static size_t
utf8_len(const unsigned char *s, size_t n)
{
	unsigned int cp;
	size_t len, i;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (len > n)
		return 0;
	cp = s[0] & (0x7f >> len);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

static void
render_escaped(struct buf *b, const char *s, bool help)
{
	size_t n = strlen(s), k;

	for (; *s != '\0'; s += k, n -= k) {
		k = utf8_len((const unsigned char *)s, n);
		if (*s == '\\')
			buf_puts(b, "\\\\");
		else if (*s == '\n')
			buf_puts(b, "\\n");
		else if (*s == '"' && !help)
			buf_puts(b, "\\\"");
		else if (k == 0) {
			/* Prometheus refuses a label value that is not
			 * UTF-8: U+FFFD stands for the byte. */
			buf_puts(b, "\xef\xbf\xbd");
			k = 1;
		} else
			buf_append(b, s, k);
	}
}

struct metric_family *
metrics_family(struct metrics *m, enum metric_type type, const char *name,
    const char *help, const char *const *labels, const double *buckets,
    size_t nbuckets)
{
	struct metric_family *f = xcalloc(1, sizeof(*f));

	f->mf_type = type;
	f->mf_name = xasprintf(METRIC_PREFIX "%s", name);
	f->mf_help = xstrdup(help);
	while (labels != NULL && labels[f->mf_nlabels] != NULL) {
		if (f->mf_nlabels == METRIC_LABELS_MAX)
			fatalx("metric %s: too many labels", name);
		f->mf_labels[f->mf_nlabels] = xstrdup(labels[f->mf_nlabels]);
		f->mf_nlabels++;
	}
	if (type == METRIC_HISTOGRAM) {
		struct buf t = { 0 };
		size_t i;

		f->mf_bounds = xcalloc(nbuckets, sizeof(double));
		memcpy(f->mf_bounds, buckets, nbuckets * sizeof(double));
		f->mf_nbounds = nbuckets;
		f->mf_bound_text = xcalloc(nbuckets, sizeof(char *));
		for (i = 0; i < nbuckets; i++) {
			buf_reset(&t);
			render_number(&t, buckets[i]);
			f->mf_bound_text[i] = xstrdup(buf_str(&t));
		}
		buf_free(&t);
	}
	m->m_families = xrealloc(
	    m->m_families, m->m_nfamilies + 1, sizeof(*m->m_families));
	m->m_families[m->m_nfamilies++] = f;
	return f;
}

/* {a="x",b="y" (no closing brace: an le label may follow); NULL without
 * labels. */
static char *
series_labels(const struct metric_family *f, const struct metric_series *s)
{
	struct buf b = { 0 };
	size_t i;

	if (f->mf_nlabels == 0)
		return NULL;
	buf_append(&b, "{", 1);
	for (i = 0; i < f->mf_nlabels; i++) {
		if (i > 0)
			buf_append(&b, ",", 1);
		buf_puts(&b, f->mf_labels[i]);
		buf_puts(&b, "=\"");
		render_escaped(&b, s->ms_values[i], false);
		buf_append(&b, "\"", 1);
	}
	return buf_take(&b);
}

struct metric_series *
metric_series(struct metric_family *f, const char *const *values)
{
	struct metric_series *s;
	size_t i, j;

	for (i = 0; i < f->mf_nseries; i++) {
		s = f->mf_series[i];
		for (j = 0; j < f->mf_nlabels; j++)
			if (strcmp(s->ms_values[j], values[j]) != 0)
				break;
		if (j == f->mf_nlabels)
			return s;
	}
	s = xcalloc(1, sizeof(*s));
	s->ms_family = f;
	for (j = 0; j < f->mf_nlabels; j++)
		s->ms_values[j] = xstrdup(values[j]);
	s->ms_labels = series_labels(f, s);
	if (f->mf_type == METRIC_HISTOGRAM)
		s->ms_buckets =
		    xcalloc(f->mf_nbounds + 1, sizeof(*s->ms_buckets));
	f->mf_series =
	    xrealloc(f->mf_series, f->mf_nseries + 1, sizeof(*f->mf_series));
	f->mf_series[f->mf_nseries++] = s;
	return s;
}

void
metric_series_drop(struct metric_series *s)
{
	struct metric_family *f;
	size_t i;

	if (s == NULL)
		return;
	f = s->ms_family;
	for (i = 0; i < f->mf_nseries; i++)
		if (f->mf_series[i] == s)
			break;
	if (i < f->mf_nseries) {
		memmove(&f->mf_series[i], &f->mf_series[i + 1],
		    (f->mf_nseries - i - 1) * sizeof(*f->mf_series));
		f->mf_nseries--;
	}
	series_free(s);
}

struct metric_series *
metric_single(struct metric_family *f)
{
	return metric_series(f, NULL);
}

void
metric_inc(struct metric_series *s, double v)
{
	if (s != NULL)
		s->ms_value += v;
}

void
metric_set(struct metric_series *s, double v)
{
	if (s != NULL)
		s->ms_value = v;
}

double
metric_value(const struct metric_series *s)
{
	return s->ms_value;
}

void
metric_observe(struct metric_series *s, double v)
{
	const struct metric_family *f = s->ms_family;
	size_t i;

	s->ms_value += v;
	s->ms_count++;
	for (i = 0; i < f->mf_nbounds; i++)
		if (v <= f->mf_bounds[i])
			s->ms_buckets[i]++;
}

/* Appends the series' name{a="x",b="y"[,le="0.5"]} after name (the
 * family name plus suffix). */
static void
render_series(struct buf *b, const struct metric_series *s, const char *suffix,
    const char *le)
{
	const struct metric_family *f = s->ms_family;

	buf_puts(b, f->mf_name);
	if (suffix != NULL)
		buf_puts(b, suffix);
	if (s->ms_labels == NULL && le == NULL)
		return;
	if (s->ms_labels != NULL)
		buf_puts(b, s->ms_labels);
	else
		buf_append(b, "{", 1);
	if (le != NULL) {
		if (s->ms_labels != NULL)
			buf_append(b, ",", 1);
		buf_puts(b, "le=\"");
		buf_puts(b, le);
		buf_append(b, "\"", 1);
	}
	buf_append(b, "}", 1);
}

static void
render_value_line(struct buf *b, unsigned long long v)
{
	buf_append(b, " ", 1);
	render_uint(b, v);
	buf_append(b, "\n", 1);
}

static void
render_histogram(struct buf *b, const struct metric_family *f,
    const struct metric_series *s)
{
	size_t i;

	for (i = 0; i < f->mf_nbounds; i++) {
		render_series(b, s, "_bucket", f->mf_bound_text[i]);
		render_value_line(b, s->ms_buckets[i]);
	}
	render_series(b, s, "_bucket", "+Inf");
	render_value_line(b, s->ms_count);
	render_series(b, s, "_sum", NULL);
	buf_append(b, " ", 1);
	render_number(b, s->ms_value);
	buf_append(b, "\n", 1);
	render_series(b, s, "_count", NULL);
	render_value_line(b, s->ms_count);
}

void
metrics_render(const struct metrics *m, struct buf *b)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };
	const struct metric_family *f;
	size_t i, j;

	for (i = 0; i < m->m_nfamilies; i++) {
		f = m->m_families[i];
		buf_printf(b, "# HELP %s ", f->mf_name);
		render_escaped(b, f->mf_help, true);
		buf_printf(
		    b, "\n# TYPE %s %s\n", f->mf_name, types[f->mf_type]);
		for (j = 0; j < f->mf_nseries; j++) {
			if (f->mf_type == METRIC_HISTOGRAM) {
				render_histogram(b, f, f->mf_series[j]);
				continue;
			}
			render_series(b, f->mf_series[j], NULL, NULL);
			buf_append(b, " ", 1);
			render_number(b, f->mf_series[j]->ms_value);
			buf_append(b, "\n", 1);
		}
	}
}

static bool
name_char(char c, bool first)
{
	return isalpha((unsigned char)c) || c == '_' || c == ':' ||
	    (!first && isdigit((unsigned char)c));
}

/* A sample value as Prometheus parses it: a decimal float, +Inf, -Inf,
 * NaN.  Hex and values beyond float64's range are refused; values too
 * small for it (denormals, 1e-400) read as Go reads them and are fine. */
static bool
value_valid(const char *q, const char *end)
{
	char num[64], *num_end;
	size_t n = (size_t)(end - q);
	double v;

	if (n == 0 || n >= sizeof(num))
		return false;
	/* Most values are counts: up to 15 digits read back exactly. */
	if (n <= 15) {
		size_t i;
		for (i = 0; i < n && isdigit((unsigned char)q[i]); i++)
			;
		if (i == n)
			return true;
	}
	memcpy(num, q, n);
	num[n] = '\0';
	if (strcmp(num, "+Inf") == 0 || strcmp(num, "-Inf") == 0 ||
	    strcmp(num, "NaN") == 0)
		return true;
	if (strpbrk(num, "xXpP") != NULL ||
	    strspn(num, "+-0123456789.eE") != n)
		return false;
	v = strtod(num, &num_end);
	return *num_end == '\0' && num_end != num && !isinf(v);
}

static bool
label_char(char c, bool first)
{
	return c != ':' && name_char(c, first);
}

/*
 * Checks a label set starting after '{'; returns the byte after '}'.
 * Refused as Prometheus refuses them: a label name twice, __name__, a
 * value that is not UTF-8, an le or quantile that is not a number (ours
 * are always numbers, whatever the metric's type).
 */
static const char *
labels_valid(const char *q, const char *end)
{
	const char *name[SAMPLE_LABELS_MAX], *v;
	size_t nlen[SAMPLE_LABELS_MAX], n = 0, i, k;

	if (q < end && *q == '}')
		return q + 1;
	for (;;) {
		if (q == end || !label_char(*q, true) ||
		    n == SAMPLE_LABELS_MAX)
			return NULL;
		for (name[n] = q; q < end && label_char(*q, false); q++)
			;
		nlen[n] = (size_t)(q - name[n]);
		for (i = 0; i < n; i++)
			if (nlen[i] == nlen[n] &&
			    memcmp(name[i], name[n], nlen[n]) == 0)
				return NULL;
		if (nlen[n] == 8 && memcmp(name[n], "__name__", 8) == 0)
			return NULL;
		if (end - q < 2 || q[0] != '=' || q[1] != '"')
			return NULL;
		for (v = q += 2; q < end && *q != '"'; q += k) {
			if (*q == '\\') {
				if (q + 1 == end ||
				    (q[1] != '\\' && q[1] != '"' &&
				        q[1] != 'n'))
					return NULL;
				k = 2;
			} else if ((k = utf8_len((const unsigned char *)q,
			                (size_t)(end - q))) == 0)
				return NULL;
		}
		if (q == end)
			return NULL;
		if (((nlen[n] == 2 && memcmp(name[n], "le", 2) == 0) ||
		        (nlen[n] == 8 &&
		            memcmp(name[n], "quantile", 8) == 0)) &&
		    !value_valid(v, q))
			return NULL;
		n++;
		q++;
		if (q < end && *q == '}')
			return q + 1;
		if (q == end || *q != ',')
			return NULL;
		q++;
	}
}

/* Checks one sample line: name{l="v",...} value */
static int
sample_valid(const char *p, const char *end)
{
	const char *q;

	if ((size_t)(end - p) < sizeof(METRIC_PREFIX) - 1 ||
	    strncmp(p, METRIC_PREFIX, sizeof(METRIC_PREFIX) - 1) != 0)
		return -1;
	for (q = p; q < end && name_char(*q, q == p); q++)
		;
	if (q < end && *q == '{' && (q = labels_valid(q + 1, end)) == NULL)
		return -1;
	if (q == end || *q != ' ')
		return -1;
	return value_valid(q + 1, end) ? 0 : -1;
}

/* "# HELP name text" or "# TYPE name counter|gauge|histogram|...". */
static int
comment_valid(const char *p, const char *end)
{
	static const char *const types[] = { "counter", "gauge", "histogram",
		"summary", "untyped" };
	const char *q = p + 7;
	size_t i, n;

	if ((size_t)(end - p) < 7 ||
	    (strncmp(p, "# HELP ", 7) != 0 && strncmp(p, "# TYPE ", 7) != 0) ||
	    (size_t)(end - q) < sizeof(METRIC_PREFIX) - 1 ||
	    strncmp(q, METRIC_PREFIX, sizeof(METRIC_PREFIX) - 1) != 0)
		return -1;
	while (q < end && name_char(*q, false))
		q++;
	if (p[2] == 'H') {
		if (q != end && *q != ' ')
			return -1;
		/* Help text escapes are \\ and \n, nothing else. */
		for (; q < end; q++)
			if (*q == '\\' &&
			    (++q == end || (*q != '\\' && *q != 'n')))
				return -1;
		return 0;
	}
	if (q == end || *q++ != ' ')
		return -1;
	n = (size_t)(end - q);
	for (i = 0; i < nitems(types); i++)
		if (n == strlen(types[i]) && strncmp(q, types[i], n) == 0)
			return 0;
	return -1;
}

int
metrics_text_valid(const char *text, size_t len)
{
	const char *p = text, *end = text + len, *nl;

	while (p < end) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			return -1; /* every line ends with \n */
		if (memchr(p, '\0', (size_t)(nl - p)) != NULL)
			return -1;
		if (nl != p &&
		    (*p == '#' ? comment_valid(p, nl) : sample_valid(p, nl)) ==
		        -1)
			return -1;
		p = nl + 1;
	}
	return 0;
}
