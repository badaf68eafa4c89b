/*
 * Prometheus text (common/metrics.c).  The supervisor accepts a child's
 * metrics only through metrics_text_valid and then serves them as part of
 * /metrics, so what it accepts must be lines of well-formed samples and
 * comments with our prefix, and joining two accepted texts must still be
 * accepted (mode 'V', any bytes).  And what a registry renders must pass
 * that check whatever the help texts, label values and sample values
 * (mode 'R': a registry built from the input, values any double).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "metrics.h"

#define PREFIX_LEN (sizeof(METRIC_PREFIX) - 1)

static void
check_text(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data, *p, *nl;
	struct buf two = { 0 };

	if (metrics_text_valid(text, size) != 0)
		return;
	FUZZ_CHECK(size == 0 || text[size - 1] == '\n',
	    "accepted text does not end with a newline");
	FUZZ_CHECK(
	    memchr(text, '\0', size) == NULL, "accepted text has a NUL");
	for (p = text; p < text + size; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(text + size - p));
		if (nl == p)
			continue;
		if (*p == '#') {
			FUZZ_CHECK(nl - p >= 7 &&
			        (memcmp(p, "# HELP ", 7) == 0 ||
			            memcmp(p, "# TYPE ", 7) == 0),
			    "accepted comment \"%.*s\"", (int)(nl - p), p);
			p += 7;
		}
		FUZZ_CHECK((size_t)(nl - p) >= PREFIX_LEN &&
		        memcmp(p, METRIC_PREFIX, PREFIX_LEN) == 0,
		    "accepted a line without our prefix: \"%.*s\"",
		    (int)(nl - p), p);
	}
	buf_append(&two, text, size);
	buf_append(&two, text, size);
	FUZZ_CHECK(metrics_text_valid(two.b_data, two.b_len) == 0,
	    "accepted text is refused twice over");
	buf_free(&two);
}

static double
any_double(struct fuzz_in *in)
{
	uint64_t bits = fuzz_u64(in);
	double v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

/* Name characters from the input.  Label names, as the program's own
 * are, are distinct within a family (the index leads), never __name__ and
 * never le or quantile, which carry numbers. */
static char *
name(struct fuzz_in *in, int label)
{
	static const char chars[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789:";
	size_t i, n, nchars = sizeof(chars) - (label >= 0 ? 2 : 1);
	const uint8_t *p = fuzz_bytes(in, 16, &n);
	char *s = malloc(n + 8);
	int at = 0;

	FUZZ_CHECK(s != NULL, "out of memory");
	if (label >= 0)
		at = snprintf(s, 8, "l%d", label);
	else
		s[at++] = "abcdefgh"[n % 8];
	for (i = 0; i < n; i++)
		s[at + (int)i] = chars[p[i] % nchars];
	s[at + (int)n] = '\0';
	return s;
}

static int
dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void
check_render(struct fuzz_in *in)
{
	struct metrics *m = metrics_new();
	struct metric_family *fams[4];
	struct metric_series *s;
	struct buf out = { 0 };
	char *labels[4][METRIC_LABELS_MAX + 1], *values[METRIC_LABELS_MAX];
	char *help, *fname;
	double bounds[6];
	size_t nfam, i, j, k, nlabels[4], nbounds;
	enum metric_type type;

	memset(labels, 0, sizeof(labels));
	nfam = fuzz_u8(in) % 4 + 1;
	for (i = 0; i < nfam; i++) {
		type = (enum metric_type)(fuzz_u8(in) % 3);
		fname = name(in, -1);
		help = fuzz_str(in, 64);
		nlabels[i] = fuzz_u8(in) % (METRIC_LABELS_MAX + 1);
		for (j = 0; j < nlabels[i]; j++)
			labels[i][j] = name(in, (int)j);
		nbounds = 0;
		for (k = fuzz_u8(in) % 6; k > 0; k--) {
			bounds[nbounds] = any_double(in);
			if (isfinite(bounds[nbounds]))
				nbounds++;
		}
		qsort(bounds, nbounds, sizeof(bounds[0]), dbl_cmp);
		fams[i] = metrics_family(m, type, fname, help,
		    (const char *const *)labels[i], bounds, nbounds);
		free(fname);
		free(help);
	}
	while (in->fi_n > 0) {
		i = fuzz_u8(in) % nfam;
		for (j = 0; j < nlabels[i]; j++)
			values[j] = fuzz_str(in, 32);
		s = metric_series(fams[i], (const char *const *)values);
		for (j = 0; j < nlabels[i]; j++)
			free(values[j]);
		switch (fuzz_u8(in) % 3) {
		case 0:
			metric_inc(s, any_double(in));
			break;
		case 1:
			metric_set(s, any_double(in));
			break;
		default:
			metric_observe(s, any_double(in));
			break;
		}
	}
	metrics_render(m, &out);
	FUZZ_CHECK(metrics_text_valid(buf_str(&out), out.b_len) == 0,
	    "rendered text refused:\n%s", buf_str(&out));
	buf_free(&out);
	metrics_free(m);
	for (i = 0; i < nfam; i++)
		for (j = 0; j < nlabels[i]; j++)
			free(labels[i][j]);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	if (size > 0 && data[0] == 'R') {
		fuzz_u8(&in);
		check_render(&in);
	} else
		check_text(data, size);
	return 0;
}
