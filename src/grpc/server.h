/* gRPC server over HTTP/2 cleartext on a unix socket (PROTOCOL-HTTP2.md): unary and
 * server-streaming methods. nghttp2 does HTTP/2; this module maps streams to calls,
 * dispatches by :path, frames messages and sends grpc-status trailers. */
#pragma once

#include "../loop/loop.h"
#include "frame.h"

#include <stddef.h>
#include <stdint.h>

struct grpc_server;
struct grpc_call;

/* A request arrived on call: request is the one request message, unpacked as the
 * method's descriptor says (the server frees it when the handler returns; copy what
 * must outlive that). The handler answers with grpc_call_send() and
 * grpc_call_finish(), now or later (server streaming); until it finishes, the call
 * lives on unless cancelled. */
typedef void (*grpc_handler_fn)(void *data, struct grpc_call *call,
				const ProtobufCMessage *request);
/* The peer went away (RST_STREAM, connection closed, server freed) before the call was
 * finished. The call is freed right after this returns. */
typedef void (*grpc_cancel_fn)(void *data, struct grpc_call *call);

struct grpc_method {
	const char *path;			   /* "/package.Service/Method" */
	const ProtobufCMessageDescriptor *request; /* what the handler is given */
	grpc_handler_fn handler;
	/* Optional: a request that did not decode was answered INVALID_ARGUMENT. */
	void (*rejected)(void *data);
};

struct grpc_server_stats {
	unsigned long long connections_accepted;
	unsigned long long calls;
	unsigned long long calls_unimplemented;
};

/* Creates a server for methods (borrowed, must outlive it); handlers get data.
 * Nothing listens until grpc_server_listen(). Returns 0 and *out (free with
 * grpc_server_free); only allocation can fail, and that aborts. */
int grpc_server_new(struct loop *loop, const struct grpc_method *methods, size_t method_count,
		    void *data, struct grpc_server **out);
/* Frees the server: every open connection is closed and every unfinished call is
 * cancelled (its cancel callback runs). Does not unlink the socket. */
void grpc_server_free(struct grpc_server *server);

struct file_id;
/* Told the new socket file's identity after bind, before anyone can connect. */
typedef void (*grpc_bound_fn)(void *data, const struct file_id *id);

/* Listens on the unix socket path instead of any earlier listener of this server
 * (open connections stay). A dead socket file at path is replaced; a live one only
 * with replace_live, atomically (bound beside it, then renamed over it). bound (may
 * be NULL) is called between bind and listen. Returns 0 or -errno: -EADDRINUSE (a
 * live server holds path), -EEXIST (not a socket), see unix_socket_bind(); listen,
 * rename, epoll_ctl. */
int grpc_server_listen(struct grpc_server *server, const char *path, bool replace_live,
		       grpc_bound_fn bound, void *data);
/* Stops listening; with unlink_socket also removes the socket file, if it is still
 * the one this server bound (same inode). */
void grpc_server_stop_listening(struct grpc_server *server, bool unlink_socket);
/* Whether the socket file this server listens on still exists as ours. */
bool grpc_server_socket_present(const struct grpc_server *server);
/* The identity of the socket file it listens on, or NULL when not listening. */
const struct file_id *grpc_server_socket_id(const struct grpc_server *server);

/* Sends GOAWAY on every connection and calls done(data) once all of them have
 * flushed and closed (at once if there are none). */
void grpc_server_drain(struct grpc_server *server, void (*done)(void *data), void *data);

size_t grpc_server_connection_count(const struct grpc_server *server);
const struct grpc_server_stats *grpc_server_stats(const struct grpc_server *server);

/* Queues one response message, packed straight into the call's output. Returns 0,
 * or -ECANCELED if the call was already finished. */
int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg);
/* Ends the call with status and an optional message (NULL for none): trailers after
 * the messages sent, or Trailers-Only if none was. The call must not be used after. */
void grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message);
/* Registers fn(data, call) for a cancellation before grpc_call_finish(). */
void grpc_call_on_cancel(struct grpc_call *call, grpc_cancel_fn fn, void *data);
/* Credentials of the peer process (SO_PEERCRED at accept), for logs. */
int grpc_call_peer_pid(const struct grpc_call *call);
