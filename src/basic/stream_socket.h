/* Output of the stream sockets we answer on, shared by the HTTP and the gRPC
 * connections: sending a buffer without blocking, and the graceful end (shut down
 * writing so the peer reads everything we sent, since closing with unread input would
 * reset it, then discard what it still sends until its EOF). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/**
 * stream_send_pending() - send what is left of a buffer without blocking
 * @fd:  a connected stream socket
 * @buf: the buffer
 * @len: its length
 * @pos: in: how much of it has left already; out: updated
 *
 * Never raises SIGPIPE.
 *
 * Return: 1 if all of it has left, 0 if the socket is full (wait for EPOLLOUT),
 * -errno if the peer is gone.
 */
int stream_send_pending(int fd, const uint8_t *buf, size_t len, size_t *pos);

/**
 * half_close_start() - shut down writing; the caller then waits for the peer's EOF
 * @fd: a connected stream socket whose output has all been written
 *
 * Return: 0, or -errno of shutdown() (the peer is gone: close now).
 */
int half_close_start(int fd);

/**
 * half_close_drain() - discard what a half-closed peer sends, a bounded amount per call
 * @fd: the socket, non-blocking, after half_close_start()
 *
 * Reads at most 64 KiB, so a peer that keeps sending costs a bounded amount of work
 * per wake-up.
 *
 * Return: 1 if the peer has closed (EOF) or failed: close now; 0 to wait for more.
 */
int half_close_drain(int fd);
