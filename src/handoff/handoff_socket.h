/* The handoff socket files on disk: the socket dir (created, cleared of stale
 * sockets at start-up) and one fresh listening socket per offer with its name,
 * mode, owner and SELinux label. Internal to the handoff module. */
#pragma once

#include <stddef.h>

struct handoff_options;

/* Creates o->socket_dir (mkdir -p, 0700) if missing and removes the entries named
 * *.sock in it that are sockets. Logs failures. Returns 0 or -errno. */
int handoff_socket_dir_prepare(const char *dir);

/* Creates a non-blocking listening socket at a fresh
 * "<o->socket_dir>/<device_id>-<*counter>.sock" (advancing *counter), with
 * o->socket_mode, o->socket_uid/gid and o->labeler's label, re-creating the dir if
 * it vanished. device_id must be valid already. Returns the listening fd (caller
 * owns) and *path (caller frees), or -errno (ENAMETOOLONG, or the errno of
 * socket/bind/chmod/lchown/lsetxattr/listen) with a one-line reason in msg. */
int handoff_socket_listen(const struct handoff_options *o, const char *device_id,
			  unsigned long long *counter, char **path, char *msg, size_t msg_size);
