/* SELinux labels for what we hand to containers: the temporary device node the
 * iommufd is opened through and the handoff socket file. Decides once whether
 * labels are in use, and learns once (the first ENOTSUP) that they are not. */
#pragma once

#include <stdbool.h>

/* Label a container_t process may receive and connect to (container-selinux). */
#define SELINUX_DEFAULT_LABEL "system_u:object_r:container_file_t:s0"

enum selinux_mode {
	SELINUX_MODE_AUTO, /* labels in use iff selinuxfs is mounted at /sys/fs/selinux */
	SELINUX_MODE_ON,   /* always label (until the filesystem says ENOTSUP) */
	SELINUX_MODE_OFF,  /* never label */
};

struct selinux_labeler;

/* Creates a labeler for mode with label (NULL = SELINUX_DEFAULT_LABEL; copied) and
 * logs once what it decided. Returns 0 and *out (caller frees with
 * selinux_labeler_free), or -EINVAL for an empty label (logged). */
int selinux_labeler_new(enum selinux_mode mode, const char *label, struct selinux_labeler **out);
void selinux_labeler_free(struct selinux_labeler *labeler);

/* True while labels are in use: mode on, or auto with selinuxfs, and no ENOTSUP seen.
 * NULL means no labeler: false. */
bool selinux_labels_in_use(const struct selinux_labeler *labeler);

/* The label applied (never NULL for a labeler). */
const char *selinux_label(const struct selinux_labeler *labeler);

/* Sets the "security.selinux" xattr of path (not following symlinks) to the label.
 * Returns 1 if labelled; 0 if labels are not in use, including when this very call
 * learned from ENOTSUP/EOPNOTSUPP that the filesystem has no labels (logged once,
 * and from then on selinux_labels_in_use() is false); -errno from lsetxattr on any
 * other failure (EPERM, EACCES, EINVAL for a label the policy does not know). */
int selinux_label_path(struct selinux_labeler *labeler, const char *path);
