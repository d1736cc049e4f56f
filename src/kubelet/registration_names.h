/* The names registration works with in the kubelet's directory: our two slot names
 * beside --socket-name, and which of the watched names a batch of inotify events
 * touched. Private to registration.c (and its tests). */
#pragma once

#include <stdbool.h>
#include <sys/inotify.h>

/* What one batch of the directory's inotify events said. The names are file names
 * (registration_socket_name()), borrowed. */
struct registration_dir_events {
	const char *canonical; /* --socket-name: KubeVirt's */
	const char *serving;   /* the slot we serve */
	const char *other;     /* our other slot */
	bool kubelet_started;  /* kubelet.sock was created */
	bool ours_changed;     /* the slot we serve was created, deleted or replaced */
	bool other_appeared;   /* our other slot was created */
	bool canonical_changed;
};

/**
 * registration_socket_name() - the file name of a socket path
 * @path: the path
 *
 * Return: what follows the last '/' (all of @path without one); points into @path.
 */
const char *registration_socket_name(const char *path);

/**
 * registration_dir_events_add() - note what one inotify event of the directory says
 * @events: the names to look for (set by the caller); the flags are set (never
 *          cleared) for what happened. A queue overflow sets every flag that can be
 *          checked without the events.
 * @ev:     the event
 */
void registration_dir_events_add(struct registration_dir_events *events,
				 const struct inotify_event *ev);
