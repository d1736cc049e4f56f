/* Publishing this node's ResourceSlice (resource.k8s.io/v1): N devices iommufd0..N-1 of
 * our driver, pool = the node's name, with attributes; kept true (created, updated,
 * deleted when there are no devices) by a reconciler that retries with back-off while
 * the API server is away, and re-checks now and then in case someone else changed it.
 * An ownerReference when the spec names an owner. A ResourceSlice is cluster-scoped, and
 * the garbage collector ignores a namespaced owner of a cluster-scoped object (it treats
 * the reference as unresolvable), so the owner must be cluster-scoped: the Node, as the
 * kubelet's own DRA helper does; a DaemonSet owner would not delete it on uninstall.
 * CONTRACT written before the code (issue 23). */
#pragma once

#include "kube_client.h"

#include <stdbool.h>

struct resource_slice;

struct resource_slice_spec {
	const char *driver;	/* e.g. "iommufd.kubevirt.io" ... our domain, see the chart */
	const char *node_name;	/* spec.nodeName and spec.pool.name */
	const char *owner_kind; /* "Node" (NULL: no owner; see above) */
	const char *owner_name;
	const char *owner_uid;
	const char *owner_api_version; /* "v1" */
	const char *kernel_release;    /* attribute kernelRelease (uname -r) */
	const char *rlimit_mode; /* attribute rlimitMode: the policy (required/best-effort/off) */
	unsigned resync_seconds; /* re-check a synced slice this often; 0: 300 */
};

/**
 * resource_slice_new() - create the publisher; nothing is sent until _set_devices()
 * @loop: the loop
 * @client: borrowed, must outlive it
 * @spec: copied
 * @out: set to it
 *
 * Return: 0; allocation failure aborts.
 */
int resource_slice_new(struct loop *loop, struct kube_client *client,
		       const struct resource_slice_spec *spec, struct resource_slice **out);

/**
 * resource_slice_set_devices() - what the slice should say from now on
 * @slice: the publisher
 * @n: devices iommufd0..n-1; 0 (no /dev/iommu) deletes the slice
 * @rlimit_mode_supported: attribute rlimitModeSupported
 *
 * Reconciles asynchronously; a newer call supersedes a pending one.
 */
void resource_slice_set_devices(struct resource_slice *slice, unsigned n,
				bool rlimit_mode_supported);

/**
 * resource_slice_resync() - LIST now and put back what is missing, without waiting
 * @slice: the publisher
 *
 * For when someone else is known to have deleted slices: the kubelet wipes every slice
 * of its node when it starts (and those of a driver that stayed unregistered), so the
 * DRA driver calls this each time the kubelet registers it. A no-op before the first
 * resource_slice_set_devices() and during a back-off (whose timer lists anyway).
 */
void resource_slice_resync(struct resource_slice *slice);

/**
 * resource_slice_synced() - whether the API server has what the last call asked for
 * @slice: the publisher
 *
 * Return: true once created/updated/deleted as asked (readiness reports it).
 */
bool resource_slice_synced(const struct resource_slice *slice);

/**
 * resource_slice_free() - free it; the slice stays on the server
 * @slice: the publisher, or NULL
 *
 * A request in flight is forgotten (its answer is dropped).
 */
void resource_slice_free(struct resource_slice *slice);
