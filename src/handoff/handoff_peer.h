/* The server side of the handoff wire protocol (docs/protocol.md): who is at the
 * other end of a connection (SO_PEERCRED, its cgroup, which on a kubelet node names the
 * pod, and whether --allowed-uids lets it have the fd), sending it the fd and reading
 * its ACK. The connection's lifecycle is handoff.c's. Internal to the handoff module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct handoff_options;

/* Room for a cgroup path: a kubelet's systemd-driver path with a 64-hex container id
 * is about 170 bytes; longer ones are cut. */
#define HANDOFF_PEER_CGROUP_SIZE 320

struct handoff_peer_identity {
	struct ucred cred;		       /* pid 0 and uid/gid -1 when unknown */
	char cgroup[HANDOFF_PEER_CGROUP_SIZE]; /* "?" when unknown */
};

/**
 * handoff_peer_identify() - who is connected on an fd
 * @fd:          the connection
 * @socket_path: the offer's socket, for the warning
 * @id:          filled: SO_PEERCRED, then the cgroup path of its pid from
 *               /proc/PID/cgroup (the cgroup v2 "0::" line, else the first line)
 *
 * The pid is as our pid namespace sees it, so the cgroup is found only where the peer
 * is visible (hostPID on a kubelet node). Never fails: what cannot be read stays
 * unknown, with a warning only when the credentials themselves cannot be read.
 */
void handoff_peer_identify(int fd, const char *socket_path, struct handoff_peer_identity *id);

/**
 * handoff_peer_allowed() - whether the allowed uids let this peer have the fd
 * @o:  the options with the allowed uids
 * @id: the peer
 *
 * Return: true for every peer when the list is empty; otherwise only for a peer whose
 * uid is known and listed.
 */
bool handoff_peer_allowed(const struct handoff_options *o, const struct handoff_peer_identity *id);

/**
 * handoff_peer_send_fd() - send the one message: the byte 0x00 with @fd in SCM_RIGHTS
 * @sock: the connection (non-blocking)
 * @fd:   the fd handed over (we keep our copy)
 *
 * Return: 0 once sent, -EAGAIN if the socket buffer is full (wait for EPOLLOUT), or
 * -errno of sendmsg() (EPIPE, ECONNRESET: the peer left).
 */
int handoff_peer_send_fd(int sock, int fd);

/**
 * handoff_peer_read_ack() - read the peer's ACK after handoff_peer_send_fd()
 * @sock: the connection (non-blocking)
 *
 * Any byte is the ACK, but only once our message has left the socket (SIOCOUTQ is
 * 0): a peer that answers without receiving the fd has not taken it.
 *
 * Return: 0 for an ACK of a taken fd (the offer is consumed), -EAGAIN for nothing yet,
 * -EBADMSG for an ACK without taking the fd, -ECONNRESET when the peer hung up, or
 * -errno of read().
 */
int handoff_peer_read_ack(int sock);
