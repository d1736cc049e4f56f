/* The exact check: a device plugin for our resource is on this node when a server
 * listens (unix_socket_probe() connects) on one of the device plugin's sockets:
 *   --kubelet-dir/--socket-name and its two slot names (<name>-0.sock, <name>-1.sock):
 *     registered on kubelet.sock, by us or by KubeVirt's own plugin;
 *   --plugins-registry-dir/--socket-name and its slot-1 name: registered through the
 *     plugin watcher (registration_slot_name(), plugin_watcher.c).
 * A socket file nobody listens on (a plugin that died) is no conflict. The check runs
 * at start and after each batch of inotify events in those two directories; a server
 * binds (the event) a moment before it listens, so while a candidate is a socket
 * nobody listens on, the check is repeated every RECHECK_USEC, RECHECK_MAX times at
 * most per batch (a dead plugin's file costs that much, then nothing). */
#include "node_exclusivity.h"
#include "../basic/error_text.h"
#include "../basic/unix_socket.h"
#include "../kubelet/kubelet_options.h"
#include "../kubelet/registration.h"
#include "../log.h"
#include "../loop/loop_inotify.h"
#include "../metrics/metrics.h"
#include "../util.h"

#include <errno.h>

#define CANDIDATES   5
#define RECHECK_USEC 200000ULL
#define RECHECK_MAX  25

struct node_exclusivity {
	char *candidates[CANDIDATES];
	const char *found;	/* one of candidates, or NULL */
	const char *bound_only; /* the last check saw this socket, nobody listening (yet) */
	unsigned rechecks;	/* left for this batch */
	struct loop_timer recheck;
	struct loop_inotify kubelet_dir, registry_dir;
	node_exclusivity_fn fn;
	void *data;
};

static const char *node_exclusivity_check(struct node_exclusivity *x)
{
	x->bound_only = NULL;
	for (size_t i = 0; i < CANDIDATES; i++) {
		int r = unix_socket_probe(x->candidates[i]);
		if (r == 0)
			return x->candidates[i];
		if (r == -ECONNREFUSED)
			x->bound_only = x->candidates[i];
	}
	return NULL;
}

static void node_exclusivity_event(void *data, const struct inotify_event *ev)
{
	(void)data;
	(void)ev; /* any change: the batch's end checks again */
}

/* Checks again; tells the owner of a change; re-arms while a socket is bound only. */
static void node_exclusivity_update(struct node_exclusivity *x)
{
	const char *found = node_exclusivity_check(x);

	if (!found && x->bound_only && x->rechecks) {
		if (x->rechecks == RECHECK_MAX)
			log_debug(1, "%s is a socket nobody listens on (yet): checking again",
				  x->bound_only);
		x->rechecks--;
		loop_timer_arm(&x->recheck, RECHECK_USEC);
	}
	if (!found == !x->found)
		return;
	x->found = found;
	x->fn(x->data, found != NULL, found);
}

static void node_exclusivity_recheck(void *data)
{
	node_exclusivity_update(data);
}

static void node_exclusivity_done(void *data)
{
	struct node_exclusivity *x = data;

	x->rechecks = RECHECK_MAX;
	node_exclusivity_update(x);
}

static void node_exclusivity_watch(struct loop *loop, struct node_exclusivity *x,
				   struct loop_inotify *in, const char *dir)
{
	int r =
	    loop_inotify_start(loop, in, dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM,
			       node_exclusivity_event, node_exclusivity_done, x);
	if (r < 0)
		log_warning("cannot watch %s for a device plugin of our resource: %s; checked "
			    "at start only",
			    dir, error_text(-r));
}

int node_exclusivity_new(struct loop *loop, const struct kubelet_options *k, node_exclusivity_fn fn,
			 void *data, struct node_exclusivity **out)
{
	struct node_exclusivity *x = xcalloc(1, sizeof(*x));
	cleanup_free char *kubelet = xasprintf("%s/%s", k->kubelet_dir, k->socket_name);
	cleanup_free char *registry = xasprintf("%s/%s", k->plugins_registry_dir, k->socket_name);

	x->candidates[0] = xstrdup(kubelet);
	x->candidates[1] = registration_slot_name(kubelet, 0);
	x->candidates[2] = registration_slot_name(kubelet, 1);
	x->candidates[3] = xstrdup(registry);
	x->candidates[4] = registration_slot_name(registry, 1);
	x->fn = fn;
	x->data = data;
	loop_timer_init(loop, &x->recheck, node_exclusivity_recheck, x);
	x->found = node_exclusivity_check(x);
	if (!x->found && x->bound_only) { /* as after a batch, without telling the owner */
		x->rechecks = RECHECK_MAX - 1;
		loop_timer_arm(&x->recheck, RECHECK_USEC);
	}
	node_exclusivity_watch(loop, x, &x->kubelet_dir, k->kubelet_dir);
	node_exclusivity_watch(loop, x, &x->registry_dir, k->plugins_registry_dir);
	*out = x;
	return 0;
}

void node_exclusivity_free(struct node_exclusivity *x)
{
	if (!x)
		return;
	loop_inotify_stop(&x->kubelet_dir);
	loop_inotify_stop(&x->registry_dir);
	loop_timer_destroy(&x->recheck);
	for (size_t i = 0; i < CANDIDATES; i++)
		free(x->candidates[i]);
	free(x);
}

bool node_exclusivity_conflict(const struct node_exclusivity *x)
{
	return x->found != NULL;
}

const char *node_exclusivity_socket(const struct node_exclusivity *x)
{
	return x->found;
}

void node_exclusivity_metrics_write(struct metrics_writer *w, const void *data)
{
	metrics_gauge(w, "dra_device_plugin_conflict",
		      "1 while a device plugin for our resource serves on this node (KEP-5004: "
		      "our devices are not published then)",
		      node_exclusivity_conflict(data));
}
