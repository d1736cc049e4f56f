/* gRPC server: HTTP/2 streams become calls, dispatched by :path to the method table.
 * Responses: HEADERS (:status 200, content-type), DATA (length-prefixed messages),
 * trailers (grpc-status, grpc-message); errors before any message use Trailers-Only. */
#include "server.h"
#include "../basic/error_text.h"
#include "connection.h"
#include "../basic/list.h"
#include "../basic/unix_socket.h"
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

struct server_connection {
	struct grpc_connection conn; /* first: the closed callback casts back */
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
	uint8_t *out;
	size_t out_len, out_pos;
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
	char *path;
	struct file_id socket_id;
	struct list connections; /* struct server_connection.link, oldest first */
	size_t connection_count;
	void (*drained)(void *data);
	void *drained_data;
	struct grpc_server_stats stats;
};

static void call_free(struct grpc_call *call)
{
	list_unlink(&call->link);
	grpc_reader_free(&call->reader);
	free(call->path);
	free(call->message);
	free(call->out);
	free(call);
}

/* The stream ended before the handler finished: tell the handler, then free. */
static void call_cancel_and_free(struct grpc_call *call)
{
	if (call->dispatched && !call->finished && call->cancel)
		call->cancel(call->cancel_data, call);
	call_free(call);
}

static ssize_t call_read_data(nghttp2_session *session, int32_t stream_id, uint8_t *buf,
			      size_t length, uint32_t *data_flags, nghttp2_data_source *source,
			      void *user_data)
{
	struct grpc_call *call = source->ptr;
	size_t n = call->out_len - call->out_pos;
	(void)user_data;

	if (n > length)
		n = length;
	memcpy(buf, call->out + call->out_pos, n);
	call->out_pos += n;
	if (call->out_pos == call->out_len)
		call->out_pos = call->out_len = 0;
	if (call->out_len > 0)
		return (ssize_t)n;
	if (!call->finished)
		return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;

	char status[4];
	snprintf(status, sizeof(status), "%d", (int)call->status);
	cleanup_free char *message = grpc_percent_encode(call->message ? call->message : "");
	nghttp2_nv trailers[] = {GRPC_NV("grpc-status", status), GRPC_NV("grpc-message", message)};
	int rv = nghttp2_submit_trailer(session, stream_id, trailers, call->message ? 2 : 1);
	if (rv != 0) {
		log_error("cannot queue trailers on stream %d: %s", stream_id,
			  nghttp2_strerror(rv));
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	return (ssize_t)n;
}

static int call_submit_headers(struct grpc_call *call)
{
	nghttp2_nv headers[] = {GRPC_NV(":status", "200"),
				GRPC_NV("content-type", "application/grpc")};
	nghttp2_data_provider provider = {.source.ptr = call, .read_callback = call_read_data};

	call->headers_sent = true;
	return nghttp2_submit_response(call->owner->conn.session, call->stream_id, headers,
				       ARRAY_SIZE(headers), &provider);
}

/* Trailers-Only: one HEADERS frame with END_STREAM carrying the status. */
static int call_submit_trailers_only(struct grpc_call *call)
{
	char status[4];
	snprintf(status, sizeof(status), "%d", (int)call->status);
	cleanup_free char *message = grpc_percent_encode(call->message ? call->message : "");
	nghttp2_nv headers[] = {GRPC_NV(":status", "200"),
				GRPC_NV("content-type", "application/grpc"),
				GRPC_NV("grpc-status", status), GRPC_NV("grpc-message", message)};

	call->headers_sent = true;
	return nghttp2_submit_response(call->owner->conn.session, call->stream_id, headers,
				       call->message ? 4 : 3, NULL);
}

int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg)
{
	if (call->finished)
		return -ECANCELED;
	grpc_frame_append(&call->out, &call->out_len, msg);
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

static void call_dispatch(struct grpc_call *call)
{
	struct grpc_server *server = call->owner->server;
	const uint8_t *msg = NULL;
	size_t len = 0;
	enum grpc_status status;

	if (call->dispatched)
		return;
	server->stats.calls++;
	const char *error = call_check_request(call, &msg, &len, &status);
	if (error) {
		if (status == GRPC_STATUS_UNIMPLEMENTED)
			server->stats.calls_unimplemented++;
		cleanup_free char *text =
		    xasprintf("%s: %s", call->path ? call->path : "(no :path)", error);
		call_fail(call, status, text);
		return;
	}
	call->dispatched = true;
	const struct grpc_method *method = call->method;
	ProtobufCMessage *request = protobuf_c_message_unpack(method->request, NULL, len, msg);
	if (!request) {
		cleanup_free char *text =
		    xasprintf("cannot decode %s", method->request->short_name);
		call_fail(call, GRPC_STATUS_INVALID_ARGUMENT, text);
		if (method->rejected)
			method->rejected(server->data);
		return;
	}
	method->handler(server->data, call, request);
	protobuf_c_message_free_unpacked(request, NULL);
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
	list_append(&sc->calls, &call->link);
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	return 0;
}

static const struct grpc_method *server_find_method(const struct grpc_server *server,
						    const uint8_t *path, size_t len)
{
	for (size_t i = 0; i < server->method_count; i++) {
		const char *p = server->methods[i].path;
		if (strlen(p) == len && memcmp(p, path, len) == 0)
			return &server->methods[i];
	}
	return NULL;
}

static bool header_is(const uint8_t *name, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(name, want, len) == 0;
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
	if (header_is(name, namelen, ":path")) {
		free(call->path);
		call->path = strndup((const char *)value, valuelen);
		if (!call->path)
			abort();
		call->method = server_find_method(sc->server, value, valuelen);
	} else if (header_is(name, namelen, "content-type")) {
		/* "application/grpc" optionally followed by "+proto" or ";..." */
		static const char want[] = "application/grpc";
		call->grpc_content_type =
		    valuelen >= sizeof(want) - 1 && memcmp(value, want, sizeof(want) - 1) == 0 &&
		    (valuelen == sizeof(want) - 1 || value[sizeof(want) - 1] == '+' ||
		     value[sizeof(want) - 1] == ';');
	}
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			      const uint8_t *data, size_t len, void *user_data)
{
	(void)flags;
	(void)user_data;
	struct grpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);

	if (!call || call->dispatched)
		return 0;
	if (grpc_reader_append(&call->reader, data, len) == -EMSGSIZE)
		call_fail(call, GRPC_STATUS_RESOURCE_EXHAUSTED,
			  "request message larger than 4194304 bytes");
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
	if (server->drained && server->connection_count == 0) {
		void (*done)(void *) = server->drained;
		server->drained = NULL;
		done(server->drained_data);
	}
}

static void connection_closed(struct grpc_connection *conn)
{
	connection_free((struct server_connection *)conn);
}

/* At the connection cap, makes room for a new peer: closes the oldest connection that
 * never sent a request, else the oldest with no call open. Connections carrying a call
 * (the kubelet's ListAndWatch) are never closed; a stream-less kubelet connection that
 * is closed is simply dialled again by grpc-go. Returns false if every one is busy. */
static bool server_evict_idle(struct grpc_server *server)
{
	struct server_connection *silent = NULL, *idle = NULL;

	struct server_connection *sc;

	/* Oldest first: the first match is the one to close. */
	list_for_each (sc, &server->connections, link) {
		if (!list_empty(&sc->calls) || sc->conn.dead)
			continue;
		if (!idle)
			idle = sc;
		if (!sc->spoke && !silent)
			silent = sc;
	}
	struct server_connection *victim = silent ? silent : idle;
	if (!victim)
		return false;
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

	if (server->connection_count >= SERVER_MAX_CONNECTIONS && !server_evict_idle(server)) {
		log_warning("refusing a connection on %s: %d connections are open, all busy",
			    server->path, SERVER_MAX_CONNECTIONS);
		close(fd);
		return;
	}
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
	server->stats.connections_accepted++;
	log_debug(4, "connection from pid %d on %s", sc->peer_pid, server->path);
	grpc_connection_flush(&sc->conn);
}

int grpc_server_new(struct loop *loop, const struct grpc_method *methods, size_t method_count,
		    void *data, struct grpc_server **out)
{
	struct grpc_server *server = xcalloc(1, sizeof(*server));
	list_init(&server->connections);

	server->loop = loop;
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

/* The temporary name for path: beside it, hidden (a leading '.'), so the kubelet's
 * plugin watcher, which skips such names, never tries to register it. */
static char *server_temporary_path(const char *path)
{
	const char *slash = strrchr(path, '/');
	int dir_len = slash ? (int)(slash - path + 1) : 0;

	return xasprintf("%.*s.%s.%d.new", dir_len, path, path + dir_len, (int)getpid());
}

/* Links the listening socket at tmp to path unless a live server is there (a dead
 * socket is replaced), and removes tmp. Returns 0 or -errno (-EADDRINUSE: live). */
static int server_publish(const char *tmp, const char *path)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		if (link(tmp, path) == 0) {
			if (unlink(tmp) < 0 && errno != ENOENT)
				log_warning("cannot remove %s: %s", tmp, error_text(errno));
			return 0;
		}
		if (errno != EEXIST)
			return -errno;
		int r = unix_socket_remove_dead(path);
		if (r < 0)
			return r;
	}
	return -EADDRINUSE;
}

/* Binds a temporary name beside path, reports its identity (bound), and once it
 * listens puts it at path: renamed over whatever is there with replace_live (the old
 * server's socket changes to ours in one step, so a kubelet connecting meanwhile
 * reaches one of them, never nothing), else linked only if no live server is there.
 * Either way whoever sees the socket appear at path can already tell whose it is. */
static int server_bind_listen(const char *path, bool replace_live, struct file_id *id,
			      grpc_bound_fn bound, void *data)
{
	cleanup_free char *tmp = server_temporary_path(path);
	struct stat st;

	/* A rename replaces any file: only ever a socket. */
	if (replace_live && lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return -EEXIST;
	cleanup_close int fd = unix_socket_bind(tmp, id);

	if (fd < 0)
		return fd;
	if (bound)
		bound(data, id);
	int r = listen(fd, SOMAXCONN) < 0 ? -errno : 0;
	if (r == 0)
		r = replace_live ? (rename(tmp, path) < 0 ? -errno : 0) : server_publish(tmp, path);
	if (r < 0) {
		(void)unlink(tmp);
		return r;
	}
	return take_fd(&fd);
}

int grpc_server_listen(struct grpc_server *server, const char *path, bool replace_live,
		       grpc_bound_fn bound, void *data)
{
	struct file_id id;

	grpc_server_stop_listening(server, false);
	cleanup_close int fd = server_bind_listen(path, replace_live, &id, bound, data);
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

const struct file_id *grpc_server_socket_id(const struct grpc_server *server)
{
	return server->listen_fd >= 0 ? &server->socket_id : NULL;
}

void grpc_server_drain(struct grpc_server *server, void (*done)(void *data), void *data)
{
	if (server->connection_count == 0) {
		done(data);
		return;
	}
	server->drained = done;
	server->drained_data = data;
	struct server_connection *sc;

	list_for_each (sc, &server->connections, link) {
		sc->conn.linger = true;
		nghttp2_submit_goaway(sc->conn.session, NGHTTP2_FLAG_NONE,
				      nghttp2_session_get_last_proc_stream_id(sc->conn.session),
				      NGHTTP2_NO_ERROR, NULL, 0);
		grpc_connection_flush(&sc->conn);
	}
}

void grpc_server_free(struct grpc_server *server)
{
	if (!server)
		return;
	server->drained = NULL;
	grpc_server_stop_listening(server, false);
	while (!list_empty(&server->connections))
		connection_free(list_first(&server->connections, struct server_connection, link));
	nghttp2_session_callbacks_del(server->callbacks);
	nghttp2_option_del(server->options);
	free(server->path);
	free(server);
}

size_t grpc_server_connection_count(const struct grpc_server *server)
{
	return server->connection_count;
}

const struct grpc_server_stats *grpc_server_stats(const struct grpc_server *server)
{
	return &server->stats;
}
