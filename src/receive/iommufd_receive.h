/* The consumer side of the handoff protocol (docs/protocol.md), for programs in
 * the container such as virt-launcher: connect to the mounted socket, receive the
 * iommufd, acknowledge. libc only, no dependency on the plugin's code. */
#pragma once

#define IOMMUFD_RECEIVE_DEFAULT_SOCKET	   "/var/run/kubevirt/iommufd.sock"
#define IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS 30000

/* Receives the fd offered on socket_path, waiting up to
 * IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS for each step. See iommufd_receive_timeout(). */
int iommufd_receive(const char *socket_path, int *fd);

/* Connects to socket_path, receives one message of exactly one data byte 0x00 with
 * exactly one fd in SCM_RIGHTS (received O_CLOEXEC), answers the one-byte ACK and
 * closes the connection; the offer is then consumed. timeout_ms bounds each
 * blocking step (connect, receive, ACK); 0 waits forever. Returns 0 and *fd (caller
 * owns), or -errno, having closed every fd it received: ENAMETOOLONG (path too long
 * for a sun_path), connect's errno (ENOENT: no such socket; ECONNREFUSED: the offer
 * ended), ETIMEDOUT, ECONNRESET (the plugin closed without sending: the offer ended
 * meanwhile), EPROTO (data byte not 0x00, more than one byte, no fd, several fds, or
 * a truncated control message), or the ACK's send errno (EPIPE: the plugin gave up
 * waiting; connect again). */
int iommufd_receive_timeout(const char *socket_path, int timeout_ms, int *fd);

/* The receiving half of iommufd_receive_timeout() on sock, a socket the caller has
 * connected (and keeps: it is not closed): one message of one 0x00 byte and one fd,
 * then the ACK. Blocks as sock does (its SO_RCVTIMEO and SO_SNDTIMEO bound each step;
 * a non-blocking sock must be readable first). Returns 0 and *fd (caller owns), or
 * -errno as iommufd_receive_timeout() after its connect. */
int iommufd_receive_on(int sock, int *fd);
