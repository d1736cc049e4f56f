/* The gRPC server's listening socket, put at its path in one step (server_socket.c). */
#pragma once

#include "server.h"

#include <stdbool.h>

/**
 * grpc_server_socket_open() - a listening unix socket at @path, published in one step
 * @path:         where the socket must appear
 * @replace_live: true: renamed over whatever socket is there (the old server's socket
 *                changes to ours in one step, so a kubelet connecting meanwhile reaches
 *                one of them, never nothing); false: linked only if no live server is
 *                there (a dead socket is replaced)
 * @id:           out: the socket file's identity
 * @bound:        called with @id once bound, before the socket appears at @path, so
 *                whoever sees it appear can already tell whose it is; may be NULL
 * @data:         passed to @bound
 *
 * The socket is bound under a hidden temporary name beside @path (a leading '.', which
 * the kubelet's plugin watcher skips) and listens before it is put in place.
 *
 * Return: the listening fd (the caller owns it), or -errno: -EADDRINUSE if a live
 * server holds @path and @replace_live is false, -EEXIST if @path is not a socket.
 */
int grpc_server_socket_open(const char *path, bool replace_live, struct file_id *id,
			    grpc_bound_fn bound, void *data);
