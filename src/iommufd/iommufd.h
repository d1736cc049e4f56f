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

/**
 * iommufd_options_init() - fill options with the defaults above
 * @o: the options; labeler NULL
 */
void iommufd_options_init(struct iommufd_options *o);

/**
 * iommufd_outcome_name() - the metric label of an outcome
 * @outcome: the outcome
 *
 * Return: "set", "unsupported", "no_capability", "failed" or "open_failed".
 */
const char *iommufd_outcome_name(enum iommufd_outcome outcome);

/**
 * iommufd_policy_decide() - the pure errno policy
 * @policy:  required or best-effort
 * @r:       0 (the SET ioctl succeeded) or its -errno
 * @outcome: set to the outcome
 *
 * Return: 0 if the fd is handed over (set, or unsupported/no capability under
 * best-effort), or @r if the allocation fails.
 */
int iommufd_policy_decide(enum iommufd_rlimit_policy policy, int r, enum iommufd_outcome *outcome);

/**
 * iommufd_opener_new() - start-up: copy the options and prepare the scratch dir
 * @o:   the options, copied
 * @out: set to the opener (free with iommufd_opener_free())
 *
 * If SELinux labels are in use, prepares the scratch dir: creates it, then either
 * mounts the private tmpfs (this unshares the calling process's mount namespace,
 * making / a recursive slave so host mounts still propagate in while ours never leak
 * out; call it before starting threads) or checks the given dir is not nodev. Logs
 * the cause of any failure.
 *
 * Return: 0, or -errno: EACCES (scratch dir on a nodev mount), EPERM
 * (unshare/mount without CAP_SYS_ADMIN), or mkdir's errno.
 */
int iommufd_opener_new(const struct iommufd_options *o, struct iommufd_opener **out);

/**
 * iommufd_opener_free() - unmount the private tmpfs (if any) and free
 * @opener: the opener; NULL is a no-op
 */
void iommufd_opener_free(struct iommufd_opener *opener);

/**
 * iommufd_open() - open the device for one allocation, accounted per process
 * @opener: the opener
 * @fd:     set to the fd (O_CLOEXEC, caller owns), or to -1 on failure
 * @error:  on failure, filled with a one-line reason naming the device, the error
 *          and the remedy; may be NULL
 *
 * Opens the device (through a labelled temporary node in the scratch dir while
 * labels are in use, else directly) and sets IOMMU_OPTION_RLIMIT_MODE to 1, reading
 * it back. Counts the outcome. When the fd is handed over (configured, or
 * unconfigured under best-effort), how its accounting ended up is logged here, once
 * per cause (again only when it changes). On failure it logs nothing: the caller
 * decides.
 *
 * Return: 0 when the fd is configured, or unconfigured under best-effort; -errno on
 * failure: open/mknod/lsetxattr/ioctl errno; ENOTTY, EOPNOTSUPP or EPERM under the
 * required policy; EIO for a read-back that is not 1.
 */
int iommufd_open(struct iommufd_opener *opener, int *fd, struct error *error);

/**
 * iommufd_opener_stats() - counters by outcome, for metrics
 * @opener: the opener
 *
 * Return: the counters, valid until iommufd_opener_free().
 */
const struct iommufd_stats *iommufd_opener_stats(const struct iommufd_opener *opener);

/**
 * iommufd_set_rlimit_mode() - raw IOMMU_OPTION_RLIMIT_MODE SET on an fd
 * @fd:   an iommufd
 * @mode: the mode to set
 *
 * See iommufd_uapi.h for the errnos; nothing is logged.
 *
 * Return: 0 or -errno.
 */
int iommufd_set_rlimit_mode(int fd, uint64_t mode);

/**
 * iommufd_get_rlimit_mode() - raw IOMMU_OPTION_RLIMIT_MODE GET on an fd
 * @fd:   an iommufd
 * @mode: set to the current mode
 *
 * See iommufd_uapi.h for the errnos; nothing is logged.
 *
 * Return: 0 or -errno.
 */
int iommufd_get_rlimit_mode(int fd, uint64_t *mode);

struct metrics_writer;
/**
 * iommufd_metrics_write() - the opener's metrics
 * @w:      the writer
 * @opener: a const struct iommufd_opener *
 *
 * A metrics_source_fn: RLIMIT_MODE outcomes (iommufd_metrics.c).
 */
void iommufd_metrics_write(struct metrics_writer *w, const void *opener);
