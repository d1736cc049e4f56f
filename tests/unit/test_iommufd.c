/* iommufd opener: the uapi layout, the errno policy (pure decision, and the real
 * ENOTTY path through /dev/null), log-once counters, and the SELinux temporary node
 * path with real mknod, xattrs, and mount namespaces (nodev refusal, private tmpfs,
 * ramfs without labels). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>

#include "basic/error.h"
#include "iommufd/iommufd.h"
#include "iommufd/iommufd_uapi.h"
#include "selinux/selinux.h"
#include "test_helpers.h"

#define LABEL "system_u:object_r:container_file_t:s0"

struct fixture {
	char *dir;
	int fds_before;
	struct stat null_st;
};

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));

	f->fds_before = test_count_open_fds();
	f->dir = test_make_temp_dir();
	assert_non_null(f->dir);
	assert_int_equal(stat("/dev/null", &f->null_st), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_remove_tree(f->dir);
	free(f->dir);
	int fds_before = f->fds_before;
	free(f);
	assert_int_equal(test_count_open_fds(), fds_before);
	return 0;
}

static void iommufd_option_struct_matches_kernel_abi(void **state)
{
	(void)state;
	assert_int_equal(sizeof(struct iommu_option), 24);
	assert_int_equal(offsetof(struct iommu_option, size), 0);
	assert_int_equal(offsetof(struct iommu_option, option_id), 4);
	assert_int_equal(offsetof(struct iommu_option, op), 8);
	assert_int_equal(offsetof(struct iommu_option, __reserved), 10);
	assert_int_equal(offsetof(struct iommu_option, object_id), 12);
	assert_int_equal(offsetof(struct iommu_option, val64), 16);
	assert_int_equal(IOMMU_OPTION, 0x3b87);
	assert_int_equal(IOMMU_OPTION_RLIMIT_MODE, 0);
	assert_int_equal(IOMMU_OPTION_OP_SET, 0);
	assert_int_equal(IOMMU_OPTION_OP_GET, 1);
}

static void expect_decision(enum iommufd_rlimit_policy policy, int r, int result,
			    enum iommufd_outcome outcome)
{
	enum iommufd_outcome got = IOMMUFD_OUTCOME_COUNT;

	assert_int_equal(iommufd_policy_decide(policy, r, &got), result);
	assert_int_equal(got, outcome);
}

static void iommufd_policy_counts_success_as_set_under_both_policies(void **state)
{
	(void)state;
	expect_decision(IOMMUFD_RLIMIT_BEST_EFFORT, 0, 0, IOMMUFD_OUTCOME_SET);
	expect_decision(IOMMUFD_RLIMIT_REQUIRED, 0, 0, IOMMUFD_OUTCOME_SET);
}

static void iommufd_policy_best_effort_hands_over_when_kernel_lacks_option(void **state)
{
	(void)state;
	expect_decision(IOMMUFD_RLIMIT_BEST_EFFORT, -ENOTTY, 0, IOMMUFD_OUTCOME_UNSUPPORTED);
	expect_decision(IOMMUFD_RLIMIT_BEST_EFFORT, -EOPNOTSUPP, 0, IOMMUFD_OUTCOME_UNSUPPORTED);
}

static void iommufd_policy_best_effort_hands_over_without_cap_sys_resource(void **state)
{
	(void)state;
	expect_decision(IOMMUFD_RLIMIT_BEST_EFFORT, -EPERM, 0, IOMMUFD_OUTCOME_NO_CAPABILITY);
}

static void iommufd_policy_required_fails_when_kernel_lacks_option(void **state)
{
	(void)state;
	expect_decision(IOMMUFD_RLIMIT_REQUIRED, -ENOTTY, -ENOTTY, IOMMUFD_OUTCOME_UNSUPPORTED);
	expect_decision(IOMMUFD_RLIMIT_REQUIRED, -EOPNOTSUPP, -EOPNOTSUPP,
			IOMMUFD_OUTCOME_UNSUPPORTED);
}

static void iommufd_policy_required_fails_without_cap_sys_resource(void **state)
{
	(void)state;
	expect_decision(IOMMUFD_RLIMIT_REQUIRED, -EPERM, -EPERM, IOMMUFD_OUTCOME_NO_CAPABILITY);
}

static void iommufd_policy_fails_other_errors_under_both_policies(void **state)
{
	const int errors[] = {EINVAL, EBUSY, EFAULT, ENOMEM, EIO};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(errors); i++) {
		expect_decision(IOMMUFD_RLIMIT_BEST_EFFORT, -errors[i], -errors[i],
				IOMMUFD_OUTCOME_FAILED);
		expect_decision(IOMMUFD_RLIMIT_REQUIRED, -errors[i], -errors[i],
				IOMMUFD_OUTCOME_FAILED);
	}
}

static void iommufd_outcome_names_are_the_metric_labels(void **state)
{
	static const char *const names[] = {"set", "unsupported", "no_capability", "failed",
					    "open_failed"};

	(void)state;
	for (int i = 0; i < IOMMUFD_OUTCOME_COUNT; i++)
		assert_string_equal(iommufd_outcome_name((enum iommufd_outcome)i), names[i]);
}

static void iommufd_rlimit_mode_ioctl_on_a_non_iommufd_returns_enotty(void **state)
{
	uint64_t mode = 7;

	(void)state;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(iommufd_set_rlimit_mode(fd, 1), -ENOTTY);
	assert_int_equal(iommufd_get_rlimit_mode(fd, &mode), -ENOTTY);
	assert_int_equal(mode, 7);
	close(fd);
}

static struct iommufd_opener *new_opener(const char *device, enum iommufd_rlimit_policy policy,
					 struct selinux_labeler *labeler, const char *scratch,
					 bool scratch_tmpfs)
{
	struct iommufd_options o;
	struct iommufd_opener *opener = NULL;

	iommufd_options_init(&o);
	o.device_path = device;
	o.policy = policy;
	o.labeler = labeler;
	if (scratch)
		o.scratch_dir = scratch;
	o.scratch_tmpfs = scratch_tmpfs;
	assert_int_equal(iommufd_opener_new(&o, &opener), 0);
	return opener;
}

static void iommufd_open_best_effort_hands_over_unconfigured_fd_on_enotty(void **state)
{
	struct fixture *f = *state;
	struct iommufd_opener *o =
	    new_opener("/dev/null", IOMMUFD_RLIMIT_BEST_EFFORT, NULL, NULL, false);
	struct error e = {0};
	struct stat st;
	int fd = -1;

	assert_int_equal(iommufd_open(o, &fd, &e), 0);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(fstat(fd, &st), 0);
	assert_true(st.st_rdev == f->null_st.st_rdev);
	assert_int_equal(e.code, 0);
	assert_string_equal(e.message, "");
	assert_int_equal(iommufd_opener_stats(o)->outcomes[IOMMUFD_OUTCOME_UNSUPPORTED], 1);
	assert_int_equal(iommufd_opener_stats(o)->outcomes[IOMMUFD_OUTCOME_SET], 0);
	close(fd);
	iommufd_opener_free(o);
}

/* The reason travels in the error object, unlogged: the Allocate handler decides and
 * logs it once. */
static void iommufd_open_required_fails_with_reason_on_enotty_and_logs_nothing(void **state)
{
	struct iommufd_opener *o =
	    new_opener("/dev/null", IOMMUFD_RLIMIT_REQUIRED, NULL, NULL, false);
	struct test_stderr_capture capture;
	struct error e = {0};
	int fd = 42;

	(void)state;
	test_capture_stderr_begin(&capture);
	assert_int_equal(iommufd_open(o, &fd, &e), -ENOTTY);
	char *log = test_capture_stderr_end(&capture);
	assert_string_equal(log, "");
	free(log);
	assert_int_equal(fd, -1);
	assert_int_equal(e.code, -ENOTTY);
	assert_non_null(strstr(e.message, "cannot set IOMMU_OPTION_RLIMIT_MODE on /dev/null"));
	assert_non_null(strstr(e.message, "(ENOTTY)"));
	assert_non_null(strstr(e.message, "policy required"));
	assert_int_equal(iommufd_opener_stats(o)->outcomes[IOMMUFD_OUTCOME_UNSUPPORTED], 1);
	iommufd_opener_free(o);
}

static void iommufd_open_logs_each_cause_once_but_counts_every_time(void **state)
{
	struct iommufd_opener *o =
	    new_opener("/dev/null", IOMMUFD_RLIMIT_BEST_EFFORT, NULL, NULL, false);
	struct test_stderr_capture capture;

	(void)state;
	test_capture_stderr_begin(&capture);
	for (int i = 0; i < 3; i++) {
		int fd = -1;
		assert_int_equal(iommufd_open(o, &fd, NULL), 0);
		close(fd);
	}
	char *log = test_capture_stderr_end(&capture);
	assert_int_equal(test_count_substrings(log, "cannot set IOMMU_OPTION_RLIMIT_MODE"), 1);
	/* The line names where it was decided, not the log helper. */
	assert_non_null(strstr(log, " iommufd.c:"));
	assert_non_null(strstr(log, "handing over fds with per-user accounting"));
	assert_int_equal(iommufd_opener_stats(o)->outcomes[IOMMUFD_OUTCOME_UNSUPPORTED], 3);
	free(log);
	iommufd_opener_free(o);
}

static void iommufd_open_of_missing_device_fails_and_names_the_remedy(void **state)
{
	struct fixture *f = *state;
	char *missing = xasprintf("%s/iommu", f->dir);
	struct iommufd_opener *o =
	    new_opener(missing, IOMMUFD_RLIMIT_BEST_EFFORT, NULL, NULL, false);
	struct error e = {0};
	int fd = -1;

	assert_int_equal(iommufd_open(o, &fd, &e), -ENOENT);
	assert_int_equal(fd, -1);
	assert_int_equal(e.code, -ENOENT);
	assert_non_null(strstr(e.message, missing));
	assert_non_null(strstr(e.message, "modprobe iommufd"));
	assert_int_equal(iommufd_opener_stats(o)->outcomes[IOMMUFD_OUTCOME_OPEN_FAILED], 1);
	iommufd_opener_free(o);
	free(missing);
}

static bool dir_is_empty(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	int entries = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			entries++;
	closedir(d);
	return entries == 0;
}

/* Tests skipped here for want of privileges: main() then exits 77, so that meson's
 * summary counts this executable as SKIP instead of a pass that did not run them. */
static int skipped;

static void skip_because(const char *why)
{
	skipped++;
	fprintf(stderr, "SKIP: %s\n", why);
	skip();
}

static void iommufd_open_goes_through_a_labelled_node_in_the_scratch_dir(void **state)
{
	struct fixture *f = *state;
	char *scratch = xasprintf("%s/scratch", f->dir);
	struct selinux_labeler *labeler;
	struct stat st, scratch_st;
	char label[128] = "";
	int fd = -1;

	if (geteuid() != 0)
		skip_because("the labelled node needs root (mknod, security.* xattrs)");
	assert_int_equal(selinux_labeler_new(SELINUX_MODE_ON, NULL, &labeler), 0);
	struct iommufd_opener *o =
	    new_opener("/dev/null", IOMMUFD_RLIMIT_BEST_EFFORT, labeler, scratch, false);
	assert_int_equal(stat(scratch, &scratch_st), 0);
	assert_int_equal(scratch_st.st_mode & 07777, 0700);

	assert_int_equal(iommufd_open(o, &fd, NULL), 0);
	assert_int_equal(fstat(fd, &st), 0);
	/* Same device, but the inode is the temporary node on the scratch fs... */
	assert_true(S_ISCHR(st.st_mode) && st.st_rdev == f->null_st.st_rdev);
	assert_true(st.st_dev == scratch_st.st_dev);
	assert_int_equal(st.st_nlink, 0); /* ...already unlinked */
	/* ...and it carries the label a container_t process may receive. */
	ssize_t n = fgetxattr(fd, "security.selinux", label, sizeof(label));
	assert_int_equal(n, (ssize_t)strlen(LABEL) + 1);
	assert_string_equal(label, LABEL);
	assert_true(dir_is_empty(scratch));
	close(fd);
	iommufd_opener_free(o);
	selinux_labeler_free(labeler);
	free(scratch);
}

/* Runs fn in a child with its own mount namespace; skips if that is not allowed. */
static void run_in_mount_namespace(int (*fn)(void *), void *data)
{
	pid_t pid = test_fork(fn, data);
	int status = test_wait(pid);

	if (status == CHILD_SKIP)
		skip_because("a mount namespace and its mounts need CAP_SYS_ADMIN");
	assert_int_equal(status, 0);
}

static int enter_private_mount_namespace(void)
{
	if (unshare(CLONE_NEWNS) < 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) < 0)
		_exit(CHILD_SKIP);
	return 0;
}

struct child_dirs {
	const char *dir;
	int ready_fd, done_fd;
};

static int refuse_nodev_scratch(void *data)
{
	struct child_dirs *c = data;
	char *scratch = xasprintf("%s/nodev", c->dir);
	struct selinux_labeler *labeler;
	struct iommufd_options o;
	struct iommufd_opener *opener = NULL;
	struct test_stderr_capture capture;

	enter_private_mount_namespace();
	CHILD_CHECK(mkdir(scratch, 0700) == 0);
	CHILD_CHECK(mount("tmpfs", scratch, "tmpfs", MS_NODEV, "mode=0700") == 0);
	CHILD_CHECK(selinux_labeler_new(SELINUX_MODE_ON, NULL, &labeler) == 0);
	iommufd_options_init(&o);
	o.device_path = "/dev/null";
	o.labeler = labeler;
	o.scratch_dir = scratch;
	o.policy = IOMMUFD_RLIMIT_BEST_EFFORT; /* /dev/null has no RLIMIT_MODE */
	o.scratch_tmpfs = false;
	test_capture_stderr_begin(&capture);
	int r = iommufd_opener_new(&o, &opener);
	char *log = test_capture_stderr_end(&capture);
	CHILD_CHECK(r == -EACCES);
	CHILD_CHECK(opener == NULL);
	CHILD_CHECK(strstr(log, "nodev mount"));
	CHILD_CHECK(strstr(log, scratch));
	free(log);
	selinux_labeler_free(labeler);
	free(scratch);
	return 0;
}

static void iommufd_opener_refuses_a_scratch_dir_on_a_nodev_mount(void **state)
{
	struct fixture *f = *state;
	struct child_dirs c = {.dir = f->dir};

	run_in_mount_namespace(refuse_nodev_scratch, &c);
}

static int open_through_private_tmpfs(void *data)
{
	struct child_dirs *c = data;
	char *scratch = xasprintf("%s/private", c->dir);
	struct selinux_labeler *labeler;
	struct iommufd_options o;
	struct iommufd_opener *opener = NULL;
	struct statfs sfs;
	struct statvfs svfs;
	struct stat st, scratch_st;
	char byte;
	int fd;

	CHILD_CHECK(selinux_labeler_new(SELINUX_MODE_ON, NULL, &labeler) == 0);
	iommufd_options_init(&o);
	o.device_path = "/dev/null";
	o.labeler = labeler;
	o.scratch_dir = scratch;
	o.policy = IOMMUFD_RLIMIT_BEST_EFFORT; /* /dev/null has no RLIMIT_MODE */
	o.scratch_tmpfs = true;
	int r = iommufd_opener_new(&o, &opener);
	if (r == -EPERM)
		return CHILD_SKIP; /* no CAP_SYS_ADMIN here */
	CHILD_CHECK(r == 0);
	CHILD_CHECK(statfs(scratch, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC);
	CHILD_CHECK(statvfs(scratch, &svfs) == 0 && !(svfs.f_flag & ST_NODEV));
	CHILD_CHECK(stat(scratch, &scratch_st) == 0 && (scratch_st.st_mode & 07777) == 0700);
	CHILD_CHECK(iommufd_open(opener, &fd, NULL) == 0);
	CHILD_CHECK(fstat(fd, &st) == 0 && st.st_dev == scratch_st.st_dev);
	close(fd);
	/* Let the parent look from outside while the mount exists. */
	CHILD_CHECK(write(c->ready_fd, "r", 1) == 1);
	CHILD_CHECK(read(c->done_fd, &byte, 1) == 1);
	iommufd_opener_free(opener);
	selinux_labeler_free(labeler);
	free(scratch);
	return 0;
}

static void iommufd_opener_mounts_a_private_tmpfs_invisible_to_the_host(void **state)
{
	struct fixture *f = *state;
	int ready[2], done[2];
	struct statfs sfs;
	char byte;

	assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
	assert_int_equal(pipe2(done, O_CLOEXEC), 0);
	struct child_dirs c = {.dir = f->dir, .ready_fd = ready[1], .done_fd = done[0]};
	pid_t pid = test_fork(open_through_private_tmpfs, &c);
	close(ready[1]);
	close(done[0]);
	if (read(ready[0], &byte, 1) == 1) {
		char *scratch = xasprintf("%s/private", f->dir);
		assert_int_equal(statfs(scratch, &sfs), 0);
		assert_true(sfs.f_type != TMPFS_MAGIC); /* the tmpfs did not leak out */
		free(scratch);
		assert_int_equal(write(done[1], "d", 1), 1);
	}
	close(ready[0]);
	close(done[1]);
	int status = test_wait(pid);
	if (status == CHILD_SKIP)
		skip_because("mounting the private tmpfs needs CAP_SYS_ADMIN");
	assert_int_equal(status, 0);
}

static int learn_labels_unsupported(void *data)
{
	struct child_dirs *c = data;
	char *scratch = xasprintf("%s/ramfs", c->dir);
	struct selinux_labeler *labeler;
	struct iommufd_options o;
	struct iommufd_opener *opener = NULL;
	struct test_stderr_capture capture;
	struct stat null_st, st;
	int fd;

	enter_private_mount_namespace();
	CHILD_CHECK(mkdir(scratch, 0700) == 0);
	/* ramfs has no xattrs at all: lsetxattr says EOPNOTSUPP. */
	CHILD_CHECK(mount("ramfs", scratch, "ramfs", 0, "mode=0700") == 0);
	CHILD_CHECK(stat("/dev/null", &null_st) == 0);
	CHILD_CHECK(selinux_labeler_new(SELINUX_MODE_ON, NULL, &labeler) == 0);
	iommufd_options_init(&o);
	o.device_path = "/dev/null";
	o.labeler = labeler;
	o.scratch_dir = scratch;
	o.policy = IOMMUFD_RLIMIT_BEST_EFFORT; /* /dev/null has no RLIMIT_MODE */
	o.scratch_tmpfs = false;
	CHILD_CHECK(iommufd_opener_new(&o, &opener) == 0);
	test_capture_stderr_begin(&capture);
	for (int i = 0; i < 3; i++) {
		CHILD_CHECK(iommufd_open(opener, &fd, NULL) == 0);
		/* Opened directly: the inode is /dev/null's own. */
		CHILD_CHECK(fstat(fd, &st) == 0 && st.st_dev == null_st.st_dev &&
			    st.st_ino == null_st.st_ino);
		close(fd);
	}
	char *log = test_capture_stderr_end(&capture);
	CHILD_CHECK(test_count_substrings(log, "SELinux labels are not supported here") == 1);
	CHILD_CHECK(!strstr(log, "relabel"));
	CHILD_CHECK(!selinux_labels_in_use(labeler));
	free(log);
	iommufd_opener_free(opener);
	selinux_labeler_free(labeler);
	free(scratch);
	return 0;
}

static void iommufd_learns_once_that_labels_are_unsupported_and_opens_directly(void **state)
{
	struct fixture *f = *state;
	struct child_dirs c = {.dir = f->dir};

	run_in_mount_namespace(learn_labels_unsupported, &c);
}

static void selinux_auto_mode_follows_selinuxfs_and_says_so_truthfully(void **state)
{
	struct selinux_labeler *labeler;
	struct test_stderr_capture capture;
	struct statfs st;

	(void)state;
	bool active =
	    statfs("/sys/fs/selinux", &st) == 0 && st.f_type == (typeof(st.f_type))SELINUX_MAGIC;
	test_capture_stderr_begin(&capture);
	assert_int_equal(selinux_labeler_new(SELINUX_MODE_AUTO, NULL, &labeler), 0);
	char *log = test_capture_stderr_end(&capture);
	assert_int_equal(selinux_labels_in_use(labeler), active);
	assert_non_null(strstr(log, active ? "SELinux is active" : "SELinux is not active"));
	assert_string_equal(selinux_label(labeler), LABEL);
	free(log);
	selinux_labeler_free(labeler);

	assert_int_equal(selinux_labeler_new(SELINUX_MODE_OFF, "x", &labeler), 0);
	assert_false(selinux_labels_in_use(labeler));
	assert_int_equal(selinux_label_path(labeler, "/nonexistent"), 0);
	selinux_labeler_free(labeler);
	assert_false(selinux_labels_in_use(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	    T(iommufd_option_struct_matches_kernel_abi),
	    T(iommufd_policy_counts_success_as_set_under_both_policies),
	    T(iommufd_policy_best_effort_hands_over_when_kernel_lacks_option),
	    T(iommufd_policy_best_effort_hands_over_without_cap_sys_resource),
	    T(iommufd_policy_required_fails_when_kernel_lacks_option),
	    T(iommufd_policy_required_fails_without_cap_sys_resource),
	    T(iommufd_policy_fails_other_errors_under_both_policies),
	    T(iommufd_outcome_names_are_the_metric_labels),
	    T(iommufd_rlimit_mode_ioctl_on_a_non_iommufd_returns_enotty),
	    T(iommufd_open_best_effort_hands_over_unconfigured_fd_on_enotty),
	    T(iommufd_open_required_fails_with_reason_on_enotty_and_logs_nothing),
	    T(iommufd_open_logs_each_cause_once_but_counts_every_time),
	    T(iommufd_open_of_missing_device_fails_and_names_the_remedy),
	    T(iommufd_open_goes_through_a_labelled_node_in_the_scratch_dir),
	    T(iommufd_opener_refuses_a_scratch_dir_on_a_nodev_mount),
	    T(iommufd_opener_mounts_a_private_tmpfs_invisible_to_the_host),
	    T(iommufd_learns_once_that_labels_are_unsupported_and_opens_directly),
	    T(selinux_auto_mode_follows_selinuxfs_and_says_so_truthfully),
#undef T
	};

	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	if (failed || !skipped)
		return failed;
	fprintf(stderr, "%d test(s) skipped for want of privileges (run as root): exit 77, SKIP\n",
		skipped);
	return 77;
}
