/* A minimal HTTP/1.1 responder served inside the daemon's event loop (its one user is
 * the metrics module: /metrics, /healthz, /livez): GET and HEAD only, one request per
 * connection (Connection: close), strict limits on size, time and connections. The
 * request parser is a pure function so a fuzzer can drive it without sockets. */
#pragma once

#include "../loop/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* A request head larger than this is answered 431 (status codes: RFC 9110 §15). */
#define HTTP_MAX_REQUEST 4096
/* Connections served at once. Reaching it evicts the oldest connection that has not
 * sent a complete request head, so a slot stays free for a probe; only when every one
 * is being answered do more wait in the listen backlog. */
#define HTTP_MAX_CONNECTIONS 16
/* A connection must have sent its request head within this (else 408, or closed if
 * it sent nothing), and then taken its answer within as long again. */
#define HTTP_DEADLINE_USEC (5ULL * 1000000)

/* The parts of a request head the server acts on; pointers into the parsed buffer. */
struct http_request {
	const char *method;
	size_t method_len;
	const char *path; /* origin-form path without the query ("/metrics") */
	size_t path_len;
	int minor_version; /* HTTP/1.<minor_version> */
	size_t head_len;   /* bytes up to and including the empty line */
};

/**
 * http_parse_request() - parse one request head at the start of a buffer
 * @buf: the bytes received; only buf[0..len) is read
 * @len: their number
 * @req: filled on success, with pointers into @buf
 *
 * Parses the request line and header fields (RFC 9112 §2-5). Pure: no allocation,
 * no I/O.
 *
 * Return: 0 with *@req filled when the head is complete and well formed; -EAGAIN
 * when more bytes are needed; -EBADMSG when it is malformed (answer 400): bad request
 * line, a control character or NUL, whitespace before a field's colon, obsolete line
 * folding, a missing or repeated Host in HTTP/1.1; -EPROTONOSUPPORT for an HTTP
 * version other than 1.x (answer 505).
 */
int http_parse_request(const char *buf, size_t len, struct http_request *req);

/**
 * http_method_is() - whether the request's method is @s
 * @req: a parsed request
 * @s:   a NUL-terminated string
 *
 * Return: true if the method equals @s.
 */
bool http_method_is(const struct http_request *req, const char *s);

/**
 * http_path_is() - whether the request's path is @s
 * @req: a parsed request
 * @s:   a NUL-terminated string
 *
 * Return: true if the path equals @s.
 */
bool http_path_is(const struct http_request *req, const char *s);

/* What a handler answers: status, content type and a body it appends to. */
struct http_response {
	int status;
	const char *content_type; /* static string */
	char *body;		  /* heap, owned by the server once the handler returns */
	size_t body_len, body_size;
};

/**
 * http_response_append() - append printf-formatted text to the body
 * @response: the response
 * @fmt:      printf format, then its arguments
 *
 * Aborts on out of memory.
 */
void http_response_append(struct http_response *response, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Called once per well-formed GET or HEAD request, in the loop; response arrives
 * with status 200, content type text/plain and an empty body. */
typedef void (*http_handler_fn)(void *data, const struct http_request *request,
				struct http_response *response);

/**
 * http_address_parse() - parse a listen address
 * @address: "HOST:PORT" with HOST a numeric IPv4 address, "[IPv6]", "localhost" or
 *           empty (all IPv4 addresses), or an absolute path for a unix socket
 * @addr:    filled on success
 * @len:     set to the length of @addr
 *
 * Return: 0, or -EINVAL (not one of those forms, port not 1-65535) or -ENAMETOOLONG
 * (path longer than sun_path).
 */
int http_address_parse(const char *address, struct sockaddr_storage *addr, socklen_t *len);

struct http_server;

/**
 * http_server_new() - listen on an address and serve every request
 * @loop:    the loop
 * @address: see http_address_parse(); a stale unix socket file there is replaced
 * @handler: called as handler(data, ...) for each request; borrowed
 * @data:    passed to @handler; borrowed
 * @out:     set to the server (free with http_server_free())
 *
 * Logs the cause of a failure.
 *
 * Return: 0, or -errno: EINVAL/ENAMETOOLONG (@address), or socket/bind/listen/epoll's
 * errno.
 */
int http_server_new(struct loop *loop, const char *address, http_handler_fn handler, void *data,
		    struct http_server **out);
/**
 * http_server_free() - close every connection and the listener
 * @server: the server; NULL is a no-op
 *
 * Removes the unix socket file if it is still ours.
 */
void http_server_free(struct http_server *server);
