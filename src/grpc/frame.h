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
	size_t pos;	/* start of the first message not yet taken */
	size_t checked; /* every length prefix before this offset is within the limit */
	size_t len;
	size_t cap;
};

/**
 * grpc_reader_append() - append received bytes
 * @reader: the stream's reader
 * @data:   the bytes
 * @len:    their number
 *
 * Every message's length prefix is checked as soon as it has arrived.
 *
 * Return: 0, or -EMSGSIZE as soon as a prefix (of any message, not only the first)
 * announces a message larger than GRPC_MAX_MESSAGE_SIZE: the buffer is freed then.
 */
int grpc_reader_append(struct grpc_reader *reader, const uint8_t *data, size_t len);

/**
 * grpc_reader_next() - take the next complete message
 * @reader: the stream's reader
 * @msg:    set to the message, valid until the next grpc_reader_append() or
 *          grpc_reader_free()
 * @len:    set to its length
 *
 * Return: 1 with *@msg and *@len set; 0 if no complete message is buffered;
 * -EPROTONOSUPPORT if the message has the compressed flag set (we announce no
 * grpc-encoding); -EBADMSG if the flags byte is neither 0 nor 1.
 */
int grpc_reader_next(struct grpc_reader *reader, const uint8_t **msg, size_t *len);

/**
 * grpc_reader_pending() - bytes still buffered after the messages taken so far
 * @reader: the stream's reader
 *
 * Return: the number of bytes.
 */
size_t grpc_reader_pending(const struct grpc_reader *reader);

/**
 * grpc_reader_free() - free the reader's buffer
 * @reader: the stream's reader
 */
void grpc_reader_free(struct grpc_reader *reader);

/**
 * grpc_frame_append() - pack a message behind its 5-byte prefix at the end of a buffer
 * @buf: the buffer, grown with realloc; NULL for a new buffer
 * @len: its length in bytes, advanced
 * @msg: the message, packed straight into its place, uncompressed
 */
void grpc_frame_append(uint8_t **buf, size_t *len, const ProtobufCMessage *msg);

/**
 * grpc_frame_pack() - grpc_frame_append() into a new buffer
 * @msg: the message
 * @len: set to the frame's length
 *
 * Return: the frame (caller frees).
 */
uint8_t *grpc_frame_pack(const ProtobufCMessage *msg, size_t *len);

/**
 * grpc_percent_encode() - percent-encode a grpc-message value
 * @text: the message
 *
 * Bytes outside 0x20..0x7e and '%' become %XX.
 *
 * Return: a new string (caller frees).
 */
char *grpc_percent_encode(const char *text);

/**
 * grpc_percent_decode() - decode a grpc-message value
 * @value: the header value
 * @len:   its length in bytes
 *
 * Malformed escapes are kept as they are.
 *
 * Return: a new string (caller frees).
 */
char *grpc_percent_decode(const uint8_t *value, size_t len);

/**
 * grpc_status_parse() - parse a grpc-status header value ("0".."16")
 * @value: the header value
 * @len:   its length in bytes
 *
 * Return: the code, or -EINVAL.
 */
int grpc_status_parse(const uint8_t *value, size_t len);
