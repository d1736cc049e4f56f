/* TLS client sessions on a non-blocking socket, driven by the loop: the handshake and
 * every read and write return -EAGAIN (with tls_wants_write() saying which event to
 * wait for) instead of blocking. The server is verified against a CA file and an IP
 * address (IP SAN). The only file in the tree that includes mbedTLS headers. */
#pragma once

#include "../basic/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct tls_config;
struct tls_session;

/**
 * tls_config_new() - trust anchors and settings shared by every session of a client
 * @ca_file: PEM bundle that verifies the server
 * @out:     set to the config (free with tls_config_free())
 * @err:     why not
 *
 * TLS 1.2 only, ECDHE with AEAD ciphers (what RFC 7540 9.2.2 allows HTTP/2 over TLS
 * 1.2), ALPN "h2".
 *
 * Return: 0, or -errno: -ENOENT/-EACCES (CA file), -EINVAL (no certificate in it).
 */
int tls_config_new(const char *ca_file, struct tls_config **out, struct error *err);

/**
 * tls_config_free() - free it, after every session made from it
 * @config: the config, or NULL
 */
void tls_config_free(struct tls_config *config);

/**
 * tls_session_new() - start a client session on a connected (or connecting) socket
 * @config: borrowed, must outlive the session
 * @fd:     borrowed: the caller closes it after tls_session_free()
 * @ip:     the server's IP literal; its certificate must name it in an IP SAN
 * @out:    set to the session
 *
 * Return: 0, or -EINVAL (@ip is not an IP literal); out of memory aborts.
 */
int tls_session_new(struct tls_config *config, int fd, const char *ip, struct tls_session **out);

/**
 * tls_handshake() - advance the handshake as far as the socket allows
 * @session: the session
 * @err:     why it failed (certificate not trusted, name mismatch, no h2, ...)
 *
 * Return: 0 when done (ALPN chose h2), -EAGAIN to call again once the socket is
 * readable or, if tls_wants_write(), writable; -EPERM (server not verified), -EPROTO
 * (handshake or ALPN failed), -ECONNRESET.
 */
int tls_handshake(struct tls_session *session, struct error *err);

/**
 * tls_wants_write() - whether the last -EAGAIN waits for the socket to be writable
 * @session: the session
 *
 * Return: true for EPOLLOUT, false for EPOLLIN.
 */
bool tls_wants_write(const struct tls_session *session);

/**
 * tls_recv() - read decrypted bytes
 * @session: the session, handshake done
 * @buf:     where
 * @len:     at most this many
 *
 * Reads records until @buf is full or the socket has nothing more.
 *
 * Return: bytes read, 0 at the peer's end (close_notify or EOF), -EAGAIN, or -errno.
 */
ssize_t tls_recv(struct tls_session *session, uint8_t *buf, size_t len);

/**
 * tls_send_pending() - encrypt and send what is left of a buffer without blocking
 * @session: the session, handshake done
 * @buf:     the buffer
 * @len:     its length
 * @pos:     in: how much has left already; out: updated
 *
 * Same contract as stream_send_pending().
 *
 * Return: 1 all sent, 0 the socket is full, -errno.
 */
int tls_send_pending(struct tls_session *session, const uint8_t *buf, size_t len, size_t *pos);

/**
 * tls_pending() - whether decrypted bytes wait in the session (no socket event will come)
 * @session: the session
 *
 * Return: true if tls_recv() has bytes to return without reading the socket.
 */
bool tls_pending(const struct tls_session *session);

/**
 * tls_session_free() - free the session (the socket stays open)
 * @session: the session, or NULL
 */
void tls_session_free(struct tls_session *session);
