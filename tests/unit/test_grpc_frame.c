/* Unit tests of gRPC framing (src/grpc/frame.c): length prefixes, the 4 MiB limit,
 * the compressed flag, percent-encoding of grpc-message, grpc-status parsing, and a
 * protobuf round trip through the frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "deviceplugin.pb-c.h"
#include "grpc/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void reader_returns_a_message_split_across_chunks(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t frame[] = {0, 0, 0, 0, 3, 'a', 'b', 'c'};
	const uint8_t *msg;
	size_t len;
	(void)state;

	for (size_t i = 0; i < sizeof(frame); i++) {
		assert_int_equal(grpc_reader_next(&reader, &msg, &len), 0);
		assert_int_equal(grpc_reader_append(&reader, &frame[i], 1), 0);
	}
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 1);
	assert_int_equal(len, 3);
	assert_memory_equal(msg, "abc", 3);
	assert_int_equal(grpc_reader_pending(&reader), 0);
	grpc_reader_free(&reader);
}

static void reader_splits_two_messages_in_one_chunk(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t frames[] = {0, 0, 0, 0, 1, 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 'y'};
	const uint8_t *msg;
	size_t len;
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, frames, sizeof(frames)), 0);
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 1);
	assert_int_equal(len, 1);
	assert_int_equal(msg[0], 'x');
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 1);
	assert_int_equal(len, 0); /* an empty message (proto3 Empty) is a valid message */
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 0);
	assert_int_equal(grpc_reader_pending(&reader), 6); /* third: prefix and 1 of 2 bytes */
	const uint8_t rest[] = {'z'};
	assert_int_equal(grpc_reader_append(&reader, rest, 1), 0);
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 1);
	assert_int_equal(len, 2);
	assert_memory_equal(msg, "yz", 2);
	grpc_reader_free(&reader);
}

static void reader_refuses_a_message_over_4_mib_from_its_prefix(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t prefix[] = {0, 0, 0x40, 0, 1}; /* 4 MiB + 1 */
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, prefix, sizeof(prefix)), -EMSGSIZE);
	assert_int_equal(grpc_reader_pending(&reader), 0);
	grpc_reader_free(&reader);
}

static void reader_refuses_an_oversized_message_after_a_good_one(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t frames[] = {0, 0, 0, 0, 1, 'a', 0, 0, 0x40, 0, 1}; /* 1 byte, 4 MiB + 1 */
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, frames, 6), 0);
	assert_int_equal(grpc_reader_append(&reader, frames + 6, 3), 0); /* prefix cut short */
	assert_int_equal(grpc_reader_append(&reader, frames + 9, 2), -EMSGSIZE);
	assert_int_equal(grpc_reader_pending(&reader), 0);
	assert_null(reader.buf); /* freed, not kept until the stream ends */
	grpc_reader_free(&reader);
}

static void reader_accepts_a_message_of_exactly_4_mib(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t prefix[] = {0, 0, 0x40, 0, 0};
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, prefix, sizeof(prefix)), 0);
	grpc_reader_free(&reader);
}

static void reader_reports_the_compressed_flag(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t frame[] = {1, 0, 0, 0, 1, 'z'};
	const uint8_t *msg;
	size_t len;
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, frame, sizeof(frame)), 0);
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), -EPROTONOSUPPORT);
	grpc_reader_free(&reader);
}

static void reader_rejects_an_unknown_flags_byte(void **state)
{
	struct grpc_reader reader = {0};
	const uint8_t frame[] = {7, 0, 0, 0, 0};
	const uint8_t *msg;
	size_t len;
	(void)state;

	assert_int_equal(grpc_reader_append(&reader, frame, sizeof(frame)), 0);
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), -EBADMSG);
	grpc_reader_free(&reader);
}

static void frame_pack_round_trips_a_register_request(void **state)
{
	V1beta1__RegisterRequest request = V1BETA1__REGISTER_REQUEST__INIT;
	V1beta1__DevicePluginOptions options = V1BETA1__DEVICE_PLUGIN_OPTIONS__INIT;
	struct grpc_reader reader = {0};
	const uint8_t *msg;
	size_t len, frame_len;
	(void)state;

	request.version = "v1beta1";
	request.endpoint = "kubevirt-iommufd.sock";
	request.resource_name = "devices.kubevirt.io/iommufd";
	options.get_preferred_allocation_available = true;
	request.options = &options;
	uint8_t *frame = grpc_frame_pack(&request.base, &frame_len);
	assert_int_equal(frame[0], 0);
	assert_int_equal(frame_len, 5 + protobuf_c_message_get_packed_size(&request.base));
	assert_int_equal(grpc_reader_append(&reader, frame, frame_len), 0);
	assert_int_equal(grpc_reader_next(&reader, &msg, &len), 1);
	V1beta1__RegisterRequest *back = v1beta1__register_request__unpack(NULL, len, msg);
	assert_non_null(back);
	assert_string_equal(back->version, "v1beta1");
	assert_string_equal(back->endpoint, "kubevirt-iommufd.sock");
	assert_string_equal(back->resource_name, "devices.kubevirt.io/iommufd");
	assert_non_null(back->options);
	assert_true(back->options->get_preferred_allocation_available);
	assert_false(back->options->pre_start_required);
	v1beta1__register_request__free_unpacked(back, NULL);
	grpc_reader_free(&reader);
	free(frame);
}

/* The kubelet's field numbers, checked on the wire: a wrong number would be dropped
 * silently by the kubelet. RegisterRequest.resource_name is field 3 (tag 0x1a). */
static void register_request_uses_the_kubelets_field_numbers(void **state)
{
	V1beta1__RegisterRequest request = V1BETA1__REGISTER_REQUEST__INIT;
	uint8_t buf[64];
	(void)state;

	request.resource_name = "a/b";
	size_t n = protobuf_c_message_pack(&request.base, buf);
	const uint8_t want[] = {0x1a, 3, 'a', '/', 'b'};
	assert_int_equal(n, sizeof(want));
	assert_memory_equal(buf, want, sizeof(want));

	/* ContainerAllocateResponse.mounts is field 2, Mount.host_path field 2. */
	V1beta1__Mount mount = V1BETA1__MOUNT__INIT;
	V1beta1__Mount *mounts[] = {&mount};
	V1beta1__ContainerAllocateResponse response = V1BETA1__CONTAINER_ALLOCATE_RESPONSE__INIT;
	mount.host_path = "h";
	response.n_mounts = 1;
	response.mounts = mounts;
	n = protobuf_c_message_pack(&response.base, buf);
	const uint8_t want_mount[] = {0x12, 3, 0x12, 1, 'h'};
	assert_int_equal(n, sizeof(want_mount));
	assert_memory_equal(buf, want_mount, sizeof(want_mount));
}

static void percent_encode_escapes_percent_and_non_printable_bytes(void **state)
{
	(void)state;
	char *s = grpc_percent_encode("unknown device \"x\": 100%\n\xc3\xa9");
	assert_string_equal(s, "unknown device \"x\": 100%25%0A%C3%A9");
	free(s);
}

static void percent_decode_inverts_encode_and_keeps_bad_escapes(void **state)
{
	(void)state;
	const char *encoded = "a%25b%0Ac%zz%4";
	char *s = grpc_percent_decode((const uint8_t *)encoded, strlen(encoded));
	assert_string_equal(s, "a%b\nc%zz%4");
	free(s);
}

static void status_parse_accepts_codes_and_rejects_junk(void **state)
{
	(void)state;
	assert_int_equal(grpc_status_parse((const uint8_t *)"0", 1), 0);
	assert_int_equal(grpc_status_parse((const uint8_t *)"12", 2), 12);
	assert_int_equal(grpc_status_parse((const uint8_t *)"16", 2), 16);
	assert_int_equal(grpc_status_parse((const uint8_t *)"17", 2), -EINVAL);
	assert_int_equal(grpc_status_parse((const uint8_t *)"1x", 2), -EINVAL);
	assert_int_equal(grpc_status_parse((const uint8_t *)"", 0), -EINVAL);
	assert_int_equal(grpc_status_parse((const uint8_t *)"123", 3), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(reader_returns_a_message_split_across_chunks),
	    cmocka_unit_test(reader_splits_two_messages_in_one_chunk),
	    cmocka_unit_test(reader_refuses_a_message_over_4_mib_from_its_prefix),
	    cmocka_unit_test(reader_refuses_an_oversized_message_after_a_good_one),
	    cmocka_unit_test(reader_accepts_a_message_of_exactly_4_mib),
	    cmocka_unit_test(reader_reports_the_compressed_flag),
	    cmocka_unit_test(reader_rejects_an_unknown_flags_byte),
	    cmocka_unit_test(frame_pack_round_trips_a_register_request),
	    cmocka_unit_test(register_request_uses_the_kubelets_field_numbers),
	    cmocka_unit_test(percent_encode_escapes_percent_and_non_printable_bytes),
	    cmocka_unit_test(percent_decode_inverts_encode_and_keeps_bad_escapes),
	    cmocka_unit_test(status_parse_accepts_codes_and_rejects_junk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
