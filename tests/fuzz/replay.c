/*
 * Runs a harness on files without libFuzzer, so that every build (gcc,
 * plain and ASan+UBSan) replays the seed corpus and every crash ever found:
 *   fuzz_<name>_replay DIR|FILE...
 * A directory that does not exist counts as empty; finding no input at all
 * is an error.  A failed check or a crash ends the run (abort), naming the
 * input first.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "util.h"

/* Defined by harnesses that need set-up; NULL otherwise. */
extern int LLVMFuzzerInitialize(int *, char ***) __attribute__((weak));

static int
run_file(const char *path)
{
	size_t len;
	char *data;

	if ((data = read_file(path, 64 * 1024 * 1024, &len)) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	/* An exact-size copy: ASan sees a read past the input's end. */
	{
		uint8_t *exact = xmalloc(len > 0 ? len : 1);

		memcpy(exact, data, len);
		free(data);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	return 0;
}

static int
name_cmp(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

static int
run_path(const char *path, size_t *count)
{
	struct dirent **ents;
	struct stat st;
	char *file;
	int i, n, rv = 0;

	if (stat(path, &st) == -1)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	if ((n = scandir(path, &ents, NULL, name_cmp)) == -1) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		file = xasprintf("%s/%s", path, ents[i]->d_name);
		if (ents[i]->d_name[0] != '.' && stat(file, &st) == 0 &&
		    S_ISREG(st.st_mode)) {
			(*count)++;
			if (run_file(file) == -1)
				rv = -1;
		}
		free(file);
		free(ents[i]);
	}
	free(ents);
	return rv;
}

int
main(int argc, char **argv)
{
	size_t count = 0;
	int i, rv = 0;

	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++)
		if (run_path(argv[i], &count) == -1)
			rv = 1;
	if (count == 0) {
		fprintf(stderr, "replay: no input found\n");
		return 1;
	}
	fprintf(stderr, "replay: %zu inputs%s\n", count,
	    rv == 0 ? ", all passed" : "; some could not be read");
	return rv;
}
