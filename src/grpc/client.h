/* gRPC client over HTTP/2 cleartext on a unix socket: calls with one request message
 * and any number of response messages (unary and server-streaming), for Register on
 * the kubelet's socket and for the kubelet simulator. */
#pragma once

#include "../loop/loop.h"
#include "connection.h"
#include "frame.h"

#include <nghttp2/nghttp2.h>

struct grpc_client;

/* One response message (valid during the callback only). */
typedef void (*grpc_client_message_fn)(void *data, const uint8_t *msg, size_t len);
/* The call ended: status from the trailers, or UNAVAILABLE/INTERNAL with a message if
 * the connection or stream failed first. message is never NULL. Called exactly once,
 * unless the client is freed first. */
typedef void (*grpc_client_done_fn)(void *data, enum grpc_status status, const char *message);

/**
 * grpc_client_connect() - connect to a gRPC server on a unix socket
 * @loop: the loop
 * @path: the socket file's path
 * @out:  set to the client (free with grpc_client_free())
 *
 * Return: 0 or -errno of socket/connect: -ENOENT no socket, -ECONNREFUSED nobody
 * listening.
 */
int grpc_client_connect(struct loop *loop, const char *path, struct grpc_client **out);

/**
 * grpc_client_call_within() - start a call that must end within a deadline
 * @client:       the client
 * @path:         the method, "/package.Service/Method"
 * @request:      the one request message
 * @timeout_usec: the call's deadline, from now; 0 for none. When it passes first, the
 *                stream is reset (RST_STREAM CANCEL) and @on_done gets
 *                GRPC_STATUS_DEADLINE_EXCEEDED: callers need no timer of their own.
 * @on_message:   called for each response message
 * @on_done:      called once when the call ends
 * @data:         passed to the callbacks
 *
 * Return: 0, or -EIO if the connection is already dead.
 */
int grpc_client_call_within(struct grpc_client *client, const char *path,
			    const ProtobufCMessage *request, unsigned long long timeout_usec,
			    grpc_client_message_fn on_message, grpc_client_done_fn on_done,
			    void *data);

/**
 * grpc_client_call() - grpc_client_call_within() without a deadline
 * @client:     the client
 * @path:       the method, "/package.Service/Method"
 * @request:    the one request message
 * @on_message: called for each response message
 * @on_done:    called once when the call ends
 * @data:       passed to the callbacks
 *
 * For streams that last as long as the connection (ListAndWatch).
 *
 * Return: 0, or -EIO if the connection is already dead.
 */
int grpc_client_call(struct grpc_client *client, const char *path, const ProtobufCMessage *request,
		     grpc_client_message_fn on_message, grpc_client_done_fn on_done, void *data);

/**
 * grpc_request_submit() - queue a gRPC call on a client session
 * @session:     a client nghttp2 session
 * @path:        the method, "/package.Service/Method"
 * @body:        the packed request (grpc_frame_pack() into body->buf, body->len),
 *               sent as the DATA that ends the stream; must stay in place until
 *               nghttp2 has taken it all or the stream has closed
 * @stream_data: becomes the stream's user data
 *
 * Queues HEADERS (POST, te: trailers, content-type application/grpc) and @body.
 * Sends nothing: the caller runs nghttp2's send. Shared by grpc_client_call() and the
 * benchmark's blocking client.
 *
 * Return: the stream id, or a negative nghttp2 error code.
 */
int32_t grpc_request_submit(nghttp2_session *session, const char *path, struct grpc_body *body,
			    void *stream_data);

/**
 * grpc_client_free() - free the client; pending calls get no callbacks
 * @client: the client
 *
 * Safe from inside its callbacks (the memory goes once the loop is back in control).
 */
void grpc_client_free(struct grpc_client *client);
