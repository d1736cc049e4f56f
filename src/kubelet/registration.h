/* Registration with the kubelet: serve our socket in the kubelet's device plugin
 * directory, call Registration.Register on kubelet.sock, and do both again whenever
 * the kubelet restarts (it deletes every socket there and creates kubelet.sock anew).
 * Watches the directory with inotify: no polling, no wake-ups while nothing changes. */
#pragma once

#include "kubelet_options.h"
#include "../loop/loop.h"

#include <stdbool.h>

struct registration;
struct device_plugin;
struct handoff;

/* The registration's one state: who has our DevicePlugin socket path and, while we
 * serve it, how far the Register on kubelet.sock got. Moves are checked
 * (registration_transition_allowed()) and logged at -v 2. */
enum registration_state {
	REGISTRATION_NONE,	  /* not started yet */
	REGISTRATION_SERVING,	  /* we serve it; not registered (waiting, or a retry is due) */
	REGISTRATION_REGISTERING, /* we serve it; a Register is in flight */
	REGISTRATION_REGISTERED,  /* we serve it; the kubelet accepted our Register */
	REGISTRATION_GONE,	  /* deleted: served again at kubelet start or after a grace */
	REGISTRATION_FOREIGN,	  /* a live server that is not one of our instances has it */
	REGISTRATION_SUPERSEDED,  /* a newer instance of ours took it: for good */
	REGISTRATION_STATE_COUNT
};

/**
 * registration_transition_allowed() - whether the registration may move between states
 * @from: the state it is in
 * @to:   the state asked for (a different one)
 *
 * Return: true if the move is one the lifecycle has (superseded is final, for one).
 */
bool registration_transition_allowed(enum registration_state from, enum registration_state to);

/**
 * registration_state_name() - a state's name, for the log
 * @state: the state
 *
 * Return: a static string ("invalid" for a value outside the enum).
 */
const char *registration_state_name(enum registration_state state);

/**
 * registration_state_change() - registration_set_state() on a bare state
 * @state: the state to change
 * @next:  the state to move to
 *
 * Return: 0 (moved and logged at -v 2, or already there), or -EINVAL for a move
 * registration_transition_allowed() refuses (logged as a bug; *@state unchanged).
 */
int registration_state_change(enum registration_state *state, enum registration_state next);

/**
 * registration_state_serving() - whether we serve our socket in this state
 * @state: the state
 *
 * Return: true for serving, registering and registered.
 */
bool registration_state_serving(enum registration_state state);

struct registration_stats {
	unsigned long long registrations; /* Register calls the kubelet accepted */
	unsigned long long register_failures;
	unsigned long long socket_recreations;	 /* our socket was deleted and served again */
	unsigned long long foreign_conflicts;	 /* times a foreign server held our path */
	unsigned long long streams_ended;	 /* the kubelet ended our stream while we served */
	unsigned long long stale_endpoint_moves; /* "already connected": moved to the other name */
};

/**
 * registration_new() - create the kubelet.sock registration
 * @loop:    the loop
 * @config:  borrowed, must outlive it
 * @plugin:  borrowed, must outlive it
 * @handoff: knows our other instances; borrowed, must outlive it
 * @out:     set to it (free with registration_free())
 *
 * Nothing is watched or served until registration_start().
 *
 * Return: 0; only allocation can fail, and that aborts.
 */
int registration_new(struct loop *loop, const struct kubelet_options *config,
		     struct device_plugin *plugin, struct handoff *handoff,
		     struct registration **out);

/**
 * registration_free() - free it
 * @registration: it
 */
void registration_free(struct registration *registration);

/**
 * registration_start() - serve the plugin socket and register
 * @registration: it
 *
 * Registers now if kubelet.sock exists, else when it appears. A live foreign server
 * on the path is reported and waited out (returns 0); an older instance of ours is
 * taken over.
 *
 * Return: 0, or -errno if the directory cannot be watched or the socket cannot be
 * served (logged).
 */
int registration_start(struct registration *registration);
/**
 * registration_stop() - stop watching and cancel any Register in flight (shutdown)
 * @registration: it
 */
void registration_stop(struct registration *registration);

/**
 * registration_slot_name() - one of the two names an instance of ours serves
 * @socket_path: the --socket-name path (…/kubevirt-iommufd.sock)
 * @slot:        0, or 1 for a newer instance beside an older one
 *
 * Return: …/kubevirt-iommufd-<slot>.sock (a name without .sock gets "-<slot>"); free() it.
 */
char *registration_slot_name(const char *socket_path, int slot);

/**
 * registration_backoff_next() - the wait before the next Register after one more failure
 * @current_usec: the last wait (0: none yet, or a success since)
 *
 * Return: 5 ms first (the kubelet binds its socket a moment before it listens), then
 * doubling, at most 10 s.
 */
unsigned long long registration_backoff_next(unsigned long long current_usec);

/**
 * registration_registered() - whether we are registered through kubelet.sock
 * @registration: it
 *
 * Return: true in REGISTRATION_REGISTERED.
 */
bool registration_registered(const struct registration *registration);

/**
 * registration_set_state() - move the registration to another state
 * @registration: it
 * @next:         the state to move to
 *
 * The one place its state changes (registration.c's, and its tests'): a move the
 * lifecycle has is logged at -v 2; staying is nothing.
 *
 * Return: 0, or -EINVAL for a move registration_transition_allowed() refuses (logged as
 * a bug; the state is unchanged).
 */
int registration_set_state(struct registration *registration, enum registration_state next);

/**
 * registration_state() - the registration's state
 * @registration: it
 *
 * Return: the state, see enum registration_state.
 */
enum registration_state registration_state(const struct registration *registration);

/**
 * registration_stats() - counters, for metrics
 * @registration: it
 *
 * Return: the counters, valid until registration_free().
 */
const struct registration_stats *registration_stats(const struct registration *registration);

struct metrics_writer;
/**
 * registration_metrics_write() - the registration's metrics
 * @w:            the writer
 * @registration: a const struct registration *
 *
 * A metrics_source_fn: Register calls, socket recreations, conflicts over our socket
 * path (kubelet_metrics.c).
 */
void registration_metrics_write(struct metrics_writer *w, const void *registration);
