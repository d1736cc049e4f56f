/* Polls the kubelet's PodResources List while handoff offers are pending (the API has
 * no watch): one connection per List, a deadline per call, a timer armed only while
 * the handoff module reports pending offers, so an idle daemon never wakes up. A new
 * offer, or one that ends before its pod was named, asks for a List at once (one in
 * flight at most; offers that come meanwhile share the next). */
#include "pod_resources.h"
#include "../basic/error_text.h"
#include "../grpc/client.h"
#include "../handoff/handoff.h"
#include "../log.h"
#include "../util.h"

#include <stdio.h>

#define LIST_METHOD "/v1.PodResourcesLister/List"
/* A List that has not answered within this (or within the interval, if shorter) is
 * abandoned and counts as a failure: the kubelet answers from memory in
 * milliseconds, so a slow one is stuck, and the next poll tries afresh. */
#define LIST_DEADLINE_MAX_USEC (5ULL * 1000000)
/* A new offer is looked up this soon: the kubelet records the device once our Allocate
 * answer reaches it, and offers of one pod's burst share the List. */
#define LIST_SOON_USEC (100ULL * 1000)
/* Offers that ended before their pod was named, kept for the next List; beyond this
 * (a burst between two Lists), the oldest goes unnamed. */
#define UNNAMED_MAX 64

/* An offer as the audit knows it: its device and its socket. */
struct audit_offer {
	char *device_id;
	char *socket_path;
};

struct pod_resources {
	struct loop *loop;
	struct handoff *handoff;
	char *socket_path;
	char *resource_name;
	unsigned long long interval_usec, grace_usec, deadline_usec;
	struct loop_timer poll_timer;
	struct grpc_client *client;		/* the List in flight, if any */
	V1__ListPodResourcesResponse *response; /* its answer, once decoded */
	bool undecodable;			/* its answer could not be decoded */
	bool unavailable;			/* the last List failed (warned once) */
	struct handoff_pending_listener pending_listener;
	char **audited; /* offers whose pod was logged */
	size_t audited_count;
	struct audit_offer *known; /* the pending offers, as of the last change */
	size_t known_count;
	struct audit_offer *unnamed; /* ended before their pod was logged: for the next List */
	size_t unnamed_count;
	size_t unnamed_listed; /* the first ones, there when the List in flight was sent */
	size_t last_pending;
	unsigned long long last_consumed; /* the handoff's consumed count at the last change */
	bool list_again;		  /* an offer came or went while a List was in flight */
	struct pod_resources_stats stats;
};

/* One reconcile pass: the offers seen, and what to do about them. */
struct reconcile {
	struct pod_resources *pr;
	unsigned long long now;
	char **audited; /* the new audited list, pending offers only */
	size_t audited_count;
	char **abandon; /* socket paths to withdraw, with why */
	char **why;
	size_t abandon_count;
};

bool pod_resources_find_holder(const V1__ListPodResourcesResponse *response,
			       const char *resource_name, const char *device_id,
			       struct pod_resources_holder *holder)
{
	for (size_t p = 0; p < response->n_pod_resources; p++) {
		const V1__PodResources *pod = response->pod_resources[p];
		for (size_t c = 0; c < pod->n_containers; c++) {
			const V1__ContainerResources *container = pod->containers[c];
			for (size_t d = 0; d < container->n_devices; d++) {
				const V1__ContainerDevices *devices = container->devices[d];
				if (strcmp(devices->resource_name, resource_name) != 0)
					continue;
				for (size_t i = 0; i < devices->n_device_ids; i++) {
					if (strcmp(devices->device_ids[i], device_id) == 0) {
						*holder = (struct pod_resources_holder){
						    .namespace_ = pod->namespace_,
						    .pod = pod->name,
						    .container = container->name,
						};
						return true;
					}
				}
			}
		}
	}
	return false;
}

static void free_strings(char **strings, size_t count)
{
	for (size_t i = 0; i < count; i++)
		free(strings[i]);
	free(strings);
}

static void free_offers(struct audit_offer *offers, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(offers[i].device_id);
		free(offers[i].socket_path);
	}
	free(offers);
}

/* The audit line: which pod an offer went to, once per offer. */
static void log_audit(const char *device_id, const char *socket_path,
		      const struct pod_resources_holder *holder)
{
	log_info_f(LOG_FIELDS(LOG_STR("device", device_id), LOG_STR("socket", socket_path),
			      LOG_STR("namespace", holder->namespace_), LOG_STR("pod", holder->pod),
			      LOG_STR("container", holder->container)),
		   "%s (socket %s) went to pod %s/%s, container %s", device_id, socket_path,
		   holder->namespace_, holder->pod, holder->container);
}

static void reconcile_offer(void *data, const struct handoff_offer_info *info)
{
	struct reconcile *rc = data;
	struct pod_resources *pr = rc->pr;
	struct pod_resources_holder holder;

	if (pod_resources_find_holder(pr->response, pr->resource_name, info->device_id, &holder)) {
		/* Its container is still coming: the TTL must not withdraw it while this API
		 * answers. Kept until the next answer is overdue, so the TTL takes over
		 * again once the API stops answering. */
		handoff_keep(pr->handoff, info->socket_path,
			     rc->now + 2 * pr->interval_usec + pr->deadline_usec);
		if (!strings_contain(pr->audited, pr->audited_count, info->socket_path))
			log_audit(info->device_id, info->socket_path, &holder);
		rc->audited = xrealloc(rc->audited, (rc->audited_count + 1) * sizeof(char *));
		rc->audited[rc->audited_count++] = xstrdup(info->socket_path);
		return;
	}
	unsigned long long age = rc->now > info->offered_usec ? rc->now - info->offered_usec : 0;
	if (age < pr->grace_usec) {
		log_debug(1, "no pod holds %s yet (offered %.1f s ago): keeping %s",
			  info->device_id, (double)age / 1e6, info->socket_path);
		return;
	}
	rc->abandon = xrealloc(rc->abandon, (rc->abandon_count + 1) * sizeof(char *));
	rc->why = xrealloc(rc->why, (rc->abandon_count + 1) * sizeof(char *));
	rc->abandon[rc->abandon_count] = xstrdup(info->socket_path);
	rc->why[rc->abandon_count] = xasprintf(
	    "the kubelet's PodResources List shows no pod holding %s %s (offered %.1f s ago, "
	    "grace %.1f s): its pod is gone or never started",
	    pr->resource_name, info->device_id, (double)age / 1e6, (double)pr->grace_usec / 1e6);
	rc->abandon_count++;
}

/* Forgets the offers that ended unnamed before the List in flight was sent; with its
 * answer, names their pods first: a device taken a moment ago is still held by the pod
 * that took it. Those that ended later wait for the next List. */
static void unnamed_settle(struct pod_resources *pr, const V1__ListPodResourcesResponse *response)
{
	for (size_t i = 0; i < pr->unnamed_listed; i++) {
		const struct audit_offer *o = &pr->unnamed[i];
		struct pod_resources_holder holder;
		if (response &&
		    pod_resources_find_holder(response, pr->resource_name, o->device_id, &holder))
			log_audit(o->device_id, o->socket_path, &holder);
		else
			log_debug(1, "the pod %s (socket %s) went to is not known: %s",
				  o->device_id, o->socket_path,
				  response ? "no pod holds it any more" : "the List failed");
	}
	for (size_t i = 0; i < pr->unnamed_listed; i++) {
		free(pr->unnamed[i].device_id);
		free(pr->unnamed[i].socket_path);
	}
	pr->unnamed_count -= pr->unnamed_listed;
	if (pr->unnamed_count) /* pr->unnamed may be NULL: memmove's arguments must not */
		memmove(pr->unnamed, pr->unnamed + pr->unnamed_listed,
			pr->unnamed_count * sizeof(*pr->unnamed));
	pr->unnamed_listed = 0;
}

/* Audits and withdraws according to the List answer in pr->response. */
static void reconcile(struct pod_resources *pr)
{
	struct reconcile rc = {.pr = pr, .now = now_usec()};

	unnamed_settle(pr, pr->response);

	handoff_for_each_offer(pr->handoff, reconcile_offer, &rc);
	free_strings(pr->audited, pr->audited_count);
	pr->audited = rc.audited;
	pr->audited_count = rc.audited_count;
	for (size_t i = 0; i < rc.abandon_count; i++)
		handoff_abandon(pr->handoff, rc.abandon[i], rc.why[i]);
	free_strings(rc.abandon, rc.abandon_count);
	free_strings(rc.why, rc.abandon_count);
}

/* Whether a List has something to look at: pending offers, or ended unnamed ones. */
static bool list_wanted(const struct pod_resources *pr)
{
	return handoff_pending(pr->handoff) > 0 || pr->unnamed_count > 0;
}

static void poll_schedule(struct pod_resources *pr)
{
	if (pr->list_again && !pr->client) {
		pr->list_again = false;
		loop_timer_arm(&pr->poll_timer, 1);
		return;
	}
	if (loop_timer_armed(&pr->poll_timer) || pr->client || !list_wanted(pr))
		return;
	loop_timer_arm(&pr->poll_timer, pr->interval_usec);
}

/* A List soon, not at the next interval: one in flight gets a successor instead. */
static void poll_soon(struct pod_resources *pr)
{
	unsigned long long soon =
	    LIST_SOON_USEC < pr->interval_usec ? LIST_SOON_USEC : pr->interval_usec;
	unsigned long long at = now_usec() + soon;

	if (pr->client) {
		pr->list_again = true;
		return;
	}
	if (!loop_timer_armed(&pr->poll_timer) || pr->poll_timer.deadline > at)
		loop_timer_arm_at(&pr->poll_timer, at);
}

static void list_end(struct pod_resources *pr)
{
	grpc_client_free(pr->client); /* safe inside its own callbacks */
	pr->client = NULL;
	if (pr->response)
		v1__list_pod_resources_response__free_unpacked(pr->response, NULL);
	pr->response = NULL;
	pr->undecodable = false;
}

static void list_failed(struct pod_resources *pr, const char *why)
{
	pr->stats.failures++;
	if (pr->unavailable) {
		log_debug(1, "PodResources List on %s failed again: %s", pr->socket_path, why);
		return;
	}
	pr->unavailable = true;
	log_warning("cannot list pods through the PodResources API on %s: %s; unclaimed handoff "
		    "sockets are removed only after --handoff-ttl until it answers (retrying "
		    "every %.1f s while sockets are pending)",
		    pr->socket_path, why, (double)pr->interval_usec / 1e6);
}

static void list_message(void *data, const uint8_t *msg, size_t len)
{
	struct pod_resources *pr = data;

	if (pr->response)
		v1__list_pod_resources_response__free_unpacked(pr->response, NULL);
	pr->response = v1__list_pod_resources_response__unpack(NULL, len, msg);
	pr->undecodable = pr->response == NULL;
}

static void list_done(void *data, enum grpc_status status, const char *message)
{
	struct pod_resources *pr = data;
	char why[256];

	if (status != GRPC_STATUS_OK) {
		snprintf(why, sizeof(why), "status %d: %s", (int)status, message);
		list_failed(pr, why);
		unnamed_settle(pr, NULL);
	} else if (!pr->response) {
		list_failed(pr, pr->undecodable ? "cannot decode ListPodResourcesResponse"
						: "no ListPodResourcesResponse");
		unnamed_settle(pr, NULL);
	} else {
		if (pr->unavailable)
			log_info("the PodResources API on %s answers again", pr->socket_path);
		pr->unavailable = false;
		reconcile(pr);
	}
	list_end(pr);
	poll_schedule(pr);
}

static void poll_now(void *data)
{
	struct pod_resources *pr = data;
	V1__ListPodResourcesRequest request = V1__LIST_POD_RESOURCES_REQUEST__INIT;

	if (!list_wanted(pr))
		return;
	pr->stats.lists++;
	pr->unnamed_listed = pr->unnamed_count;
	int r = grpc_client_connect(pr->loop, pr->socket_path, &pr->client);
	if (r < 0) {
		pr->client = NULL;
		list_failed(pr, error_text(-r));
		unnamed_settle(pr, NULL);
		poll_schedule(pr);
		return;
	}
	/* The client's deadline ends the call: list_done() gets DEADLINE_EXCEEDED. */
	r = grpc_client_call_within(pr->client, LIST_METHOD, &request.base, pr->deadline_usec,
				    list_message, list_done, pr);
	if (r < 0) {
		list_end(pr);
		list_failed(pr, error_text(-r));
		unnamed_settle(pr, NULL);
		poll_schedule(pr);
		return;
	}
}

/* Collects the pending offers into pr->known (for handoff_for_each_offer). */
static void note_known(void *data, const struct handoff_offer_info *info)
{
	struct pod_resources *pr = data;

	pr->known = xrealloc(pr->known, (pr->known_count + 1) * sizeof(*pr->known));
	pr->known[pr->known_count++] = (struct audit_offer){
	    .device_id = xstrdup(info->device_id),
	    .socket_path = xstrdup(info->socket_path),
	};
}

/* Takes the new list of pending offers; with taken (the offer that ended since the
 * last change was consumed: the handoff tells each change apart), notes it for the
 * next List unless its pod was logged. Returns whether it did. */
static bool note_ended(struct pod_resources *pr, bool taken)
{
	struct audit_offer *before = pr->known;
	size_t before_count = pr->known_count;
	bool ended = false;

	pr->known = NULL;
	pr->known_count = 0;
	handoff_for_each_offer(pr->handoff, note_known, pr);
	for (size_t i = 0; i < before_count; i++) {
		bool pending = false;
		for (size_t j = 0; j < pr->known_count && !pending; j++)
			pending = !strcmp(before[i].socket_path, pr->known[j].socket_path);
		if (pending || !taken ||
		    strings_contain(pr->audited, pr->audited_count, before[i].socket_path))
			continue;
		if (pr->unnamed_count == UNNAMED_MAX) {
			log_debug(1,
				  "not naming the pod %s went to: %d offers ended since the "
				  "last List",
				  pr->unnamed[0].device_id, UNNAMED_MAX);
			free(pr->unnamed[0].device_id);
			free(pr->unnamed[0].socket_path);
			memmove(pr->unnamed, pr->unnamed + 1,
				--pr->unnamed_count * sizeof(*pr->unnamed));
			if (pr->unnamed_listed)
				pr->unnamed_listed--;
		}
		pr->unnamed = xrealloc(pr->unnamed, (pr->unnamed_count + 1) * sizeof(*pr->unnamed));
		pr->unnamed[pr->unnamed_count++] = before[i];
		before[i] = (struct audit_offer){0};
		ended = true;
	}
	free_offers(before, before_count);
	return ended;
}

static void pod_resources_pending_changed(void *data, size_t pending)
{
	struct pod_resources *pr = data;
	unsigned long long consumed = handoff_stats(pr->handoff)->consumed;
	bool offered = pending > pr->last_pending;
	bool taken = consumed > pr->last_consumed;

	pr->last_pending = pending;
	pr->last_consumed = consumed;
	if (note_ended(pr, taken) || offered)
		poll_soon(pr);
	if (list_wanted(pr)) {
		poll_schedule(pr);
		return;
	}
	/* Nothing left to check: stop until the next offer. */
	loop_timer_arm(&pr->poll_timer, 0);
	free_strings(pr->audited, pr->audited_count);
	pr->audited = NULL;
	pr->audited_count = 0;
}

void pod_resources_options_init(struct pod_resources_options *o)
{
	*o = (struct pod_resources_options){
	    .socket_path = POD_RESOURCES_DEFAULT_SOCKET,
	    .interval_usec = POD_RESOURCES_DEFAULT_INTERVAL_USEC,
	    .grace_usec = POD_RESOURCES_DEFAULT_GRACE_USEC,
	};
}

int pod_resources_new(struct loop *loop, struct handoff *h, const struct pod_resources_options *o,
		      struct pod_resources **out)
{
	if (!o->interval_usec || !o->socket_path || o->socket_path[0] != '/') {
		log_error("invalid PodResources options: the interval must be positive and the "
			  "socket an absolute path");
		return -EINVAL;
	}
	struct pod_resources *pr = xcalloc(1, sizeof(*pr));
	pr->loop = loop;
	pr->handoff = h;
	pr->socket_path = xstrdup(o->socket_path);
	pr->resource_name = xstrdup(o->resource_name);
	pr->interval_usec = o->interval_usec;
	pr->grace_usec = o->grace_usec;
	pr->deadline_usec =
	    o->interval_usec < LIST_DEADLINE_MAX_USEC ? o->interval_usec : LIST_DEADLINE_MAX_USEC;
	loop_timer_init(loop, &pr->poll_timer, poll_now, pr);
	handoff_add_pending_listener(h, &pr->pending_listener, pod_resources_pending_changed, pr);
	pod_resources_pending_changed(pr, handoff_pending(h));
	*out = pr;
	return 0;
}

void pod_resources_stop(struct pod_resources *pr)
{
	handoff_remove_pending_listener(&pr->pending_listener);
	list_end(pr);
	loop_timer_arm(&pr->poll_timer, 0);
}

void pod_resources_free(struct pod_resources *pr)
{
	if (!pr)
		return;
	pod_resources_stop(pr);
	loop_timer_destroy(&pr->poll_timer);
	free_strings(pr->audited, pr->audited_count);
	free_offers(pr->known, pr->known_count);
	free_offers(pr->unnamed, pr->unnamed_count);
	free(pr->socket_path);
	free(pr->resource_name);
	free(pr);
}

const struct pod_resources_stats *pod_resources_stats(const struct pod_resources *pr)
{
	return &pr->stats;
}
