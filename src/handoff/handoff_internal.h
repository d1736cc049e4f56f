/* The handoff module's shared state, for its own files only (handoff.c: offers and
 * peers; handoff_rescue.c: re-serving what dead instances left; instance_dir.c: the
 * on-disk protocol between instances). */
#pragma once

#include "handoff.h"
#include "handoff_socket.h"
#include "../basic/list.h"
#include "../loop/deadline_list.h"
#include "../loop/log_ratelimit.h"
#include "../loop/loop.h"
#include "../loop/loop_inotify.h"

#include <stdbool.h>
#include <stddef.h>

/* At most this many siblings are watched; more instances beside each other is a
 * mistake (a rolling update runs two), and an unwatched one is still rescued at our
 * next start or its ".left-" announcement. */
#define HANDOFF_MAX_SIBLINGS 8

/* A live instance beside us, watched through its "alive" socket. */
struct handoff_sibling {
	struct handoff *h;
	char *path; /* its instance dir; NULL: the slot is free */
	char *name; /* the dir's name in the socket dir */
	int fd;	    /* connected to its alive socket; -1: it died, its lock not yet free */
	struct loop_watch watch;
};

struct handoff {
	struct loop *loop;
	struct handoff_options opts; /* socket_dir points to our copy */
	int socket_dir_fd; /* opts.socket_dir, O_DIRECTORY|O_NOFOLLOW: all below is *at() */
	unsigned long long name_counter;
	struct handoff_dir *own_dir;  /* our instance dir: new offers go here */
	struct handoff_dir **adopted; /* dead instances' dirs we re-serve sockets of */
	size_t adopted_count;
	struct list offers; /* by creation */
	/* Every change of a deadline re-arms its list's timer (deadline_list.h). */
	struct deadline_list expiries; /* offers' TTLs (moved by handoff_keep) */
	struct deadline_list acks;     /* sent peers' ACK deadlines */
	size_t pending;
	struct handoff_stats stats;
	struct list pending_listeners;
	bool notifying;		       /* pending listeners are being called: they must not offer or
					* withdraw (asserted) */
	struct log_ratelimit refusals; /* "refused pid ..." lines a peer can cause */
	/* After handoff_rescue: watching the socket dir for an instance that exits with
	 * sockets left (it drops a ".left-<id>" file once its lock is free). */
	handoff_open_fn open_fd;
	void *open_data;
	struct loop_inotify dir_watch;
	bool dir_seen_announced, dir_seen_instance; /* in the current batch of events */
	/* After handoff_rescue: siblings whose death re-serves their offers at once. */
	struct handoff_sibling siblings[HANDOFF_MAX_SIBLINGS];
	struct loop_timer rescue_retry; /* a dead sibling's lock is not free yet */
	unsigned rescue_retries;
};

struct handoff_offer {
	struct handoff *h;
	struct list link;
	char *device_id;
	char *path;
	struct handoff_dir *dir; /* the instance dir its socket is in; NULL: the socket dir */
	int fd;			 /* the fd handed over */
	int listen_fd;
	struct loop_listener listener;
	unsigned long long offered;
	struct deadline_entry expiry; /* the TTL, or later while a pod holds its device */
	struct list peers;
};

/**
 * handoff_offer_start() - make an offer of an fd on a listening socket
 * @h:         the handoff
 * @dir:       the instance dir the socket is in; NULL: the socket dir itself
 * @device_id: the device
 * @fd:        the fd offered; taken
 * @listen_fd: the listening socket; taken
 * @path:      its path; taken
 * @e:         on failure, the reason; may be NULL
 *
 * On failure everything taken is released.
 *
 * Return: 0 or -errno.
 */
int handoff_offer_start(struct handoff *h, struct handoff_dir *dir, const char *device_id, int fd,
			int listen_fd, char *path, struct error *e);

/**
 * handoff_rescue_watch_dir() - (re)start watching the socket dir with inotify
 * @h: the handoff; nothing before handoff_rescue() has run (logged if it fails)
 *
 * Also after the socket dir was made again (handoff_offer), whose old watch is gone.
 */
void handoff_rescue_watch_dir(struct handoff *h);

/**
 * handoff_rescue_stop() - stop watching the socket dir and the siblings
 * @h: the handoff; what handoff_rescue() started is undone (nothing if it never ran)
 */
void handoff_rescue_stop(struct handoff *h);

/**
 * handoff_device_id_valid() - whether a device id is safe as a socket file name part
 * @id: the device id
 *
 * Return: true for 1-64 of [A-Za-z0-9._-], no leading '.'.
 */
bool handoff_device_id_valid(const char *id);
