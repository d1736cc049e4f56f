/* Device presence watch: real inotify on a real directory, real device nodes made
 * with mknod, driven by the real loop; reports only actual changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sys/sysmacros.h>

#include "iommufd/device_presence.h"
#include "test_helpers.h"

struct fixture {
	struct loop *loop;
	struct device_presence *presence;
	char *dir;
	char *device;
	int fds_before;
	int calls;
	bool last;
};

static void on_change(void *data, bool present)
{
	struct fixture *f = data;

	f->calls++;
	f->last = present;
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->fds_before = test_count_open_fds();
	assert_int_equal(loop_new(&f->loop), 0);
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	f->device = xasprintf("%s/iommu", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	device_presence_free(f->presence);
	loop_free(f->loop);
	test_remove_tree(f->dir);
	free(f->device);
	free(f->dir);
	int fds_before = f->fds_before;
	free(f);
	assert_int_equal(test_count_open_fds(), fds_before);
	return 0;
}

static void start(struct fixture *f)
{
	assert_int_equal(device_presence_new(f->loop, f->device, on_change, f, &f->presence), 0);
}

/* A character device node (/dev/null's numbers); skips the test without CAP_MKNOD. */
static void make_node(const char *path)
{
	if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) < 0) {
		if (errno == EPERM)
			skip();
		fail_msg("mknod %s: %s", path, strerror(errno));
	}
}

static bool called(void *data)
{
	struct fixture *f = data;

	return f->calls > 0;
}

static bool called_twice(void *data)
{
	struct fixture *f = data;

	return f->calls > 1;
}

/* The sentinel: after events that must be ignored, one real change (the device
 * appears, or goes if it was there) must be the first and only callback. The
 * ignored events are already queued on the inotify fd: the loop drains them first,
 * so a wrong callback for them comes before the sentinel's, not in its batch. */
static void expect_only_the_sentinel_change(struct fixture *f)
{
	bool was_present = device_presence_present(f->presence);
	int rounds = 0;

	while (loop_run_once(f->loop, 0) > 0)
		assert_true(++rounds < 1000);
	if (was_present)
		assert_int_equal(unlink(f->device), 0);
	else
		make_node(f->device);
	assert_true(test_run_until(f->loop, called, f, 5000));
	assert_int_equal(f->calls, 1);
	assert_int_equal(f->last, !was_present);
}

static void device_presence_reports_appearance_and_removal(void **state)
{
	struct fixture *f = *state;

	start(f);
	assert_false(device_presence_present(f->presence));
	make_node(f->device);
	assert_true(test_run_until(f->loop, called, f, 5000));
	assert_int_equal(f->calls, 1);
	assert_true(f->last);
	assert_true(device_presence_present(f->presence));

	assert_int_equal(unlink(f->device), 0);
	assert_true(test_run_until(f->loop, called_twice, f, 5000));
	assert_int_equal(f->calls, 2);
	assert_false(f->last);
	assert_false(device_presence_present(f->presence));
}

static void device_presence_starts_with_the_current_state_without_calling_back(void **state)
{
	struct fixture *f = *state;

	make_node(f->device);
	start(f);
	assert_true(device_presence_present(f->presence));
	expect_only_the_sentinel_change(f);
}

static void device_presence_ignores_other_entries_and_unchanged_state(void **state)
{
	struct fixture *f = *state;
	char *other = xasprintf("%s/iommu-other", f->dir);

	make_node(f->device);
	start(f);
	make_node(other);
	assert_int_equal(chmod(f->device, 0666), 0); /* IN_ATTRIB, still present */
	assert_int_equal(unlink(other), 0);
	expect_only_the_sentinel_change(f);
	free(other);
}

static void device_presence_reports_rename_in_and_out(void **state)
{
	struct fixture *f = *state;
	char *staged = xasprintf("%s/staged", f->dir);

	start(f);
	make_node(staged);
	assert_int_equal(rename(staged, f->device), 0);
	assert_true(test_run_until(f->loop, called, f, 5000));
	assert_true(f->last);
	assert_int_equal(rename(f->device, staged), 0);
	assert_true(test_run_until(f->loop, called_twice, f, 5000));
	assert_false(f->last);
	free(staged);
}

static void device_presence_treats_a_regular_file_as_absent(void **state)
{
	struct fixture *f = *state;

	start(f);
	int fd = open(f->device, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_false(device_presence_present(f->presence));
	/* The sentinel: the file replaced by a device node is the first change. */
	assert_int_equal(unlink(f->device), 0);
	expect_only_the_sentinel_change(f);
}

static void device_presence_fails_for_a_missing_directory(void **state)
{
	struct fixture *f = *state;
	char *path = xasprintf("%s/no-such-dir/iommu", f->dir);

	assert_int_equal(device_presence_new(f->loop, path, on_change, f, &f->presence), -ENOENT);
	f->presence = NULL;
	free(path);
}

static void device_presence_never_wakes_an_idle_loop(void **state)
{
	struct fixture *f = *state;

	start(f);
	/* Idle: no timer armed (no polling), and no fd has anything to say. */
	assert_int_equal(test_count_armed_timerfds(), 0);
	assert_int_equal(loop_run_once(f->loop, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(device_presence_reports_appearance_and_removal),
	    T(device_presence_starts_with_the_current_state_without_calling_back),
	    T(device_presence_ignores_other_entries_and_unchanged_state),
	    T(device_presence_reports_rename_in_and_out),
	    T(device_presence_treats_a_regular_file_as_absent),
	    T(device_presence_fails_for_a_missing_directory),
	    T(device_presence_never_wakes_an_idle_loop),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
