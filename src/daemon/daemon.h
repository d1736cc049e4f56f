/* What both programs (iommufd-device-plugin, iommufd-dra-driver) are around their
 * kubelet service: configuration, logs, private dirs, the loop, signals and the drain
 * on SIGTERM, the iommufd opener, the handoff and its rescue, the metrics registry. */
#pragma once

#include "../config/config.h"
#include "../handoff/handoff.h"
#include "../loop/loop.h"

struct iommufd_opener;
struct metrics;
struct selinux_labeler;

/* The daemon's shutdown, one way: a signal closes the kubelet's connections, pending
 * handoffs may then be drained, and the loop is told to quit once. */
enum daemon_state {
	DAEMON_RUNNING,
	DAEMON_CLOSING,	 /* signalled: the kubelet's connections are closing */
	DAEMON_DRAINING, /* they are closed; pending handoff sockets are still served */
	DAEMON_EXITING,	 /* loop_quit() called: nothing more happens */
};

/* The program's part of a shutdown: stop serving the kubelet and call
 * closed(closed_data) once its connections are closed (now or later). */
typedef void (*daemon_stop_serving_fn)(void *program, void (*closed)(void *data),
				       void *closed_data);

struct daemon {
	struct config config;
	const char *name; /* the program's, for logs */
	struct loop *loop;
	struct selinux_labeler *labeler;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct metrics *metrics; /* the program fills and serves it; freed first */
	daemon_stop_serving_fn stop_serving;
	void *program;
	/* the shutdown */
	int signal_fd;
	struct loop_watch signal_watch;
	struct loop_timer shutdown_deadline; /* gRPC connections must close by then */
	struct loop_timer drain_deadline;    /* --drain-timeout */
	struct handoff_pending_listener drain_listener;
	enum daemon_state state;
	struct handoff_stats at_signal; /* to count what the drain did */
	size_t pending_at_signal;
};

/**
 * daemon_configure() - parse the flags, set up logs and make our dirs private
 * @d:       zeroed; its config is filled
 * @flavor: which program's flags (config_device_plugin_flavor or config_dra_flavor)
 * @name:    the program's name, for logs
 * @argc:    as main() got it
 * @argv:    as main() got it
 *
 * Return: -1 to go on, else the exit code for main() (help shown, usage error, a
 * dir that cannot be made ours): then the configuration is freed.
 */
int daemon_configure(struct daemon *d, const struct config_flavor *flavor, const char *name,
		     int argc, char **argv);

/**
 * daemon_start() - the loop, signals, SELinux labeler, iommufd opener and handoff
 * @d:            configured
 * @stop_serving: the program's part of a shutdown
 * @program:      passed to @stop_serving
 *
 * Also re-serves what dead instances left in the socket dir (handoff_rescue()), so a
 * container created after a crash of our predecessor still finds a live socket.
 *
 * Return: 0 or -errno (logged).
 */
int daemon_start(struct daemon *d, daemon_stop_serving_fn stop_serving, void *program);

/**
 * daemon_run() - run the loop until the shutdown ends
 * @d: started
 *
 * Return: 0 or -errno (logged).
 */
int daemon_run(struct daemon *d);

/**
 * daemon_stop() - free what daemon_start() made, and the configuration
 * @d: the daemon; the program's own modules must be freed before
 */
void daemon_stop(struct daemon *d);
