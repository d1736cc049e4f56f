/* The one iommufd ioctl we issue, IOMMU_OPTION, from the kernel's own uapi header
 * when the system has it (Linux >= 6.2 headers) and from a copy of its layout when
 * it does not (Debian bookworm ships 6.1 headers). Self-contained: the consumer CLI
 * includes it too, so it must not depend on the plugin's util.h. */
#pragma once

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <linux/ioctl.h>
#include <linux/types.h>

#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#endif

#ifndef IOMMU_OPTION
/* Copied from include/uapi/linux/iommufd.h (Linux 6.2). */
#define IOMMUFD_TYPE	   (';')
#define IOMMUFD_CMD_OPTION 0x87

enum iommufd_option {
	IOMMU_OPTION_RLIMIT_MODE = 0,
	IOMMU_OPTION_HUGE_PAGES = 1,
};

enum iommufd_option_ops {
	IOMMU_OPTION_OP_SET = 0,
	IOMMU_OPTION_OP_GET = 1,
};

struct iommu_option {
	__u32 size;
	__u32 option_id;
	__u16 op;
	__u16 __reserved;
	__u32 object_id;
	__aligned_u64 val64;
};

#define IOMMU_OPTION _IO(IOMMUFD_TYPE, IOMMUFD_CMD_OPTION)
#endif

/* The kernel copies `size` bytes and rejects unknown non-zero tail bytes; 24 is the
 * size of the 6.2 layout every kernel with the ioctl understands. */
static_assert(sizeof(struct iommu_option) == 24, "struct iommu_option must be 24 bytes");
static_assert(IOMMU_OPTION == 0x3b87, "IOMMU_OPTION is _IO(';', 0x87)");

/**
 * iommufd_rlimit_mode_ioctl() - issue IOMMU_OPTION for IOMMU_OPTION_RLIMIT_MODE
 * @fd:    an iommufd
 * @op:    IOMMU_OPTION_OP_SET or IOMMU_OPTION_OP_GET
 * @value: for SET, the mode to set (0 = charge pinned pages to the user, 1 = to the
 *         process); for GET, receives the current mode
 *
 * Return: 0 or -errno: ENOTTY (@fd is not an iommufd, or the kernel lacks the ioctl),
 * EOPNOTSUPP (the kernel lacks the option), EPERM (SET without CAP_SYS_RESOURCE),
 * EBUSY (SET after objects were created on @fd), EINVAL (value not 0 or 1).
 */
static inline int iommufd_rlimit_mode_ioctl(int fd, uint16_t op, uint64_t *value)
{
	struct iommu_option option = {
	    .size = sizeof(option),
	    .option_id = IOMMU_OPTION_RLIMIT_MODE,
	    .op = op,
	    .__reserved = 0,
	    .object_id = 0, /* RLIMIT_MODE is global to the fd: object 0 */
	    .val64 = op == IOMMU_OPTION_OP_SET ? *value : 0,
	};

	if (ioctl(fd, IOMMU_OPTION, &option) < 0)
		return -errno;
	if (op == IOMMU_OPTION_OP_GET)
		*value = option.val64;
	return 0;
}
