/* The handoff socket files: one fresh listening socket per offer, with its mode
 * (given at bind()), owner and SELinux label set before it listens. The instance
 * dirs they live in, and their protocol, are instance_dir.h's. Internal to the
 * handoff module. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "instance_dir.h"

struct error;
struct handoff_options;

/**
 * handoff_socket_listen() - create a listening socket for an offer
 * @o:         the mode, owner and label to give it
 * @dir:       the instance dir it is made in, through its fd
 * @device_id: must be valid already
 * @counter:   the socket is "<dir>/<device_id>-<*counter>.sock"; advanced
 * @path:      set to its path (caller frees)
 * @e:         on failure, a one-line reason; may be NULL
 *
 * The socket is non-blocking. Nothing is logged but a failed cleanup.
 *
 * Return: the listening fd (caller owns), or -errno: ENAMETOOLONG (the path peers
 * connect to does not fit in sun_path), or the errno of
 * socket/bind/fchownat/lsetxattr/listen.
 */
int handoff_socket_listen(const struct handoff_options *o, const struct handoff_dir *dir,
			  const char *device_id, unsigned long long *counter, char **path,
			  struct error *e);

/**
 * handoff_socket_listen_at() - handoff_socket_listen() at exactly a path (a rescue)
 * @o:      the mode, owner and label to give it
 * @dir_fd: the dir it is in
 * @path:   its path, for messages
 * @name:   its name in @dir_fd; a dead socket there is replaced
 * @e:      on failure, a one-line reason; may be NULL
 *
 * Return: the listening fd (caller owns), or -errno as handoff_socket_listen().
 */
int handoff_socket_listen_at(const struct handoff_options *o, int dir_fd, const char *path,
			     const char *name, struct error *e);
