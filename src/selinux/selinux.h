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

/**
 * selinux_labeler_new() - create a labeler
 * @mode:  auto, on or off
 * @label: the label to apply, copied; NULL = SELINUX_DEFAULT_LABEL
 * @out:   set to the labeler (caller frees with selinux_labeler_free())
 *
 * Logs once what it decided.
 *
 * Return: 0, or -EINVAL for an empty label (logged).
 */
int selinux_labeler_new(enum selinux_mode mode, const char *label, struct selinux_labeler **out);

/**
 * selinux_labeler_free() - free a labeler
 * @labeler: the labeler; NULL is a no-op
 */
void selinux_labeler_free(struct selinux_labeler *labeler);

/**
 * selinux_labels_in_use() - whether labels are in use
 * @labeler: the labeler; NULL means no labeler: false
 *
 * Return: true while mode is on, or auto with selinuxfs, and no ENOTSUP was seen.
 */
bool selinux_labels_in_use(const struct selinux_labeler *labeler);

/**
 * selinux_label() - the label applied
 * @labeler: the labeler
 *
 * Return: the label, never NULL for a labeler.
 */
const char *selinux_label(const struct selinux_labeler *labeler);

/**
 * selinux_label_path() - set the "security.selinux" xattr of a path to the label
 * @labeler: the labeler
 * @path:    the file; symlinks are not followed
 *
 * Return: 1 if labelled; 0 if labels are not in use, including when this very call
 * learned from ENOTSUP/EOPNOTSUPP that the filesystem has no labels (logged once, and
 * from then on selinux_labels_in_use() is false); -errno from lsetxattr on any other
 * failure (EPERM, EACCES, EINVAL for a label the policy does not know).
 */
int selinux_label_path(struct selinux_labeler *labeler, const char *path);
