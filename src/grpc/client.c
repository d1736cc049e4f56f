/* gRPC client calls on one HTTP/2 connection: requests carry te: trailers and
 * content-type application/grpc; responses are split into messages and ended by the
 * grpc-status trailer (PROTOCOL-HTTP2.md). */
#include "client.h"
#include "../basic/list.h"
#include "../basic/unix_socket.h"
#include "connection.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>

struct client_call {
	struct grpc_client *client;
	struct list link; /* in grpc_client.calls */
	int32_t stream_id;
	struct grpc_body request;
	struct grpc_reader reader;
	int status; /* -1 until grpc-status arrives */
	int http_status;
	char *message;
	grpc_client_message_fn on_message;
	grpc_client_done_fn on_done;
	void *data;
	unsigned long long timeout_usec;
	struct loop_timer deadline; /* armed when timeout_usec > 0 */
};

struct grpc_client {
	struct grpc_connection conn;
	struct list calls; /* struct client_call.link */
	struct loop_defer free_later;
	bool freeing;
};

static void call_unlink(struct client_call *call)
{
	list_unlink(&call->link);
}

static void client_call_free(struct client_call *call)
{
	loop_timer_destroy(&call->deadline);
	grpc_reader_free(&call->reader);
	free(call->request.buf);
	free(call->message);
	free(call);
}

/* Reports the end of a call once, then frees it. */
static void call_complete(struct client_call *call, enum grpc_status status, const char *message)
{
	call_unlink(call);
	if (!call->client->freeing)
		call->on_done(call->data, status, message);
	client_call_free(call);
}

int32_t grpc_request_submit(nghttp2_session *session, const char *path, struct grpc_body *body,
			    void *stream_data)
{
	nghttp2_nv headers[] = {
	    GRPC_NV(":method", "POST"),
	    GRPC_NV(":scheme", "http"),
	    GRPC_NV(":path", path),
	    GRPC_NV(":authority", "localhost"),
	    GRPC_NV("te", "trailers"),
	    GRPC_NV("content-type", "application/grpc"),
	    GRPC_NV("user-agent", "iommufd-device-plugin/" PLUGIN_VERSION),
	};
	nghttp2_data_provider provider = grpc_body_provider(body);

	return nghttp2_submit_request(session, NULL, headers, ARRAY_SIZE(headers), &provider,
				      stream_data);
}

/* The deadline passed first: the stream is reset and forgotten (the session keeps no
 * pointer to the call), and the caller told. */
static void call_deadline_passed(void *data)
{
	struct client_call *call = data;
	nghttp2_session *session = call->client->conn.session;
	char why[64];

	(void)nghttp2_session_set_stream_user_data(session, call->stream_id, NULL);
	(void)nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, call->stream_id,
					NGHTTP2_CANCEL);
	grpc_connection_flush_soon(&call->client->conn);
	snprintf(why, sizeof(why), "no answer within %.1f s", (double)call->timeout_usec / 1e6);
	call_complete(call, GRPC_STATUS_DEADLINE_EXCEEDED, why);
}

int grpc_client_call(struct grpc_client *client, const char *path, const ProtobufCMessage *request,
		     grpc_client_message_fn on_message, grpc_client_done_fn on_done, void *data)
{
	return grpc_client_call_within(client, path, request, 0, on_message, on_done, data);
}

int grpc_client_call_within(struct grpc_client *client, const char *path,
			    const ProtobufCMessage *request, unsigned long long timeout_usec,
			    grpc_client_message_fn on_message, grpc_client_done_fn on_done,
			    void *data)
{
	if (grpc_connection_is_closed(&client->conn) || client->freeing)
		return -EIO;
	struct client_call *call = xcalloc(1, sizeof(*call));
	list_init(&call->link);
	loop_timer_init(client->conn.loop, &call->deadline, call_deadline_passed, call);
	call->timeout_usec = timeout_usec;
	call->client = client;
	call->status = -1;
	call->on_message = on_message;
	call->on_done = on_done;
	call->data = data;
	call->request.buf = grpc_frame_pack(request, &call->request.len);
	int32_t id = grpc_request_submit(client->conn.session, path, &call->request, call);
	if (id < 0) {
		log_error("cannot start call %s: %s", path, nghttp2_strerror(id));
		client_call_free(call);
		return -EIO;
	}
	call->stream_id = id;
	list_append(&client->calls, &call->link);
	if (timeout_usec > 0)
		loop_timer_arm(&call->deadline, timeout_usec);
	grpc_connection_flush_soon(&client->conn);
	return 0;
}

static int client_on_header(nghttp2_session *session, const nghttp2_frame *frame,
			    const uint8_t *name, size_t namelen, const uint8_t *value,
			    size_t valuelen, uint8_t flags, void *user_data)
{
	(void)flags;
	(void)user_data;
	struct client_call *call =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

	if (!call || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (span_equals(name, namelen, ":status")) {
		call->http_status = atoi((const char *)value); /* nghttp2 NUL-terminates values */
	} else if (span_equals(name, namelen, "grpc-status")) {
		int code = grpc_status_parse(value, valuelen);
		call->status = code >= 0 ? code : GRPC_STATUS_UNKNOWN;
	} else if (span_equals(name, namelen, "grpc-message")) {
		free(call->message);
		call->message = grpc_percent_decode(value, valuelen);
	}
	return 0;
}

static int client_on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
				     const uint8_t *data, size_t len, void *user_data)
{
	(void)flags;
	(void)user_data;
	struct client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	const uint8_t *msg;
	size_t msg_len;
	int r;

	if (!call)
		return 0;
	if (grpc_reader_append(&call->reader, data, len) < 0)
		return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
						 NGHTTP2_CANCEL) == 0
			   ? 0
			   : NGHTTP2_ERR_CALLBACK_FAILURE;
	while ((r = grpc_reader_next(&call->reader, &msg, &msg_len)) == 1)
		if (!call->client->freeing)
			call->on_message(call->data, msg, msg_len);
	return 0;
}

static int client_on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
				  void *user_data)
{
	(void)user_data;
	struct client_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!call)
		return 0;
	if (call->status >= 0) {
		call_complete(call, (enum grpc_status)call->status,
			      call->message ? call->message : "");
		return 0;
	}
	cleanup_free char *why =
	    xasprintf("stream closed without grpc-status (HTTP status %d, HTTP/2 error %s)",
		      call->http_status, nghttp2_http2_strerror(error_code));
	call_complete(call,
		      call->http_status == 200 || call->http_status == 0 ? GRPC_STATUS_UNAVAILABLE
									 : GRPC_STATUS_INTERNAL,
		      why);
	return 0;
}

static void client_closed(struct grpc_connection *conn)
{
	struct grpc_client *client = container_of(conn, struct grpc_client, conn);

	while (!list_empty(&client->calls))
		call_complete(list_first(&client->calls, struct client_call, link),
			      GRPC_STATUS_UNAVAILABLE, "connection closed");
}

int grpc_client_connect(struct loop *loop, const char *path, struct grpc_client **out)
{
	cleanup_close int fd = unix_socket_connect(path);

	if (fd < 0)
		return fd;
	struct grpc_client *client = xcalloc(1, sizeof(*client));
	list_init(&client->calls);
	nghttp2_session_callbacks *callbacks;
	nghttp2_session *session;
	/* The session copies the callbacks, so the table lives only for this call. */
	if (nghttp2_session_callbacks_new(&callbacks) != 0)
		abort(); /* fails only on out-of-memory */
	nghttp2_session_callbacks_set_on_header_callback(callbacks, client_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks,
								  client_on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, client_on_stream_close);
	int rv = nghttp2_session_client_new(&session, callbacks, client);
	nghttp2_session_callbacks_del(callbacks);
	if (rv != 0)
		abort();
	nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, NULL, 0);
	int r = grpc_connection_init(&client->conn, loop, fd, session, client_closed);
	if (r < 0) {
		nghttp2_session_del(session);
		free(client);
		return r;
	}
	take_fd(&fd);
	*out = client;
	return 0;
}

static void client_destroy(void *data)
{
	struct grpc_client *client = data;

	while (!list_empty(&client->calls)) {
		struct client_call *call = list_first(&client->calls, struct client_call, link);
		call_unlink(call);
		client_call_free(call);
	}
	grpc_connection_destroy(&client->conn);
	free(client);
}

void grpc_client_free(struct grpc_client *client)
{
	if (!client || client->freeing)
		return;
	client->freeing = true;
	loop_watch_remove(client->conn.loop, &client->conn.watch);
	loop_defer_cancel(client->conn.loop, &client->conn.close_later);
	loop_defer_cancel(client->conn.loop, &client->conn.flush_later);
	loop_defer(client->conn.loop, &client->free_later, client_destroy, client);
}
