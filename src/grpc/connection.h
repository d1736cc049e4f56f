/* One HTTP/2 connection on a non-blocking unix socket, driven by the loop: bytes
 * read go to nghttp2_session_mem_recv, nghttp2_session_send writes what the session
 * has queued, EPOLLOUT is watched only while writes are blocked. Shared by the gRPC
 * server's and client's connections; nghttp2 does all of HTTP/2 itself. */
#pragma once

#include "../loop/loop.h"

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <string.h>

struct grpc_connection;

/**
 * GRPC_NV() - an nghttp2 header pair
 * @name:  a string literal
 * @value: a NUL-terminated string (nghttp2 copies both)
 */
#define GRPC_NV(name, value)                                                                       \
	{                                                                                          \
		(uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value),            \
		    NGHTTP2_NV_FLAG_NONE                                                           \
	}

/* Called, from the loop and never from inside a call into this module, when the
 * connection is finished (peer hung up, protocol error, nothing left to read or
 * write). The owner must call grpc_connection_destroy() from it or later. */
typedef void (*grpc_connection_closed_fn)(struct grpc_connection *conn);

/* A connection's lifetime; every change goes through connection_set_state(), which
 * checks and logs it. OPEN -> DRAINING -> LINGERING -> CLOSED, or OPEN/DRAINING ->
 * CLOSED directly. */
enum grpc_connection_state {
	GRPC_CONNECTION_OPEN,	   /* reading and writing */
	GRPC_CONNECTION_DRAINING,  /* a GOAWAY of ours is queued: half-close once idle */
	GRPC_CONNECTION_LINGERING, /* writing shut down; discarding input until EOF */
	GRPC_CONNECTION_CLOSED,	   /* finished: the closed callback is queued or has run */
};

/* A layer between the session and the socket (TLS for the API client): reads and
 * writes go through it instead of recv()/send(). Same results as recv() (-errno, not
 * -1) and stream_send_pending(); pending() says input waits inside the layer, where
 * no socket event will announce it. */
struct grpc_transport {
	ssize_t (*recv)(void *data, uint8_t *buf, size_t len);
	int (*send_pending)(void *data, const uint8_t *buf, size_t len, size_t *pos);
	bool (*pending)(const void *data);
	void *data;
};

struct grpc_connection {
	struct loop *loop;
	/* NULL: the socket itself; else set right after grpc_connection_init(), borrowed. */
	const struct grpc_transport *transport;
	struct loop_defer receive_later; /* input left in the transport after a batch */
	struct loop_watch watch;
	struct loop_defer close_later;
	struct loop_defer flush_later;
	int fd;
	nghttp2_session *session;
	grpc_connection_closed_fn closed;
	enum grpc_connection_state state;
	/* Frames gathered from nghttp2 and not yet written (the socket was full). */
	uint8_t *out;
	size_t out_len, out_pos, out_cap;
};

/* What a stream sends as DATA, read by nghttp2 through grpc_body_provider(): the
 * one data provider of the server's responses and the client's requests. */
struct grpc_body {
	uint8_t *buf; /* length-prefixed messages; owned by the body's owner */
	size_t len;
	size_t sent; /* bytes nghttp2 has taken so far */
	/* More may be appended later: an empty body defers (resume with
	 * nghttp2_session_resume_data()) instead of ending the DATA. */
	bool open;
	/* Optional: called once when the body ends, to submit trailers (the DATA then
	 * ends without END_STREAM: the trailers end the stream). 0 or an nghttp2 error. */
	int (*end)(struct grpc_body *body, nghttp2_session *session, int32_t stream_id);
};

/**
 * grpc_body_provider() - the nghttp2 data provider that sends @body
 * @body: the body; must stay in place until the stream is closed
 *
 * Return: the provider, for nghttp2_submit_request() or nghttp2_submit_response().
 */
nghttp2_data_provider grpc_body_provider(struct grpc_body *body);

/**
 * grpc_connection_init() - drive an HTTP/2 session on a socket from the loop
 * @conn:    the connection, embedded in its owner
 * @loop:    the loop
 * @fd:      the socket (non-blocking, CLOEXEC); taken on success
 * @session: the nghttp2 session; taken on success
 * @closed:  called when the connection is finished
 *
 * Watches @fd for input and sends what the session has queued once the current
 * callback batch is done.
 *
 * Return: 0, or -errno of epoll_ctl(); on failure the caller still owns @fd and
 * @session.
 */
int grpc_connection_init(struct grpc_connection *conn, struct loop *loop, int fd,
			 nghttp2_session *session, grpc_connection_closed_fn closed);

/**
 * grpc_connection_flush_soon() - send what the session has queued, once the batch is done
 * @conn: the connection
 *
 * Call after anything that queues frames (submit, resume_data). The frames leave
 * once the current callback batch is done, so that everything queued in it leaves
 * together, and never from inside nghttp2's callbacks (nghttp2 forbids sending
 * there). Never frees the connection: a failure schedules the closed callback.
 */
void grpc_connection_flush_soon(struct grpc_connection *conn);

/**
 * grpc_connection_drain() - end the connection gracefully
 * @conn: the connection
 *
 * Queues a GOAWAY naming the last stream processed; once everything queued has been
 * written, writing is shut down and the connection waits for the peer's EOF, then
 * reports closed.
 */
void grpc_connection_drain(struct grpc_connection *conn);

/**
 * grpc_connection_is_closed() - whether the connection has finished
 * @conn: the connection
 *
 * Return: true once the closed callback is queued (or has run).
 */
bool grpc_connection_is_closed(const struct grpc_connection *conn);

/**
 * grpc_connection_destroy() - stop watching, delete the session and close the fd
 * @conn: the connection
 *
 * No callback runs after this, even one already queued.
 */
void grpc_connection_destroy(struct grpc_connection *conn);
