/* Claim records: "<uid>.claim" files of "key value" lines (uid, namespace, name,
 * socket, then one "device request pool device" line per device). Every value is a
 * Kubernetes name or our own path, neither of which holds a space or a newline. */
#include "claim_store.h"
#include "dra_files.h"
#include "../basic/error.h"
#include "../basic/error_text.h"
#include "../handoff/instance_dir.h"
#include "../log.h"
#include "../util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CLAIM_FILE_SUFFIX ".claim"
#define CLAIM_FILE_MAX	  ((size_t)64 * 1024) /* 16 devices of 3 names of 253: far below */

struct claim_store {
	char *path;
	int dir_fd;
};

bool claim_uid_valid(const char *uid)
{
	size_t n = strlen(uid);

	if (n == 0 || n >= sizeof(((struct claim_record *)0)->uid) || uid[0] == '-')
		return false;
	return strspn(uid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") == n;
}

int claim_store_open(const char *path, struct claim_store **out, struct error *e)
{
	int fd = instance_dir_open_private(path, e);

	if (fd < 0)
		return fd;
	struct claim_store *store = xcalloc(1, sizeof(*store));
	store->path = xstrdup(path);
	store->dir_fd = fd;
	*out = store;
	return 0;
}

void claim_store_free(struct claim_store *store)
{
	if (!store)
		return;
	close(store->dir_fd);
	free(store->path);
	free(store);
}

/* A value we write must not break the line format. */
static bool record_value_ok(const char *s)
{
	return *s && !strpbrk(s, " \n\t\r");
}

int claim_store_save(struct claim_store *store, const struct claim_record *rec, struct error *e)
{
	if (!claim_uid_valid(rec->uid))
		return error_set(e, -EINVAL, "invalid claim uid \"%s\"", rec->uid);
	bool ok = record_value_ok(rec->namespace_) && record_value_ok(rec->name) &&
		  record_value_ok(rec->socket_path) && rec->n_devices <= CLAIM_MAX_DEVICES;
	for (size_t i = 0; ok && i < rec->n_devices; i++)
		ok = record_value_ok(rec->devices[i].request) &&
		     record_value_ok(rec->devices[i].pool) &&
		     record_value_ok(rec->devices[i].device);
	if (!ok)
		return error_set(e, -EINVAL, "claim %s: a name that cannot be recorded", rec->uid);

	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);
	if (!f)
		abort(); /* out of memory */
	fprintf(f, "uid %s\nnamespace %s\nname %s\nsocket %s\n", rec->uid, rec->namespace_,
		rec->name, rec->socket_path);
	for (size_t i = 0; i < rec->n_devices; i++)
		fprintf(f, "device %s %s %s\n", rec->devices[i].request, rec->devices[i].pool,
			rec->devices[i].device);
	if (fclose(f) != 0)
		abort();
	cleanup_free char *name = xasprintf("%s" CLAIM_FILE_SUFFIX, rec->uid);
	int r = dra_file_write_atomic(store->dir_fd, store->path, name, text, size, 0600, e);
	free(text);
	return r;
}

int claim_store_remove(struct claim_store *store, const char *uid, struct error *e)
{
	if (!claim_uid_valid(uid))
		return 0; /* never recorded */
	cleanup_free char *name = xasprintf("%s" CLAIM_FILE_SUFFIX, uid);
	return dra_file_remove(store->dir_fd, store->path, name, e);
}

/* Copies value into a field of size bytes; false if it does not fit. */
static bool field_set(char *field, size_t size, const char *value)
{
	size_t n = strlen(value);

	if (n == 0 || n >= size)
		return false;
	memcpy(field, value, n + 1);
	return true;
}

/* Parses a record's text (modified in place). Returns 0 or -EINVAL. */
static int record_parse(char *text, struct claim_record *rec)
{
	char *save = NULL;

	*rec = (struct claim_record){0};
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *words[4] = {0};
		char *wsave = NULL;
		size_t n = 0;
		for (char *w = strtok_r(line, " ", &wsave); w; w = strtok_r(NULL, " ", &wsave)) {
			if (n == ARRAY_SIZE(words))
				return -EINVAL;
			words[n++] = w;
		}
		bool ok;
		if (n == 2 && strcmp(words[0], "uid") == 0)
			ok = field_set(rec->uid, sizeof(rec->uid), words[1]);
		else if (n == 2 && strcmp(words[0], "namespace") == 0)
			ok = field_set(rec->namespace_, sizeof(rec->namespace_), words[1]);
		else if (n == 2 && strcmp(words[0], "name") == 0)
			ok = field_set(rec->name, sizeof(rec->name), words[1]);
		else if (n == 2 && strcmp(words[0], "socket") == 0)
			ok = field_set(rec->socket_path, sizeof(rec->socket_path), words[1]);
		else if (n == 4 && strcmp(words[0], "device") == 0 &&
			 rec->n_devices < CLAIM_MAX_DEVICES) {
			struct claim_device *d = &rec->devices[rec->n_devices++];
			ok = field_set(d->request, sizeof(d->request), words[1]) &&
			     field_set(d->pool, sizeof(d->pool), words[2]) &&
			     field_set(d->device, sizeof(d->device), words[3]);
		} else
			ok = false;
		if (!ok)
			return -EINVAL;
	}
	return claim_uid_valid(rec->uid) && rec->namespace_[0] && rec->name[0] &&
		       rec->socket_path[0]
		   ? 0
		   : -EINVAL;
}

int claim_store_load(struct claim_store *store,
		     void (*fn)(void *data, const struct claim_record *rec), void *data)
{
	int fd = openat(store->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *dir = fdopendir(fd);
	if (!dir) {
		int r = -errno;
		close(fd);
		return r;
	}
	cleanup_free char *text = xmalloc(CLAIM_FILE_MAX);
	cleanup_free struct claim_record *rec = xmalloc(sizeof(*rec));
	int count = 0;
	struct dirent *ent;

	while ((ent = readdir(dir))) {
		size_t n = strlen(ent->d_name), suffix = strlen(CLAIM_FILE_SUFFIX);
		if (ent->d_name[0] == '.' || n <= suffix ||
		    strcmp(ent->d_name + n - suffix, CLAIM_FILE_SUFFIX) != 0)
			continue;
		ssize_t len = dra_file_read(store->dir_fd, ent->d_name, text, CLAIM_FILE_MAX);
		int r = len < 0 ? (int)len : record_parse(text, rec);
		if (r == 0 && (strlen(rec->uid) != n - suffix ||
			       strncmp(rec->uid, ent->d_name, n - suffix) != 0))
			r = -EINVAL; /* a file must not speak for another claim */
		if (r < 0) {
			log_warning("ignoring the claim record %s/%s: %s", store->path, ent->d_name,
				    r == -EINVAL ? "does not parse" : error_text(-r));
			continue;
		}
		fn(data, rec);
		count++;
	}
	closedir(dir);
	return count;
}
