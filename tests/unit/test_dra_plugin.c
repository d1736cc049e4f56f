/* NodePrepareResources and NodeUnprepareResources through the real handler: the
 * DRAPlugin service on a unix socket in the test's loop, a real gRPC client, real
 * handoff sockets and files. The API server is the one part that is not real: this
 * binary links a TEST DOUBLE of resource_claim_get() (below; the contract is
 * src/kube/resource_claim.h) that answers from the loop with what the test set, and
 * counts the lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "basic/error.h"
#include "dra/dra_plugin.h"
#include "grpc/client.h"
#include "handoff/handoff.h"
#include "iommufd/iommufd.h"
#include "kube/resource_claim.h"
#include "test_helpers.h"

#include "dra_v1.pb-c.h"
#include "dra_v1beta1.pb-c.h"

#define PREPARE	     "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodePrepareResources"
#define UNPREPARE    "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/NodeUnprepareResources"
#define PREPARE_BETA "/k8s.io.kubelet.pkg.apis.dra.v1beta1.DRAPlugin/NodePrepareResources"
#define DRIVER	     "iommufd.example.io"
#define NODE	     "node-1"
#define UID	     "0f3c6a3e-3f3a-4e55-9a1f-1b2c3d4e5f60"

/* ---- the test double of the API server's ResourceClaim GET ---- */

static struct {
	struct loop *loop;
	int calls;
	int err;	 /* what the next answer says */
	const char *why; /* with err */
	struct claim_allocation alloc;
	struct loop_defer defer;
	resource_claim_fn fn;
	void *data;
} api;

static void api_answer(void *unused)
{
	(void)unused;
	api.fn(api.data, api.err, api.err ? NULL : &api.alloc, api.err ? api.why : NULL);
}

int resource_claim_get(struct kube_client *client, const char *ns, const char *name,
		       const char *uid, const char *driver, unsigned timeout_ms,
		       resource_claim_fn fn, void *data)
{
	(void)client;
	(void)ns;
	(void)name;
	(void)timeout_ms;
	assert_string_equal(driver, DRIVER);
	api.calls++;
	api.fn = fn;
	api.data = data;
	snprintf(api.alloc.uid, sizeof(api.alloc.uid), "%s", uid);
	loop_defer(api.loop, &api.defer, api_answer, NULL); /* never from inside the call */
	return 0;
}

/* The API server allocated these devices of ours, in our pool. */
static void api_allocates(const char *const *devices, const char *pool)
{
	api.err = 0;
	api.alloc.n_devices = 0;
	for (; *devices; devices++) {
		struct claim_device *d = &api.alloc.devices[api.alloc.n_devices++];
		snprintf(d->request, sizeof(d->request), "iommufd");
		snprintf(d->pool, sizeof(d->pool), "%s", pool);
		snprintf(d->device, sizeof(d->device), "%s", *devices);
	}
}

/* ---- the fixture ---- */

struct fixture {
	struct loop *loop;
	char *dir, *socket_dir, *cdi_dir, *state_dir, *plugin_socket, *spec;
	struct dra_plugin_options options;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct dra_plugin *plugin;
	struct grpc_client *client;
	bool done;
	enum grpc_status status;
	uint8_t *answer; /* the last response, packed */
	size_t answer_len;
	int fds_before;
};

static void start_plugin(struct fixture *f)
{
	struct error e = {0};

	assert_int_equal(
	    dra_plugin_new(f->loop, &f->options, f->opener, f->handoff, NULL, &f->plugin, &e), 0);
	assert_int_equal(dra_plugin_listen(f->plugin, f->plugin_socket, false), 0);
	assert_int_equal(grpc_client_connect(f->loop, f->plugin_socket, &f->client), 0);
}

static void stop_plugin(struct fixture *f)
{
	grpc_client_free(f->client);
	f->client = NULL;
	dra_plugin_free(f->plugin);
	f->plugin = NULL;
	loop_run_once(f->loop, 0); /* what the frees deferred */
}

static int setup(void **state)
{
	struct fixture *f = xcalloc(1, sizeof(*f));
	struct iommufd_options io;
	struct handoff_options ho;

	f->fds_before = test_count_open_fds();
	assert_int_equal(loop_new(&f->loop), 0);
	api = (typeof(api)){.loop = f->loop};
	f->dir = test_make_temp_dir();
	f->socket_dir = xasprintf("%s/fd", f->dir);
	f->cdi_dir = xasprintf("%s/cdi", f->dir);
	f->state_dir = xasprintf("%s/claims", f->dir);
	f->plugin_socket = xasprintf("%s/dra.sock", f->dir);
	f->spec = xasprintf("%s/" DRIVER "-" UID ".json", f->cdi_dir);
	f->options = (struct dra_plugin_options){
	    .driver = DRIVER,
	    .node_name = NODE,
	    .devices = 4,
	    .cdi_dir = f->cdi_dir,
	    .state_dir = f->state_dir,
	    .container_socket_path = "/var/run/kubevirt/iommufd.sock",
	    .lookup_timeout_ms = 1000,
	};
	/* /dev/null, best-effort: it has no IOMMU_OPTION, so the fd goes over unconfigured. */
	iommufd_options_init(&io);
	io.device_path = "/dev/null";
	io.policy = IOMMUFD_RLIMIT_BEST_EFFORT;
	assert_int_equal(iommufd_opener_new(&io, &f->opener), 0);
	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	start_plugin(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	stop_plugin(f);
	handoff_free(f->handoff);
	iommufd_opener_free(f->opener);
	loop_run_once(f->loop, 0);
	loop_free(f->loop);
	test_remove_tree(f->dir);
	assert_int_equal(test_count_open_fds(), f->fds_before);
	free(f->answer);
	free(f->spec);
	free(f->plugin_socket);
	free(f->state_dir);
	free(f->cdi_dir);
	free(f->socket_dir);
	free(f->dir);
	free(f);
	return 0;
}

static void on_message(void *data, const uint8_t *msg, size_t len)
{
	struct fixture *f = data;

	free(f->answer);
	f->answer = xmalloc(len ? len : 1);
	memcpy(f->answer, msg, len);
	f->answer_len = len;
}

static void on_done(void *data, enum grpc_status status, const char *message)
{
	struct fixture *f = data;

	(void)message;
	f->done = true;
	f->status = status;
}

static bool call_done(void *data)
{
	return ((struct fixture *)data)->done;
}

/* Calls path with one claim (v1 messages; v1beta1's Claim is the same on the wire). */
static void call(struct fixture *f, const char *path, const char *uid)
{
	DraV1__Claim claim = DRA_V1__CLAIM__INIT;
	DraV1__Claim *claims[] = {&claim};
	DraV1__NodePrepareResourcesRequest prepare = DRA_V1__NODE_PREPARE_RESOURCES_REQUEST__INIT;
	DraV1__NodeUnprepareResourcesRequest unprepare =
	    DRA_V1__NODE_UNPREPARE_RESOURCES_REQUEST__INIT;

	claim.namespace_ = "vms";
	claim.name = "vm-a-iommufd";
	claim.uid = (char *)uid;
	prepare.claims = unprepare.claims = claims;
	prepare.n_claims = unprepare.n_claims = 1;
	free(f->answer);
	f->answer = NULL;
	f->done = false;
	assert_int_equal(
	    grpc_client_call(f->client, path,
			     strstr(path, "Unprepare") ? &unprepare.base : &prepare.base,
			     on_message, on_done, f),
	    0);
	assert_true(test_run_until(f->loop, call_done, f, 5000));
	assert_int_equal(f->status, GRPC_STATUS_OK);
	assert_non_null(f->answer);
}

/* Prepares UID and returns its one claim's answer (free with the response). */
static DraV1__NodePrepareResourcesResponse *prepare(struct fixture *f,
						    DraV1__NodePrepareResourceResponse **claim)
{
	call(f, PREPARE, UID);
	DraV1__NodePrepareResourcesResponse *r =
	    dra_v1__node_prepare_resources_response__unpack(NULL, f->answer_len, f->answer);
	assert_non_null(r);
	assert_int_equal(r->n_claims, 1);
	assert_string_equal(r->claims[0]->key, UID);
	*claim = r->claims[0]->value;
	assert_non_null(*claim);
	return r;
}

/* The claim's error after Unprepare, "" when it succeeded. */
static char *unprepare(struct fixture *f, const char *uid)
{
	call(f, UNPREPARE, uid);
	DraV1__NodeUnprepareResourcesResponse *r =
	    dra_v1__node_unprepare_resources_response__unpack(NULL, f->answer_len, f->answer);
	assert_non_null(r);
	assert_int_equal(r->n_claims, 1);
	assert_string_equal(r->claims[0]->key, uid);
	char *error = xstrdup(r->claims[0]->value ? r->claims[0]->value->error : "");
	dra_v1__node_unprepare_resources_response__free_unpacked(r, NULL);
	return error;
}

static char *read_text(const char *path)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	assert_true(n >= 0);
	close(fd);
	buf[n] = '\0';
	return xstrdup(buf);
}

static bool record_exists(const struct fixture *f)
{
	char *path = xasprintf("%s/" UID ".claim", f->state_dir);
	bool exists = access(path, F_OK) == 0;

	free(path);
	return exists;
}

/* Whether a server listens on the socket the claim's CDI spec mounts. */
static bool spec_socket_is_served(const struct fixture *f)
{
	char *spec = read_text(f->spec);
	char *host = strstr(spec, "\"hostPath\":\"");
	assert_non_null(host);
	host += strlen("\"hostPath\":\"");
	*strchr(host, '"') = '\0';
	int fd = test_connect(host);
	free(spec);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

/* ---- the tests ---- */

/* A prepared claim is answered with its CDI id; the spec mounts a live handoff socket;
 * a repeat answers the same without asking the API server again. */
static void prepare_twice_looks_up_once(void **state)
{
	struct fixture *f = *state;
	DraV1__NodePrepareResourceResponse *claim;
	const char *devices[] = {"iommufd2", NULL};

	api_allocates(devices, NODE);
	DraV1__NodePrepareResourcesResponse *r = prepare(f, &claim);
	assert_int_equal(api.calls, 1);
	assert_string_equal(claim->error, "");
	assert_int_equal(claim->n_devices, 1);
	assert_string_equal(claim->devices[0]->device_name, "iommufd2");
	assert_string_equal(claim->devices[0]->pool_name, NODE);
	assert_int_equal(claim->devices[0]->n_request_names, 1);
	assert_string_equal(claim->devices[0]->request_names[0], "iommufd");
	assert_int_equal(claim->devices[0]->n_cdi_device_ids, 1);
	assert_string_equal(claim->devices[0]->cdi_device_ids[0], DRIVER "/iommufd=" UID);
	assert_int_equal(handoff_pending(f->handoff), 1);
	assert_true(record_exists(f));

	assert_true(spec_socket_is_served(f)); /* the socket the container will get */

	uint8_t *first = f->answer;
	size_t first_len = f->answer_len;
	f->answer = NULL;
	DraV1__NodePrepareResourcesResponse *again = prepare(f, &claim);
	assert_int_equal(api.calls, 1);
	assert_int_equal(f->answer_len, first_len);
	assert_memory_equal(f->answer, first, first_len);
	assert_int_equal(handoff_pending(f->handoff), 1);
	free(first);
	dra_v1__node_prepare_resources_response__free_unpacked(again, NULL);
	dra_v1__node_prepare_resources_response__free_unpacked(r, NULL);
}

/* Unprepare withdraws the offer, removes the spec and the record; a repeat, or a claim
 * never prepared here, is a success. */
static void unprepare_undoes_and_is_idempotent(void **state)
{
	struct fixture *f = *state;
	DraV1__NodePrepareResourceResponse *claim;
	const char *devices[] = {"iommufd0", "iommufd3", NULL};

	api_allocates(devices, NODE);
	dra_v1__node_prepare_resources_response__free_unpacked(prepare(f, &claim), NULL);
	assert_int_equal(handoff_pending(f->handoff), 1); /* one socket per claim */
	char *error = unprepare(f, UID);
	assert_string_equal(error, "");
	free(error);
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(access(f->spec, F_OK), -1);
	assert_false(record_exists(f));
	error = unprepare(f, UID);
	assert_string_equal(error, "");
	free(error);
	error = unprepare(f, "11111111-2222-3333-4444-555555555555");
	assert_string_equal(error, "");
	free(error);
	assert_int_equal(dra_plugin_stats(f->plugin)->unprepared, 1);
}

/* Expects Prepare of UID to fail with an error containing want, leaving nothing. */
static void expect_prepare_error(struct fixture *f, const char *want)
{
	DraV1__NodePrepareResourceResponse *claim;
	DraV1__NodePrepareResourcesResponse *r = prepare(f, &claim);

	assert_non_null(strstr(claim->error, want));
	assert_int_equal(claim->n_devices, 0);
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(access(f->spec, F_OK), -1);
	assert_false(record_exists(f));
	dra_v1__node_prepare_resources_response__free_unpacked(r, NULL);
}

/* Bad claims get a sentence for the pod's events, and nothing is left behind. */
static void bad_claims_get_clear_errors(void **state)
{
	struct fixture *f = *state;
	const char *unknown[] = {"iommufd4", NULL};
	const char *padded[] = {"iommufd01", NULL};
	const char *twice[] = {"iommufd1", "iommufd1", NULL};
	const char *none[] = {NULL};
	const char *fine[] = {"iommufd1", NULL};

	api_allocates(unknown, NODE);
	expect_prepare_error(f, "unknown device \"iommufd4\": driver " DRIVER
				" publishes iommufd0..iommufd3");
	api_allocates(padded, NODE);
	expect_prepare_error(f, "unknown device \"iommufd01\"");
	api_allocates(twice, NODE);
	expect_prepare_error(f, "device iommufd1 allocated twice");
	api_allocates(none, NODE);
	expect_prepare_error(f, "claim vms/vm-a-iommufd has no device of driver " DRIVER);
	api_allocates(fine, "node-2");
	expect_prepare_error(f, "is in pool \"node-2\", not this node's (\"" NODE "\")");
	api.err = -ENOENT;
	api.why = "resourceclaims \"vm-a-iommufd\" not found";
	expect_prepare_error(f,
			     "claim vms/vm-a-iommufd: resourceclaims \"vm-a-iommufd\" not found");
	/* Each failure asked again: a failed claim is not remembered. */
	assert_int_equal(api.calls, 6);
	assert_int_equal(dra_plugin_stats(f->plugin)->prepare_failures, 6);
}

/* A restarted plugin reads its prepared claims back: Prepare answers the same without
 * a lookup, and Unprepare still removes the spec. */
static void restart_keeps_prepared_claims(void **state)
{
	struct fixture *f = *state;
	DraV1__NodePrepareResourceResponse *claim;
	const char *devices[] = {"iommufd1", NULL};

	api_allocates(devices, NODE);
	dra_v1__node_prepare_resources_response__free_unpacked(prepare(f, &claim), NULL);
	uint8_t *before = f->answer;
	size_t before_len = f->answer_len;
	f->answer = NULL;
	stop_plugin(f);
	start_plugin(f);
	assert_int_equal(dra_plugin_stats(f->plugin)->restored, 1);
	dra_v1__node_prepare_resources_response__free_unpacked(prepare(f, &claim), NULL);
	assert_int_equal(api.calls, 1);
	assert_int_equal(f->answer_len, before_len);
	assert_memory_equal(f->answer, before, before_len);
	free(before);
	char *error = unprepare(f, UID);
	assert_string_equal(error, "");
	free(error);
	assert_int_equal(access(f->spec, F_OK), -1);
}

static bool one_pending(void *data)
{
	return handoff_pending(((struct fixture *)data)->handoff) == 1;
}

/* The kubelet says when nobody will come for a prepared claim (Unprepare): its offer
 * outlives --handoff-ttl. Sentinel: an offer made after it with the same TTL expires
 * first. */
static void prepared_offer_outlives_the_handoff_ttl(void **state)
{
	struct fixture *f = *state;
	struct handoff_options ho;
	DraV1__NodePrepareResourceResponse *claim;
	const char *devices[] = {"iommufd0", NULL};
	const char *sentinel;
	int fd;

	stop_plugin(f);
	handoff_free(f->handoff);
	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	ho.ttl_usec = 200000; /* 0.2 s */
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	start_plugin(f);
	api_allocates(devices, NODE);
	dra_v1__node_prepare_resources_response__free_unpacked(prepare(f, &claim), NULL);
	assert_int_equal(iommufd_open(f->opener, &fd, NULL), 0);
	assert_int_equal(handoff_offer(f->handoff, "sentinel", fd, &sentinel, NULL), 0);
	assert_int_equal(handoff_pending(f->handoff), 2);
	assert_true(test_run_until(f->loop, one_pending, f, 10000)); /* the sentinel expired */
	assert_int_equal(handoff_stats(f->handoff)->expired, 1);
	assert_true(spec_socket_is_served(f)); /* the claim's offer is the one left */
	char *error = unprepare(f, UID);
	assert_string_equal(error, "");
	free(error);
	assert_int_equal(handoff_pending(f->handoff), 0);
}

static int rescue_open(void *data, const char *device_id, int *fd, struct error *e)
{
	struct fixture *f = data;

	assert_string_equal(device_id, UID); /* the claim's offer is named by its uid */
	return iommufd_open(f->opener, fd, e);
}

/* A crash with a claim prepared and its fd not taken: the next instance's rescue
 * serves the socket the CDI spec names again, and Unprepare withdraws it. */
static void crash_with_a_prepared_claim_re_serves_its_socket(void **state)
{
	struct fixture *f = *state;
	struct handoff_options ho;
	DraV1__NodePrepareResourceResponse *claim;
	const char *devices[] = {"iommufd2", NULL};

	api_allocates(devices, NODE);
	dra_v1__node_prepare_resources_response__free_unpacked(prepare(f, &claim), NULL);
	stop_plugin(f);
	handoff_free(f->handoff); /* as at our death: the socket file and its dir stay */
	assert_false(spec_socket_is_served(f));
	handoff_options_init(&ho);
	ho.socket_dir = f->socket_dir;
	assert_int_equal(handoff_new(f->loop, &ho, &f->handoff), 0);
	assert_int_equal(handoff_rescue(f->handoff, rescue_open, f), 1);
	start_plugin(f);
	assert_int_equal(dra_plugin_stats(f->plugin)->restored, 1);
	assert_true(spec_socket_is_served(f));
	char *error = unprepare(f, UID);
	assert_string_equal(error, "");
	free(error);
	assert_int_equal(handoff_pending(f->handoff), 0);
	assert_int_equal(api.calls, 1);
}

/* The v1beta1 service answers too, in a form the v1beta1 messages decode. */
static void v1beta1_is_served(void **state)
{
	struct fixture *f = *state;
	const char *devices[] = {"iommufd3", NULL};

	api_allocates(devices, NODE);
	call(f, PREPARE_BETA, UID);
	DraV1beta1__NodePrepareResourcesResponse *r =
	    dra_v1beta1__node_prepare_resources_response__unpack(NULL, f->answer_len, f->answer);
	assert_non_null(r);
	assert_int_equal(r->n_claims, 1);
	assert_string_equal(r->claims[0]->value->error, "");
	assert_int_equal(r->claims[0]->value->n_devices, 1);
	assert_string_equal(r->claims[0]->value->devices[0]->device_name, "iommufd3");
	assert_string_equal(r->claims[0]->value->devices[0]->cdi_device_ids[0],
			    DRIVER "/iommufd=" UID);
	dra_v1beta1__node_prepare_resources_response__free_unpacked(r, NULL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(prepare_twice_looks_up_once),
	    T(unprepare_undoes_and_is_idempotent),
	    T(bad_claims_get_clear_errors),
	    T(restart_keeps_prepared_claims),
	    T(prepared_offer_outlives_the_handoff_ttl),
	    T(crash_with_a_prepared_claim_re_serves_its_socket),
	    T(v1beta1_is_served),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
