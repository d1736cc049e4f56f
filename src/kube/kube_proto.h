/* The API server's protobuf envelope (k8s.io/apimachinery runtime/serializer/protobuf):
 * the 4 bytes "k8s\0" then a runtime.Unknown whose raw field holds the object; and the
 * meta/v1 Status an error response carries, turned into one sentence. */
#pragma once

#include "kube_client.h"
#include "k8s_resource.pb-c.h"

#include <stddef.h>
#include <stdint.h>

/**
 * kube_proto_pack() - wrap an object for a request body
 * @api_version: e.g. "resource.k8s.io/v1"
 * @kind:        e.g. "ResourceSlice"
 * @msg:         the object
 * @len:         set to the body's length
 *
 * Return: the body (free() it); allocation failure aborts.
 */
uint8_t *kube_proto_pack(const char *api_version, const char *kind, const ProtobufCMessage *msg,
			 size_t *len);

/**
 * kube_proto_unpack() - unwrap and decode a response body
 * @resp: the response
 * @desc: what the object is, e.g. &k8s_resource__resource_claim__descriptor
 *
 * Return: the object (protobuf_c_message_free_unpacked() it), or NULL if the body is not
 * a protobuf envelope holding a valid @desc.
 */
ProtobufCMessage *kube_proto_unpack(const struct kube_response *resp,
				    const ProtobufCMessageDescriptor *desc);

/**
 * kube_status_text() - one sentence for an error response
 * @resp: a response whose status is not 2xx
 * @buf:  filled with "HTTP 403 Forbidden: <the Status message>"
 * @size: its size
 *
 * Return: @buf.
 */
const char *kube_status_text(const struct kube_response *resp, char *buf, size_t size);
