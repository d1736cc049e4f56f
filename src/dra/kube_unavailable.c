/* Stand-in for the API client (src/kube) while this tree has none: meson.build links
 * it into iommufd-dra-driver only when no kube_dep is defined. Every request fails with
 * -ENOSYS and says why, so a Prepare is answered with a clear per-claim error and the
 * ResourceSlice is never reported synced (not ready). Delete with the real client. */
#include "../kube/kube_client.h"
#include "../kube/resource_claim.h"
#include "../kube/resource_slice.h"
#include "../basic/error.h"
#include "../util.h"

#include <errno.h>
#include <stdlib.h>

struct kube_client {
	int unused;
};
struct resource_slice {
	int unused;
};

int kube_client_config_in_cluster(struct kube_client_config *cfg, struct error *err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");

	if (!host)
		return error_set(err, -ENOENT,
				 "KUBERNETES_SERVICE_HOST is not set: not in a cluster");
	*cfg = (struct kube_client_config){.host = host, .port = 443};
	return 0;
}

int kube_client_new(struct loop *loop, const struct kube_client_config *cfg,
		    struct kube_client **out, struct error *err)
{
	(void)loop;
	(void)cfg;
	(void)err;
	*out = xcalloc(1, sizeof(**out));
	return 0;
}

void kube_client_free(struct kube_client *client)
{
	free(client);
}

int resource_claim_get(struct kube_client *client, const char *ns, const char *name,
		       const char *uid, const char *driver, unsigned timeout_ms,
		       resource_claim_fn fn, void *data)
{
	(void)client;
	(void)ns;
	(void)name;
	(void)uid;
	(void)driver;
	(void)timeout_ms;
	(void)fn;
	(void)data;
	return -ENOSYS; /* "function not implemented": this build has no API client */
}

int resource_slice_new(struct loop *loop, struct kube_client *client,
		       const struct resource_slice_spec *spec, struct resource_slice **out)
{
	(void)loop;
	(void)client;
	(void)spec;
	*out = xcalloc(1, sizeof(**out));
	return 0;
}

void resource_slice_set_devices(struct resource_slice *slice, unsigned n,
				bool rlimit_mode_supported)
{
	(void)slice;
	(void)n;
	(void)rlimit_mode_supported;
}

bool resource_slice_synced(const struct resource_slice *slice)
{
	(void)slice;
	return false;
}

void resource_slice_free(struct resource_slice *slice)
{
	free(slice);
}
