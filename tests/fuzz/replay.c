/* Replays fuzz inputs without libFuzzer: each file named on the command line, or in a
 * directory named there, is passed once to the target's LLVMFuzzerTestOneInput. This
 * lets the gcc and musl builds, which have no libFuzzer, run the committed corpus and
 * regressions as a test (tests/fuzz/meson.build); a broken invariant aborts. Prints
 * one TAP line per argument, as the cmocka tests do under CMOCKA_MESSAGE_OUTPUT=tap. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads path whole into a malloc'd buffer; returns its size or -errno. */
static long read_file(const char *path, uint8_t **data)
{
	FILE *f = fopen(path, "rbe");
	if (!f)
		return -errno;
	size_t capacity = 4096, size = 0;
	uint8_t *buf = malloc(capacity);
	if (!buf)
		abort();
	size_t n;
	while ((n = fread(buf + size, 1, capacity - size, f)) > 0) {
		size += n;
		if (size == capacity) {
			capacity *= 2;
			buf = realloc(buf, capacity);
			if (!buf)
				abort();
		}
	}
	int failed = ferror(f);
	fclose(f);
	if (failed) {
		free(buf);
		return -EIO;
	}
	*data = buf;
	return (long)size;
}

static int replay_file(const char *path)
{
	uint8_t *data = NULL;
	long size = read_file(path, &data);
	if (size < 0) {
		fprintf(stderr, "cannot read %s: %s\n", path, strerror((int)-size));
		return -1;
	}
	LLVMFuzzerTestOneInput(data, (size_t)size);
	free(data);
	return 0;
}

/* Replays path, a file or a directory of files; returns the count replayed or -1. */
static int replay_path(const char *path)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "cannot stat %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path) < 0 ? -1 : 1;
	struct dirent **entries;
	int n = scandir(path, &entries, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "cannot list %s: %s\n", path, strerror(errno));
		return -1;
	}
	int count = 0;
	for (int i = 0; i < n; i++) {
		char file[4096];
		if (entries[i]->d_name[0] != '.' && count >= 0) {
			snprintf(file, sizeof(file), "%s/%s", path, entries[i]->d_name);
			count = replay_file(file) < 0 ? -1 : count + 1;
		}
		free(entries[i]);
	}
	free(entries);
	return count;
}

int main(int argc, char **argv)
{
	int failed = 0;
	printf("1..%d\n", argc - 1);
	for (int i = 1; i < argc; i++) {
		int count = replay_path(argv[i]);
		printf("%s %d - %s: %d inputs\n", count < 0 ? "not ok" : "ok", i, argv[i], count);
		failed |= count < 0;
	}
	return failed;
}
