/* Configuration that parses but cannot work, refused before anything starts: every
 * unix socket path the plugin will bind or dial must fit sun_path, and the device node's
 * host path must be absolute. */
#pragma once

#include "config.h"

#include <stdio.h>

/**
 * config_check_paths() - refuse socket paths that cannot fit a sockaddr_un
 * @config: the parsed configuration (after config_finish())
 * @err:    where the one line saying which flag and why is printed
 *
 * Checks the longest path each socket directory will hold: a handoff socket
 * (<socket-dir>/<instance>/<device id>-<counter>.sock), our DevicePlugin sockets, the
 * plugin watcher's, the PodResources socket, a unix --metrics-address and the
 * container's --container-socket-path; and that --device-node-host-path is absolute.
 *
 * Return: 0, or -ENAMETOOLONG or -EINVAL (printed).
 */
int config_check_paths(const struct config *config, FILE *err);
