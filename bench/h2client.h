/* The benchmark's gRPC client: blocking, one unix socket, nghttp2 directly, so the
 * timed calls cost the client as little as possible and a stream can be cancelled
 * with RST_STREAM (the kubelet's way of ending ListAndWatch). Frames queued together
 * leave in one send(), as grpc-go's writer does. The request (headers and body) and
 * the message framing are the plugin's own (grpc_request_submit, grpc_frame_pack,
 * grpc_reader). */
#pragma once

#include "grpc/frame.h"

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h2c;

/* One call. Zero it, then h2c_start(). The last complete response message is kept
 * (msg/msg_len, owned by the stream until h2c_stream_reset). */
struct h2c_stream {
	int32_t id;
	size_t messages; /* complete response messages seen */
	uint8_t *msg;	 /* the last of them */
	size_t msg_len;
	struct grpc_reader reader; /* the response's DATA, split into messages */
	int status;		   /* grpc-status, -1 until it arrives */
	bool closed;		   /* the stream ended (trailers, RST_STREAM or connection loss) */
	unsigned long long closed_ns; /* monotonic time the end was seen */
};

/* Connects to the unix socket at path; every later wait gives up after timeout_ms.
 * Returns 0 and *out (free with h2c_free), or -errno of unix_socket_connect
 * (-ENOENT, -ECONNREFUSED, -EAGAIN: backlog full, ...). */
int h2c_connect(const char *path, int timeout_ms, struct h2c **out);
/* Closes the connection; NULL is a no-op. Streams keep what they hold. */
void h2c_free(struct h2c *c);

/* Starts a call of method path with request and sends it (one send()). Returns 0 or
 * -errno (-EIO: nghttp2 refused the request or did not take it whole). */
int h2c_start(struct h2c *c, struct h2c_stream *s, const char *path,
	      const ProtobufCMessage *request);
/* Reads and processes input until s has min_messages messages or has ended.
 * Returns 0, -ETIMEDOUT, -ECONNRESET (peer closed), -EPROTO (HTTP/2 error) or the
 * framing error of a response message (grpc_reader_next's). */
int h2c_wait_messages(struct h2c *c, struct h2c_stream *s, size_t min_messages);
/* Reads until s has ended. Returns 0 or as h2c_wait_messages. */
int h2c_wait_closed(struct h2c *c, struct h2c_stream *s);
/* Cancels s with RST_STREAM(CANCEL) and sends it now. Returns 0 or -errno. */
int h2c_cancel(struct h2c *c, struct h2c_stream *s);
/* Frees what s holds; s can be started again. */
void h2c_stream_reset(struct h2c_stream *s);

/* What the last failure was, on what and why, for messages. */
const char *h2c_error(const struct h2c *c);
