/* The CDI spec of a prepared claim (Container Device Interface, spec 0.6.0, JSON):
 * kind <driver>/iommufd, one device named by the claim's uid whose container edits
 * mount the claim's handoff socket (and, with --expose-device-node, the device node as
 * /dev/iommu).
 * The runtime applies it when the kubelet passes the CDI id we returned. */
#pragma once

#include <stddef.h>

struct error;

#define CDI_VERSION "0.6.0"
#define CDI_CLASS   "iommufd"

struct cdi_options {
	const char *driver;		   /* the vendor part of the kind */
	const char *container_socket_path; /* where the socket appears in the container */
	const char *device_node; /* NULL, or the node's path on the host (--expose-device-node) */
};

/**
 * cdi_spec_render() - the spec's JSON for one claim
 * @o:           the options
 * @claim_uid:   the claim's uid: the device's name
 * @socket_path: the claim's handoff socket on the host
 *
 * Return: the JSON, NUL-terminated (caller frees).
 */
char *cdi_spec_render(const struct cdi_options *o, const char *claim_uid, const char *socket_path);

/**
 * cdi_spec_file_name() - the spec's file name, "<driver>-<claim_uid>.json"
 * @o:         the options
 * @claim_uid: the claim's uid
 *
 * Return: the name (caller frees).
 */
char *cdi_spec_file_name(const struct cdi_options *o, const char *claim_uid);

/**
 * cdi_device_id() - the fully qualified CDI id "<driver>/iommufd=<claim_uid>"
 * @o:         the options
 * @claim_uid: the claim's uid
 *
 * Return: the id (caller frees).
 */
char *cdi_device_id(const struct cdi_options *o, const char *claim_uid);

/**
 * cdi_spec_write() - write a claim's spec into the CDI dir, atomically
 * @o:           the options
 * @dir_fd:      the CDI dir (dra_dir_open_checked())
 * @dir_path:    its path, for messages
 * @claim_uid:   the claim's uid
 * @socket_path: the claim's handoff socket
 * @e:           on failure, the reason
 *
 * Return: 0 or -errno.
 */
int cdi_spec_write(const struct cdi_options *o, int dir_fd, const char *dir_path,
		   const char *claim_uid, const char *socket_path, struct error *e);

/**
 * cdi_spec_remove() - remove a claim's spec; no spec is success
 * @o:         the options
 * @dir_fd:    the CDI dir
 * @dir_path:  its path, for messages
 * @claim_uid: the claim's uid
 * @e:         on failure, the reason
 *
 * Return: 0 or -errno.
 */
int cdi_spec_remove(const struct cdi_options *o, int dir_fd, const char *dir_path,
		    const char *claim_uid, struct error *e);
