/* The API server client: one TCP+TLS connection made on demand (connect, handshake,
 * then the gRPC layer's HTTP/2 connection with TLS as its transport), requests as HTTP/2
 * streams with a deadline each and a capped response, a capped back-off between failed
 * connection attempts, and the bearer token re-read whenever its file changes. */
#include "kube_client.h"
#include "kube_config.h"
#include "../basic/error_text.h"
#include "../grpc/connection.h"
#include "../log.h"
#include "../tls/tls.h"
#include "../util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define KUBE_CONNECT_TIMEOUT_USEC (10ULL * 1000000) /* TCP connect and TLS handshake */
#define KUBE_BACKOFF_MIN_USEC	  (200ULL * 1000)
#define KUBE_BACKOFF_MAX_USEC	  (10ULL * 1000000)

/* The connection's lifetime; every change goes through client_set_state(). */
enum kube_client_state {
	KUBE_CLIENT_IDLE,	/* no connection; the next request makes one */
	KUBE_CLIENT_CONNECTING, /* TCP connect in progress */
	KUBE_CLIENT_HANDSHAKE,	/* TLS handshake in progress */
	KUBE_CLIENT_READY,	/* HTTP/2 up: requests are streams */
	KUBE_CLIENT_BACKOFF,	/* the last attempt failed: requests fail until the timer */
};

static const char *const state_names[] = {
    [KUBE_CLIENT_IDLE] = "idle",	   [KUBE_CLIENT_CONNECTING] = "connecting",
    [KUBE_CLIENT_HANDSHAKE] = "handshake", [KUBE_CLIENT_READY] = "ready",
    [KUBE_CLIENT_BACKOFF] = "back-off",
};

struct kube_request {
	struct kube_client *client;
	struct list link; /* in client.waiting, .streams or .done */
	char *method, *path;
	struct grpc_body body;
	int32_t stream_id; /* 0 until submitted */
	struct loop_timer deadline;
	unsigned timeout_ms;
	int status;
	uint8_t *resp;
	size_t resp_len, resp_cap;
	int err; /* set when it moves to .done */
	char *why;
	kube_response_fn fn;
	void *data;
};

struct kube_client {
	struct loop *loop;
	char *host, *token_file, *authority;
	unsigned port;
	struct tls_config *tls;
	enum kube_client_state state;
	int fd;			     /* while CONNECTING/HANDSHAKE; then conn owns it */
	struct loop_watch watch;     /* while CONNECTING/HANDSHAKE */
	struct tls_session *session; /* from HANDSHAKE until the connection is destroyed */
	struct grpc_transport transport;
	struct grpc_connection conn; /* while READY */
	struct loop_timer timer;     /* connect deadline, or the back-off's end */
	unsigned long long backoff_usec;
	struct error last_error; /* why the last attempt failed (during BACKOFF) */
	struct list waiting;	 /* requests for the connection being made */
	struct list streams;	 /* requests submitted as streams */
	struct list done;	 /* finished, their callback deferred */
	struct loop_defer finish_later;
	struct kube_token token;
};

/* The transitions the lifetime allows: a bit per target state. */
static const unsigned allowed_next[] = {
    [KUBE_CLIENT_IDLE] = 1u << KUBE_CLIENT_CONNECTING | 1u << KUBE_CLIENT_BACKOFF,
    [KUBE_CLIENT_CONNECTING] = 1u << KUBE_CLIENT_HANDSHAKE | 1u << KUBE_CLIENT_BACKOFF,
    [KUBE_CLIENT_HANDSHAKE] = 1u << KUBE_CLIENT_READY | 1u << KUBE_CLIENT_BACKOFF,
    [KUBE_CLIENT_READY] = 1u << KUBE_CLIENT_IDLE,
    [KUBE_CLIENT_BACKOFF] = 1u << KUBE_CLIENT_IDLE,
};

/* The one place the state changes: checks the transition and logs it. */
static void client_set_state(struct kube_client *client, enum kube_client_state state)
{
	if (client->state == state)
		return;
	if (!(allowed_next[client->state] & 1u << state))
		log_error("API server %s: invalid state change %s -> %s", client->authority,
			  state_names[client->state], state_names[state]);
	log_debug(2, "API server %s: %s -> %s", client->authority, state_names[client->state],
		  state_names[state]);
	client->state = state;
}

static void request_free(struct kube_request *req)
{
	loop_timer_destroy(&req->deadline);
	free(req->method);
	free(req->path);
	free(req->body.buf);
	free(req->resp);
	free(req->why);
	free(req);
}

static void client_finish_done(void *data)
{
	struct kube_client *client = data;

	while (!list_empty(&client->done)) {
		struct kube_request *req = list_first(&client->done, struct kube_request, link);
		list_unlink(&req->link);
		struct kube_response resp = {
		    .status = req->status, .body = req->resp, .len = req->resp_len};
		if (req->fn)
			req->fn(req->data, req->err, req->err ? NULL : &resp,
				req->why ? req->why : "");
		request_free(req);
	}
}

/* Ends a request: it leaves whatever list it is on and its callback runs from the loop,
 * never from inside nghttp2 or the caller. Takes the why printf-style. */
static void request_finish(struct kube_request *req, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void request_finish(struct kube_request *req, int err, const char *fmt, ...)
{
	struct kube_client *client = req->client;
	va_list ap;

	loop_timer_destroy(&req->deadline);
	list_unlink(&req->link);
	req->err = err;
	if (err) {
		va_start(ap, fmt);
		if (vasprintf(&req->why, fmt, ap) < 0)
			abort();
		va_end(ap);
	}
	list_append(&client->done, &req->link);
	loop_defer(client->loop, &client->finish_later, client_finish_done, client);
}

static void fail_all(struct kube_client *client, struct list *requests, int err, const char *why)
{
	while (!list_empty(requests)) {
		struct kube_request *req = list_first(requests, struct kube_request, link);
		if (req->stream_id > 0 && client->conn.session)
			(void)nghttp2_session_set_stream_user_data(client->conn.session,
								   req->stream_id, NULL);
		request_finish(req, err, "%s %s: %s", req->method, req->path, why);
	}
}

/* Tears the connection down, whatever its stage: no callback of it runs afterwards. */
static void client_disconnect(struct kube_client *client)
{
	if (client->state == KUBE_CLIENT_READY) {
		grpc_connection_destroy(&client->conn); /* closes the fd */
		client->conn.session = NULL;
	} else if (client->fd >= 0) {
		loop_watch_remove(client->loop, &client->watch);
		close(client->fd);
	}
	client->fd = -1;
	tls_session_free(client->session);
	client->session = NULL;
	loop_timer_arm(&client->timer, 0);
}

/* A connection attempt failed: everything waiting fails with its reason, and no new
 * attempt is made before the back-off (doubling to KUBE_BACKOFF_MAX_USEC) has passed. */
static void client_attempt_failed(struct kube_client *client, const struct error *e)
{
	client_disconnect(client);
	client->last_error = *e;
	client->backoff_usec =
	    client->backoff_usec ? client->backoff_usec * 2 : KUBE_BACKOFF_MIN_USEC;
	if (client->backoff_usec > KUBE_BACKOFF_MAX_USEC)
		client->backoff_usec = KUBE_BACKOFF_MAX_USEC;
	client_set_state(client, KUBE_CLIENT_BACKOFF);
	loop_timer_arm(&client->timer, client->backoff_usec);
	fail_all(client, &client->waiting, e->code, error_message(e));
}

static void request_submit(struct kube_request *req)
{
	struct kube_client *client = req->client;
	struct error err = {0};
	nghttp2_session *session = client->conn.session;

	if (client->token_file &&
	    kube_token_refresh(&client->token, client->token_file, &err) < 0) {
		request_finish(req, err.code, "%s", error_message(&err));
		return;
	}
	nghttp2_nv headers[8] = {
	    GRPC_NV(":method", req->method),
	    GRPC_NV(":scheme", "https"),
	    GRPC_NV(":authority", client->authority),
	    GRPC_NV(":path", req->path),
	    GRPC_NV("accept", "application/vnd.kubernetes.protobuf"),
	    GRPC_NV("user-agent", "iommufd-dra-driver/" PLUGIN_VERSION),
	};
	size_t n = 6;
	if (client->token.header) {
		/* Never in HPACK's dynamic table: a secret there is open to compression
		 * side channels (RFC 7541 7.1.3). */
		headers[n] = (nghttp2_nv)GRPC_NV("authorization", client->token.header);
		headers[n++].flags = NGHTTP2_NV_FLAG_NO_INDEX;
	}
	if (req->body.buf)
		headers[n++] =
		    (nghttp2_nv)GRPC_NV("content-type", "application/vnd.kubernetes.protobuf");
	nghttp2_data_provider provider = grpc_body_provider(&req->body);
	int32_t id = nghttp2_submit_request(session, NULL, headers, n,
					    req->body.buf ? &provider : NULL, req);
	if (id < 0) {
		request_finish(req, -EPROTO, "%s %s: cannot start HTTP/2 stream: %s", req->method,
			       req->path, nghttp2_strerror(id));
		return;
	}
	req->stream_id = id;
	list_unlink(&req->link);
	list_append(&client->streams, &req->link);
	grpc_connection_flush_soon(&client->conn);
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *user_data)
{
	struct kube_request *req =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	(void)flags;
	(void)user_data;

	/* nghttp2 has checked :status is three digits (RFC 9113 8.3.2). */
	if (req && frame->hd.type == NGHTTP2_HEADERS && span_equals(name, namelen, ":status") &&
	    valuelen == 3)
		req->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
	return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id,
			 const uint8_t *data, size_t len, void *user_data)
{
	struct kube_request *req = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)flags;
	(void)user_data;

	if (!req)
		return 0;
	if (req->resp_len + len > KUBE_RESPONSE_MAX) {
		(void)nghttp2_session_set_stream_user_data(session, stream_id, NULL);
		request_finish(req, -EFBIG, "%s %s: response longer than %zu bytes", req->method,
			       req->path, KUBE_RESPONSE_MAX);
		return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id,
						 NGHTTP2_CANCEL) == 0
			   ? 0
			   : NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	if (req->resp_len + len > req->resp_cap) {
		size_t cap = req->resp_cap ? req->resp_cap : 4096;
		while (cap < req->resp_len + len)
			cap *= 2;
		req->resp = xrealloc(req->resp, cap);
		req->resp_cap = cap;
	}
	memcpy(req->resp + req->resp_len, data, len);
	req->resp_len += len;
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
			   void *user_data)
{
	struct kube_request *req = nghttp2_session_get_stream_user_data(session, stream_id);
	(void)user_data;

	if (!req)
		return 0;
	if (error_code != NGHTTP2_NO_ERROR || req->status == 0)
		request_finish(req, error_code == NGHTTP2_REFUSED_STREAM ? -ECONNRESET : -EPROTO,
			       "%s %s: stream reset by the API server (%s)", req->method, req->path,
			       nghttp2_http2_strerror(error_code));
	else
		request_finish(req, 0, "%s", "");
	return 0;
}

/* The HTTP/2 connection ended (server gone, GOAWAY, protocol error): requests on it
 * fail, and the next request connects again. */
static void connection_closed(struct grpc_connection *conn)
{
	struct kube_client *client = container_of(conn, struct kube_client, conn);

	log_info("connection to API server %s closed", client->authority);
	fail_all(client, &client->streams, -ECONNRESET, "connection to the API server lost");
	client_disconnect(client);
	client_set_state(client, KUBE_CLIENT_IDLE);
}

static ssize_t transport_recv(void *data, uint8_t *buf, size_t len)
{
	return tls_recv(data, buf, len);
}

static int transport_send(void *data, const uint8_t *buf, size_t len, size_t *pos)
{
	return tls_send_pending(data, buf, len, pos);
}

static bool transport_pending(const void *data)
{
	return tls_pending(data);
}

/* TLS is up: hand the socket to the HTTP/2 connection and submit what waits. */
static void client_ready(struct kube_client *client)
{
	nghttp2_session_callbacks *callbacks;
	nghttp2_session *session;
	struct error e = {0};

	loop_watch_remove(client->loop, &client->watch);
	loop_timer_arm(&client->timer, 0);
	if (nghttp2_session_callbacks_new(&callbacks) != 0)
		abort(); /* fails only on out-of-memory */
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
	int rv = nghttp2_session_client_new(&session, callbacks, client);
	nghttp2_session_callbacks_del(callbacks);
	if (rv != 0)
		abort();
	nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, NULL, 0);
	int r = grpc_connection_init(&client->conn, client->loop, client->fd, session,
				     connection_closed);
	if (r < 0) {
		nghttp2_session_del(session);
		error_set(&e, r, "cannot watch connection to %s: %s", client->authority,
			  error_text(-r));
		client_attempt_failed(client, &e);
		return;
	}
	client->transport = (struct grpc_transport){
	    .recv = transport_recv,
	    .send_pending = transport_send,
	    .pending = transport_pending,
	    .data = client->session,
	};
	client->conn.transport = &client->transport;
	client->backoff_usec = 0;
	client_set_state(client, KUBE_CLIENT_READY);
	log_info("connected to API server %s", client->authority);
	while (!list_empty(&client->waiting))
		request_submit(list_first(&client->waiting, struct kube_request, link));
}

static void client_handshake(struct kube_client *client)
{
	struct error e = {0};
	int r = tls_handshake(client->session, &e);

	if (r == 0) {
		client_ready(client);
		return;
	}
	if (r != -EAGAIN) {
		struct error why = e; /* error_set() must not read what it writes */
		error_set(&e, why.code, "API server %s: %s", client->authority,
			  error_message(&why));
		client_attempt_failed(client, &e);
		return;
	}
	r = loop_watch_modify(client->loop, &client->watch,
			      tls_wants_write(client->session) ? EPOLLOUT : EPOLLIN);
	if (r < 0) {
		error_set(&e, r, "cannot watch connection to %s: %s", client->authority,
			  error_text(-r));
		client_attempt_failed(client, &e);
	}
}

static void client_io(void *data, uint32_t events)
{
	struct kube_client *client = data;
	struct error e = {0};
	(void)events; /* an error or hang-up shows in SO_ERROR or the handshake */

	if (client->state == KUBE_CLIENT_CONNECTING) {
		int so_error = 0;
		socklen_t len = sizeof(so_error);
		if (getsockopt(client->fd, SOL_SOCKET, SO_ERROR, &so_error, &len) < 0)
			so_error = errno;
		if (so_error != 0) {
			error_set(&e, -ECONNREFUSED, "cannot connect to API server %s: %s",
				  client->authority, error_text(so_error));
			client_attempt_failed(client, &e);
			return;
		}
		client_set_state(client, KUBE_CLIENT_HANDSHAKE);
	}
	client_handshake(client);
}

static void client_timer(void *data)
{
	struct kube_client *client = data;
	struct error e = {0};

	if (client->state == KUBE_CLIENT_BACKOFF) {
		client_set_state(client, KUBE_CLIENT_IDLE);
		return;
	}
	error_set(&e, -ETIMEDOUT, "API server %s: no connection within %llu s", client->authority,
		  KUBE_CONNECT_TIMEOUT_USEC / 1000000);
	client_attempt_failed(client, &e);
}

static void client_connect(struct kube_client *client)
{
	struct sockaddr_storage addr = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
	socklen_t addr_len;
	struct error e = {0};

	if (inet_pton(AF_INET, client->host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)client->port);
		addr_len = sizeof(*in4);
	} else {
		(void)inet_pton(AF_INET6, client->host, &in6->sin6_addr); /* checked in _new() */
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)client->port);
		addr_len = sizeof(*in6);
	}
	client->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (client->fd < 0) {
		error_set(&e, -errno, "cannot make a socket for API server %s: %s",
			  client->authority, error_text(errno));
		client_attempt_failed(client, &e);
		return;
	}
	if (connect(client->fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
		error_set(&e, -ECONNREFUSED, "cannot connect to API server %s: %s",
			  client->authority, error_text(errno));
		client_attempt_failed(client, &e);
		return;
	}
	if (tls_session_new(client->tls, client->fd, client->host, &client->session) < 0)
		abort(); /* the host was checked to be an IP literal in _new() */
	int r =
	    loop_watch_add(client->loop, &client->watch, client->fd, EPOLLOUT, client_io, client);
	if (r < 0) {
		error_set(&e, r, "cannot watch connection to %s: %s", client->authority,
			  error_text(-r));
		client_attempt_failed(client, &e);
		return;
	}
	client_set_state(client, KUBE_CLIENT_CONNECTING);
	loop_timer_arm(&client->timer, KUBE_CONNECT_TIMEOUT_USEC);
}

static void request_deadline_passed(void *data)
{
	struct kube_request *req = data;
	struct kube_client *client = req->client;

	if (req->stream_id > 0 && client->state == KUBE_CLIENT_READY) {
		(void)nghttp2_session_set_stream_user_data(client->conn.session, req->stream_id,
							   NULL);
		(void)nghttp2_submit_rst_stream(client->conn.session, NGHTTP2_FLAG_NONE,
						req->stream_id, NGHTTP2_CANCEL);
		grpc_connection_flush_soon(&client->conn);
	}
	request_finish(req, -ETIMEDOUT, "%s %s: no answer from the API server within %u ms",
		       req->method, req->path, req->timeout_ms);
}

int kube_client_request(struct kube_client *client, const char *method, const char *path,
			const uint8_t *body, size_t len, unsigned timeout_ms, kube_response_fn fn,
			void *data)
{
	struct kube_request *req = xcalloc(1, sizeof(*req));

	req->client = client;
	list_init(&req->link);
	req->method = xstrdup(method);
	req->path = xstrdup(path);
	if (body) {
		req->body.buf = xmalloc(len ? len : 1);
		memcpy(req->body.buf, body, len);
		req->body.len = len;
	}
	req->timeout_ms = timeout_ms;
	req->fn = fn;
	req->data = data;
	loop_timer_init(client->loop, &req->deadline, request_deadline_passed, req);
	loop_timer_arm(&req->deadline, (unsigned long long)timeout_ms * 1000);
	list_append(&client->waiting, &req->link);
	switch (client->state) {
	case KUBE_CLIENT_BACKOFF:
		request_finish(req, client->last_error.code, "%s %s: %s (retrying later)", method,
			       path, error_message(&client->last_error));
		break;
	case KUBE_CLIENT_IDLE:
		client_connect(client);
		break;
	case KUBE_CLIENT_READY:
		if (nghttp2_session_check_request_allowed(client->conn.session)) {
			request_submit(req);
			break;
		}
		/* The server sent GOAWAY: this request goes on a new connection. */
		fail_all(client, &client->streams, -ECONNRESET,
			 "connection to the API server going away");
		client_disconnect(client);
		client_set_state(client, KUBE_CLIENT_IDLE);
		client_connect(client);
		break;
	default:
		break; /* submitted once connected */
	}
	return 0;
}

int kube_client_new(struct loop *loop, const struct kube_client_config *cfg,
		    struct kube_client **out, struct error *err)
{
	unsigned char ip[16];
	bool v6 = inet_pton(AF_INET6, cfg->host, ip) == 1;

	if (!v6 && inet_pton(AF_INET, cfg->host, ip) != 1)
		return error_set(err, -EINVAL,
				 "API server host %s is not an IP address (no DNS lookups here)",
				 cfg->host);
	if (cfg->port == 0 || cfg->port > 65535)
		return error_set(err, -EINVAL, "API server port %u is out of range", cfg->port);
	struct kube_client *client = xcalloc(1, sizeof(*client));
	int r = tls_config_new(cfg->ca_file, &client->tls, err);
	if (r < 0) {
		free(client);
		return r;
	}
	client->loop = loop;
	client->host = xstrdup(cfg->host);
	client->port = cfg->port;
	client->authority = v6 ? xasprintf("[%s]:%u", cfg->host, cfg->port)
			       : xasprintf("%s:%u", cfg->host, cfg->port);
	client->token_file = cfg->token_file ? xstrdup(cfg->token_file) : NULL;
	client->fd = -1;
	list_init(&client->waiting);
	list_init(&client->streams);
	list_init(&client->done);
	loop_timer_init(loop, &client->timer, client_timer, client);
	*out = client;
	return 0;
}

void kube_client_free(struct kube_client *client)
{
	if (!client)
		return;
	fail_all(client, &client->waiting, -ECANCELED, "client stopped");
	fail_all(client, &client->streams, -ECANCELED, "client stopped");
	loop_defer_cancel(client->loop, &client->finish_later);
	client_finish_done(client);
	client_disconnect(client);
	loop_timer_destroy(&client->timer);
	tls_config_free(client->tls);
	free(client->host);
	free(client->authority);
	free(client->token_file);
	kube_token_free(&client->token);
	free(client);
}

void kube_client_forget(struct kube_client *client, void *data)
{
	struct list *lists[] = {&client->waiting, &client->streams, &client->done};
	struct kube_request *req;

	for (size_t i = 0; i < ARRAY_SIZE(lists); i++)
		list_for_each (req, lists[i], link)
			if (req->data == data)
				req->fn = NULL;
}
