/* Per-allocation handoff sockets and their peers' lifecycle: accept, send the fd, wait
 * for the ACK (the bytes on the wire are handoff_peer.c's); consumed once. Offers' TTLs and peers'
 * ACK deadlines sit in two deadline lists, so every change re-arms its timer. A
 * refused peer costs one log line per burst (log_ratelimit.h). Re-serving a dead
 * instance's sockets is in handoff_rescue.c. */
#include "handoff.h"
#include "../basic/error_text.h"
#include "handoff_internal.h"
#include "handoff_peer.h"
#include "handoff_socket.h"
#include "../basic/error.h"
#include "../basic/list.h"
#include "../log.h"
#include "../loop/loop.h"
#include "../util.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define HANDOFF_MAX_DEVICE_ID 64

struct handoff_peer {
	struct handoff_offer *offer;
	struct list offer_link;
	int fd;
	struct loop_watch watch;
	bool sent;
	struct ucred cred;
	char *cgroup;
	struct deadline_entry ack; /* in handoff.acks */
};

void handoff_options_init(struct handoff_options *o)
{
	*o = (struct handoff_options){
	    .socket_dir = HANDOFF_DEFAULT_SOCKET_DIR,
	    .labeler = NULL,
	    .ttl_usec = HANDOFF_DEFAULT_TTL_USEC,
	    .ack_timeout_usec = HANDOFF_DEFAULT_ACK_TIMEOUT_USEC,
	    .socket_mode = HANDOFF_DEFAULT_SOCKET_MODE,
	    .socket_uid = (uid_t)-1,
	    .socket_gid = (gid_t)-1,
	    .max_peers = HANDOFF_DEFAULT_MAX_PEERS,
	};
}

/* Tells the pending listeners the new count, with the change complete. */
static void handoff_pending_changed(struct handoff *h)
{
	struct handoff_pending_listener *l, *next;

	h->notifying = true;
	list_for_each_safe(l, next, &h->pending_listeners, link) /* it may remove itself */
	    l->fn(l->data, h->pending);
	h->notifying = false;
}

static void peer_close(struct handoff_peer *peer)
{
	struct handoff_offer *offer = peer->offer;
	struct handoff *h = offer->h;

	loop_watch_remove(h->loop, &peer->watch);
	close(peer->fd);
	free(peer->cgroup);
	list_unlink(&peer->offer_link);
	deadline_cancel(&h->acks, &peer->ack);
	free(peer);
	loop_listener_closed(&offer->listener);
}

/* Drops a dir's count of offers; an adopted dir is removed with its last one. */
static void dir_offer_gone(struct handoff *h, struct handoff_dir *dir)
{
	if (!dir || --dir->offers > 0 || dir->own)
		return;
	for (size_t i = 0; i < h->adopted_count; i++) {
		if (h->adopted[i] == dir) {
			h->adopted[i] = h->adopted[--h->adopted_count];
			break;
		}
	}
	handoff_dir_release(dir, true);
}

/* Withdraws an offer: closes its connections (counted refused), the connections
 * still in its backlog (refused too), the listener, our copy of the fd, and, with
 * unlink_socket, removes the socket (without: it stays for the next instance). */
static void offer_close(struct handoff_offer *offer, bool unlink_socket)
{
	struct handoff *h = offer->h;
	struct handoff_peer *peer, *next;

	loop_listener_stop(&offer->listener);
	list_for_each_safe(peer, next, &offer->peers, offer_link)
	{
		h->stats.refused++;
		peer_close(peer);
	}
	for (;;) {
		int fd = unlink_socket ? accept4(offer->listen_fd, NULL, NULL, SOCK_CLOEXEC) : -1;
		if (fd < 0)
			break;
		close(fd);
		h->stats.refused++;
	}
	close(offer->listen_fd);
	if (unlink_socket &&
	    unlinkat(offer->dir ? offer->dir->fd : h->socket_dir_fd, strrchr(offer->path, '/') + 1,
		     0) < 0 &&
	    errno != ENOENT)
		log_warning("cannot remove handoff socket %s: %s", offer->path, error_text(errno));
	close(offer->fd);
	list_unlink(&offer->link);
	deadline_cancel(&h->expiries, &offer->expiry);
	h->pending--;
	if (unlink_socket)
		dir_offer_gone(h, offer->dir);
	handoff_pending_changed(h);
	free(offer->device_id);
	free(offer->path);
	free(offer);
}

static void offer_destroy(struct handoff_offer *offer)
{
	offer_close(offer, true);
}

static void peer_consumed(struct handoff_peer *peer)
{
	struct handoff_offer *offer = peer->offer;
	struct handoff *h = offer->h;

	h->stats.consumed++;
	handoff_metrics_observe_wait(&h->stats, (double)(now_usec() - offer->offered) / 1e6);
	log_info_f(LOG_FIELDS(LOG_STR("device", offer->device_id), LOG_STR("socket", offer->path),
			      LOG_NUM("peer_pid", peer->cred.pid), LOG_NUM("uid", peer->cred.uid),
			      LOG_NUM("gid", peer->cred.gid), LOG_STR("cgroup", peer->cgroup)),
		   "handed the fd of %s to pid %d (uid %u, gid %u, cgroup %s) via %s",
		   offer->device_id, (int)peer->cred.pid, (unsigned)peer->cred.uid,
		   (unsigned)peer->cred.gid, peer->cgroup, offer->path);
	peer_close(peer);
	offer_destroy(offer);
}

static void peer_gone(struct handoff_peer *peer, const char *why)
{
	struct handoff *h = peer->offer->h;

	h->stats.peer_gone++;
	log_debug(1, "pid %d left %s before acknowledging (%s); the offer stays",
		  (int)peer->cred.pid, peer->offer->path, why);
	peer_close(peer);
}

/* Sends the fd (handoff_peer_send_fd); a full socket buffer waits for EPOLLOUT. */
static void peer_send(struct handoff_peer *peer)
{
	struct handoff *h = peer->offer->h;
	int r = handoff_peer_send_fd(peer->fd, peer->offer->fd);
	uint32_t events = EPOLLIN;

	if (r == -EAGAIN) {
		events = EPOLLOUT;
	} else if (r < 0) {
		peer_gone(peer, error_text(-r));
		return;
	} else {
		peer->sent = true;
	}
	r = loop_watch_modify(h->loop, &peer->watch, events);
	if (r < 0) {
		log_error("cannot watch handoff peer on %s: %s", peer->offer->path, error_text(-r));
		h->stats.refused++;
		peer_close(peer);
	}
}

static void peer_event(void *data, uint32_t events)
{
	struct handoff_peer *peer = data;
	struct handoff *h = peer->offer->h;

	(void)events;
	if (!peer->sent) {
		peer_send(peer);
		return;
	}
	int r = handoff_peer_read_ack(peer->fd);
	if (r == -EAGAIN)
		return;
	if (r == -EBADMSG) {
		h->stats.refused++;
		if (log_ratelimit_allow(&h->refusals))
			log_warning_f(LOG_FIELDS(LOG_STR("device", peer->offer->device_id),
						 LOG_STR("socket", peer->offer->path),
						 LOG_NUM("peer_pid", peer->cred.pid),
						 LOG_NUM("uid", peer->cred.uid),
						 LOG_STR("reason", "ack_before_fd")),
				      "refused pid %d on %s: it answered without taking the fd; "
				      "closing it, the offer stays",
				      (int)peer->cred.pid, peer->offer->path);
		peer_close(peer);
	} else if (r < 0) {
		peer_gone(peer, r == -ECONNRESET ? "hung up" : error_text(-r));
	} else {
		peer_consumed(peer);
	}
}

static void peer_start(struct handoff_offer *offer, int fd)
{
	struct handoff *h = offer->h;
	struct handoff_peer_identity who;

	handoff_peer_identify(fd, offer->path, &who);
	if (!handoff_peer_allowed(&h->opts, &who)) {
		h->stats.unauthorized++;
		/* A peer can do this in a loop: one line per burst, then a count. */
		if (log_ratelimit_allow(&h->refusals))
			log_warning_f(LOG_FIELDS(LOG_STR("device", offer->device_id),
						 LOG_STR("socket", offer->path),
						 LOG_NUM("peer_pid", who.cred.pid),
						 LOG_NUM("uid", who.cred.uid),
						 LOG_STR("reason", "unauthorized")),
				      "refused pid %d (uid %d, gid %d, cgroup %s) on %s: its uid "
				      "is not in --allowed-uids; the offer stays",
				      (int)who.cred.pid, (int)who.cred.uid, (int)who.cred.gid,
				      who.cgroup, offer->path);
		close(fd);
		loop_listener_closed(&offer->listener);
		return;
	}
	struct handoff_peer *peer = xcalloc(1, sizeof(*peer));
	peer->offer = offer;
	peer->fd = fd;
	peer->cred = who.cred;
	peer->cgroup = xstrdup(who.cgroup);
	log_debug(1, "pid %d (uid %u, gid %u, cgroup %s) connected to %s", (int)peer->cred.pid,
		  (unsigned)peer->cred.uid, (unsigned)peer->cred.gid, peer->cgroup, offer->path);
	deadline_entry_init(&peer->ack);
	deadline_set(&h->acks, &peer->ack, now_usec() + h->opts.ack_timeout_usec);
	list_append(&offer->peers, &peer->offer_link);
	int r = loop_watch_add(h->loop, &peer->watch, fd, 0, peer_event, peer);
	if (r < 0) {
		log_error("cannot watch handoff peer on %s: %s", offer->path, error_text(-r));
		h->stats.refused++;
		peer_close(peer);
		return;
	}
	peer_send(peer);
}

static void offer_accept(void *data, int fd)
{
	peer_start(data, fd);
}

static void offer_expired(void *data, struct deadline_entry *entry)
{
	struct handoff_offer *offer = container_of(entry, struct handoff_offer, expiry);
	struct handoff *h = data;
	unsigned long long now = now_usec();

	h->stats.expired++;
	log_info_f(LOG_FIELDS(LOG_STR("device", offer->device_id), LOG_STR("socket", offer->path),
			      LOG_STR("reason", "expired")),
		   "nobody took the fd of %s within %.1f s; removing %s", offer->device_id,
		   (double)(now - offer->offered) / 1e6, offer->path);
	offer_destroy(offer);
}

static void ack_timed_out(void *data, struct deadline_entry *entry)
{
	struct handoff_peer *peer = container_of(entry, struct handoff_peer, ack);
	struct handoff *h = data;

	h->stats.ack_timeouts++;
	log_warning("pid %d (uid %u) did not acknowledge on %s within %llu ms; closing it, the "
		    "offer stays",
		    (int)peer->cred.pid, (unsigned)peer->cred.uid, peer->offer->path,
		    h->opts.ack_timeout_usec / 1000);
	peer_close(peer);
}

int handoff_new(struct loop *loop, const struct handoff_options *o, struct handoff **out)
{
	struct error e = {0};

	if (!o->ttl_usec || !o->ack_timeout_usec || !o->max_peers || !o->socket_dir ||
	    o->socket_dir[0] != '/') {
		log_error("invalid handoff options: TTL, ACK timeout and peers per offer must "
			  "be positive and the socket dir an absolute path");
		return -EINVAL;
	}
	struct handoff *h = xcalloc(1, sizeof(*h));
	h->loop = loop;
	h->opts = *o;
	h->opts.socket_dir = xstrdup(o->socket_dir);
	list_init(&h->offers);
	list_init(&h->pending_listeners);
	deadline_list_init(loop, &h->expiries, offer_expired, h);
	deadline_list_init(loop, &h->acks, ack_timed_out, h);
	log_ratelimit_init(loop, &h->refusals, LOG_RATELIMIT_INTERVAL_USEC,
			   "handoff connections refused (uid not in --allowed-uids, or an ACK "
			   "before taking the fd)");
	h->socket_dir_fd = instance_dir_open_private(o->socket_dir, &e);
	int r = h->socket_dir_fd < 0
		    ? h->socket_dir_fd
		    : handoff_dir_create_own(h->socket_dir_fd, o->socket_dir, &h->own_dir, &e);
	if (r < 0) {
		log_error("%s", error_message(&e));
		handoff_free(h);
		return r;
	}
	log_debug(1, "instance dir %s", h->own_dir->path);
	*out = h;
	return 0;
}

void handoff_free(struct handoff *h)
{
	if (!h)
		return;
	size_t left = h->pending;
	/* Pending offers keep their socket files and their dir's lock goes with us: the
	 * next instance finds the lock free and re-serves them (handoff_rescue). */
	while (!list_empty(&h->offers))
		offer_close(list_first(&h->offers, struct handoff_offer, link), false);
	for (size_t i = 0; i < h->adopted_count; i++)
		handoff_dir_release(h->adopted[i], h->adopted[i]->offers == 0);
	free(h->adopted);
	if (h->own_dir)
		handoff_dir_release(h->own_dir, h->own_dir->offers == 0);
	if (left) {
		/* Our locks are free now: tell a live instance beside us to re-serve them. */
		int r = handoff_dirs_announce_left(h->socket_dir_fd);
		log_warning("left %zu unclaimed handoff socket(s) for the next instance to "
			    "re-serve%s",
			    left, r < 0 ? "" : " (announced to a running one)");
	}
	handoff_rescue_stop(h);
	if (h->socket_dir_fd >= 0)
		close(h->socket_dir_fd);
	deadline_list_destroy(&h->expiries);
	deadline_list_destroy(&h->acks);
	log_ratelimit_destroy(&h->refusals);
	free((char *)h->opts.socket_dir);
	free(h);
}

bool handoff_device_id_valid(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > HANDOFF_MAX_DEVICE_ID || id[0] == '.')
		return false;
	return strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int handoff_offer_start(struct handoff *h, struct handoff_dir *dir, const char *device_id, int fd,
			int listen_fd, char *path, struct error *e)
{
	assert(!h->notifying); /* handoff_pending_fn's rule */
	struct handoff_offer *offer = xcalloc(1, sizeof(*offer));
	offer->h = h;
	offer->device_id = xstrdup(device_id);
	offer->path = path;
	offer->dir = dir;
	if (dir)
		dir->offers++;
	offer->listen_fd = listen_fd;
	offer->fd = fd;
	offer->offered = now_usec();
	deadline_entry_init(&offer->expiry);
	deadline_set(&h->expiries, &offer->expiry, offer->offered + h->opts.ttl_usec);
	list_init(&offer->peers);
	list_append(&h->offers, &offer->link);
	h->pending++;
	int r = loop_listener_start(h->loop, &offer->listener, listen_fd, offer->path, offer_accept,
				    offer);
	if (r < 0) {
		error_set(e, r, "cannot watch handoff socket %s: %s", offer->path, error_text(-r));
		offer_destroy(offer);
		return r;
	}
	loop_listener_set_cap(&offer->listener, h->opts.max_peers);
	handoff_pending_changed(h);
	return 0;
}

/* The socket dir, or our instance dir in it, was removed at run time (bind: ENOENT):
 * makes both again. The old dir goes, or, while offers in it remain, is kept with the
 * adopted ones (released with its last offer). */
static int handoff_make_dirs_again(struct handoff *h, struct error *e)
{
	struct handoff_dir *own = NULL;
	int sd = instance_dir_open_private(h->opts.socket_dir, e);
	int r = sd < 0 ? sd : handoff_dir_create_own(sd, h->opts.socket_dir, &own, e);

	if (r < 0) {
		if (sd >= 0)
			close(sd);
		return r;
	}
	struct handoff_dir *old = h->own_dir;
	log_warning("instance dir %s was removed at run time; made %s", old->path, own->path);
	old->own = false;
	if (old->offers) {
		h->adopted =
		    xrealloc(h->adopted, (h->adopted_count + 1) * sizeof(struct handoff_dir *));
		h->adopted[h->adopted_count++] = old;
	} else {
		handoff_dir_release(old, true);
	}
	close(h->socket_dir_fd);
	h->socket_dir_fd = sd;
	h->own_dir = own;
	handoff_rescue_watch_dir(h);
	return 0;
}

int handoff_offer(struct handoff *h, const char *device_id, int fd_in, const char **socket_path,
		  struct error *e)
{
	cleanup_close int fd = fd_in;
	char *path = NULL;
	struct handoff_offer *old;

	assert(!h->notifying); /* handoff_pending_fn's rule */
	if (!handoff_device_id_valid(device_id))
		return error_set(e, -EINVAL,
				 "invalid device id \"%.*s\": want 1-%d characters of "
				 "[A-Za-z0-9._-], not starting with '.'",
				 HANDOFF_MAX_DEVICE_ID, device_id, HANDOFF_MAX_DEVICE_ID);
	list_for_each (old, &h->offers, link) {
		if (strcmp(old->device_id, device_id) == 0) {
			h->stats.replaced++;
			log_info("%s is allocated again; withdrawing its unclaimed socket %s",
				 device_id, old->path);
			offer_destroy(old);
			break;
		}
	}

	int listen_fd =
	    handoff_socket_listen(&h->opts, h->own_dir, device_id, &h->name_counter, &path, e);
	if (listen_fd == -ENOENT && handoff_make_dirs_again(h, e) == 0)
		listen_fd = handoff_socket_listen(&h->opts, h->own_dir, device_id, &h->name_counter,
						  &path, e);
	if (listen_fd < 0)
		return listen_fd;
	int r = handoff_offer_start(h, h->own_dir, device_id, take_fd(&fd), listen_fd, path, e);
	if (r < 0)
		return r;
	h->stats.offered++;
	log_debug(1, "offering the fd of %s on %s", device_id, path);
	*socket_path = path;
	return 0;
}

static struct handoff_offer *offer_by_path(struct handoff *h, const char *socket_path)
{
	struct handoff_offer *offer;

	list_for_each (offer, &h->offers, link)
		if (strcmp(offer->path, socket_path) == 0)
			return offer;
	return NULL;
}

void handoff_keep(struct handoff *h, const char *socket_path, unsigned long long until_usec)
{
	struct handoff_offer *offer = offer_by_path(h, socket_path);

	if (offer && until_usec > offer->expiry.at)
		deadline_set(&h->expiries, &offer->expiry, until_usec);
}

void handoff_withdraw(struct handoff *h, const char *socket_path)
{
	struct handoff_offer *offer = offer_by_path(h, socket_path);

	assert(!h->notifying); /* handoff_pending_fn's rule */
	if (!offer)
		return;
	log_debug(1, "withdrawing %s: its Allocate failed", offer->path);
	h->stats.withdrawn++; /* never answered: counted apart (counters only go up) */
	offer_destroy(offer);
}

size_t handoff_pending(const struct handoff *h)
{
	return h->pending;
}

void handoff_add_pending_listener(struct handoff *h, struct handoff_pending_listener *l,
				  handoff_pending_fn fn, void *data)
{
	l->fn = fn;
	l->data = data;
	handoff_remove_pending_listener(l);
	list_append(&h->pending_listeners, &l->link);
}

void handoff_remove_pending_listener(struct handoff_pending_listener *l)
{
	if (l->link.next)
		list_unlink(&l->link);
}

void handoff_for_each_offer(const struct handoff *h,
			    void (*fn)(void *data, const struct handoff_offer_info *info),
			    void *data)
{
	const struct handoff_offer *o;

	list_for_each (o, &h->offers, link) {
		const struct handoff_offer_info info = {
		    .device_id = o->device_id,
		    .socket_path = o->path,
		    .offered_usec = o->offered,
		};
		fn(data, &info);
	}
}

void handoff_abandon(struct handoff *h, const char *socket_path, const char *why)
{
	struct handoff_offer *offer = offer_by_path(h, socket_path);

	assert(!h->notifying); /* handoff_pending_fn's rule */
	if (!offer)
		return;
	h->stats.abandoned++;
	log_info_f(LOG_FIELDS(LOG_STR("device", offer->device_id), LOG_STR("socket", offer->path),
			      LOG_STR("reason", why)),
		   "withdrawing the unclaimed fd of %s and removing %s: %s", offer->device_id,
		   offer->path, why);
	offer_destroy(offer);
}

const struct handoff_stats *handoff_stats(const struct handoff *h)
{
	return &h->stats;
}
