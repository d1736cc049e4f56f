/* The graceful end of a stream socket we answered on: shut down writing so the peer
 * reads everything we sent (closing with unread input would reset it), then discard
 * what it still sends until its EOF. Shared by the HTTP and the gRPC connections. */
#pragma once

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
