/* Pod-aware cleanup and audit of handoff offers through the kubelet's PodResources
 * API v1 (List): after each offer, every interval while offers are pending, and after
 * a take whose pod was not named yet, asks which pod holds which device id; logs once
 * the pod an offer went to, and withdraws an offer whose device no pod holds any more.
 * The handoff TTL stays the fallback. */
#pragma once

#include <stdbool.h>

#include "podresources.pb-c.h"

struct loop;
struct handoff;

#define POD_RESOURCES_DEFAULT_SOCKET	    "/var/lib/kubelet/pod-resources/kubelet.sock"
#define POD_RESOURCES_DEFAULT_INTERVAL_USEC (10ULL * 1000000)
/* The kubelet records a device in its state (what List reports) only after Allocate
 * has returned and the pod's admission goes on, so a fresh offer that no pod holds
 * yet is normal; only an offer older than this is withdrawn for it. */
#define POD_RESOURCES_DEFAULT_GRACE_USEC (30ULL * 1000000)

struct pod_resources_options {
	const char *socket_path;	  /* the kubelet's pod-resources socket */
	const char *resource_name;	  /* ours: only these devices are matched */
	unsigned long long interval_usec; /* between Lists while offers are pending */
	unsigned long long grace_usec;	  /* an unheld offer younger than this stays */
};

/**
 * pod_resources_options_init() - fill options with the defaults above
 * @o: the options: socket, interval, grace; no resource name
 */
void pod_resources_options_init(struct pod_resources_options *o);

struct pod_resources_stats {
	unsigned long long lists;    /* List calls made */
	unsigned long long failures; /* List calls that failed or timed out */
};

struct pod_resources;

/**
 * pod_resources_new() - start watching the handoff's pending count
 * @loop: the loop
 * @h:    the handoff; must outlive the result
 * @o:    the options; strings are copied
 * @out:  set to it (free with pod_resources_free())
 *
 * Nothing is polled until an offer is pending.
 *
 * Return: 0, or -errno (EINVAL: zero interval, a relative socket path; timerfd's
 * errno), logged.
 */
int pod_resources_new(struct loop *loop, struct handoff *h, const struct pod_resources_options *o,
		      struct pod_resources **out);

/**
 * pod_resources_stop() - stop polling and abandon an in-flight List
 * @pr: it
 *
 * Call it while the loop still runs (shutting down): the List's connection is closed
 * from the loop.
 */
void pod_resources_stop(struct pod_resources *pr);

/**
 * pod_resources_free() - stop (see pod_resources_stop()) and free
 * @pr: it; NULL is a no-op
 */
void pod_resources_free(struct pod_resources *pr);

/* The container a List answer gives a device to; strings point into the answer. */
struct pod_resources_holder {
	const char *namespace_;
	const char *pod;
	const char *container;
};

/**
 * pod_resources_find_holder() - find the container that holds a device
 * @response:      a List answer
 * @resource_name: the device's resource; devices of other resources never match
 * @device_id:     the device
 * @holder:        filled when found
 *
 * Return: true with *@holder filled, or false.
 */
bool pod_resources_find_holder(const V1__ListPodResourcesResponse *response,
			       const char *resource_name, const char *device_id,
			       struct pod_resources_holder *holder);

/**
 * pod_resources_stats() - counters, for metrics
 * @pr: it
 *
 * Return: the counters, valid until pod_resources_free().
 */
const struct pod_resources_stats *pod_resources_stats(const struct pod_resources *pr);

struct metrics_writer;
/**
 * pod_resources_metrics_write() - the PodResources watcher's metrics
 * @w:             the writer
 * @pod_resources: a const struct pod_resources *
 *
 * A metrics_source_fn: List calls and their failures (kubelet_metrics.c).
 */
void pod_resources_metrics_write(struct metrics_writer *w, const void *pod_resources);
