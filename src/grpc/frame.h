/* gRPC's framing on top of HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md): the 5-byte
 * length-prefixed message, status codes, and the percent-encoding of grpc-message.
 * Pure functions, no I/O: the unit tests drive them directly. */
#pragma once

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Status codes, grpc/doc/statuscodes.md. */
enum grpc_status {
	GRPC_STATUS_OK = 0,
	GRPC_STATUS_CANCELLED = 1,
	GRPC_STATUS_UNKNOWN = 2,
	GRPC_STATUS_INVALID_ARGUMENT = 3,
	GRPC_STATUS_DEADLINE_EXCEEDED = 4,
	GRPC_STATUS_NOT_FOUND = 5,
	GRPC_STATUS_RESOURCE_EXHAUSTED = 8,
	GRPC_STATUS_FAILED_PRECONDITION = 9,
	GRPC_STATUS_UNIMPLEMENTED = 12,
	GRPC_STATUS_INTERNAL = 13,
	GRPC_STATUS_UNAVAILABLE = 14,
};

#define GRPC_PREFIX_SIZE 5
/* The largest message we accept, as gRPC's default max_receive_message_length. */
#define GRPC_MAX_MESSAGE_SIZE (4u * 1024u * 1024u)

/* Accumulates the DATA of one stream and splits it into messages. */
struct grpc_reader {
	uint8_t *buf;
	size_t pos; /* start of the first message not yet taken */
	size_t len;
	size_t cap;
};

/* Appends received bytes. Returns 0, or -EMSGSIZE as soon as the prefix announces a
 * message larger than GRPC_MAX_MESSAGE_SIZE (nothing more is buffered then). */
int grpc_reader_append(struct grpc_reader *reader, const uint8_t *data, size_t len);

/* Takes the next complete message: returns 1 and sets *msg and *len (valid until the next
 * grpc_reader_append or grpc_reader_free), 0 if no complete message is buffered, -EPROTONOSUPPORT
 * if the message has the compressed flag set (we announce no grpc-encoding), -EBADMSG if the flags
 * byte is neither 0 nor 1. */
int grpc_reader_next(struct grpc_reader *reader, const uint8_t **msg, size_t *len);
/* Bytes still buffered after the messages taken so far. */
size_t grpc_reader_pending(const struct grpc_reader *reader);
void grpc_reader_free(struct grpc_reader *reader);

/* Packs msg behind an uncompressed 5-byte prefix at the end of *buf (*len bytes
 * long; grown with realloc, NULL for a new buffer), straight into its place. */
void grpc_frame_append(uint8_t **buf, size_t *len, const ProtobufCMessage *msg);
/* The same into a new buffer (caller frees). */
uint8_t *grpc_frame_pack(const ProtobufCMessage *msg, size_t *len);

/* Percent-encodes a grpc-message value: bytes outside 0x20..0x7e and '%' become %XX.
 * Returns a new string (caller frees). */
char *grpc_percent_encode(const char *text);
/* Decodes a grpc-message value of len bytes; malformed escapes are kept as they are.
 * Returns a new string (caller frees). */
char *grpc_percent_decode(const uint8_t *value, size_t len);

/* Parses a grpc-status header value ("0".."16"); returns the code or -EINVAL. */
int grpc_status_parse(const uint8_t *value, size_t len);
