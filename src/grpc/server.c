/* gRPC server: HTTP/2 streams become calls, dispatched by :path to the method table.
 * Responses: HEADERS (:status 200, content-type), DATA (length-prefixed messages),
 * trailers (grpc-status, grpc-message); errors before any message use Trailers-Only. */
#include "server.h"
#include "../basic/error_text.h"
#include "connection.h"
#include "server_socket.h"
#include "../basic/list.h"
#include "../basic/unix_socket.h"
#include "../loop/log_ratelimit.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

/* More open connections than this are refused: the kubelet needs one or two. */
#define SERVER_MAX_CONNECTIONS 128
/* The connection's receive window: one request of the largest size plus the default
 * window for the small calls beside it. Request bytes count against it until their
 * call has been handled (call_release_input()), so what one connection can make us
 * buffer is bounded by this, whatever its streams do: a peer that streams without
 * END_STREAM is stopped by flow control, not by our memory. */
#define SERVER_CONNECTION_WINDOW                                                                   \
	(GRPC_PREFIX_SIZE + GRPC_MAX_MESSAGE_SIZE + NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE)
/* What one request may take once unpacked: protobuf-c allocates a struct per
 * element, so a 4 MiB message of 2 million empty entries would take 150 MiB. */
#define SERVER_UNPACK_BUDGET ((size_t)16 * 1024 * 1024)
/* Request bytes held over all connections: as much as one connection's window. One
 * connection cannot pass it, so a lone peer (the kubelet) never meets it; past it, the
 * call holding the most is refused (RESOURCE_EXHAUSTED), which frees its bytes. The
 * kubelet's requests are a few KiB: the peer holding megabytes is the one refused. */
#define SERVER_HELD_BUDGET ((size_t)SERVER_CONNECTION_WINDOW)

struct server_connection {
	struct grpc_connection conn;
	struct grpc_server *server;
	struct list link;  /* in grpc_server.connections, oldest first */
	struct list calls; /* struct grpc_call.link */
	bool spoke;	   /* has sent at least one request */
	int peer_pid;
};

struct grpc_call {
	struct server_connection *owner;
	struct list link; /* in server_connection.calls */
	int32_t stream_id;
	const struct grpc_method *method;
	char *path;
	bool grpc_content_type;
	bool dispatched;   /* the handler has it */
	bool headers_sent; /* response HEADERS submitted */
	bool finished;	   /* status decided; trailers follow the queued messages */
	enum grpc_status status;
	char *message;
	struct grpc_reader reader;
	size_t held;	       /* request bytes received and not yet given back to the window */
	struct grpc_body body; /* the response messages; open until the status is decided */
	grpc_cancel_fn cancel;
	void *cancel_data;
};

struct grpc_server {
	struct loop *loop;
	const struct grpc_method *methods;
	size_t method_count;
	void *data;
	nghttp2_session_callbacks *callbacks;
	nghttp2_option *options;
	int listen_fd;
	struct loop_listener listener;
	struct log_ratelimit evictions; /* "closing the oldest" lines a peer can cause */
	struct log_ratelimit refusals;	/* "holding the most" lines, as many */
	size_t held; /* the calls' held summed over all connections (SERVER_HELD_BUDGET) */
	char *path;
	struct file_id socket_id;
	struct list connections; /* struct server_connection.link, oldest first */
	size_t connection_count;
	void (*drained)(void *data);
	void *drained_data;
	struct loop_defer drained_later; /* drain completion, always from the loop */
};

/* Frees the request bytes and opens the connection's window by as much: the
 * request has been handled (or refused) and its bytes are no longer needed. */
static void call_release_input(struct grpc_call *call)
{
	grpc_reader_free(&call->reader);
	if (call->held > 0)
		(void)nghttp2_session_consume_connection(call->owner->conn.session, call->held);
	call->owner->server->held -= call->held;
	call->held = 0;
}

static void call_free(struct grpc_call *call)
{
	list_unlink(&call->link);
	call_release_input(call);
	free(call->path);
	free(call->message);
	free(call->body.buf);
	free(call);
}

/* The stream ended before the handler finished: tell the handler, then free. */
static void call_cancel_and_free(struct grpc_call *call)
{
	if (call->dispatched && !call->finished && call->cancel)
		call->cancel(call->cancel_data, call);
	call_free(call);
}

/* The status as trailers, built in one place for both ways of sending them. */
struct call_trailers {
	char status[4];
	char *message; /* percent-encoded, or NULL */
	nghttp2_nv nv[2];
	size_t count;
};

static void call_trailers_build(const struct grpc_call *call, struct call_trailers *t)
{
	*t = (struct call_trailers){0};
	snprintf(t->status, sizeof(t->status), "%d", (int)call->status);
	t->message = call->message ? grpc_percent_encode(call->message) : NULL;
	t->nv[0] = (nghttp2_nv)GRPC_NV("grpc-status", t->status);
	if (t->message)
		t->nv[1] = (nghttp2_nv)GRPC_NV("grpc-message", t->message);
	t->count = t->message ? 2 : 1;
}

/* The body's end (grpc_body.end): the trailers follow the last message. */
static int call_submit_trailers(struct grpc_body *body, nghttp2_session *session, int32_t stream_id)
{
	struct grpc_call *call = container_of(body, struct grpc_call, body);
	struct call_trailers t;

	call_trailers_build(call, &t);
	int rv = nghttp2_submit_trailer(session, stream_id, t.nv, t.count);
	free(t.message);
	return rv;
}

static int call_submit_headers(struct grpc_call *call)
{
	nghttp2_nv headers[] = {GRPC_NV(":status", "200"),
				GRPC_NV("content-type", "application/grpc")};
	nghttp2_data_provider provider = grpc_body_provider(&call->body);

	call->headers_sent = true;
	return nghttp2_submit_response(call->owner->conn.session, call->stream_id, headers,
				       ARRAY_SIZE(headers), &provider);
}

/* Trailers-Only: one HEADERS frame with END_STREAM carrying the status. */
static int call_submit_trailers_only(struct grpc_call *call)
{
	struct call_trailers t;

	call_trailers_build(call, &t);
	nghttp2_nv headers[] = {GRPC_NV(":status", "200"),
				GRPC_NV("content-type", "application/grpc"), t.nv[0], t.nv[1]};
	call->headers_sent = true;
	int rv = nghttp2_submit_response(call->owner->conn.session, call->stream_id, headers,
					 2 + t.count, NULL);
	free(t.message);
	return rv;
}

int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg)
{
	if (call->finished)
		return -ECANCELED;
	grpc_frame_append(&call->body.buf, &call->body.len, msg);
	nghttp2_session *session = call->owner->conn.session;
	int rv = call->headers_sent ? nghttp2_session_resume_data(session, call->stream_id)
				    : call_submit_headers(call);
	/* resume_data fails harmlessly when the provider is not deferred right now. */
	if (rv != 0 && rv != NGHTTP2_ERR_INVALID_ARGUMENT)
		log_debug(3, "stream %d: %s", call->stream_id, nghttp2_strerror(rv));
	grpc_connection_flush_soon(&call->owner->conn);
	return 0;
}

void grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message)
{
	if (call->finished)
		return;
	call->finished = true;
	call->body.open = false;
	call->status = status;
	call->message = message ? xstrdup(message) : NULL;
	nghttp2_session *session = call->owner->conn.session;
	int rv;
	if (!call->headers_sent)
		rv = status == GRPC_STATUS_OK ? call_submit_headers(call)
					      : call_submit_trailers_only(call);
	else
		rv = nghttp2_session_resume_data(session, call->stream_id);
	if (rv != 0 && rv != NGHTTP2_ERR_INVALID_ARGUMENT)
		log_debug(3, "stream %d: %s", call->stream_id, nghttp2_strerror(rv));
	grpc_connection_flush_soon(&call->owner->conn);
}

void grpc_call_on_cancel(struct grpc_call *call, grpc_cancel_fn fn, void *data)
{
	call->cancel = fn;
	call->cancel_data = data;
}

int grpc_call_peer_pid(const struct grpc_call *call)
{
	return call->owner->peer_pid;
}

/* Ends a call we answer ourselves, before or instead of the handler. */
static void call_fail(struct grpc_call *call, enum grpc_status status, const char *message)
{
	log_debug(2, "%s: status %d: %s", call->path ? call->path : "(no path)", (int)status,
		  message);
	call->dispatched = true; /* nothing to cancel: the handler never saw it */
	call_release_input(call);
	grpc_call_finish(call, status, message);
}

/* Why a request cannot reach its handler, or NULL if it can (then *status is unset). */
static const char *call_check_request(struct grpc_call *call, const uint8_t **msg, size_t *len,
				      enum grpc_status *status)
{
	*status = GRPC_STATUS_INTERNAL;
	if (!call->grpc_content_type)
		return "content-type must be application/grpc";
	if (!call->method) {
		*status = GRPC_STATUS_UNIMPLEMENTED;
		return "unknown method";
	}
	int r = grpc_reader_next(&call->reader, msg, len);
	if (r == -EPROTONOSUPPORT) {
		*status = GRPC_STATUS_UNIMPLEMENTED;
		return "compressed messages are not supported (no grpc-encoding)";
	}
	if (r < 0)
		return "malformed message prefix";
	if (r == 0)
		return "request carries no message";
	if (grpc_reader_pending(&call->reader) > 0)
		return "more than one request message";
	return NULL;
}

/* protobuf-c's allocator with a budget (SERVER_UNPACK_BUDGET): a request whose
 * unpacked form would exceed it fails to unpack instead of growing our memory. */
struct unpack_budget {
	ProtobufCAllocator allocator;
	size_t left;
	bool exceeded;
};

static void *unpack_budget_alloc(void *data, size_t size)
{
	struct unpack_budget *budget = data;
	size_t cost = size + 16; /* malloc's own header, roughly */

	if (cost > budget->left) {
		budget->exceeded = true;
		return NULL;
	}
	budget->left -= cost;
	return xmalloc(size);
}

static void unpack_budget_free(void *data, void *p)
{
	(void)data;
	free(p);
}

static void call_dispatch(struct grpc_call *call)
{
	struct grpc_server *server = call->owner->server;
	const uint8_t *msg = NULL;
	size_t len = 0;
	enum grpc_status status;

	if (call->dispatched)
		return;
	const char *error = call_check_request(call, &msg, &len, &status);
	if (error) {
		cleanup_free char *text =
		    xasprintf("%s: %s", call->path ? call->path : "(no :path)", error);
		call_fail(call, status, text);
		return;
	}
	call->dispatched = true;
	const struct grpc_method *method = call->method;
	struct unpack_budget budget = {
	    .allocator = {unpack_budget_alloc, unpack_budget_free, &budget},
	    .left = SERVER_UNPACK_BUDGET,
	};
	ProtobufCMessage *request =
	    protobuf_c_message_unpack(method->request, &budget.allocator, len, msg);
	if (!request) {
		cleanup_free char *text =
		    xasprintf("cannot decode %s%s", method->request->short_name,
			      budget.exceeded ? ": it would take more than 16 MiB unpacked" : "");
		call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, text);
		if (method->rejected)
			method->rejected(server->data);
		return;
	}
	method->handler(server->data, call, request);
	protobuf_c_message_free_unpacked(request, &budget.allocator);
	call_release_input(call);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	struct server_connection *sc = user_data;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct grpc_call *call = xcalloc(1, sizeof(*call));
	sc->spoke = true;
	call->owner = sc;
	call->stream_id = frame->hd.stream_id;
	call->body.open = true;
	call->body.end = call_submit_trailers;
	list_append(&sc->calls, &call->link);
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static const struct grpc_method *server_find_method(const struct grpc_server *server,
						    const uint8_t *path, size_t len)
{
	for (size_t i = 0; i < server->method_count; i++)
		if (span_equals(path, len, server->methods[i].path))
			return &server->methods[i];
	return NULL;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct server_connection *sc = user_data;
	(void)flags;

	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (!call)
		return 0;
	if (span_equals(name, namelen, ":path")) {
		free(call->path);
		call->path = strndup((const char *)value, valuelen);
		if (!call->path)
			abort();
		call->method = server_find_method(sc->server, value, valuelen);
	} else if (span_equals(name, namelen, "content-type")) {
		/* "application/grpc" optionally followed by "+proto" or ";..." */
		static const char want[] = "application/grpc";
		call->grpc_content_type =
		    valuelen >= sizeof(want) - 1 && memcmp(value, want, sizeof(want) - 1) == 0 &&
		    (valuelen == sizeof(want) - 1 || value[sizeof(want) - 1] == '+' ||
		     value[sizeof(want) - 1] == ';');
	}
	return 0;
}

/* Over SERVER_HELD_BUDGET, refuses the call holding the most request bytes until the
 * server is within it again. Each refusal frees at least the average a call holds, so
 * this ends within the calls open (at most 128 connections of 100 streams). */
static void server_keep_held_budget(struct grpc_server *server)
{
	while (server->held > SERVER_HELD_BUDGET) {
		struct grpc_call *largest = NULL;
		struct server_connection *sc;
		struct grpc_call *call;

		list_for_each (sc, &server->connections, link)
			list_for_each (call, &sc->calls, link)
				if (!largest || call->held > largest->held)
					largest = call;
		if (!largest || largest->held == 0)
			return; /* cannot happen: held is the calls' sum */
		if (log_ratelimit_allow(&server->refusals))
			log_warning(
			    "%s holds more than %zu request bytes: refusing the call holding "
			    "the most (%zu bytes, pid %d)",
			    server->path, SERVER_HELD_BUDGET, largest->held,
			    largest->owner->peer_pid);
		call_fail(largest, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "the server holds too many unfinished request bytes and this call held "
			  "the most");
	}
}

/* Request bytes are buffered until END_STREAM, within bounds: the stream's window is
 * reopened as they are buffered (one message, checked by its prefix, is the stream's
 * bound), the connection's only when the call is done with them. Bytes for a call
 * already answered are dropped: the connection's window gets them back, the stream's
 * stays shut, so a peer that goes on sending is stopped there. */
static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	(void)flags;
	(void)user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!call || call->dispatched) {
		(void)nghttp2_session_consume_connection(session, len);
		return 0;
	}
	call->held += len;
	call->owner->server->held += len;
	if (grpc_reader_append(&call->reader, data, len) == -EMSGSIZE) {
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "request message larger than 4194304 bytes");
		return 0;
	}
	if (grpc_reader_pending(&call->reader) > GRPC_PREFIX_SIZE + GRPC_MAX_MESSAGE_SIZE) {
		call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, "more than one request message");
		return 0;
	}
	(void)nghttp2_session_consume_stream(session, stream_id, len);
	server_keep_held_budget(call->owner->server);
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
	(void)user_data;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call)
		call_dispatch(call);
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	(void)error_code;
	(void)user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (call)
		call_cancel_and_free(call);
	return 0;
}

static void server_report_drained(void *data)
{
	struct grpc_server *server = data;
	void (*done)(void *) = server->drained;

	server->drained = NULL;
	if (done)
		done(server->drained_data);
}

static void connection_free(struct server_connection *sc)
{
	struct grpc_server *server = sc->server;

	/* Detach the session's pointers first: the cancel callbacks must not re-enter it. */
	while (!list_empty(&sc->calls))
		call_cancel_and_free(list_first(&sc->calls, struct grpc_call, link));
	grpc_connection_destroy(&sc->conn);
	list_unlink(&sc->link);
	server->connection_count--;
	free(sc);
	if (server->connection_count < SERVER_MAX_CONNECTIONS)
		loop_listener_hold(&server->listener, false);
	if (server->drained && server->connection_count == 0)
		loop_defer(server->loop, &server->drained_later, server_report_drained, server);
}

static void connection_closed(struct grpc_connection *conn)
{
	connection_free(container_of(conn, struct server_connection, conn));
}

/* At the connection cap, makes room for the next peer: closes the oldest connection,
 * other than @keep, that never sent a request, else the oldest with no call open.
 * Connections carrying a call (the kubelet's ListAndWatch) are never closed; a
 * stream-less kubelet connection that is closed is simply dialled again by grpc-go.
 * Returns false if every one is busy. */
static bool server_evict_idle(struct grpc_server *server, const struct server_connection *keep)
{
	struct server_connection *silent = NULL, *idle = NULL;

	struct server_connection *sc;

	/* Oldest first: the first match is the one to close. */
	list_for_each (sc, &server->connections, link) {
		if (sc == keep || !list_empty(&sc->calls) || grpc_connection_is_closed(&sc->conn))
			continue;
		if (!idle)
			idle = sc;
		if (!sc->spoke && !silent)
			silent = sc;
	}
	struct server_connection *victim = silent ? silent : idle;
	if (!victim)
		return false;
	if (log_ratelimit_allow(&server->evictions))
		log_warning("%d connections are open on %s: closing the oldest %s one (pid %d)",
			    SERVER_MAX_CONNECTIONS, server->path, silent ? "silent" : "idle",
			    victim->peer_pid);
	connection_free(victim);
	return true;
}

static void server_accept(void *data, int fd)
{
	struct grpc_server *server = data;
	struct ucred cred;

	(void)unix_peer_credentials(fd, &cred);
	struct server_connection *sc = xcalloc(1, sizeof(*sc));
	list_init(&sc->calls);
	sc->server = server;
	sc->peer_pid = (int)cred.pid;
	nghttp2_session *session;
	int rv = nghttp2_session_server_new2(&session, server->callbacks, sc, server->options);
	if (rv != 0) {
		log_error("cannot create HTTP/2 session: %s", nghttp2_strerror(rv));
		close(fd);
		free(sc);
		return;
	}
	/* SETTINGS: cap concurrent streams; the kubelet opens a handful. */
	nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
	nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, ARRAY_SIZE(settings));
	rv = nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0,
						   SERVER_CONNECTION_WINDOW);
	if (rv != 0)
		log_error("cannot open the connection window: %s", nghttp2_strerror(rv));
	int r = grpc_connection_init(&sc->conn, server->loop, fd, session, connection_closed);
	if (r < 0) {
		log_error("cannot watch connection on %s: %s", server->path, error_text(-r));
		nghttp2_session_del(session);
		close(fd);
		free(sc);
		return;
	}
	list_append(&server->connections, &sc->link);
	server->connection_count++;
	/* At the cap: make room for the next peer, or, with every connection busy, let
	 * the next ones wait in the listen backlog until one closes. */
	if (server->connection_count >= SERVER_MAX_CONNECTIONS && !server_evict_idle(server, sc))
		loop_listener_hold(&server->listener, true);
	log_debug(4, "connection from pid %d on %s", sc->peer_pid, server->path);
}

int grpc_server_new(struct loop *loop, const struct grpc_method *methods, size_t method_count,
		    void *data, struct grpc_server **out)
{
	struct grpc_server *server = xcalloc(1, sizeof(*server));
	list_init(&server->connections);

	server->loop = loop;
	log_ratelimit_init(loop, &server->evictions, LOG_RATELIMIT_INTERVAL_USEC,
			   "idle gRPC connections closed at the cap");
	log_ratelimit_init(loop, &server->refusals, LOG_RATELIMIT_INTERVAL_USEC,
			   "calls refused over the request-bytes budget");
	server->methods = methods;
	server->method_count = method_count;
	server->data = data;
	server->listen_fd = -1;
	if (nghttp2_session_callbacks_new(&server->callbacks) != 0 ||
	    nghttp2_option_new(&server->options) != 0)
		abort(); /* only fails on out-of-memory */
	nghttp2_session_callbacks_set_on_begin_headers_callback(server->callbacks,
								on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(server->callbacks, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(server->callbacks,
								  on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_frame_recv_callback(server->callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(server->callbacks, on_stream_close);
	/* Closed streams are kept only for RFC 7540 priority, which gRPC does not use:
	 * without this every cancelled stream would cost memory until the connection ends. */
	nghttp2_option_set_no_closed_streams(server->options, 1);
	/* The window opens only for bytes handled: see on_data_chunk_recv(). */
	nghttp2_option_set_no_auto_window_update(server->options, 1);
	*out = server;
	return 0;
}

void grpc_server_stop_listening(struct grpc_server *server, bool unlink_socket)
{
	if (server->listen_fd < 0)
		return;
	if (unlink_socket) {
		int r = unix_socket_unlink_ours(server->path, &server->socket_id);
		if (r < 0)
			log_warning("cannot remove %s: %s", server->path, error_text(-r));
	}
	loop_listener_stop(&server->listener);
	close(server->listen_fd);
	server->listen_fd = -1;
}

int grpc_server_listen(struct grpc_server *server, const char *path, bool replace_live,
		       grpc_bound_fn bound, void *data)
{
	struct file_id id;

	grpc_server_stop_listening(server, false);
	cleanup_close int fd = grpc_server_socket_open(path, replace_live, &id, bound, data);
	if (fd < 0)
		return fd;
	free(server->path);
	server->path = xstrdup(path);
	int r = loop_listener_start(server->loop, &server->listener, fd, server->path,
				    server_accept, server);
	if (r < 0) {
		(void)unlink(path);
		return r;
	}
	server->socket_id = id;
	server->listen_fd = take_fd(&fd);
	return 0;
}

bool grpc_server_socket_present(const struct grpc_server *server)
{
	return server->listen_fd >= 0 && unix_socket_is_ours(server->path, &server->socket_id);
}

void grpc_server_drain(struct grpc_server *server, void (*done)(void *data), void *data)
{
	struct server_connection *sc;

	server->drained = done;
	server->drained_data = data;
	if (server->connection_count == 0) {
		loop_defer(server->loop, &server->drained_later, server_report_drained, server);
		return;
	}
	list_for_each (sc, &server->connections, link)
		grpc_connection_drain(&sc->conn);
}

void grpc_server_free(struct grpc_server *server)
{
	if (!server)
		return;
	server->drained = NULL;
	loop_defer_cancel(server->loop, &server->drained_later);
	grpc_server_stop_listening(server, false);
	while (!list_empty(&server->connections))
		connection_free(list_first(&server->connections, struct server_connection, link));
	log_ratelimit_destroy(&server->evictions);
	log_ratelimit_destroy(&server->refusals);
	nghttp2_session_callbacks_del(server->callbacks);
	nghttp2_option_del(server->options);
	free(server->path);
	free(server);
}
