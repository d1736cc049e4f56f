/* gRPC length-prefixed messages and grpc-message percent-encoding (PROTOCOL-HTTP2.md):
 * Length-Prefixed-Message = Compressed-Flag (1 byte) Message-Length (4 bytes, big endian)
 * Message. */
#include "frame.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>

static uint32_t read_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Checks the length prefix of every message whose prefix has arrived, not only the
 * first: a stream of acceptable messages may be followed by an oversized one. */
static int reader_check_prefixes(struct grpc_reader *reader)
{
	while (reader->checked <= reader->len &&
	       reader->len - reader->checked >= GRPC_PREFIX_SIZE) {
		uint32_t size = read_be32(reader->buf + reader->checked + 1);
		if (size > GRPC_MAX_MESSAGE_SIZE)
			return -EMSGSIZE;
		reader->checked += GRPC_PREFIX_SIZE + size;
	}
	return 0;
}

int grpc_reader_append(struct grpc_reader *reader, const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0; /* buf may still be NULL: memcpy(NULL, ..., 0) is undefined */
	if (reader->pos > 0) {
		memmove(reader->buf, reader->buf + reader->pos, reader->len - reader->pos);
		reader->len -= reader->pos;
		reader->checked -= reader->pos;
		reader->pos = 0;
	}
	if (reader->len + len > reader->cap) {
		size_t cap = reader->cap ? reader->cap : 256;
		while (cap < reader->len + len)
			cap *= 2;
		reader->buf = xrealloc(reader->buf, cap);
		reader->cap = cap;
	}
	memcpy(reader->buf + reader->len, data, len);
	reader->len += len;
	int r = reader_check_prefixes(reader);
	if (r < 0)
		grpc_reader_free(reader); /* nothing of this stream is kept */
	return r;
}

int grpc_reader_next(struct grpc_reader *reader, const uint8_t **msg, size_t *len)
{
	size_t avail = reader->len - reader->pos;

	/* Before any pointer arithmetic: buf is NULL until the first append. */
	if (avail < GRPC_PREFIX_SIZE)
		return 0;
	const uint8_t *head = reader->buf + reader->pos;
	uint32_t size = read_be32(head + 1);
	if (size > GRPC_MAX_MESSAGE_SIZE)
		return -EMSGSIZE;
	if (avail - GRPC_PREFIX_SIZE < size)
		return 0;
	if (head[0] == 1)
		return -EPROTONOSUPPORT;
	if (head[0] != 0)
		return -EBADMSG;
	*msg = head + GRPC_PREFIX_SIZE;
	*len = size;
	reader->pos += GRPC_PREFIX_SIZE + size;
	return 1;
}

size_t grpc_reader_pending(const struct grpc_reader *reader)
{
	return reader->len - reader->pos;
}

void grpc_reader_free(struct grpc_reader *reader)
{
	free(reader->buf);
	*reader = (struct grpc_reader){0};
}

void grpc_frame_append(uint8_t **buf, size_t *len, const ProtobufCMessage *msg)
{
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t *p;

	*buf = xrealloc(*buf, *len + GRPC_PREFIX_SIZE + size);
	p = *buf + *len;
	p[0] = 0;
	p[1] = (uint8_t)(size >> 24);
	p[2] = (uint8_t)(size >> 16);
	p[3] = (uint8_t)(size >> 8);
	p[4] = (uint8_t)size;
	protobuf_c_message_pack(msg, p + GRPC_PREFIX_SIZE);
	*len += GRPC_PREFIX_SIZE + size;
}

uint8_t *grpc_frame_pack(const ProtobufCMessage *msg, size_t *len)
{
	uint8_t *buf = NULL;

	*len = 0;
	grpc_frame_append(&buf, len, msg);
	return buf;
}

char *grpc_percent_encode(const char *text)
{
	size_t n = strlen(text);
	char *out = xmalloc(n * 3 + 1);
	char *p = out;

	for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
		if (*s >= 0x20 && *s <= 0x7e && *s != '%')
			*p++ = (char)*s;
		else
			p += sprintf(p, "%%%02X", *s);
	}
	*p = '\0';
	return out;
}

static int hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *grpc_percent_decode(const uint8_t *value, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0;

	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		if (value[i] == '%' && i + 2 < len && (hi = hex_value(value[i + 1])) >= 0 &&
		    (lo = hex_value(value[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = (char)value[i];
		}
	}
	out[o] = '\0';
	return out;
}

int grpc_status_parse(const uint8_t *value, size_t len)
{
	int code = 0;

	if (len == 0 || len > 2)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (value[i] < '0' || value[i] > '9')
			return -EINVAL;
		code = code * 10 + (value[i] - '0');
	}
	return code <= 16 ? code : -EINVAL;
}
