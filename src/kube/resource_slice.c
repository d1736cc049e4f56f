/* The ResourceSlice reconciler: one step at a time on the loop. LIST this node's slices
 * of our driver, then one action (POST the missing slice, PUT a differing one, DELETE
 * extras or all when there are no devices) and LIST again, until the list matches what
 * was asked: synced. Failures retry with a capped back-off; a synced slice is checked
 * again every resync period, so one deleted or edited by someone else comes back. */
#include "resource_slice.h"
#include "kube_proto.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define SLICE_MAX_DEVICES 128 /* resource.k8s.io/v1 ResourceSliceMaxDevices */
#define SLICE_TIMEOUT_MS  10000
#define SLICE_BACKOFF_MIN (500ULL * 1000)
#define SLICE_BACKOFF_MAX (16ULL * 1000000)
#define SLICE_RESYNC_USEC (300ULL * 1000000) /* default resync: 5 minutes */
#define SLICE_API	  "/apis/resource.k8s.io/v1/resourceslices"
#define SLICE_API_VERSION "resource.k8s.io/v1"

/* What the reconciler is doing; every change goes through slice_set_state(). */
enum slice_state {
	SLICE_IDLE,	/* nothing asked yet */
	SLICE_LISTING,	/* LIST in flight */
	SLICE_CHANGING, /* POST, PUT or DELETE in flight */
	SLICE_BACKOFF,	/* the last step failed: the timer starts the next LIST */
	SLICE_SYNCED,	/* the server has what was asked: the timer resyncs */
};

static const char *const state_names[] = {
    [SLICE_IDLE] = "idle",	  [SLICE_LISTING] = "listing", [SLICE_CHANGING] = "changing",
    [SLICE_BACKOFF] = "back-off", [SLICE_SYNCED] = "synced",
};

struct resource_slice {
	struct loop *loop;
	struct kube_client *client;
	char *driver, *node_name, *owner_kind, *owner_name, *owner_uid, *owner_api_version;
	char *kernel_release, *rlimit_mode;
	unsigned long long resync_usec;
	enum slice_state state;
	unsigned n; /* asked for: devices iommufd0..n-1 */
	bool rlimit_mode_supported;
	bool dirty; /* asked again while a step was in flight */
	struct loop_timer timer;
	unsigned long long backoff_usec;
	struct log_once failure;
	char *list_path;
};

/* The transitions the reconciler allows: a bit per target state. */
static const unsigned allowed_next[] = {
    [SLICE_IDLE] = 1u << SLICE_LISTING,
    [SLICE_LISTING] = 1u << SLICE_CHANGING | 1u << SLICE_BACKOFF | 1u << SLICE_SYNCED,
    [SLICE_CHANGING] = 1u << SLICE_LISTING | 1u << SLICE_BACKOFF,
    [SLICE_BACKOFF] = 1u << SLICE_LISTING,
    [SLICE_SYNCED] = 1u << SLICE_LISTING,
};

/* The one place the state changes: checks the transition and logs it. */
static void slice_set_state(struct resource_slice *slice, enum slice_state state)
{
	if (slice->state == state)
		return;
	if (!(allowed_next[slice->state] & 1u << state))
		log_error("ResourceSlice of %s on %s: invalid state change %s -> %s", slice->driver,
			  slice->node_name, state_names[slice->state], state_names[state]);
	log_debug(2, "ResourceSlice of %s on %s: %s -> %s", slice->driver, slice->node_name,
		  state_names[slice->state], state_names[state]);
	slice->state = state;
}

static void slice_list(struct resource_slice *slice);

/* A step failed: logged once per cause, the next LIST after the back-off. */
static void slice_failed(struct resource_slice *slice, int err, const char *why)
{
	log_error_once(&slice->failure, err, "cannot publish ResourceSlice of %s on %s: %s",
		       slice->driver, slice->node_name, why);
	slice->backoff_usec = slice->backoff_usec ? slice->backoff_usec * 2 : SLICE_BACKOFF_MIN;
	if (slice->backoff_usec > SLICE_BACKOFF_MAX)
		slice->backoff_usec = SLICE_BACKOFF_MAX;
	slice_set_state(slice, SLICE_BACKOFF);
	loop_timer_arm(&slice->timer, slice->backoff_usec);
}

static void slice_timer(void *data)
{
	slice_list(data);
}

static const K8sResource__DeviceAttribute *attribute(const K8sResource__Device *d, const char *key)
{
	for (size_t i = 0; i < d->n_attributes; i++)
		if (d->attributes[i]->key && strcmp(d->attributes[i]->key, key) == 0)
			return d->attributes[i]->value;
	return NULL;
}

static bool string_is(const char *s, const char *want)
{
	return s && want && strcmp(s, want) == 0;
}

/* Whether a listed slice says what was asked. */
static bool slice_matches(const struct resource_slice *slice,
			  const K8sResource__ResourceSlice *item)
{
	const K8sResource__ResourceSliceSpec *spec = item->spec;
	char name[32];

	if (!spec || !spec->pool || !string_is(spec->driver, slice->driver) ||
	    !string_is(spec->nodename, slice->node_name) ||
	    !string_is(spec->pool->name, slice->node_name) || spec->pool->resourceslicecount != 1 ||
	    spec->n_devices != slice->n)
		return false;
	if (slice->owner_uid) {
		const K8sResource__ObjectMeta *m = item->metadata;
		if (!m || m->n_ownerreferences != 1 ||
		    !string_is(m->ownerreferences[0]->uid, slice->owner_uid))
			return false;
	}
	for (unsigned i = 0; i < slice->n; i++) {
		const K8sResource__Device *d = spec->devices[i];
		const K8sResource__DeviceAttribute *a;
		snprintf(name, sizeof(name), "iommufd%u", i);
		if (!string_is(d->name, name) || d->n_attributes != 3)
			return false;
		a = attribute(d, "kernelRelease");
		if (!a || !string_is(a->string, slice->kernel_release))
			return false;
		a = attribute(d, "rlimitMode");
		if (!a || !string_is(a->string, slice->rlimit_mode))
			return false;
		a = attribute(d, "rlimitModeSupported");
		if (!a || !a->has_bool_ || !a->bool_ != !slice->rlimit_mode_supported)
			return false;
	}
	return true;
}

/* The body of a POST (@existing NULL) or of a PUT replacing @existing. */
static uint8_t *slice_body(const struct resource_slice *slice,
			   const K8sResource__ResourceSlice *existing, size_t *len)
{
	K8sResource__ResourceSlice obj = K8S_RESOURCE__RESOURCE_SLICE__INIT;
	K8sResource__ObjectMeta meta = K8S_RESOURCE__OBJECT_META__INIT;
	K8sResource__OwnerReference owner = K8S_RESOURCE__OWNER_REFERENCE__INIT;
	K8sResource__OwnerReference *owners[1] = {&owner};
	K8sResource__ResourceSliceSpec spec = K8S_RESOURCE__RESOURCE_SLICE_SPEC__INIT;
	K8sResource__ResourcePool pool = K8S_RESOURCE__RESOURCE_POOL__INIT;
	K8sResource__DeviceAttribute values[3] = {
	    K8S_RESOURCE__DEVICE_ATTRIBUTE__INIT,
	    K8S_RESOURCE__DEVICE_ATTRIBUTE__INIT,
	    K8S_RESOURCE__DEVICE_ATTRIBUTE__INIT,
	};
	/* Keys in sorted order, as the API server writes maps. */
	K8sResource__Device__AttributesEntry entries[3] = {
	    K8S_RESOURCE__DEVICE__ATTRIBUTES_ENTRY__INIT,
	    K8S_RESOURCE__DEVICE__ATTRIBUTES_ENTRY__INIT,
	    K8S_RESOURCE__DEVICE__ATTRIBUTES_ENTRY__INIT,
	};
	K8sResource__Device__AttributesEntry *entry_list[3] = {&entries[0], &entries[1],
							       &entries[2]};
	cleanup_free K8sResource__Device *devices =
	    xcalloc(slice->n ? slice->n : 1, sizeof(*devices));
	/* An array of pointers: protobuf-c's repeated message field. */
	cleanup_free K8sResource__Device **device_list = xcalloc(
	    slice->n ? slice->n : 1, sizeof(*device_list)); /* NOLINT(bugprone-sizeof-expression) */
	cleanup_free char *names = xcalloc(slice->n ? slice->n : 1, 32);
	cleanup_free char *generate_name = xasprintf("%.40s-iommufd-", slice->node_name);

	entries[0].key = "kernelRelease";
	values[0].string = slice->kernel_release;
	entries[1].key = "rlimitMode";
	values[1].string = slice->rlimit_mode;
	entries[2].key = "rlimitModeSupported";
	values[2].has_bool_ = true;
	values[2].bool_ = slice->rlimit_mode_supported;
	for (size_t i = 0; i < 3; i++)
		entries[i].value = &values[i];
	for (unsigned i = 0; i < slice->n; i++) {
		k8s_resource__device__init(&devices[i]);
		snprintf(names + (size_t)32 * i, 32, "iommufd%u", i);
		devices[i].name = names + (size_t)32 * i;
		devices[i].n_attributes = 3;
		devices[i].attributes = entry_list;
		device_list[i] = &devices[i];
	}
	pool.name = slice->node_name;
	pool.has_generation = pool.has_resourceslicecount = true;
	pool.resourceslicecount = 1;
	pool.generation = existing && existing->spec && existing->spec->pool
			      ? existing->spec->pool->generation + 1
			      : 1;
	spec.driver = slice->driver;
	spec.nodename = slice->node_name;
	spec.pool = &pool;
	spec.n_devices = slice->n;
	spec.devices = device_list;
	if (existing) {
		meta.name = existing->metadata->name;
		meta.resourceversion = existing->metadata->resourceversion;
	} else {
		meta.generatename = generate_name;
	}
	if (slice->owner_uid) {
		owner.apiversion = slice->owner_api_version;
		owner.kind = slice->owner_kind;
		owner.name = slice->owner_name;
		owner.uid = slice->owner_uid;
		meta.n_ownerreferences = 1;
		meta.ownerreferences = owners;
	}
	obj.metadata = &meta;
	obj.spec = &spec;
	return kube_proto_pack(SLICE_API_VERSION, "ResourceSlice", &obj.base, len);
}

/* The answer to a POST, PUT or DELETE: on success LIST again to see the result. */
static void slice_changed(void *data, int err, const struct kube_response *resp, const char *why)
{
	struct resource_slice *slice = data;
	char text[ERROR_MESSAGE_SIZE];

	if (err) {
		slice_failed(slice, err, why);
		return;
	}
	if (resp->status == 409 || resp->status == 404) {
		slice_list(slice); /* someone else changed it meanwhile: look again */
		return;
	}
	if (resp->status / 100 != 2) {
		slice_failed(slice, resp->status == 403 ? -EACCES : -EPROTO,
			     kube_status_text(resp, text, sizeof(text)));
		return;
	}
	slice_list(slice);
}

static void slice_change(struct resource_slice *slice, const char *method,
			 const K8sResource__ResourceSlice *existing)
{
	cleanup_free uint8_t *body = NULL;
	cleanup_free char *path = NULL;
	size_t len = 0;

	if (strcmp(method, "POST") == 0) {
		body = slice_body(slice, NULL, &len);
		path = xstrdup(SLICE_API);
	} else {
		if (strcmp(method, "PUT") == 0)
			body = slice_body(slice, existing, &len);
		path = xasprintf(SLICE_API "/%s", existing->metadata->name);
	}
	log_debug(1, "%s ResourceSlice %s (%u devices)", method,
		  existing ? existing->metadata->name : "new", slice->n);
	slice_set_state(slice, SLICE_CHANGING);
	kube_client_request(slice->client, method, path, body, len, SLICE_TIMEOUT_MS, slice_changed,
			    slice);
}

static bool item_has_name(const K8sResource__ResourceSlice *item)
{
	return item->metadata && item->metadata->name && item->metadata->name[0] &&
	       strchr(item->metadata->name, '/') == NULL;
}

static void slice_listed(void *data, int err, const struct kube_response *resp, const char *why)
{
	struct resource_slice *slice = data;
	char text[ERROR_MESSAGE_SIZE];

	if (err) {
		slice_failed(slice, err, why);
		return;
	}
	if (resp->status != 200) {
		slice_failed(slice, resp->status == 403 ? -EACCES : -EPROTO,
			     kube_status_text(resp, text, sizeof(text)));
		return;
	}
	K8sResource__ResourceSliceList *list = (K8sResource__ResourceSliceList *)kube_proto_unpack(
	    resp, &k8s_resource__resource_slice_list__descriptor);
	if (!list) {
		slice_failed(slice, -EPROTO, "undecodable ResourceSliceList");
		return;
	}
	size_t keep = slice->n > 0 ? 1 : 0; /* the slice that stays, if any: the first */
	for (size_t i = 0; i < list->n_items; i++)
		if (!item_has_name(list->items[i])) {
			slice_failed(slice, -EPROTO, "listed ResourceSlice without a usable name");
			goto out;
		}
	if (slice->dirty) {
		slice->dirty = false;
		slice_list(slice); /* asked again meanwhile: this list may be out of date anyway */
	} else if (list->n_items > keep) {
		slice_change(slice, "DELETE", list->items[list->n_items - 1]);
	} else if (keep && list->n_items == 0) {
		slice_change(slice, "POST", NULL);
	} else if (keep && !slice_matches(slice, list->items[0])) {
		slice_change(slice, "PUT", list->items[0]);
	} else {
		if (slice->failure.logged)
			log_info("ResourceSlice of %s on %s published again (%u devices)",
				 slice->driver, slice->node_name, slice->n);
		slice->failure = (struct log_once){0};
		slice->backoff_usec = 0;
		slice_set_state(slice, SLICE_SYNCED);
		loop_timer_arm(&slice->timer, slice->resync_usec);
	}
out:
	k8s_resource__resource_slice_list__free_unpacked(list, NULL);
}

static void slice_list(struct resource_slice *slice)
{
	loop_timer_arm(&slice->timer, 0);
	slice_set_state(slice, SLICE_LISTING);
	kube_client_request(slice->client, "GET", slice->list_path, NULL, 0, SLICE_TIMEOUT_MS,
			    slice_listed, slice);
}

void resource_slice_set_devices(struct resource_slice *slice, unsigned n,
				bool rlimit_mode_supported)
{
	if (n > SLICE_MAX_DEVICES) {
		log_warning("%u devices asked, a ResourceSlice holds at most %d: publishing %d", n,
			    SLICE_MAX_DEVICES, SLICE_MAX_DEVICES);
		n = SLICE_MAX_DEVICES;
	}
	if (slice->state != SLICE_IDLE && n == slice->n &&
	    rlimit_mode_supported == slice->rlimit_mode_supported)
		return;
	slice->n = n;
	slice->rlimit_mode_supported = rlimit_mode_supported;
	switch (slice->state) {
	case SLICE_LISTING:
	case SLICE_CHANGING:
		slice->dirty = true;
		break;
	case SLICE_BACKOFF:
		break; /* the timer lists with the new wish */
	default:
		slice_list(slice);
	}
}

void resource_slice_resync(struct resource_slice *slice)
{
	switch (slice->state) {
	case SLICE_LISTING:
	case SLICE_CHANGING:
		slice->dirty = true; /* this step's answer may predate the deletion */
		break;
	case SLICE_SYNCED:
		slice_list(slice);
		break;
	case SLICE_IDLE:
	case SLICE_BACKOFF:
		break;
	}
}

bool resource_slice_synced(const struct resource_slice *slice)
{
	return slice->state == SLICE_SYNCED;
}

int resource_slice_new(struct loop *loop, struct kube_client *client,
		       const struct resource_slice_spec *spec, struct resource_slice **out)
{
	struct resource_slice *slice = xcalloc(1, sizeof(*slice));

	slice->loop = loop;
	slice->client = client;
	slice->driver = xstrdup(spec->driver);
	slice->node_name = xstrdup(spec->node_name);
	if (spec->owner_uid && spec->owner_kind && spec->owner_name && spec->owner_api_version) {
		slice->owner_kind = xstrdup(spec->owner_kind);
		slice->owner_name = xstrdup(spec->owner_name);
		slice->owner_uid = xstrdup(spec->owner_uid);
		slice->owner_api_version = xstrdup(spec->owner_api_version);
	}
	slice->kernel_release = xstrdup(spec->kernel_release ? spec->kernel_release : "");
	slice->rlimit_mode = xstrdup(spec->rlimit_mode ? spec->rlimit_mode : "");
	slice->resync_usec =
	    spec->resync_seconds ? spec->resync_seconds * 1000000ULL : SLICE_RESYNC_USEC;
	/* Names and driver are DNS subdomains: nothing in them needs escaping but the
	 * selector's own '=' and ','. */
	slice->list_path =
	    xasprintf(SLICE_API "?fieldSelector=spec.nodeName%%3D%s%%2Cspec.driver%%3D%s",
		      slice->node_name, slice->driver);
	loop_timer_init(loop, &slice->timer, slice_timer, slice);
	*out = slice;
	return 0;
}

void resource_slice_free(struct resource_slice *slice)
{
	if (!slice)
		return;
	loop_timer_destroy(&slice->timer);
	kube_client_forget(slice->client, slice);
	free(slice->driver);
	free(slice->node_name);
	free(slice->owner_kind);
	free(slice->owner_name);
	free(slice->owner_uid);
	free(slice->owner_api_version);
	free(slice->kernel_release);
	free(slice->rlimit_mode);
	free(slice->list_path);
	free(slice);
}
