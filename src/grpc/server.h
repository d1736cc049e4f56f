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

/**
 * grpc_server_new() - create a server
 * @loop:         the loop
 * @methods:      the methods served; borrowed, must outlive the server
 * @method_count: their number
 * @data:         passed to the handlers
 * @out:          set to the server (free with grpc_server_free())
 *
 * Nothing listens until grpc_server_listen().
 *
 * Return: 0; only allocation can fail, and that aborts.
 */
int grpc_server_new(struct loop *loop, const struct grpc_method *methods, size_t method_count,
		    void *data, struct grpc_server **out);

/**
 * grpc_server_free() - free the server
 * @server: the server
 *
 * Every open connection is closed and every unfinished call is cancelled (its cancel
 * callback runs). Does not unlink the socket.
 */
void grpc_server_free(struct grpc_server *server);

struct file_id;
/* Told the new socket file's identity after bind, before anyone can connect. */
typedef void (*grpc_bound_fn)(void *data, const struct file_id *id);

/**
 * grpc_server_listen() - listen on a unix socket
 * @server:       the server
 * @path:         the socket file's path; replaces any earlier listener of this
 *                server (open connections stay)
 * @replace_live: a dead socket file at @path is replaced; a live one only with this,
 *                atomically (bound beside it, then renamed over it)
 * @bound:        called between bind and listen; may be NULL
 * @data:         passed to @bound
 *
 * Return: 0 or -errno: -EADDRINUSE (a live server holds @path), -EEXIST (not a
 * socket), see unix_socket_bind(); listen, rename, epoll_ctl.
 */
int grpc_server_listen(struct grpc_server *server, const char *path, bool replace_live,
		       grpc_bound_fn bound, void *data);

/**
 * grpc_server_stop_listening() - stop listening
 * @server:        the server
 * @unlink_socket: also remove the socket file, if it is still the one this server
 *                 bound (same inode)
 */
void grpc_server_stop_listening(struct grpc_server *server, bool unlink_socket);

/**
 * grpc_server_socket_present() - whether the socket file it listens on is still ours
 * @server: the server
 *
 * Return: true if the socket file still exists as ours.
 */
bool grpc_server_socket_present(const struct grpc_server *server);

/**
 * grpc_server_drain() - send GOAWAY on every connection
 * @server: the server
 * @done:   called as done(data) once all of them have flushed and closed; always
 *          from the loop (loop_defer), never from inside this call, even when no
 *          connection is open
 * @data:   passed to @done
 */
void grpc_server_drain(struct grpc_server *server, void (*done)(void *data), void *data);

/**
 * grpc_call_send() - queue one response message
 * @call: the call
 * @msg:  the message, packed straight into the call's output
 *
 * Return: 0, or -ECANCELED if the call was already finished.
 */
int grpc_call_send(struct grpc_call *call, const ProtobufCMessage *msg);

/**
 * grpc_call_finish() - end the call
 * @call:    the call; it must not be used after
 * @status:  the grpc-status
 * @message: the grpc-message, or NULL for none
 *
 * Sends trailers after the messages sent, or Trailers-Only if none was.
 */
void grpc_call_finish(struct grpc_call *call, enum grpc_status status, const char *message);

/**
 * grpc_call_on_cancel() - register a callback for a cancellation
 * @call: the call
 * @fn:   called as fn(data, call) if the call is cancelled before grpc_call_finish()
 * @data: passed to @fn
 */
void grpc_call_on_cancel(struct grpc_call *call, grpc_cancel_fn fn, void *data);

/**
 * grpc_call_peer_pid() - the pid of the peer process, for logs
 * @call: the call
 *
 * Return: the pid from the peer's credentials (SO_PEERCRED at accept).
 */
int grpc_call_peer_pid(const struct grpc_call *call);
