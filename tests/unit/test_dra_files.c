/* The DRA driver's files: the CDI spec of a prepared claim (its exact JSON, written by
 * rename so a reader never sees part of one, never through a symlink, only into a dir
 * nobody else may write) and the claim records a restarted driver reads back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "basic/error.h"
#include "dra/cdi.h"
#include "dra/claim_store.h"
#include "dra/dra_files.h"
#include "test_helpers.h"

#include <fcntl.h>
#include <sys/stat.h>

#define DRIVER "iommufd.example.io"
#define UID    "0f3c6a3e-3f3a-4e55-9a1f-1b2c3d4e5f60"
#define SOCKET "/run/fd/abc/0f3c6a3e-3f3a-4e55-9a1f-1b2c3d4e5f60-1.sock"

static const struct cdi_options cdi = {.driver = DRIVER,
				       .container_socket_path = "/var/run/kubevirt/iommufd.sock"};

static char *read_text(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	close(fd);
	buf[n] = '\0';
	return xstrdup(buf);
}

/* Number of entries in dir, "." and ".." aside. */
static int count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

static void cdi_spec_is_the_exact_json(void **state)
{
	(void)state;
	char *json = cdi_spec_render(&cdi, UID, SOCKET);
	assert_string_equal(json, "{\"cdiVersion\":\"0.6.0\",\"kind\":\"" DRIVER "/iommufd\","
				  "\"devices\":[{\"name\":\"" UID "\",\"containerEdits\":{"
				  "\"mounts\":[{\"hostPath\":\"" SOCKET "\","
				  "\"containerPath\":\"/var/run/kubevirt/iommufd.sock\","
				  "\"options\":[\"bind\"]}]}}]}\n");
	free(json);

	struct cdi_options with_node = cdi;
	with_node.device_node = "/dev/iommu";
	json = cdi_spec_render(&with_node, UID, "/a\"b\\c");
	assert_non_null(strstr(json, "\"hostPath\":\"/a\\\"b\\\\c\""));
	assert_non_null(strstr(json, "]}],\"deviceNodes\":[{\"path\":\"/dev/iommu\","
				     "\"hostPath\":\"/dev/iommu\",\"permissions\":\"rw\"}]}}]}"));
	free(json);

	/* The node's path on the host is the option; in the container it is /dev/iommu. */
	with_node.device_node = "/node/dev/iommu";
	json = cdi_spec_render(&with_node, UID, SOCKET);
	assert_non_null(strstr(json, "\"deviceNodes\":[{\"path\":\"/dev/iommu\","
				     "\"hostPath\":\"/node/dev/iommu\",\"permissions\":\"rw\"}]"));
	free(json);

	char *id = cdi_device_id(&cdi, UID);
	assert_string_equal(id, DRIVER "/iommufd=" UID);
	free(id);
}

/* A second write replaces the file by rename: a reader holding the old file (here a
 * hard link to it) keeps the old content whole, and no temporary file stays. */
static void cdi_spec_is_replaced_atomically(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	char *path = xasprintf("%s/" DRIVER "-" UID ".json", dir);
	char *old = xasprintf("%s/old", dir);
	struct error e = {0};
	struct stat before, after;

	int fd = dra_dir_open_checked(dir, &e);
	assert_true(fd >= 0);
	assert_int_equal(cdi_spec_write(&cdi, fd, dir, UID, "/first.sock", &e), 0);
	assert_int_equal(link(path, old), 0);
	assert_int_equal(stat(path, &before), 0);
	assert_int_equal(before.st_mode & 07777, 0600);
	assert_int_equal(cdi_spec_write(&cdi, fd, dir, UID, "/second.sock", &e), 0);
	assert_int_equal(stat(path, &after), 0);
	assert_int_not_equal(before.st_ino, after.st_ino);

	char *now = read_text(path), *then = read_text(old);
	assert_non_null(strstr(now, "/second.sock"));
	assert_non_null(strstr(then, "/first.sock"));
	assert_null(strstr(then, "/second.sock"));
	assert_int_equal(count_entries(dir), 2); /* the spec and our link: no temp file */

	assert_int_equal(cdi_spec_remove(&cdi, fd, dir, UID, &e), 0);
	assert_int_equal(access(path, F_OK), -1);
	assert_int_equal(cdi_spec_remove(&cdi, fd, dir, UID, &e), 0); /* none: success */
	free(now);
	free(then);
	close(fd);
	test_remove_tree(dir);
	free(old);
	free(path);
	free(dir);
}

/* A symlink planted at the spec's name is replaced, never written through; a CDI dir
 * that is a symlink, or that others may write, is refused. */
static void cdi_spec_never_follows_a_symlink(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	char *cdi_dir = xasprintf("%s/cdi", dir);
	char *victim = xasprintf("%s/victim", dir);
	char *spec = xasprintf("%s/" DRIVER "-" UID ".json", cdi_dir);
	char *link_dir = xasprintf("%s/link", dir);
	struct error e = {0};
	struct stat st;

	assert_int_equal(mkdir(cdi_dir, 0755), 0);
	int vfd = open(victim, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(vfd >= 0);
	assert_int_equal(write(vfd, "precious", 8), 8);
	close(vfd);
	assert_int_equal(symlink(victim, spec), 0);

	int fd = dra_dir_open_checked(cdi_dir, &e);
	assert_true(fd >= 0);
	assert_int_equal(cdi_spec_write(&cdi, fd, cdi_dir, UID, SOCKET, &e), 0);
	char *text = read_text(victim);
	assert_string_equal(text, "precious");
	free(text);
	assert_int_equal(lstat(spec, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	close(fd);

	assert_int_equal(symlink(cdi_dir, link_dir), 0);
	int r = dra_dir_open_checked(link_dir, &e); /* O_DIRECTORY|O_NOFOLLOW on a symlink */
	assert_true(r == -ENOTDIR || r == -ELOOP);
	assert_int_equal(chmod(cdi_dir, 0777), 0);
	assert_int_equal(dra_dir_open_checked(cdi_dir, &e), -EPERM);
	assert_non_null(strstr(error_message(&e), "writable by nobody else"));

	test_remove_tree(dir);
	free(link_dir);
	free(spec);
	free(victim);
	free(cdi_dir);
	free(dir);
}

struct loaded {
	int count;
	struct claim_record last;
};

static void on_record(void *data, const struct claim_record *rec)
{
	struct loaded *l = data;

	l->count++;
	l->last = *rec;
}

static void fill_record(struct claim_record *rec)
{
	*rec = (struct claim_record){0};
	strcpy(rec->uid, UID);
	strcpy(rec->namespace_, "vms");
	strcpy(rec->name, "vm-a-iommufd");
	strcpy(rec->socket_path, SOCKET);
	rec->n_devices = 2;
	strcpy(rec->devices[0].request, "iommufd");
	strcpy(rec->devices[0].pool, "node-1");
	strcpy(rec->devices[0].device, "iommufd0");
	strcpy(rec->devices[1].request, "iommufd");
	strcpy(rec->devices[1].pool, "node-1");
	strcpy(rec->devices[1].device, "iommufd7");
}

/* A record reads back as written; files that do not parse, or that name another
 * claim than their file name, are skipped; removing twice is fine. */
static void claim_records_round_trip(void **state)
{
	(void)state;
	char *dir = test_make_temp_dir();
	char *store_dir = xasprintf("%s/claims", dir);
	struct claim_store *store;
	struct claim_record rec;
	struct loaded l = {0};
	struct error e = {0};
	struct stat st;

	assert_int_equal(claim_store_open(store_dir, &store, &e), 0);
	assert_int_equal(stat(store_dir, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	fill_record(&rec);
	assert_int_equal(claim_store_save(store, &rec, &e), 0);

	/* Garbage, and a file that speaks for another claim. */
	char *garbage = xasprintf("%s/bad.claim", store_dir);
	char *other = xasprintf("%s/11111111-2222-3333-4444-555555555555.claim", store_dir);
	char *mine = xasprintf("%s/" UID ".claim", store_dir);
	int fd = open(garbage, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_int_equal(write(fd, "uid\n", 4), 4);
	close(fd);
	assert_int_equal(link(mine, other), 0);

	assert_int_equal(claim_store_load(store, on_record, &l), 1);
	assert_int_equal(l.count, 1);
	assert_memory_equal(&l.last, &rec, sizeof(rec));

	strcpy(rec.name, "two words");
	assert_int_equal(claim_store_save(store, &rec, &e), -EINVAL);
	strcpy(rec.uid, "../escape");
	assert_int_equal(claim_store_save(store, &rec, &e), -EINVAL);

	assert_int_equal(claim_store_remove(store, UID, &e), 0);
	assert_int_equal(claim_store_remove(store, UID, &e), 0);
	l.count = 0;
	assert_int_equal(claim_store_load(store, on_record, &l), 0);
	claim_store_free(store);
	test_remove_tree(dir);
	free(mine);
	free(other);
	free(garbage);
	free(store_dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(cdi_spec_is_the_exact_json),
	    cmocka_unit_test(cdi_spec_is_replaced_atomically),
	    cmocka_unit_test(cdi_spec_never_follows_a_symlink),
	    cmocka_unit_test(claim_records_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
