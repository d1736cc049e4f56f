/* ResourceClaim GET for NodePrepareResources: decode the claim, check its uid, keep the
 * allocation results of our driver; every failure becomes one sentence for the pod. */
#include "resource_claim.h"
#include "kube_proto.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct claim_request {
	char ns[64], name[CLAIM_NAME_MAX], uid[64]; /* a namespace is a DNS label: 63 */
	char *driver;
	resource_claim_fn fn;
	void *data;
};

/* A DNS label or subdomain: what Kubernetes allows in namespace and object names, and
 * nothing that could change the request's path. */
static bool is_object_name(const char *s)
{
	size_t len = strlen(s);

	return len > 0 && len < CLAIM_NAME_MAX &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-.") == len;
}

static bool copy_name(char *dst, size_t size, const char *src)
{
	if (!src || strlen(src) >= size)
		return false;
	strcpy(dst, src);
	return true;
}

/* Fills @alloc from @claim; returns 0 or -errno with @why set. */
static int claim_decode(const struct claim_request *cr, const K8sResource__ResourceClaim *claim,
			struct claim_allocation *alloc, char *why, size_t size)
{
	const char *uid = claim->metadata ? claim->metadata->uid : NULL;

	if (!uid || strcmp(uid, cr->uid) != 0) {
		snprintf(why, size,
			 "ResourceClaim %s/%s has uid %s, not %s (deleted and recreated?)", cr->ns,
			 cr->name, uid ? uid : "(none)", cr->uid);
		return -ESTALE;
	}
	copy_name(alloc->uid, sizeof(alloc->uid), uid);
	const K8sResource__AllocationResult *a = claim->status ? claim->status->allocation : NULL;
	if (!a || !a->devices) {
		snprintf(why, size, "ResourceClaim %s/%s is not allocated", cr->ns, cr->name);
		return -ENODATA;
	}
	for (size_t i = 0; i < a->devices->n_results; i++) {
		const K8sResource__DeviceRequestAllocationResult *r = a->devices->results[i];
		if (!r->driver || strcmp(r->driver, cr->driver) != 0)
			continue;
		if (alloc->n_devices == CLAIM_MAX_DEVICES) {
			snprintf(why, size,
				 "ResourceClaim %s/%s allocates more than %d devices of %s", cr->ns,
				 cr->name, CLAIM_MAX_DEVICES, cr->driver);
			return -E2BIG;
		}
		struct claim_device *d = &alloc->devices[alloc->n_devices++];
		if (!copy_name(d->request, sizeof(d->request), r->request) ||
		    !copy_name(d->pool, sizeof(d->pool), r->pool) ||
		    !copy_name(d->device, sizeof(d->device), r->device)) {
			snprintf(why, size,
				 "ResourceClaim %s/%s: allocation result %zu lacks or has an "
				 "overlong request, pool or device",
				 cr->ns, cr->name, i);
			return -EPROTO;
		}
	}
	return 0;
}

static void claim_answered(void *data, int err, const struct kube_response *resp, const char *why)
{
	struct claim_request *cr = data;
	char text[ERROR_MESSAGE_SIZE];
	struct claim_allocation *alloc = NULL;

	if (err == 0 && resp->status == 404) {
		snprintf(text, sizeof(text), "ResourceClaim %s/%s not found", cr->ns, cr->name);
		err = -ENOENT;
	} else if (err == 0 && resp->status != 200) {
		char status[ERROR_MESSAGE_SIZE - 64];
		snprintf(text, sizeof(text), "cannot read ResourceClaim %s/%s: %s", cr->ns,
			 cr->name, kube_status_text(resp, status, sizeof(status)));
		err = resp->status == 401 || resp->status == 403 ? -EACCES : -EPROTO;
	} else if (err == 0) {
		K8sResource__ResourceClaim *claim = (K8sResource__ResourceClaim *)kube_proto_unpack(
		    resp, &k8s_resource__resource_claim__descriptor);
		if (!claim) {
			snprintf(text, sizeof(text),
				 "ResourceClaim %s/%s: undecodable answer (%zu bytes)", cr->ns,
				 cr->name, resp->len);
			err = -EPROTO;
		} else {
			alloc = xcalloc(1, sizeof(*alloc));
			err = claim_decode(cr, claim, alloc, text, sizeof(text));
			k8s_resource__resource_claim__free_unpacked(claim, NULL);
		}
	} else {
		snprintf(text, sizeof(text), "%s", why);
	}
	cr->fn(cr->data, err, err ? NULL : alloc, err ? text : "");
	free(alloc);
	free(cr->driver);
	free(cr);
}

int resource_claim_get(struct kube_client *client, const char *ns, const char *name,
		       const char *uid, const char *driver, unsigned timeout_ms,
		       resource_claim_fn fn, void *data)
{
	if (!is_object_name(ns) || strlen(ns) >= 64 || !is_object_name(name) || strlen(uid) >= 64)
		return -EINVAL;
	struct claim_request *cr = xcalloc(1, sizeof(*cr));
	strcpy(cr->ns, ns);
	strcpy(cr->name, name);
	strcpy(cr->uid, uid);
	cr->driver = xstrdup(driver);
	cr->fn = fn;
	cr->data = data;
	cleanup_free char *path =
	    xasprintf("/apis/resource.k8s.io/v1/namespaces/%s/resourceclaims/%s", ns, name);
	return kube_client_request(client, "GET", path, NULL, 0, timeout_ms, claim_answered, cr);
}
