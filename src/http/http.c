/* The HTTP server side: listen on TCP or a unix socket, accept non-blocking, read one
 * request head, answer once, close. Each connection has a deadline in one deadline
 * list; at the connection cap the oldest connection still without a request head is
 * evicted once it has had HTTP_EVICT_GRACE_USEC to send one, so idle peers cannot keep
 * /livez out, and a probe accepted amid a flood of them still gets to send its request. */
#include "http.h"
#include "../basic/error_text.h"
#include "../basic/stream_socket.h"
#include "../basic/list.h"
#include "../basic/unix_socket.h"
#include "../loop/deadline_list.h"
#include "../log.h"
#include "../util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

/* Room for a burst of idle peers while evictions make room for the probes behind
 * them (the kernel's cap is net.core.somaxconn). */
#define HTTP_LISTEN_BACKLOG 128

/* An idle connection is evicted only after this long. Without it a peer reconnecting as
 * fast as it is evicted churns the 16 slots within one wake-up, and a probe accepted
 * before its request arrived is evicted at once. With it, at most 16 connections are
 * accepted per grace at the cap, so a probe waits in the backlog behind at most 128
 * others for about 128 / 16 * 0.25 = 2 s (its request arrives meanwhile), or has the
 * grace to send it if accepted at once. */
#define HTTP_EVICT_GRACE_USEC (250ULL * 1000)

struct http_connection {
	struct http_server *server;
	struct list link; /* in http_server.connections, oldest first */
	int fd;
	struct loop_watch watch;
	struct deadline_entry deadline;
	unsigned long long accepted_usec;
	char request[HTTP_MAX_REQUEST];
	size_t received;
	char *answer; /* response head and body; NULL until the request is answered */
	size_t answer_len, answer_sent;
	bool lingering; /* answered and shut down for writing: draining until the peer closes */
};

struct http_server {
	struct loop *loop;
	char *address;
	char *unix_path; /* NULL for TCP */
	struct file_id unix_id;
	int listen_fd;
	struct loop_listener listener; /* capped at HTTP_MAX_CONNECTIONS */
	struct deadline_list deadlines;
	http_handler_fn handler;
	void *data;
	struct list connections;       /* struct http_connection.link, by accept */
	struct loop_timer evict_timer; /* at the cap: when the oldest idle one may go */
};

void http_response_append(struct http_response *r, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		size_t room = r->body_size - r->body_len;
		va_start(ap, fmt);
		int n = vsnprintf(r->body ? r->body + r->body_len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t)n < room) {
			r->body_len += (size_t)n;
			return;
		}
		r->body_size = (r->body_size + (size_t)n + 1) * 2;
		r->body = xrealloc(r->body, r->body_size);
	}
}

static const char *status_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 408:
		return "Request Timeout";
	case 431:
		return "Request Header Fields Too Large";
	case 503:
		return "Service Unavailable";
	case 505:
		return "HTTP Version Not Supported";
	default:
		return "Internal Server Error";
	}
}

static void connection_close(struct http_connection *c)
{
	struct http_server *s = c->server;

	loop_watch_remove(s->loop, &c->watch);
	close(c->fd);
	list_unlink(&c->link);
	deadline_cancel(&s->deadlines, &c->deadline);
	free(c->answer);
	free(c);
	loop_listener_closed(&s->listener);
}

/* Formats the answer: status line, headers, and the body unless the method is HEAD.
 * Takes response->body. */
static void connection_answer(struct http_connection *c, struct http_response *response,
			      bool head_only)
{
	char date[64] = "";
	struct tm tm;
	time_t now = time(NULL);

	/* RFC 9110 §6.6.1: an origin server with a clock sends Date. */
	if (gmtime_r(&now, &tm))
		strftime(date, sizeof(date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
	char *head = xasprintf("HTTP/1.1 %d %s\r\n"
			       "%s"
			       "Content-Type: %s\r\n"
			       "Content-Length: %zu\r\n"
			       "%s"
			       "Cache-Control: no-store\r\n"
			       "Connection: close\r\n\r\n",
			       response->status, status_reason(response->status), date,
			       response->content_type, response->body_len,
			       response->status == 405 ? "Allow: GET, HEAD\r\n" : "");
	size_t head_len = strlen(head);
	size_t body_len = head_only ? 0 : response->body_len;
	c->answer = xrealloc(head, head_len + body_len);
	if (body_len)
		memcpy(c->answer + head_len, response->body, body_len);
	c->answer_len = head_len + body_len;
	c->answer_sent = 0;
	free(response->body);
	response->body = NULL;
}

static void connection_answer_error(struct http_connection *c, int status, const char *why)
{
	struct http_response response = {.status = status,
					 .content_type = "text/plain; charset=utf-8"};

	http_response_append(&response, "%d %s: %s\n", status, status_reason(status), why);
	log_debug(2, "HTTP %d on %s: %s", status, c->server->address, why);
	connection_answer(c, &response, false);
}

/* Sends what is left of the answer; once all is out, shuts down writing and lingers
 * until the peer closes, so a peer still sending does not get a reset that could
 * destroy the answer before it reads it. */
static void http_connection_write(struct http_connection *c)
{
	int r =
	    stream_send_pending(c->fd, (const uint8_t *)c->answer, c->answer_len, &c->answer_sent);

	if (r == 0) {
		if (loop_watch_modify(c->server->loop, &c->watch, EPOLLOUT) < 0)
			connection_close(c);
		return;
	}
	if (r < 0) {
		log_debug(2, "HTTP peer on %s went away: %s", c->server->address, error_text(-r));
		connection_close(c);
		return;
	}
	if (half_close_start(c->fd) < 0) {
		connection_close(c);
		return;
	}
	c->lingering = true;
	if (loop_watch_modify(c->server->loop, &c->watch, EPOLLIN) < 0)
		connection_close(c);
}

static void connection_dispatch(struct http_connection *c, const struct http_request *request)
{
	struct http_server *s = c->server;
	bool head = http_method_is(request, "HEAD");

	if (!head && !http_method_is(request, "GET")) {
		connection_answer_error(c, 405, "only GET and HEAD are served");
		return;
	}
	struct http_response response = {.status = 200,
					 .content_type = "text/plain; charset=utf-8"};
	s->handler(s->data, request, &response);
	connection_answer(c, &response, head);
}

/* Reads what the peer sent; answers once the head is complete or cannot be. */
static void connection_read(struct http_connection *c)
{
	if (c->lingering) {
		if (half_close_drain(c->fd))
			connection_close(c);
		return;
	}
	ssize_t n = read(c->fd, c->request + c->received, sizeof(c->request) - c->received);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		/* Gone before a full request: nobody to answer. */
		connection_close(c);
		return;
	}
	c->received += (size_t)n;

	struct http_request request;
	int r = http_parse_request(c->request, c->received, &request);
	if (r == -EAGAIN && c->received < sizeof(c->request))
		return;
	if (r == -EAGAIN)
		connection_answer_error(c, 431, "the request head is larger than 4 KiB");
	else if (r == -EPROTONOSUPPORT)
		connection_answer_error(c, 505, "only HTTP/1.x is served");
	else if (r < 0)
		connection_answer_error(c, 400, "malformed request");
	else
		connection_dispatch(c, &request);
	http_connection_write(c);
}

static void connection_event(void *data, uint32_t events)
{
	struct http_connection *c = data;

	if (c->answer && !c->lingering)
		http_connection_write(c);
	else if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		connection_read(c);
}

/* At the cap: closes the oldest connection that has not delivered a request head (it
 * costs the peer nothing to hold one) once its grace is over, so a probe always gets a
 * slot. While the oldest idle one is in its grace the listener waits at the cap, and
 * the timer comes back when it ends; with every slot being answered it just waits. */
static void server_evict_idle(struct http_server *s)
{
	unsigned long long now = now_usec();
	struct http_connection *c;

	list_for_each (c, &s->connections, link) {
		if (c->answer)
			continue;
		if (now - c->accepted_usec < HTTP_EVICT_GRACE_USEC) {
			loop_timer_arm(&s->evict_timer,
				       c->accepted_usec + HTTP_EVICT_GRACE_USEC - now);
			return;
		}
		log_debug(2, "HTTP on %s: %d connections open; closing the oldest idle one",
			  s->address, HTTP_MAX_CONNECTIONS);
		connection_close(c);
		return;
	}
}

static void server_evict_timer(void *data)
{
	struct http_server *s = data;

	if (loop_listener_full(&s->listener))
		server_evict_idle(s);
}

static void http_server_accept(void *data, int fd)
{
	struct http_server *s = data;
	struct http_connection *c = xcalloc(1, sizeof(*c));

	c->server = s;
	c->fd = fd;
	c->accepted_usec = now_usec();
	deadline_entry_init(&c->deadline);
	list_append(&s->connections, &c->link);
	int r = loop_watch_add(s->loop, &c->watch, fd, EPOLLIN, connection_event, c);
	if (r < 0) {
		log_error("cannot watch an HTTP connection on %s: %s", s->address, error_text(-r));
		connection_close(c);
		return;
	}
	/* The request head must be complete within this; then the answer gets as long. */
	deadline_set(&s->deadlines, &c->deadline, now_usec() + HTTP_DEADLINE_USEC);
	if (loop_listener_full(&s->listener))
		server_evict_idle(s);
	/* A probe sends its request with its connect: answer it now, before later
	 * connections can make it the oldest idle one. */
	connection_read(c);
}

/* Deadlines: a connection that has not been answered gets 408; one that has (its
 * peer is not reading, or not closing) is closed. */
static void connection_deadline(void *data, struct deadline_entry *entry)
{
	struct http_connection *c = container_of(entry, struct http_connection, deadline);
	(void)data;

	if (c->answer || c->received == 0) {
		connection_close(c);
		return;
	}
	/* Its answer gets one more deadline to go out. */
	deadline_set(&c->server->deadlines, &c->deadline, now_usec() + HTTP_DEADLINE_USEC);
	connection_answer_error(c, 408, "the request did not arrive within 5 s");
	http_connection_write(c);
}

int http_address_parse(const char *address, struct sockaddr_storage *addr, socklen_t *len)
{
	memset(addr, 0, sizeof(*addr));
	if (address[0] == '/') {
		*len = sizeof(struct sockaddr_un);
		return unix_address((struct sockaddr_un *)addr, address);
	}
	const char *colon = strrchr(address, ':');
	if (!colon || !colon[1])
		return -EINVAL;
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (errno || *end || port == 0 || port > 65535 || colon[1] < '0' || colon[1] > '9')
		return -EINVAL;

	char host[64];
	size_t n = (size_t)(colon - address);
	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, address, n);
	host[n] = '\0';
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
		host[n - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &in6->sin6_addr) != 1)
			return -EINVAL;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	struct sockaddr_in *in = (struct sockaddr_in *)addr;
	in->sin_family = AF_INET;
	in->sin_port = htons((uint16_t)port);
	*len = sizeof(*in);
	if (n == 0) {
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	/* Numeric only: resolving names would pull NSS into a static binary. */
	if (!strcmp(host, "localhost")) {
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		return 0;
	}
	return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -EINVAL;
}

/* Binds and listens; a unix socket replaces a dead socket file (never a live one, nor
 * any other kind of file) and remembers the inode so free removes only our own. */
static int server_listen(struct http_server *s, const struct sockaddr_storage *addr, socklen_t len)
{
	cleanup_close int fd = -1;
	int one = 1;

	if (addr->ss_family == AF_UNIX) {
		fd = unix_socket_bind(s->unix_path, &s->unix_id);
		if (fd < 0)
			return fd;
	} else {
		fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		/* A restarted daemon must rebind while old connections sit in TIME_WAIT, and
		 * a second instance beside a live one (a rolling update) must bind too. */
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
		    bind(fd, (const struct sockaddr *)addr, len) < 0)
			return -errno;
	}
	if (listen(fd, HTTP_LISTEN_BACKLOG) < 0) {
		int r = -errno;
		if (s->unix_path)
			(void)unlink(s->unix_path);
		return r;
	}
	s->listen_fd = take_fd(&fd);
	return 0;
}

int http_server_new(struct loop *loop, const char *address, http_handler_fn handler, void *data,
		    struct http_server **out)
{
	struct sockaddr_storage addr;
	socklen_t len;
	int r = http_address_parse(address, &addr, &len);

	if (r < 0) {
		log_error("cannot serve metrics on '%s': %s (want HOST:PORT with a numeric host, "
			  "[IPv6]:PORT, :PORT, or an absolute unix socket path)",
			  address, error_text(-r));
		return r;
	}
	struct http_server *s = xcalloc(1, sizeof(*s));
	list_init(&s->connections);
	s->loop = loop;
	s->address = xstrdup(address);
	s->unix_path = addr.ss_family == AF_UNIX ? xstrdup(address) : NULL;
	s->listen_fd = -1;
	deadline_list_init(loop, &s->deadlines, connection_deadline, s);
	loop_timer_init(loop, &s->evict_timer, server_evict_timer, s);
	s->handler = handler;
	s->data = data;
	r = server_listen(s, &addr, len);
	if (r < 0) {
		log_error("cannot listen for HTTP on %s: %s", address, error_text(-r));
		goto fail;
	}
	r = loop_listener_start(loop, &s->listener, s->listen_fd, s->address, http_server_accept,
				s);
	if (r < 0) {
		log_error("cannot watch the HTTP listener on %s: %s", address, error_text(-r));
		goto fail;
	}
	loop_listener_set_cap(&s->listener, HTTP_MAX_CONNECTIONS);
	*out = s;
	return 0;
fail:
	http_server_free(s);
	return r;
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	while (!list_empty(&s->connections))
		connection_close(list_first(&s->connections, struct http_connection, link));
	deadline_list_destroy(&s->deadlines);
	loop_timer_destroy(&s->evict_timer);
	loop_listener_stop(&s->listener);
	if (s->listen_fd >= 0) {
		close(s->listen_fd);
		int r = s->unix_path ? unix_socket_unlink_ours(s->unix_path, &s->unix_id) : 0;
		if (r < 0)
			log_warning("cannot remove %s: %s", s->unix_path, error_text(-r));
	}
	free(s->unix_path);
	free(s->address);
	free(s);
}
