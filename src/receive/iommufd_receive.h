/* The consumer side of the handoff protocol (docs/protocol.md), for programs in
 * the container such as virt-launcher: connect to the mounted socket, receive the
 * iommufd, acknowledge. libc only, no dependency on the plugin's code. */
#pragma once

#define IOMMUFD_RECEIVE_DEFAULT_SOCKET	   "/var/run/kubevirt/iommufd.sock"
#define IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS 30000

/**
 * iommufd_receive() - receive the fd offered on a socket, with the default timeout
 * @socket_path: the mounted handoff socket
 * @fd:          set to the fd (caller owns)
 *
 * Waits up to IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS for each step.
 *
 * Return: 0, or -errno, see iommufd_receive_timeout().
 */
int iommufd_receive(const char *socket_path, int *fd);

/**
 * iommufd_receive_timeout() - receive the fd offered on a socket
 * @socket_path: the mounted handoff socket
 * @timeout_ms:  bounds each blocking step (connect, receive, ACK); 0 waits forever
 * @fd:          set to the fd (caller owns)
 *
 * Connects to @socket_path, receives one message of exactly one data byte 0x00 with
 * exactly one fd in SCM_RIGHTS (received O_CLOEXEC), answers the one-byte ACK and
 * closes the connection; the offer is then consumed. On failure every fd received
 * has been closed.
 *
 * Return: 0, or -errno: ENAMETOOLONG (path too long for a sun_path), connect's errno
 * (ENOENT: no such socket; ECONNREFUSED: the offer ended), ETIMEDOUT, ECONNRESET (the
 * plugin closed without sending: the offer ended meanwhile), EPROTO (data byte not
 * 0x00, more than one byte, no fd, several fds, or a truncated control message), or
 * the ACK's send errno (EPIPE: the plugin gave up waiting; connect again).
 */
int iommufd_receive_timeout(const char *socket_path, int timeout_ms, int *fd);

/**
 * iommufd_receive_on() - the receiving half of iommufd_receive_timeout()
 * @sock: a socket the caller has connected (and keeps: it is not closed)
 * @fd:   set to the fd (caller owns)
 *
 * Receives one message of one 0x00 byte and one fd, then sends the ACK. Blocks as
 * @sock does (its SO_RCVTIMEO and SO_SNDTIMEO bound each step; a non-blocking @sock
 * must be readable first).
 *
 * Return: 0, or -errno as iommufd_receive_timeout() after its connect.
 */
int iommufd_receive_on(int sock, int *fd);
