/* The API server's protobuf envelope (src/kube/kube_proto.c): what we pack unpacks to
 * the same object, anything that is not "k8s\0" + runtime.Unknown is refused, and an
 * error Status becomes one sentence. */
#include "kube/kube_proto.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void packed_slice_unpacks_to_the_same_object(void **state)
{
	K8sResource__ResourceSlice slice = K8S_RESOURCE__RESOURCE_SLICE__INIT;
	K8sResource__ObjectMeta meta = K8S_RESOURCE__OBJECT_META__INIT;
	K8sResource__ResourceSliceSpec spec = K8S_RESOURCE__RESOURCE_SLICE_SPEC__INIT;
	size_t len;
	(void)state;

	meta.name = "node-a-iommufd-x";
	spec.driver = "iommufd.kubevirt.io";
	spec.nodename = "node-a";
	slice.metadata = &meta;
	slice.spec = &spec;
	uint8_t *body = kube_proto_pack("resource.k8s.io/v1", "ResourceSlice", &slice.base, &len);
	assert_memory_equal(body, "k8s\0", 4);
	struct kube_response resp = {.status = 200, .body = body, .len = len};
	K8sResource__ResourceSlice *back = (K8sResource__ResourceSlice *)kube_proto_unpack(
	    &resp, &k8s_resource__resource_slice__descriptor);
	assert_non_null(back);
	assert_string_equal(back->metadata->name, "node-a-iommufd-x");
	assert_string_equal(back->spec->driver, "iommufd.kubevirt.io");
	assert_string_equal(back->spec->nodename, "node-a");
	k8s_resource__resource_slice__free_unpacked(back, NULL);
	free(body);
}

static void body_without_the_envelope_is_refused(void **state)
{
	K8sResource__ResourceSlice slice = K8S_RESOURCE__RESOURCE_SLICE__INIT;
	size_t len;
	(void)state;

	uint8_t *body = kube_proto_pack("resource.k8s.io/v1", "ResourceSlice", &slice.base, &len);
	body[0] = '{'; /* a JSON answer, say */
	struct kube_response resp = {.status = 200, .body = body, .len = len};
	assert_null(kube_proto_unpack(&resp, &k8s_resource__resource_slice__descriptor));
	static const uint8_t garbage[] = {'k', '8', 's', 0, 0xff, 0xff, 0xff};
	resp = (struct kube_response){.status = 200, .body = garbage, .len = sizeof(garbage)};
	assert_null(kube_proto_unpack(&resp, &k8s_resource__resource_slice__descriptor));
	resp.len = 2; /* shorter than the magic */
	assert_null(kube_proto_unpack(&resp, &k8s_resource__resource_slice__descriptor));
	free(body);
}

static void error_status_becomes_one_sentence(void **state)
{
	K8sResource__Status status = K8S_RESOURCE__STATUS__INIT;
	char text[256];
	size_t len;
	(void)state;

	status.message = "resourceslices is forbidden: User \"nobody\" cannot list";
	status.reason = "Forbidden";
	uint8_t *body = kube_proto_pack("v1", "Status", &status.base, &len);
	struct kube_response resp = {.status = 403, .body = body, .len = len};
	assert_string_equal(
	    kube_status_text(&resp, text, sizeof(text)),
	    "HTTP 403 Forbidden: resourceslices is forbidden: User \"nobody\" cannot list");
	resp = (struct kube_response){
	    .status = 502, .body = (const uint8_t *)"bad gateway", .len = 11};
	assert_string_equal(kube_status_text(&resp, text, sizeof(text)),
			    "HTTP 502 (11 bytes of body, not a Status)");
	free(body);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(packed_slice_unpacks_to_the_same_object),
	    cmocka_unit_test(body_without_the_envelope_is_refused),
	    cmocka_unit_test(error_status_becomes_one_sentence),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
