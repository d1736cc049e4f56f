/* SELinux labelling with lsetxattr("security.selinux") and no libselinux: decides at
 * creation whether labels are in use, labels paths, and learns once from ENOTSUP
 * that the filesystem (or kernel) has none. */
#include "selinux.h"
#include "../basic/error_text.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/xattr.h>

#define SELINUX_FS_PATH "/sys/fs/selinux"
#define SELINUX_XATTR	"security.selinux"

struct selinux_labeler {
	char *label;
	bool in_use;
};

/* selinuxfs is mounted exactly when the kernel runs SELinux (enforcing or
 * permissive); its magic is SELINUX_MAGIC, include/uapi/linux/magic.h. */
static bool selinuxfs_mounted(void)
{
	struct statfs st;

	return statfs(SELINUX_FS_PATH, &st) == 0 && st.f_type == (typeof(st.f_type))SELINUX_MAGIC;
}

int selinux_labeler_new(enum selinux_mode mode, const char *label, struct selinux_labeler **out)
{
	if (!label)
		label = SELINUX_DEFAULT_LABEL;
	if (!*label) {
		log_error("invalid SELinux label: it is empty");
		return -EINVAL;
	}

	struct selinux_labeler *labeler = xcalloc(1, sizeof(*labeler));
	labeler->label = xstrdup(label);
	switch (mode) {
	case SELINUX_MODE_ON:
		labeler->in_use = true;
		log_info("SELinux labelling forced on: device fds and handoff sockets get %s",
			 label);
		break;
	case SELINUX_MODE_OFF:
		labeler->in_use = false;
		log_info("SELinux labelling off: the device is opened directly, handoff sockets "
			 "keep their default label");
		break;
	case SELINUX_MODE_AUTO:
		labeler->in_use = selinuxfs_mounted();
		if (labeler->in_use)
			log_info("SELinux is active (selinuxfs at %s): device fds and handoff "
				 "sockets get %s",
				 SELINUX_FS_PATH, label);
		else
			log_info("SELinux is not active (no selinuxfs at %s): the device is "
				 "opened directly, handoff sockets are not labelled",
				 SELINUX_FS_PATH);
		break;
	}
	*out = labeler;
	return 0;
}

void selinux_labeler_free(struct selinux_labeler *labeler)
{
	if (!labeler)
		return;
	free(labeler->label);
	free(labeler);
}

bool selinux_labels_in_use(const struct selinux_labeler *labeler)
{
	return labeler && labeler->in_use;
}

const char *selinux_label(const struct selinux_labeler *labeler)
{
	return labeler->label;
}

int selinux_label_path(struct selinux_labeler *labeler, const char *path)
{
	if (!selinux_labels_in_use(labeler))
		return 0;
	/* The value carries its terminating NUL, as libselinux's lsetfilecon() writes it. */
	if (lsetxattr(path, SELINUX_XATTR, labeler->label, strlen(labeler->label) + 1, 0) == 0)
		return 1;
	int r = -errno;
	if (r == -ENOTSUP || r == -EOPNOTSUPP) {
		labeler->in_use = false;
		log_warning("cannot label %s with %s: %s; SELinux labels are not supported here, "
			    "so from now on the device is opened directly and handoff sockets "
			    "are not labelled",
			    path, labeler->label, error_text(-r));
		return 0;
	}
	return r;
}
