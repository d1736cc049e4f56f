/* Opens /dev/iommu for an allocation, through a SELinux-labelled temporary node in
 * a scratch dir when labels are in use, and sets IOMMU_OPTION_RLIMIT_MODE = 1. Our
 * errno policy is our own: libvirt's merged virIOMMUFDSetRLimitMode
 * (src/util/viriommufd.c) reports every IOMMU_OPTION failure as an error; only the
 * patch's review on the libvirt list had proposed ENOTTY/EOPNOTSUPP/EPERM as warnings. */
#include "iommufd.h"
#include "../basic/error_text.h"
#include "iommufd_uapi.h"
#include "../basic/error.h"
#include "../selinux/selinux.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

struct iommufd_opener {
	char *device_path;
	char *scratch_dir;
	bool scratch_tmpfs;
	bool tmpfs_mounted;
	struct selinux_labeler *labeler;
	enum iommufd_rlimit_policy policy;
	unsigned long long node_counter;
	struct iommufd_stats stats;
	/* A handed-over fd's outcome is logged once per cause (errno). */
	struct log_once logged[IOMMUFD_OUTCOME_COUNT];
};

void iommufd_options_init(struct iommufd_options *o)
{
	*o = (struct iommufd_options){
	    .device_path = IOMMUFD_DEFAULT_DEVICE_PATH,
	    .scratch_dir = IOMMUFD_DEFAULT_SCRATCH_DIR,
	    .scratch_tmpfs = true,
	    .labeler = NULL,
	    .policy = IOMMUFD_RLIMIT_REQUIRED,
	};
}

const char *iommufd_outcome_name(enum iommufd_outcome outcome)
{
	static const char *const names[IOMMUFD_OUTCOME_COUNT] = {
	    [IOMMUFD_OUTCOME_SET] = "set",
	    [IOMMUFD_OUTCOME_UNSUPPORTED] = "unsupported",
	    [IOMMUFD_OUTCOME_NO_CAPABILITY] = "no_capability",
	    [IOMMUFD_OUTCOME_FAILED] = "failed",
	    [IOMMUFD_OUTCOME_OPEN_FAILED] = "open_failed",
	};

	return (unsigned)outcome < IOMMUFD_OUTCOME_COUNT ? names[outcome] : "unknown";
}

int iommufd_policy_decide(enum iommufd_rlimit_policy policy, int r, enum iommufd_outcome *outcome)
{
	if (r == 0) {
		*outcome = IOMMUFD_OUTCOME_SET;
		return 0;
	}
	/* ENOTTY and EOPNOTSUPP mean a kernel without the ioctl or the option, EPERM a
	 * caller without CAP_SYS_RESOURCE (the kernel's iommufd_option_rlimit_mode checks
	 * capable(CAP_SYS_RESOURCE)). Only best-effort hands the fd over for these. */
	if (r == -ENOTTY || r == -EOPNOTSUPP)
		*outcome = IOMMUFD_OUTCOME_UNSUPPORTED;
	else if (r == -EPERM)
		*outcome = IOMMUFD_OUTCOME_NO_CAPABILITY;
	else {
		*outcome = IOMMUFD_OUTCOME_FAILED;
		return r;
	}
	return policy == IOMMUFD_RLIMIT_BEST_EFFORT ? 0 : r;
}

int iommufd_set_rlimit_mode(int fd, uint64_t mode)
{
	return iommufd_rlimit_mode_ioctl(fd, IOMMU_OPTION_OP_SET, &mode);
}

int iommufd_get_rlimit_mode(int fd, uint64_t *mode)
{
	return iommufd_rlimit_mode_ioctl(fd, IOMMU_OPTION_OP_GET, mode);
}

/* Mounts the private tmpfs on the scratch dir in a new mount namespace. */
static int scratch_mount_private_tmpfs(struct iommufd_opener *o)
{
	const char *fix = "the plugin needs CAP_SYS_ADMIN for it; or give a scratch dir on a "
			  "mount without nodev and no private tmpfs";

	if (unshare(CLONE_NEWNS) < 0) {
		int r = -errno;
		log_error("cannot make a private mount namespace for the scratch tmpfs on %s: "
			  "unshare(CLONE_NEWNS): %s (%s)",
			  o->scratch_dir, error_text(-r), fix);
		return r;
	}
	/* Slave, not private: mounts made on the host (kubelet's) still propagate into
	 * our namespace, while our tmpfs never propagates out. A propagation change
	 * ignores source and type ("none", as mount(8) passes). */
	if (mount("none", "/", "none", MS_REC | MS_SLAVE, NULL) < 0) {
		int r = -errno;
		log_error("cannot make / a recursive slave mount for the scratch tmpfs: %s (%s)",
			  error_text(-r), fix);
		return r;
	}
	/* No MS_NODEV: the point of this tmpfs is that device nodes open on it. */
	if (mount("iommufd-scratch", o->scratch_dir, "tmpfs", MS_NOSUID | MS_NOEXEC,
		  "mode=0700,size=1m") < 0) {
		int r = -errno;
		log_error("cannot mount the private scratch tmpfs on %s: %s (%s)", o->scratch_dir,
			  error_text(-r), fix);
		return r;
	}
	o->tmpfs_mounted = true;
	log_info("mounted a private tmpfs on %s for the labelled temporary device nodes",
		 o->scratch_dir);
	return 0;
}

/* Refuses a given scratch dir whose mount is nodev: open() of a device node there
 * fails with EACCES (may_open() checks MNT_NODEV). */
static int scratch_check_not_nodev(const struct iommufd_opener *o)
{
	struct statvfs st;

	if (statvfs(o->scratch_dir, &st) < 0) {
		int r = -errno;
		log_error("cannot statvfs scratch dir %s: %s", o->scratch_dir, error_text(-r));
		return r;
	}
	if (st.f_flag & ST_NODEV) {
		log_error("scratch dir %s is on a nodev mount, where the labelled temporary "
			  "device node cannot be opened; choose a directory on a mount without "
			  "nodev, or let the plugin mount its private tmpfs there",
			  o->scratch_dir);
		return -EACCES;
	}
	return 0;
}

static int scratch_prepare(struct iommufd_opener *o)
{
	int r = mkdir_parents(o->scratch_dir, 0700);
	if (r < 0) {
		log_error("cannot create scratch dir %s: %s", o->scratch_dir, error_text(-r));
		return r;
	}
	return o->scratch_tmpfs ? scratch_mount_private_tmpfs(o) : scratch_check_not_nodev(o);
}

int iommufd_opener_new(const struct iommufd_options *options, struct iommufd_opener **out)
{
	struct iommufd_opener *o = xcalloc(1, sizeof(*o));

	o->device_path = xstrdup(options->device_path);
	o->scratch_dir = xstrdup(options->scratch_dir);
	o->scratch_tmpfs = options->scratch_tmpfs;
	o->labeler = options->labeler;
	o->policy = options->policy;
	if (selinux_labels_in_use(o->labeler)) {
		int r = scratch_prepare(o);
		if (r < 0) {
			iommufd_opener_free(o);
			return r;
		}
	}
	*out = o;
	return 0;
}

void iommufd_opener_free(struct iommufd_opener *o)
{
	if (!o)
		return;
	if (o->tmpfs_mounted && umount2(o->scratch_dir, MNT_DETACH) < 0)
		log_warning("cannot unmount the scratch tmpfs on %s: %s", o->scratch_dir,
			    error_text(errno));
	free(o->device_path);
	free(o->scratch_dir);
	free(o);
}

const struct iommufd_stats *iommufd_opener_stats(const struct iommufd_opener *o)
{
	return &o->stats;
}

/* The remedy to suggest for an open() failure of the device. */
static const char *open_remedy(int err)
{
	switch (err) {
	case ENOENT:
	case ENODEV:
	case ENXIO:
		return " (is the iommufd module loaded? modprobe iommufd; needs CONFIG_IOMMUFD)";
	case EACCES:
		return " (a device node on a nodev mount cannot be opened: check the scratch dir)";
	default:
		return "";
	}
}

static int open_direct(struct iommufd_opener *o, int *fd, struct error *e)
{
	/* openat, not open: musl's open() follows O_CLOEXEC with a fcntl(F_SETFD) for
	 * kernels older than 2.6.23, a syscall per Allocate; its openat() does not. */
	*fd = openat(AT_FDCWD, o->device_path, O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (*fd >= 0)
		return 0;
	int r = -errno;
	return error_set(e, r, "cannot open %s: %s%s", o->device_path, error_text(-r),
			 open_remedy(-r));
}

/* Opens the device through a temporary node with the device's rdev, labelled so a
 * container_t process passes security_file_receive() on the fd; the node is unlinked
 * right after open, the fd keeps the inode. Falls back to open_direct() if this very
 * labelling learned that labels are unsupported. Everything in the scratch dir goes
 * through its O_NOFOLLOW fd, and the opened fd must be a character device with the
 * device's rdev: a symlink or another file renamed over the node (issue 19 row 2) is
 * an error, never handed over. O_NONBLOCK at open: a FIFO put there cannot block us. */
static int open_via_labelled_node(struct iommufd_opener *o, int *fd, struct error *e)
{
	struct stat st, got;
	char name[64];
	int r;

	if (stat(o->device_path, &st) < 0) {
		r = -errno;
		return error_set(e, r, "cannot stat %s: %s%s", o->device_path, error_text(-r),
				 open_remedy(-r));
	}
	if (!S_ISCHR(st.st_mode))
		return error_set(e, -ENODEV, "cannot open %s: not a character device",
				 o->device_path);

	cleanup_close int dir =
	    openat(AT_FDCWD, o->scratch_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dir < 0) {
		r = -errno;
		return error_set(e, r, "cannot open scratch dir %s: %s", o->scratch_dir,
				 error_text(-r));
	}
	snprintf(name, sizeof(name), "iommu-%d-%llu.node", (int)getpid(), o->node_counter++);
	cleanup_free char *node = xasprintf("%s/%s", o->scratch_dir, name);
	if (unlinkat(dir, name, 0) < 0 && errno != ENOENT) {
		r = -errno;
		return error_set(e, r, "cannot remove stale temporary device node %s: %s", node,
				 error_text(-r));
	}
	if (mknodat(dir, name, S_IFCHR | 0600, st.st_rdev) < 0) {
		r = -errno;
		return error_set(e, r, "cannot make temporary device node %s (%u:%u, for %s): %s",
				 node, major(st.st_rdev), minor(st.st_rdev), o->device_path,
				 error_text(-r));
	}

	/* lsetxattr: a symlink put there is labelled itself, not followed. */
	r = selinux_label_path(o->labeler, node);
	if (r <= 0) {
		if (unlinkat(dir, name, 0) < 0)
			log_warning("cannot remove temporary device node %s: %s", node,
				    error_text(errno));
		if (r == 0)
			return open_direct(o, fd, e);
		return error_set(e, r, "cannot label temporary device node %s with %s: %s", node,
				 selinux_label(o->labeler), error_text(-r));
	}

	cleanup_close int opened =
	    openat(dir, name, O_RDWR | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
	r = opened < 0 ? -errno : 0;
	if (unlinkat(dir, name, 0) < 0)
		log_warning("cannot remove temporary device node %s: %s", node, error_text(errno));
	if (r < 0)
		return error_set(e, r, "cannot open labelled device node %s (for %s): %s%s", node,
				 o->device_path, error_text(-r), open_remedy(-r));
	if (fstat(opened, &got) < 0) {
		r = -errno;
		return error_set(e, r, "cannot stat labelled device node %s: %s", node,
				 error_text(-r));
	}
	if (!S_ISCHR(got.st_mode) || got.st_rdev != st.st_rdev)
		return error_set(e, -EPERM,
				 "temporary device node %s was replaced (it opened %s, not %u:%u "
				 "of %s): not handed over",
				 node, S_ISCHR(got.st_mode) ? "another device" : "no device",
				 major(st.st_rdev), minor(st.st_rdev), o->device_path);
	int flags = fcntl(opened, F_GETFL);
	if (flags < 0 || fcntl(opened, F_SETFL, flags & ~O_NONBLOCK) < 0) {
		r = -errno;
		return error_set(e, r, "cannot clear O_NONBLOCK on %s: %s", node, error_text(-r));
	}
	*fd = take_fd(&opened);
	return 0;
}

/* Sets the mode and reads it back. Returns 0 or -errno: the SET ioctl's (for the
 * policy to judge, e left alone), or the GET ioctl's or -EIO (read-back not 1) with
 * the message in e. */
static int rlimit_mode_enable(int fd, const char *device, struct error *e)
{
	uint64_t mode = 0;
	int r = iommufd_set_rlimit_mode(fd, 1);

	if (r < 0)
		return r;
	r = iommufd_get_rlimit_mode(fd, &mode);
	if (r < 0)
		return error_set(e, r, "cannot read back IOMMU_OPTION_RLIMIT_MODE on %s: %s",
				 device, error_text(-r));
	if (mode != 1)
		return error_set(e, -EIO,
				 "IOMMU_OPTION_RLIMIT_MODE on %s reads back %llu after setting 1",
				 device, (unsigned long long)mode);
	return 0;
}

/* Into e: why the SET ioctl failed with r (its outcome) and what follows for the fd. */
static void rlimit_mode_explain(const struct iommufd_opener *o, enum iommufd_outcome outcome, int r,
				bool handed_over, struct error *e)
{
	const char *remedy;

	if (outcome == IOMMUFD_OUTCOME_UNSUPPORTED)
		remedy = " (the kernel lacks the option; use Linux 6.2+ with iommufd, or raise "
			 "RLIMIT_MEMLOCK of the VM user)";
	else if (outcome == IOMMUFD_OUTCOME_NO_CAPABILITY)
		remedy = " (the plugin needs CAP_SYS_RESOURCE: add it to the container's "
			 "securityContext)";
	else {
		error_set(e, r, "cannot set IOMMU_OPTION_RLIMIT_MODE on %s: %s", o->device_path,
			  error_text(-r));
		return;
	}
	error_set(e, r, "cannot set IOMMU_OPTION_RLIMIT_MODE on %s: %s%s: %s", o->device_path,
		  error_text(-r), remedy,
		  handed_over ? "handing over fds with per-user accounting"
			      : "failing allocations (policy required)");
}

int iommufd_open(struct iommufd_opener *o, int *fd_out, struct error *error)
{
	struct error e = {0};
	cleanup_close int fd = -1;
	enum iommufd_outcome outcome;
	int r;

	*fd_out = -1;
	if (selinux_labels_in_use(o->labeler))
		r = open_via_labelled_node(o, &fd, &e);
	else
		r = open_direct(o, &fd, &e);
	if (r < 0) {
		o->stats.outcomes[IOMMUFD_OUTCOME_OPEN_FAILED]++;
		if (error)
			*error = e;
		return r;
	}

	int enabled = rlimit_mode_enable(fd, o->device_path, &e);
	r = iommufd_policy_decide(o->policy, enabled, &outcome);
	o->stats.outcomes[outcome]++;
	if (r < 0) {
		/* A read-back failure already said why. */
		if (!e.code)
			rlimit_mode_explain(o, outcome, r, false, &e);
		if (error)
			*error = e;
		return r;
	}
	/* Handed over: this layer decided, so it tells how, once per cause. */
	if (outcome == IOMMUFD_OUTCOME_SET) {
		log_info_once(
		    &o->logged[outcome], 0,
		    "per-process memory accounting (IOMMU_OPTION_RLIMIT_MODE=1) set on %s",
		    o->device_path);
	} else {
		rlimit_mode_explain(o, outcome, enabled, true, &e);
		log_warning_once(&o->logged[outcome], enabled, "%s", e.message);
	}
	*fd_out = take_fd(&fd);
	return 0;
}
