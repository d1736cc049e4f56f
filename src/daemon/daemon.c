/* The set-up both programs share, and the shutdown: SIGTERM/SIGINT stops the program
 * serving the kubelet (its stop_serving hook), then pending handoff sockets are served
 * until they are consumed or withdrawn or --drain-timeout passes, then exit 0. A
 * second signal exits at once. */
#include "daemon.h"
#include "../basic/error.h"
#include "../basic/error_text.h"
#include "../handoff/instance_dir.h"
#include "../iommufd/iommufd.h"
#include "../log.h"
#include "../metrics/metrics.h"
#include "../selinux/selinux.h"
#include "../util.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

/* A stream or connection that will not flush in time must not hold up the exit. */
#define SHUTDOWN_DEADLINE_USEC 800000ULL

static const char *const daemon_state_names[] = {
    [DAEMON_RUNNING] = "running",
    [DAEMON_CLOSING] = "closing",
    [DAEMON_DRAINING] = "draining",
    [DAEMON_EXITING] = "exiting",
};

/* Moves the shutdown forward; it never goes back, and exiting is final. Each step
 * checks the state, so a callback that comes synchronously (inside the call that
 * asked for it) or later through the loop finds the same thing. Returns false (and
 * changes nothing) for any other move: the caller has nothing to do. */
static bool daemon_set_state(struct daemon *d, enum daemon_state next)
{
	if (next <= d->state)
		return false;
	log_debug(2, "shutdown: %s -> %s", daemon_state_names[d->state], daemon_state_names[next]);
	d->state = next;
	return true;
}

static void daemon_exit(struct daemon *d)
{
	const struct handoff_stats *st = handoff_stats(d->handoff);
	unsigned long long consumed = st->consumed - d->at_signal.consumed;
	unsigned long long withdrawn =
	    st->expired - d->at_signal.expired + st->abandoned - d->at_signal.abandoned;
	size_t left = handoff_pending(d->handoff);

	if (!daemon_set_state(d, DAEMON_EXITING))
		return;
	handoff_remove_pending_listener(&d->drain_listener);
	loop_timer_arm(&d->shutdown_deadline, 0);
	loop_timer_arm(&d->drain_deadline, 0);
	if (d->pending_at_signal || left)
		log_info(
		    "shut down: %zu pending handoff socket(s) at the signal; drained %llu (%llu "
		    "handed over, %llu withdrawn), abandoned %zu",
		    d->pending_at_signal, consumed + withdrawn, consumed, withdrawn, left);
	else
		log_info("shut down cleanly");
	loop_quit(d->loop, 0);
}

static void daemon_pending_changed(void *data, size_t pending)
{
	struct daemon *d = data;

	if (pending == 0 && d->state == DAEMON_DRAINING)
		daemon_exit(d);
}

static void daemon_drain_deadline(void *data)
{
	struct daemon *d = data;

	log_warning("--drain-timeout (%.1f s) passed with %zu handoff socket(s) unclaimed; "
		    "leaving them for the next instance to re-serve",
		    (double)d->config.drain_timeout_usec / 1e6, handoff_pending(d->handoff));
	daemon_exit(d);
}

/* The kubelet's connections are closed (or did not close in time): only pending
 * handoffs can keep us now. Called at most once per shutdown whatever calls it (the
 * program, synchronously or later, or the deadline). */
static void daemon_connections_closed(void *data)
{
	struct daemon *d = data;
	size_t pending = handoff_pending(d->handoff);

	if (d->state != DAEMON_CLOSING)
		return;
	loop_timer_arm(&d->shutdown_deadline, 0);
	if (pending == 0 || d->config.drain_timeout_usec == 0) {
		daemon_exit(d);
		return;
	}
	daemon_set_state(d, DAEMON_DRAINING);
	log_info("draining: serving %zu pending handoff socket(s) for up to %.1f s, until "
		 "their containers take the fd or their pods are gone",
		 pending, (double)d->config.drain_timeout_usec / 1e6);
	handoff_add_pending_listener(d->handoff, &d->drain_listener, daemon_pending_changed, d);
	loop_timer_arm(&d->drain_deadline, d->config.drain_timeout_usec);
}

static void daemon_shutdown_deadline(void *data)
{
	struct daemon *d = data;

	log_warning("connections did not close in time; going on without them");
	daemon_connections_closed(d);
}

static void daemon_signal(void *data, uint32_t events)
{
	struct daemon *d = data;
	struct signalfd_siginfo info;
	(void)events;

	if (read(d->signal_fd, &info, sizeof(info)) != sizeof(info))
		return;
	if (d->state != DAEMON_RUNNING) {
		if (d->state != DAEMON_EXITING)
			log_warning("received %s again: exiting now",
				    strsignal((int)info.ssi_signo));
		daemon_exit(d);
		return;
	}
	daemon_set_state(d, DAEMON_CLOSING);
	d->at_signal = *handoff_stats(d->handoff);
	d->pending_at_signal = handoff_pending(d->handoff);
	log_info("received %s: shutting down", strsignal((int)info.ssi_signo));
	loop_timer_arm(&d->shutdown_deadline, SHUTDOWN_DEADLINE_USEC);
	/* Last: its callback may run before this returns, and may exit. */
	d->stop_serving(d->program, daemon_connections_closed, d);
}

/* A fresh, configured fd for a dead instance's socket (handoff_rescue). */
static int daemon_open_fd(void *data, const char *device_id, int *fd, struct error *e)
{
	struct daemon *d = data;
	(void)device_id;

	return iommufd_open(d->opener, fd, e);
}

static int daemon_setup_signals(struct daemon *d)
{
	sigset_t mask;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	/* A peer that hangs up mid-write must not kill us; send() uses MSG_NOSIGNAL too. */
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR || sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	d->signal_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	if (d->signal_fd < 0)
		return -errno;
	return loop_watch_add(d->loop, &d->signal_watch, d->signal_fd, EPOLLIN, daemon_signal, d);
}

int daemon_configure(struct daemon *d, const struct config_flavor *flavor, const char *name,
		     int argc, char **argv)
{
	d->signal_fd = -1;
	d->name = name;
	switch (config_parse_program(&d->config, flavor, argc, argv, stdout, stderr)) {
	case CONFIG_EXIT_OK:
		config_free(&d->config);
		return 0;
	case CONFIG_EXIT_USAGE:
		config_free(&d->config);
		return 2;
	case CONFIG_RUN:
		break;
	}
	/* Every file we create gets its mode at creation, never from whoever started us:
	 * the service socket is root's 0700 (issue 19 row 10); sockets that must be
	 * wider get a narrow umask around their bind(). */
	umask(077);
	log_set_verbosity(d->config.verbosity);
	log_set_format(d->config.log_format);
	log_info("%s %s starting", name, PLUGIN_VERSION);
	config_log(&d->config);
	/* Before anything is created in them: dirs others could write are made ours
	 * (root, 0700, through an O_NOFOLLOW fd), or we refuse to start. Without
	 * --scratch-dir there is nothing to make ours: the default is used only under the
	 * private tmpfs iommufd.c mounts on it (mode=0700, in our own mount namespace, a
	 * slave: nothing propagates out, nobody else sees it), so what is in it is ours
	 * alone. The one path walk is mount()'s, to a dir under our own /run (in the
	 * DaemonSet, this pod's emptyDir, which no host user can reach). */
	const char *own_dirs[] = {d->config.handoff.socket_dir, d->config.scratch_dir};
	for (size_t i = 0; i < ARRAY_SIZE(own_dirs); i++) {
		struct error e = {0};
		if (own_dirs[i] && instance_dir_make_private(own_dirs[i], &e) < 0) {
			log_error("%s", error_message(&e));
			config_free(&d->config);
			return 2;
		}
	}
	return -1;
}

int daemon_start(struct daemon *d, daemon_stop_serving_fn stop_serving, void *program)
{
	struct config *c = &d->config;
	int r;

	d->stop_serving = stop_serving;
	d->program = program;
	if ((r = loop_new(&d->loop)) < 0)
		return r;
	loop_timer_init(d->loop, &d->shutdown_deadline, daemon_shutdown_deadline, d);
	loop_timer_init(d->loop, &d->drain_deadline, daemon_drain_deadline, d);
	if ((r = daemon_setup_signals(d)) < 0) {
		log_error("cannot set up signal handling: %s", error_text(-r));
		return r;
	}
	if ((r = selinux_labeler_new(c->selinux, c->selinux_label, &d->labeler)) < 0)
		return r;
	c->iommufd.labeler = d->labeler;
	if ((r = iommufd_opener_new(&c->iommufd, &d->opener)) < 0)
		return r;
	c->handoff.labeler = d->labeler;
	if ((r = handoff_new(d->loop, &c->handoff, &d->handoff)) < 0)
		return r;
	/* Before serving: a container created after a crash of our predecessor still
	 * finds a live socket at the path its answer named. */
	handoff_rescue(d->handoff, daemon_open_fd, d);
	return 0;
}

int daemon_run(struct daemon *d)
{
	return loop_run(d->loop);
}

void daemon_stop(struct daemon *d)
{
	metrics_free(d->metrics);
	handoff_free(d->handoff);
	iommufd_opener_free(d->opener);
	selinux_labeler_free(d->labeler);
	if (d->loop) {
		loop_timer_destroy(&d->shutdown_deadline);
		loop_timer_destroy(&d->drain_deadline);
		loop_watch_remove(d->loop, &d->signal_watch);
	}
	if (d->signal_fd >= 0)
		close(d->signal_fd);
	loop_free(d->loop);
	config_free(&d->config);
}
