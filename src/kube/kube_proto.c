/* The "k8s\0" + runtime.Unknown envelope of application/vnd.kubernetes.protobuf
 * (apimachinery pkg/runtime/serializer/protobuf/protobuf.go), and error Status text. */
#include "kube_proto.h"
#include "../util.h"

#include <stdio.h>
#include <string.h>

static const uint8_t magic[4] = {'k', '8', 's', 0};

uint8_t *kube_proto_pack(const char *api_version, const char *kind, const ProtobufCMessage *msg,
			 size_t *len)
{
	K8sResource__TypeMeta type = K8S_RESOURCE__TYPE_META__INIT;
	K8sResource__Unknown unknown = K8S_RESOURCE__UNKNOWN__INIT;
	size_t raw_len = protobuf_c_message_get_packed_size(msg);
	cleanup_free uint8_t *raw = xmalloc(raw_len ? raw_len : 1);

	protobuf_c_message_pack(msg, raw);
	type.apiversion = (char *)api_version;
	type.kind = (char *)kind;
	unknown.typemeta = &type;
	unknown.has_raw = true;
	unknown.raw.data = raw;
	unknown.raw.len = raw_len;
	size_t n = k8s_resource__unknown__get_packed_size(&unknown);
	uint8_t *body = xmalloc(sizeof(magic) + n);
	memcpy(body, magic, sizeof(magic));
	k8s_resource__unknown__pack(&unknown, body + sizeof(magic));
	*len = sizeof(magic) + n;
	return body;
}

ProtobufCMessage *kube_proto_unpack(const struct kube_response *resp,
				    const ProtobufCMessageDescriptor *desc)
{
	if (resp->len < sizeof(magic) || memcmp(resp->body, magic, sizeof(magic)) != 0)
		return NULL;
	K8sResource__Unknown *unknown = k8s_resource__unknown__unpack(
	    NULL, resp->len - sizeof(magic), resp->body + sizeof(magic));
	if (!unknown)
		return NULL;
	ProtobufCMessage *msg =
	    unknown->has_raw
		? protobuf_c_message_unpack(desc, NULL, unknown->raw.len, unknown->raw.data)
		: NULL;
	k8s_resource__unknown__free_unpacked(unknown, NULL);
	return msg;
}

const char *kube_status_text(const struct kube_response *resp, char *buf, size_t size)
{
	K8sResource__Status *status =
	    (K8sResource__Status *)kube_proto_unpack(resp, &k8s_resource__status__descriptor);

	if (status && status->message)
		snprintf(buf, size, "HTTP %d %s: %s", resp->status,
			 status->reason ? status->reason : "", status->message);
	else
		snprintf(buf, size, "HTTP %d (%zu bytes of body, not a Status)", resp->status,
			 resp->len);
	if (status)
		k8s_resource__status__free_unpacked(status, NULL);
	return buf;
}
