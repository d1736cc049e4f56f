/* Opens the iommufd device (/dev/iommu) for one allocation and switches its pinned
 * memory accounting to per process (IOMMU_OPTION_RLIMIT_MODE = 1), with an errno
 * policy (required or best-effort, below), counters per outcome and one log per cause
 * of a handed-over fd. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct error;
struct selinux_labeler;

#define IOMMUFD_DEFAULT_DEVICE_PATH "/dev/iommu"
#define IOMMUFD_DEFAULT_SCRATCH_DIR "/run/iommufd-device-plugin"

/* What to do when the kernel cannot switch the accounting mode (ENOTTY/EOPNOTSUPP:
 * kernel without the option; EPERM: no CAP_SYS_RESOURCE). Any other error fails. */
enum iommufd_rlimit_policy {
	IOMMUFD_RLIMIT_BEST_EFFORT, /* warn once, hand over the fd with per-user accounting */
	IOMMUFD_RLIMIT_REQUIRED,    /* fail the allocation */
};

/* How an iommufd_open() ended; each is counted. */
enum iommufd_outcome {
	IOMMUFD_OUTCOME_SET,	       /* mode set to 1 and read back */
	IOMMUFD_OUTCOME_UNSUPPORTED,   /* ENOTTY/EOPNOTSUPP: kernel without the option */
	IOMMUFD_OUTCOME_NO_CAPABILITY, /* EPERM: the plugin lacks CAP_SYS_RESOURCE */
	IOMMUFD_OUTCOME_FAILED,	       /* any other ioctl error, or a wrong read-back */
	IOMMUFD_OUTCOME_OPEN_FAILED,   /* the device (or its temporary node) did not open */
	IOMMUFD_OUTCOME_COUNT,
};

struct iommufd_options {
	const char *device_path; /* default IOMMUFD_DEFAULT_DEVICE_PATH */
	/* Where the SELinux-labelled temporary device node is made; used only while
	 * labels are in use. Created (mkdir -p, 0700) if missing. */
	const char *scratch_dir; /* default IOMMUFD_DEFAULT_SCRATCH_DIR */
	/* true (default): mount a private tmpfs (mode 0700, without nodev) on scratch_dir
	 * in the plugin's own mount namespace, because /run is nodev and a device node
	 * on a nodev mount cannot be opened. false: use scratch_dir as it is; it is
	 * refused at start-up if its mount is nodev. */
	bool scratch_tmpfs;
	struct selinux_labeler *labeler;   /* borrowed, may be NULL (never label) */
	enum iommufd_rlimit_policy policy; /* default IOMMUFD_RLIMIT_REQUIRED */
};

struct iommufd_stats {
	unsigned long long outcomes[IOMMUFD_OUTCOME_COUNT];
};

struct iommufd_opener;

/* Fills *o with the defaults above (labeler NULL). */
void iommufd_options_init(struct iommufd_options *o);

/* Metric label of an outcome: "set", "unsupported", "no_capability", "failed",
 * "open_failed". */
const char *iommufd_outcome_name(enum iommufd_outcome outcome);

/* The pure errno policy. r is 0 (the SET ioctl succeeded) or its -errno. Stores the
 * outcome in *outcome and returns 0 if the fd is handed over (set, or unsupported/no
 * capability under best-effort), or r if the allocation fails. */
int iommufd_policy_decide(enum iommufd_rlimit_policy policy, int r, enum iommufd_outcome *outcome);

/* Start-up: copies the options and, if SELinux labels are in use, prepares the
 * scratch dir: creates it, then either mounts the private tmpfs (this unshares the
 * calling process's mount namespace, making / a recursive slave so host mounts still
 * propagate in while ours never leak out; call it before starting threads) or
 * checks the given dir is not nodev. Logs the cause of any failure. Returns 0 and
 * *out (free with iommufd_opener_free), or -errno: EACCES (scratch dir on a nodev
 * mount), EPERM (unshare/mount without CAP_SYS_ADMIN), or mkdir's errno. */
int iommufd_opener_new(const struct iommufd_options *o, struct iommufd_opener **out);

/* Unmounts the private tmpfs (if any) and frees. NULL is a no-op. */
void iommufd_opener_free(struct iommufd_opener *opener);

/* Opens the device for one allocation (through a labelled temporary node in the
 * scratch dir while labels are in use, else directly) and sets
 * IOMMU_OPTION_RLIMIT_MODE to 1, reading it back. Counts the outcome. Returns 0 and
 * *fd (O_CLOEXEC, caller owns) when the fd is configured, or unconfigured under
 * best-effort; then how its accounting ended up is logged here, once per cause
 * (again only when it changes). On failure returns -errno (open/mknod/lsetxattr/ioctl
 * errno; ENOTTY, EOPNOTSUPP or EPERM under the required policy; EIO for a read-back
 * that is not 1), sets *fd to -1, logs nothing (the caller decides), and fills
 * *error (may be NULL) with a one-line reason naming the device, the error and the
 * remedy. */
int iommufd_open(struct iommufd_opener *opener, int *fd, struct error *error);

/* Counters by outcome, for metrics; valid until iommufd_opener_free. */
const struct iommufd_stats *iommufd_opener_stats(const struct iommufd_opener *opener);

/* Raw IOMMU_OPTION_RLIMIT_MODE SET/GET on fd; see iommufd_uapi.h for the errnos.
 * Return 0 or -errno; nothing is logged. */
int iommufd_set_rlimit_mode(int fd, uint64_t mode);
int iommufd_get_rlimit_mode(int fd, uint64_t *mode);

struct metrics_writer;
/* A metrics_source_fn for a const struct iommufd_opener *: RLIMIT_MODE outcomes
 * (iommufd_metrics.c). */
void iommufd_metrics_write(struct metrics_writer *w, const void *opener);
