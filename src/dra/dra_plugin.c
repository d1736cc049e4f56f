/* NodePrepareResources and NodeUnprepareResources. A claim goes looking-up (its
 * ResourceClaim is read from the API server), then prepared (fd offered, CDI spec and
 * record written), then is forgotten on Unprepare; a failed lookup or preparation
 * forgets it at once and the kubelet gets the reason for the pod's events. The v1beta1
 * service is v1's wire format without Device.share_id, which we never set, so both
 * paths decode and answer with the v1 messages. */
#include "dra_plugin.h"
#include "cdi.h"
#include "claim_store.h"
#include "dra_files.h"
#include "../basic/error.h"
#include "../basic/error_text.h"
#include "../basic/list.h"
#include "../handoff/handoff.h"
#include "../iommufd/iommufd.h"
#include "../kube/resource_claim.h"
#include "../log.h"
#include "../util.h"

#include "dra_v1.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DEVICE_PREFIX "iommufd"

enum dra_claim_state {
	DRA_CLAIM_LOOKING_UP, /* resource_claim_get() pending; waiters are queued */
	DRA_CLAIM_PREPARED,   /* offered, spec and record written */
};

static const char *const dra_claim_state_names[] = {
    [DRA_CLAIM_LOOKING_UP] = "looking-up",
    [DRA_CLAIM_PREPARED] = "prepared",
};

struct prepare_call;

/* One claim of one NodePrepareResources call, waiting for its claim. */
struct prepare_item {
	struct prepare_call *owner;
	struct list link; /* in dra_claim.waiters */
	char *uid;
	char *error;		     /* set on failure */
	struct claim_record *result; /* set on success: a copy */
};

struct prepare_call {
	struct dra_plugin *plugin;
	struct grpc_call *call; /* NULL once the kubelet gave up */
	size_t n, pending;
	struct prepare_item items[];
};

struct dra_claim {
	struct list link; /* in dra_plugin.claims */
	struct dra_plugin *plugin;
	enum dra_claim_state state;
	struct list waiters; /* struct prepare_item.link, while looking up */
	struct claim_record rec;
};

struct dra_plugin {
	struct loop *loop;
	const struct dra_plugin_options *o;
	struct cdi_options cdi;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct kube_client *client;
	struct claim_store *store;
	int cdi_dir_fd;
	struct grpc_server *server;
	struct list claims; /* struct dra_claim.link */
	size_t claim_count;
	struct dra_plugin_stats stats;
};

static void dra_claim_set_state(struct dra_claim *c, enum dra_claim_state next)
{
	log_debug(2, "claim %s/%s (%s): %s -> %s", c->rec.namespace_, c->rec.name, c->rec.uid,
		  dra_claim_state_names[c->state], dra_claim_state_names[next]);
	c->state = next;
}

static struct dra_claim *dra_claim_find(struct dra_plugin *plugin, const char *uid)
{
	struct dra_claim *c;

	list_for_each (c, &plugin->claims, link)
		if (strcmp(c->rec.uid, uid) == 0)
			return c;
	return NULL;
}

static struct dra_claim *dra_claim_add(struct dra_plugin *plugin, enum dra_claim_state state)
{
	struct dra_claim *c = xcalloc(1, sizeof(*c));

	c->plugin = plugin;
	c->state = state;
	list_init(&c->waiters);
	list_append(&plugin->claims, &c->link);
	plugin->stats.claims = ++plugin->claim_count;
	return c;
}

static void dra_claim_forget(struct dra_claim *c)
{
	list_unlink(&c->link);
	c->plugin->stats.claims = --c->plugin->claim_count;
	free(c);
}

/* ---- answering NodePrepareResources ---- */

static void prepare_call_answer(struct prepare_call *pc)
{
	struct dra_plugin *plugin = pc->plugin;
	size_t total = 0;

	for (size_t i = 0; i < pc->n; i++)
		total += pc->items[i].result ? pc->items[i].result->n_devices : 0;
	DraV1__NodePrepareResourcesResponse response =
	    DRA_V1__NODE_PREPARE_RESOURCES_RESPONSE__INIT;
	DraV1__NodePrepareResourcesResponse__ClaimsEntry *entries =
	    xcalloc(pc->n ? pc->n : 1, sizeof(*entries));
	DraV1__NodePrepareResourcesResponse__ClaimsEntry **entry_ptrs =
	    xcalloc(pc->n ? pc->n : 1, sizeof(DraV1__NodePrepareResourcesResponse__ClaimsEntry *));
	DraV1__NodePrepareResourceResponse *claims = xcalloc(pc->n ? pc->n : 1, sizeof(*claims));
	DraV1__Device *devices = xcalloc(total ? total : 1, sizeof(*devices));
	DraV1__Device **device_ptrs = xcalloc(total ? total : 1, sizeof(DraV1__Device *));
	char **cdi_ids = xcalloc(pc->n ? pc->n : 1, sizeof(*cdi_ids));
	char **requests = xcalloc(total ? total : 1, sizeof(*requests));
	size_t d = 0;

	for (size_t i = 0; i < pc->n; i++) {
		struct prepare_item *item = &pc->items[i];
		dra_v1__node_prepare_resources_response__claims_entry__init(&entries[i]);
		dra_v1__node_prepare_resource_response__init(&claims[i]);
		entries[i].key = item->uid;
		entries[i].value = &claims[i];
		entry_ptrs[i] = &entries[i];
		if (!item->result) {
			claims[i].error = item->error;
			continue;
		}
		cdi_ids[i] = cdi_device_id(&plugin->cdi, item->uid);
		claims[i].devices = &device_ptrs[d];
		claims[i].n_devices = item->result->n_devices;
		for (size_t j = 0; j < item->result->n_devices; j++, d++) {
			const struct claim_device *cd = &item->result->devices[j];
			dra_v1__device__init(&devices[d]);
			requests[d] = (char *)cd->request;
			devices[d].request_names = &requests[d];
			devices[d].n_request_names = 1;
			devices[d].pool_name = (char *)cd->pool;
			devices[d].device_name = (char *)cd->device;
			devices[d].cdi_device_ids = &cdi_ids[i];
			devices[d].n_cdi_device_ids = 1;
			device_ptrs[d] = &devices[d];
		}
	}
	response.n_claims = pc->n;
	response.claims = entry_ptrs;
	grpc_call_send(pc->call, &response.base);
	grpc_call_finish(pc->call, GRPC_STATUS_OK, NULL);
	for (size_t i = 0; i < pc->n; i++)
		free(cdi_ids[i]);
	free(cdi_ids);
	free(requests);
	free(device_ptrs);
	free(devices);
	free(claims);
	free(entry_ptrs);
	free(entries);
}

static void prepare_call_free(struct prepare_call *pc)
{
	for (size_t i = 0; i < pc->n; i++) {
		free(pc->items[i].uid);
		free(pc->items[i].error);
		free(pc->items[i].result);
	}
	free(pc);
}

/* One wait ended: after the last, answer (unless the kubelet gave up) and free. */
static void prepare_call_release(struct prepare_call *pc)
{
	if (--pc->pending)
		return;
	if (pc->call)
		prepare_call_answer(pc);
	prepare_call_free(pc);
}

static void prepare_item_resolve(struct prepare_item *item, const struct dra_claim *c,
				 const char *error)
{
	struct dra_plugin *plugin = item->owner->plugin;

	if (c) {
		item->result = xmalloc(sizeof(*item->result));
		*item->result = c->rec;
		plugin->stats.prepared++;
	} else {
		item->error = xstrdup(error);
		plugin->stats.prepare_failures++;
		log_error_f(LOG_FIELDS(LOG_STR("claim", item->uid), LOG_STR("reason", error)),
			    "NodePrepareResources of claim %s failed: %s", item->uid, error);
	}
}

static void prepare_call_cancelled(void *data, struct grpc_call *call)
{
	struct prepare_call *pc = data;

	(void)call;
	/* The lookups still complete (and prepare: the kubelet will ask again). */
	pc->call = NULL;
}

/* ---- preparing one claim ---- */

/* The index of a device name we publish ("iommufd" then 0..devices-1, no leading
 * zero), or -1. */
static long dra_device_index(const struct dra_plugin *plugin, const char *name)
{
	const char *digits = name + strlen(DEVICE_PREFIX);
	char *end;

	if (strncmp(name, DEVICE_PREFIX, strlen(DEVICE_PREFIX)) != 0 || digits[0] < '0' ||
	    digits[0] > '9' || (digits[0] == '0' && digits[1]))
		return -1;
	errno = 0;
	unsigned long n = strtoul(digits, &end, 10);
	return !errno && !*end && n < (unsigned long)plugin->o->devices ? (long)n : -1;
}

/* Checks what the API server allocated to us, before anything is opened. */
static int dra_check_allocation(const struct dra_plugin *plugin, const struct dra_claim *c,
				const struct claim_allocation *alloc, struct error *e)
{
	cleanup_free bool *seen = xcalloc((size_t)plugin->o->devices, sizeof(*seen));

	if (alloc->n_devices == 0)
		return error_set(e, -EINVAL, "claim %s/%s has no device of driver %s",
				 c->rec.namespace_, c->rec.name, plugin->o->driver);
	for (size_t i = 0; i < alloc->n_devices; i++) {
		const struct claim_device *d = &alloc->devices[i];
		long index = dra_device_index(plugin, d->device);
		if (index < 0)
			return error_set(e, -EINVAL,
					 "claim %s/%s: unknown device \"%s\": driver %s publishes "
					 "%s0..%s%d",
					 c->rec.namespace_, c->rec.name, d->device,
					 plugin->o->driver, DEVICE_PREFIX, DEVICE_PREFIX,
					 plugin->o->devices - 1);
		if (plugin->o->node_name && strcmp(d->pool, plugin->o->node_name) != 0)
			return error_set(
			    e, -EINVAL,
			    "claim %s/%s: device %s is in pool \"%s\", not this node's "
			    "(\"%s\")",
			    c->rec.namespace_, c->rec.name, d->device, d->pool,
			    plugin->o->node_name);
		if (seen[index])
			return error_set(e, -EINVAL, "claim %s/%s: device %s allocated twice",
					 c->rec.namespace_, c->rec.name, d->device);
		seen[index] = true;
	}
	return 0;
}

/* Opens, offers, writes the spec and the record. On failure nothing stays. */
static int dra_prepare(struct dra_plugin *plugin, struct dra_claim *c,
		       const struct claim_allocation *alloc, struct error *e)
{
	const char *socket_path;
	int fd, r;

	if ((r = dra_check_allocation(plugin, c, alloc, e)) < 0)
		return r;
	if ((r = iommufd_open(plugin->opener, &fd, e)) < 0)
		return r;
	/* One socket per claim, however many devices: the container has one mount path. */
	if ((r = handoff_offer(plugin->handoff, c->rec.uid, fd, &socket_path, e)) < 0)
		return r;
	if (strlen(socket_path) >= sizeof(c->rec.socket_path)) {
		handoff_withdraw(plugin->handoff, socket_path);
		return error_set(e, -ENAMETOOLONG, "socket path too long: %s", socket_path);
	}
	strcpy(c->rec.socket_path, socket_path);
	handoff_keep(plugin->handoff, socket_path, now_usec() + DRA_OFFER_KEEP_USEC);
	c->rec.n_devices = alloc->n_devices;
	memcpy(c->rec.devices, alloc->devices, alloc->n_devices * sizeof(alloc->devices[0]));
	r = cdi_spec_write(&plugin->cdi, plugin->cdi_dir_fd, plugin->o->cdi_dir, c->rec.uid,
			   c->rec.socket_path, e);
	if (r == 0 && (r = claim_store_save(plugin->store, &c->rec, e)) < 0)
		cdi_spec_remove(&plugin->cdi, plugin->cdi_dir_fd, plugin->o->cdi_dir, c->rec.uid,
				NULL);
	if (r < 0) {
		handoff_withdraw(plugin->handoff, c->rec.socket_path);
		return r;
	}
	log_info_f(LOG_FIELDS(LOG_STR("claim", c->rec.uid), LOG_STR("socket", c->rec.socket_path)),
		   "prepared claim %s/%s (%s): %zu device(s), handoff socket %s", c->rec.namespace_,
		   c->rec.name, c->rec.uid, c->rec.n_devices, c->rec.socket_path);
	return 0;
}

static void dra_lookup_done(void *data, int err, const struct claim_allocation *alloc,
			    const char *why)
{
	struct dra_claim *c = data;
	struct dra_plugin *plugin = c->plugin;
	struct error e = {0};
	struct prepare_item *item, *next;

	if (err < 0)
		error_set(&e, err, "claim %s/%s: %s", c->rec.namespace_, c->rec.name,
			  why ? why : error_text(-err));
	else
		dra_prepare(plugin, c, alloc, &e);
	if (e.code == 0)
		dra_claim_set_state(c, DRA_CLAIM_PREPARED);
	/* Each waiter answers from the claim (or the reason) before it may be freed. */
	list_for_each_safe(item, next, &c->waiters, link)
	{
		list_unlink(&item->link);
		prepare_item_resolve(item, e.code == 0 ? c : NULL, error_message(&e));
		prepare_call_release(item->owner); /* may free the item */
	}
	if (e.code != 0)
		dra_claim_forget(c);
}

/* Sets up one claim of a request: answered now (prepared already, or invalid) or
 * queued behind its lookup. Returns true if it waits. */
static bool prepare_item_start(struct dra_plugin *plugin, struct prepare_item *item,
			       const DraV1__Claim *claim)
{
	struct dra_claim *c = dra_claim_find(plugin, item->uid);
	struct error e = {0};

	if (c && c->state == DRA_CLAIM_PREPARED) {
		log_debug(1, "claim %s is prepared already: same answer", item->uid);
		prepare_item_resolve(item, c, NULL);
		return false;
	}
	if (c) {
		list_append(&c->waiters, &item->link);
		return true;
	}
	if (!claim_uid_valid(claim->uid) || !claim->namespace_[0] || !claim->name[0] ||
	    strlen(claim->namespace_) >= CLAIM_NAME_MAX || strlen(claim->name) >= CLAIM_NAME_MAX)
		error_set(&e, -EINVAL,
			  "invalid claim (namespace \"%.64s\", name \"%.64s\", uid "
			  "\"%.64s\")",
			  claim->namespace_, claim->name, claim->uid);
	else if (plugin->claim_count >= DRA_MAX_CLAIMS)
		error_set(&e, -ENOSPC, "%d claims are prepared on this node already",
			  DRA_MAX_CLAIMS);
	if (e.code) {
		prepare_item_resolve(item, NULL, error_message(&e));
		return false;
	}
	c = dra_claim_add(plugin, DRA_CLAIM_LOOKING_UP);
	strcpy(c->rec.uid, claim->uid);
	strcpy(c->rec.namespace_, claim->namespace_);
	strcpy(c->rec.name, claim->name);
	list_append(&c->waiters, &item->link);
	int r =
	    resource_claim_get(plugin->client, claim->namespace_, claim->name, claim->uid,
			       plugin->o->driver, plugin->o->lookup_timeout_ms, dra_lookup_done, c);
	if (r < 0) {
		list_unlink(&item->link);
		error_set(&e, r, "claim %s/%s: cannot ask the API server: %s", claim->namespace_,
			  claim->name, error_text(-r));
		prepare_item_resolve(item, NULL, error_message(&e));
		dra_claim_forget(c);
		return false;
	}
	return true;
}

static void handle_prepare(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const DraV1__NodePrepareResourcesRequest *request =
	    (const DraV1__NodePrepareResourcesRequest *)message;
	struct dra_plugin *plugin = data;
	size_t n = request->n_claims;

	if (n > DRA_MAX_CLAIMS_PER_CALL) {
		char message_text[128];
		snprintf(message_text, sizeof(message_text),
			 "%zu claims in one request: at most %d", n, DRA_MAX_CLAIMS_PER_CALL);
		log_error("NodePrepareResources refused: %s", message_text);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, message_text);
		return;
	}
	struct prepare_call *pc = xcalloc(1, sizeof(*pc) + n * sizeof(pc->items[0]));
	pc->plugin = plugin;
	pc->call = call;
	pc->n = n;
	pc->pending = 1; /* held until every item is started, so none answers early */
	grpc_call_on_cancel(call, prepare_call_cancelled, pc);
	for (size_t i = 0; i < n; i++) {
		struct prepare_item *item = &pc->items[i];
		item->owner = pc;
		item->uid = xstrdup(request->claims[i]->uid);
		if (prepare_item_start(plugin, item, request->claims[i]))
			pc->pending++;
	}
	if (pc->pending > 1)
		log_debug(1, "NodePrepareResources: %zu claim(s) wait for the API server",
			  pc->pending - 1);
	prepare_call_release(pc); /* the hold */
}

/* ---- NodeUnprepareResources ---- */

/* Withdraws the offer, removes the spec and the record. Returns 0 or -errno. */
static int dra_unprepare(struct dra_plugin *plugin, struct dra_claim *c, struct error *e)
{
	int r;

	if (c->state == DRA_CLAIM_LOOKING_UP)
		return error_set(e, -EBUSY, "claim %s is still being prepared", c->rec.uid);
	/* A consumed offer is gone already: then this does nothing. */
	handoff_abandon(plugin->handoff, c->rec.socket_path, "its claim was unprepared");
	if ((r = cdi_spec_remove(&plugin->cdi, plugin->cdi_dir_fd, plugin->o->cdi_dir, c->rec.uid,
				 e)) < 0 ||
	    (r = claim_store_remove(plugin->store, c->rec.uid, e)) < 0)
		return r;
	log_info_f(LOG_FIELDS(LOG_STR("claim", c->rec.uid)), "unprepared claim %s/%s (%s)",
		   c->rec.namespace_, c->rec.name, c->rec.uid);
	dra_claim_forget(c);
	return 0;
}

static void handle_unprepare(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const DraV1__NodeUnprepareResourcesRequest *request =
	    (const DraV1__NodeUnprepareResourcesRequest *)message;
	struct dra_plugin *plugin = data;
	size_t n = request->n_claims;

	if (n > DRA_MAX_CLAIMS_PER_CALL) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
				 "too many claims in one request");
		return;
	}
	DraV1__NodeUnprepareResourcesResponse response =
	    DRA_V1__NODE_UNPREPARE_RESOURCES_RESPONSE__INIT;
	DraV1__NodeUnprepareResourcesResponse__ClaimsEntry *entries =
	    xcalloc(n ? n : 1, sizeof(*entries));
	DraV1__NodeUnprepareResourcesResponse__ClaimsEntry **ptrs =
	    xcalloc(n ? n : 1, sizeof(DraV1__NodeUnprepareResourcesResponse__ClaimsEntry *));
	DraV1__NodeUnprepareResourceResponse *claims = xcalloc(n ? n : 1, sizeof(*claims));
	struct error *errors = xcalloc(n ? n : 1, sizeof(*errors));

	for (size_t i = 0; i < n; i++) {
		const char *uid = request->claims[i]->uid;
		struct dra_claim *c = dra_claim_find(plugin, uid);
		dra_v1__node_unprepare_resources_response__claims_entry__init(&entries[i]);
		dra_v1__node_unprepare_resource_response__init(&claims[i]);
		entries[i].key = (char *)uid;
		entries[i].value = &claims[i];
		ptrs[i] = &entries[i];
		if (!c) { /* never prepared here, or unprepared before: nothing to undo */
			log_debug(1, "NodeUnprepareResources: claim %s is not prepared here", uid);
			continue;
		}
		if (dra_unprepare(plugin, c, &errors[i]) < 0) {
			claims[i].error = (char *)error_message(&errors[i]);
			plugin->stats.unprepare_failures++;
			log_error("NodeUnprepareResources of claim %s failed: %s", uid,
				  error_message(&errors[i]));
		} else
			plugin->stats.unprepared++;
	}
	response.n_claims = n;
	response.claims = ptrs;
	grpc_call_send(call, &response.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
	free(errors);
	free(claims);
	free(ptrs);
	free(entries);
}

/* The paths are the generated Go services' (api_grpc.pb.go, *_FullMethodName): the
 * package of the original protos, not the short registration names. */
static const struct grpc_method dra_plugin_methods[] = {
    {"/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources",
     &dra_v1__node_prepare_resources_request__descriptor, handle_prepare, NULL},
    {"/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources",
     &dra_v1__node_unprepare_resources_request__descriptor, handle_unprepare, NULL},
    {"/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources",
     &dra_v1__node_prepare_resources_request__descriptor, handle_prepare, NULL},
    {"/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodeUnprepareResources",
     &dra_v1__node_unprepare_resources_request__descriptor, handle_unprepare, NULL},
};

/* ---- life ---- */

static void dra_restore(void *data, const struct claim_record *rec)
{
	struct dra_plugin *plugin = data;

	if (dra_claim_find(plugin, rec->uid) || plugin->claim_count >= DRA_MAX_CLAIMS)
		return;
	struct dra_claim *c = dra_claim_add(plugin, DRA_CLAIM_PREPARED);
	c->rec = *rec;
	/* Re-served by the rescue if its container had not taken the fd: keep it too. */
	handoff_keep(plugin->handoff, rec->socket_path, now_usec() + DRA_OFFER_KEEP_USEC);
	plugin->stats.restored++;
	log_info("claim %s/%s (%s) was prepared before the restart: socket %s", rec->namespace_,
		 rec->name, rec->uid, rec->socket_path);
}

int dra_plugin_new(struct loop *loop, const struct dra_plugin_options *o,
		   struct iommufd_opener *opener, struct handoff *handoff,
		   struct kube_client *client, struct dra_plugin **out, struct error *e)
{
	struct dra_plugin *plugin = xcalloc(1, sizeof(*plugin));
	int r;

	plugin->cdi_dir_fd = -1;
	plugin->loop = loop;
	plugin->o = o;
	plugin->cdi = (struct cdi_options){
	    .driver = o->driver,
	    .container_socket_path = o->container_socket_path,
	    .device_node = o->device_node,
	};
	plugin->opener = opener;
	plugin->handoff = handoff;
	plugin->client = client;
	list_init(&plugin->claims);
	plugin->cdi_dir_fd = dra_dir_open_checked(o->cdi_dir, e);
	if (plugin->cdi_dir_fd < 0) {
		r = plugin->cdi_dir_fd;
		dra_plugin_free(plugin);
		return r;
	}
	if ((r = claim_store_open(o->state_dir, &plugin->store, e)) < 0 ||
	    (r = claim_store_load(plugin->store, dra_restore, plugin)) < 0) {
		if (e->code == 0)
			error_set(e, r, "cannot read %s: %s", o->state_dir, error_text(-r));
		dra_plugin_free(plugin);
		return r;
	}
	/* Cannot fail: only allocation can, and that aborts. */
	grpc_server_new(loop, dra_plugin_methods, ARRAY_SIZE(dra_plugin_methods), plugin,
			&plugin->server);
	*out = plugin;
	return 0;
}

void dra_plugin_free(struct dra_plugin *plugin)
{
	if (!plugin)
		return;
	grpc_server_free(plugin->server); /* cancels calls: they only mark themselves */
	while (!list_empty(&plugin->claims))
		dra_claim_forget(list_first(&plugin->claims, struct dra_claim, link));
	claim_store_free(plugin->store);
	if (plugin->cdi_dir_fd >= 0)
		close(plugin->cdi_dir_fd);
	free(plugin);
}

int dra_plugin_listen(void *data, const char *path, bool replace_live)
{
	struct dra_plugin *plugin = data;

	return grpc_server_listen(plugin->server, path, replace_live, NULL, NULL);
}

void dra_plugin_shutdown(struct dra_plugin *plugin, void (*done)(void *data), void *data)
{
	grpc_server_stop_listening(plugin->server, true);
	grpc_server_drain(plugin->server, done, data);
}

const struct dra_plugin_stats *dra_plugin_stats(const struct dra_plugin *plugin)
{
	return &plugin->stats;
}
