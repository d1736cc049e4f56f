/* Pod-aware cleanup and audit of handoff offers through the kubelet's PodResources
 * API v1 (List): while offers are pending, and only then, asks every interval which
 * pod holds which device id; logs once the pod an offer went to, and withdraws an
 * offer whose device no pod holds any more. The handoff TTL stays the fallback. */
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

/* Fills *o with the defaults above (socket, interval, grace; no resource name). */
void pod_resources_options_init(struct pod_resources_options *o);

struct pod_resources_stats {
	unsigned long long lists;    /* List calls made */
	unsigned long long failures; /* List calls that failed or timed out */
};

struct pod_resources;

/* Starts watching h's pending count (h must outlive the result; strings are copied).
 * Nothing is polled until an offer is pending. Returns 0 and *out, or -errno
 * (EINVAL: zero interval, a relative socket path; timerfd's errno), logged. */
int pod_resources_new(struct loop *loop, struct handoff *h, const struct pod_resources_options *o,
		      struct pod_resources **out);

/* Stops polling and abandons an in-flight List. Call it while the loop still runs
 * (shutting down): the List's connection is closed from the loop. */
void pod_resources_stop(struct pod_resources *pr);

/* Stops (see pod_resources_stop) and frees. NULL is a no-op. */
void pod_resources_free(struct pod_resources *pr);

/* The container a List answer gives a device to; strings point into the answer. */
struct pod_resources_holder {
	const char *namespace_;
	const char *pod;
	const char *container;
};

/* Finds the container in response that holds device_id of resource_name (devices of
 * other resources never match). Returns true and fills *holder, or false. */
bool pod_resources_find_holder(const V1__ListPodResourcesResponse *response,
			       const char *resource_name, const char *device_id,
			       struct pod_resources_holder *holder);

/* Counters, for metrics; valid until pod_resources_free. */
const struct pod_resources_stats *pod_resources_stats(const struct pod_resources *pr);

struct metrics_writer;
/* A metrics_source_fn for a const struct pod_resources *: List calls and their
 * failures (kubelet_metrics.c). */
void pod_resources_metrics_write(struct metrics_writer *w, const void *pod_resources);
