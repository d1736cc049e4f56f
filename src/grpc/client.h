/* gRPC client over HTTP/2 cleartext on a unix socket: calls with one request message
 * and any number of response messages (unary and server-streaming), for Register on
 * the kubelet's socket and for the kubelet simulator. */
#pragma once

#include "../loop/loop.h"
#include "frame.h"

#include <nghttp2/nghttp2.h>

struct grpc_client;

/* One response message (valid during the callback only). */
typedef void (*grpc_client_message_fn)(void *data, const uint8_t *msg, size_t len);
/* The call ended: status from the trailers, or UNAVAILABLE/INTERNAL with a message if
 * the connection or stream failed first. message is never NULL. Called exactly once,
 * unless the client is freed first. */
typedef void (*grpc_client_done_fn)(void *data, enum grpc_status status, const char *message);

/* Connects to the unix socket at path. Returns 0 or -errno (socket, connect:
 * -ENOENT no socket, -ECONNREFUSED nobody listening). */
int grpc_client_connect(struct loop *loop, const char *path, struct grpc_client **out);

/* Starts a call of method path ("/package.Service/Method") with request. Callbacks get
 * data. Returns 0 or -EIO if the connection is already dead. */
int grpc_client_call(struct grpc_client *client, const char *path, const ProtobufCMessage *request,
		     grpc_client_message_fn on_message, grpc_client_done_fn on_done, void *data);

/* A packed request (grpc_frame_pack) that nghttp2 reads as a stream's DATA. */
struct grpc_request_body {
	uint8_t *frame; /* owned by whoever owns the struct */
	size_t len;
	size_t sent; /* bytes nghttp2 has taken so far */
};

/* Queues a gRPC call of method path on a client session: HEADERS (POST, te: trailers,
 * content-type application/grpc) and body as the DATA that ends the stream. body must
 * stay in place until nghttp2 has taken it all or the stream has closed; stream_data
 * becomes the stream's user data. Sends nothing: the caller runs nghttp2's send.
 * Shared by grpc_client_call and the benchmark's blocking client. Returns the stream
 * id, or a negative nghttp2 error code. */
int32_t grpc_request_submit(nghttp2_session *session, const char *path,
			    struct grpc_request_body *body, void *stream_data);

/* Frees the client; pending calls get no callbacks. Safe from inside its callbacks
 * (the memory goes once the loop is back in control). */
void grpc_client_free(struct grpc_client *client);
