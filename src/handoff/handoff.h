/* Hands an allocation's iommufd to the container that got it: one unix socket per
 * allocation in the socket dir, which the kubelet mounts into the container; the
 * first peer that takes the fd and acknowledges consumes it. Everything runs in the
 * loop, non-blocking; see docs/protocol.md for the wire protocol. */
#pragma once

#include "../basic/list.h"
#include "../metrics/histogram.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct error;
struct file_id;
struct loop;
struct selinux_labeler;

#define HANDOFF_DEFAULT_SOCKET_DIR	 "/var/run/kubevirt/fd-sockets"
#define HANDOFF_DEFAULT_TTL_USEC	 (15ULL * 60 * 1000000)
#define HANDOFF_DEFAULT_ACK_TIMEOUT_USEC (10ULL * 1000000)
/* The kubelet mounts the socket file itself into the container, so the 0700 socket
 * dir does not shield it there; the consumer runs as qemu (uid 107) or root, so the
 * file must let any uid connect. On the host the 0700 dir keeps others out. */
#define HANDOFF_DEFAULT_SOCKET_MODE 0666
#define HANDOFF_DEFAULT_MAX_PEERS   8

struct handoff_options {
	const char *socket_dir;		     /* created (mkdir -p, 0700) if missing */
	struct selinux_labeler *labeler;     /* borrowed; NULL: sockets are never labelled */
	unsigned long long ttl_usec;	     /* an unclaimed offer is withdrawn after this */
	unsigned long long ack_timeout_usec; /* a connected peer must ACK within this */
	mode_t socket_mode;
	uid_t socket_uid; /* (uid_t)-1: unchanged */
	gid_t socket_gid; /* (gid_t)-1: unchanged */
	/* Connections served at once per offer; further ones wait in the listen
	 * backlog until one ends. */
	unsigned max_peers;
	/* Only peers with one of these uids (SO_PEERCRED) get the fd; others are
	 * refused and logged, and the offer stays. Borrowed; count 0: any uid. */
	const uid_t *allowed_uids;
	size_t allowed_uid_count;
};

struct handoff_stats {
	unsigned long long offered;	 /* handoff_offer() successes */
	unsigned long long consumed;	 /* fd taken and acknowledged */
	unsigned long long expired;	 /* withdrawn unclaimed after the TTL */
	unsigned long long replaced;	 /* withdrawn by a new offer for the same device */
	unsigned long long peer_gone;	 /* peers that hung up before acknowledging */
	unsigned long long ack_timeouts; /* peers cut off for not acknowledging in time */
	unsigned long long refused;	 /* connections closed unserved: the offer ended,
					  * or the peer answered before taking the fd */
	unsigned long long unauthorized; /* peers refused for their uid (--allowed-uids) */
	unsigned long long abandoned;	 /* withdrawn unclaimed: no pod holds the device */
	unsigned long long withdrawn; /* withdrawn before the kubelet was told: Allocate failed */
	unsigned long long rescued;   /* a dead instance's sockets served again */
	unsigned long long rescue_failures; /* ... that could not be, and were removed */
	struct metrics_histogram wait;	    /* offer (or re-serve) to ACK, in seconds */
};

struct handoff;

/**
 * handoff_options_init() - fill options with the defaults above
 * @o: the options; uid/gid unchanged, labeler NULL
 */
void handoff_options_init(struct handoff_options *o);

/**
 * handoff_new() - create the socket dir if missing and our own instance dir in it
 * @loop: the loop
 * @o:    the options
 * @out:  set to the handoff (free with handoff_free())
 *
 * Our instance dir is locked for our lifetime (handoff_socket.h); other instances'
 * files are not touched. Logs the cause of any failure.
 *
 * Return: 0, or -errno: EINVAL (zero TTL, ack timeout or max_peers, or a relative
 * socket dir), mkdir's, open's or flock's errno, or timerfd/epoll's.
 */
int handoff_new(struct loop *loop, const struct handoff_options *o, struct handoff **out);

/**
 * handoff_free() - close every offer's fd, listener and connections and free
 * @h: the handoff; NULL is a no-op
 *
 * Pending offers' socket files stay, and with them the instance dir, whose lock dies
 * with us: the next instance re-serves them (handoff_rescue()), so a container
 * created after our exit still gets an fd. With nothing pending our instance dir is
 * removed.
 */
void handoff_free(struct handoff *h);

/* Opens a fresh, configured iommufd for device_id: the one the device plugin would
 * hand over for an Allocate. Returns 0 and *fd (taken), or -errno with the reason in
 * *e, unlogged (handoff_rescue logs it). */
typedef int (*handoff_open_fn)(void *data, const char *device_id, int *fd, struct error *e);

/**
 * handoff_rescue() - re-serve what dead instances left in the socket dir
 * @h:       the handoff
 * @open_fd: opens the fresh fd for each socket
 * @data:    passed to @open_fd
 *
 * Re-serves every socket in an instance dir whose lock is free, and every dead socket
 * directly in the socket dir (from a version before instance dirs), at the same path
 * with a fresh fd from @open_fd, as a new offer under the usual rules (TTL from now,
 * PodResources). A socket that cannot be re-served is removed and logged. Live
 * instances' sockets are never touched.
 *
 * Return: the number re-served.
 */
size_t handoff_rescue(struct handoff *h, handoff_open_fn open_fd, void *data);

/**
 * handoff_offer() - offer an fd for a device on a new socket
 * @h:           the handoff
 * @device_id:   the device; an earlier offer for it is withdrawn first
 * @fd:          the fd; taken in every case (closed on failure)
 * @socket_path: set to the socket's path "<socket_dir>/<device_id>-<n>.sock", owned
 *               by @h and valid until the offer ends: copy it
 * @e:           on failure, a one-line reason; may be NULL
 *
 * Creates, labels and listens on the new socket. A failure is not logged.
 *
 * Return: 0, or -errno: EINVAL (@device_id empty, longer than 64, starting with '.',
 * or with characters outside [A-Za-z0-9._-]), ENAMETOOLONG (path longer than a
 * sun_path), or the errno of socket/bind/chmod/chown/lsetxattr/listen/epoll.
 */
int handoff_offer(struct handoff *h, const char *device_id, int fd, const char **socket_path,
		  struct error *e);

/**
 * handoff_withdraw() - withdraw an offer before anyone was told about it
 * @h:           the handoff
 * @socket_path: as returned by handoff_offer(); may point to the offer's own copy
 *
 * For an Allocate that fails after some of its offers were made. Counted as
 * withdrawn (offered stays: counters only go up). No-op if there is no such offer.
 */
void handoff_withdraw(struct handoff *h, const char *socket_path);

/**
 * handoff_pending() - the number of offers not yet consumed, expired or replaced
 * @h: the handoff
 *
 * Return: the count.
 */
size_t handoff_pending(const struct handoff *h);

/* Called with the new handoff_pending() whenever it changes, so a caller can work
 * only while offers are pending without polling the count. It may arm timers, remove
 * itself or quit the loop, but must not offer or withdraw. */
typedef void (*handoff_pending_fn)(void *data, size_t pending);
struct handoff_pending_listener {
	struct list link;
	handoff_pending_fn fn;
	void *data;
};
/**
 * handoff_add_pending_listener() - be told of every change of handoff_pending()
 * @h:    the handoff
 * @l:    the listener, embedded in its owner, zeroed or removed before
 * @fn:   called with the new count
 * @data: passed to @fn
 */
void handoff_add_pending_listener(struct handoff *h, struct handoff_pending_listener *l,
				  handoff_pending_fn fn, void *data);
/**
 * handoff_remove_pending_listener() - remove a pending listener
 * @l: the listener; no-op if it was never added
 */
void handoff_remove_pending_listener(struct handoff_pending_listener *l);

struct handoff_offer_info {
	const char *device_id;
	const char *socket_path;
	unsigned long long offered_usec; /* when, on the now_usec() clock */
};

/**
 * handoff_for_each_offer() - call a function for each pending offer, oldest first
 * @h:    the handoff
 * @fn:   called as fn(data, info); info is valid during the call; @fn must not offer
 *        or withdraw (collect, then act)
 * @data: passed to @fn
 */
void handoff_for_each_offer(const struct handoff *h,
			    void (*fn)(void *data, const struct handoff_offer_info *info),
			    void *data);

/**
 * handoff_abandon() - withdraw a pending offer nobody will come for (its pod is gone)
 * @h:           the handoff
 * @socket_path: the offer's socket
 * @why:         logged as the reason
 *
 * Counted as abandoned. No-op if there is no such offer.
 */
void handoff_abandon(struct handoff *h, const char *socket_path, const char *why);

/**
 * handoff_keep() - keep an offer past its TTL
 * @h:           the handoff
 * @socket_path: the offer's socket
 * @until_usec:  keep it at least until then (now_usec() clock)
 *
 * A pod holds its device, so its container is still coming. No-op if there is no
 * such offer.
 */
void handoff_keep(struct handoff *h, const char *socket_path, unsigned long long until_usec);

/**
 * handoff_record_endpoint() - record in our instance dir the DevicePlugin socket we serve
 * @h:  the handoff
 * @id: the socket file's identity
 *
 * So another instance of ours can tell us from a foreign plugin.
 *
 * Return: 0 or -errno.
 */
int handoff_record_endpoint(struct handoff *h, const struct file_id *id);

/**
 * handoff_endpoint_is_instance() - whether a socket is another live instance of ours
 * @h:  the handoff
 * @id: a DevicePlugin socket file's identity
 *
 * Return: true if another live instance of ours recorded @id.
 */
bool handoff_endpoint_is_instance(const struct handoff *h, const struct file_id *id);

/**
 * handoff_stats() - counters, for metrics
 * @h: the handoff
 *
 * Return: the counters, valid until handoff_free().
 */
const struct handoff_stats *handoff_stats(const struct handoff *h);

struct metrics_writer;
/**
 * handoff_metrics_write() - the handoff's metrics
 * @w:       the writer
 * @handoff: a const struct handoff *
 *
 * A metrics_source_fn: offers, their outcomes, rescues, failed consumer connections,
 * pending sockets (handoff_metrics.c).
 */
void handoff_metrics_write(struct metrics_writer *w, const void *handoff);

/**
 * handoff_metrics_observe_wait() - count a consumed offer's wait in the histogram
 * @st:      the handoff's stats
 * @seconds: from the offer (or its re-serving) to the consumer's ACK
 */
void handoff_metrics_observe_wait(struct handoff_stats *st, double seconds);
