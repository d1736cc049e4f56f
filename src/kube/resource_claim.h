/* Reading a ResourceClaim (resource.k8s.io/v1) for NodePrepareResources: the kubelet
 * names the claim (namespace, name, uid); the allocation for our driver comes from the
 * API server. CONTRACT written before the code (issue 23). */
#pragma once

#include "kube_client.h"

#include <stddef.h>

#define CLAIM_MAX_DEVICES 16  /* results for our driver in one claim; more is an error */
#define CLAIM_NAME_MAX	  254 /* DNS subdomain 253 + NUL */

struct claim_device {
	char request[CLAIM_NAME_MAX]; /* status.allocation.devices.results[].request */
	char pool[CLAIM_NAME_MAX];    /* ... .pool (our node's name) */
	char device[CLAIM_NAME_MAX];  /* ... .device, e.g. "iommufd3" */
};

struct claim_allocation {
	char uid[64];	  /* metadata.uid as the API server has it */
	size_t n_devices; /* results whose driver is ours, in order */
	struct claim_device devices[CLAIM_MAX_DEVICES];
};

/* err: 0, or -errno: -ENOENT (no such claim), -ESTALE (uid differs), -ENODATA (not
 * allocated), -E2BIG (more than CLAIM_MAX_DEVICES of ours), -ETIMEDOUT, -ECONNREFUSED,
 * -EPROTO (undecodable), -ECANCELED (client freed), -EACCES (401/403: no RBAC right), or
 * any error of kube_response_fn. why: a sentence for the pod's event,
 * never NULL when err != 0. alloc: valid during the call only, when err == 0. */
typedef void (*resource_claim_fn)(void *data, int err, const struct claim_allocation *alloc,
				  const char *why);

/**
 * resource_claim_get() - GET /apis/resource.k8s.io/v1/namespaces/NS/resourceclaims/NAME
 * @client:  the client
 * @ns:      the claim's namespace
 * @name:    the claim's name
 * @uid:     the uid the kubelet gave; a claim with another uid is -ESTALE
 * @driver:  keep only the results of this driver
 * @timeout_ms: deadline of the request
 * @fn:      called exactly once, never from inside this call
 * @data:    passed to @fn
 *
 * Return: 0 (fn will be called) or -errno (fn will not be called): -EINVAL (@ns or
 * @name not a Kubernetes object name, @uid too long).
 */
int resource_claim_get(struct kube_client *client, const char *ns, const char *name,
		       const char *uid, const char *driver, unsigned timeout_ms,
		       resource_claim_fn fn, void *data);
