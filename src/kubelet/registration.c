/* Keeps the plugin registered with the kubelet across kubelet restarts. A starting
 * kubelet removes every socket in its directory, then creates kubelet.sock: inotify
 * tells us both, so we serve our socket again and register within milliseconds.
 *
 * The kubelet (1.37, devicemanager/plugin/v1beta1) keys a resource's endpoints by
 * socket path: a Register on a path whose endpoint is still connected fails ("device
 * plugin already connected"), and the failed attempt leaves that endpoint
 * unremovable until the kubelet restarts; two endpoints on two paths coexist, the one
 * connected last serving, and one's end removes only itself. So no two servers ever
 * register one path:
 * - --socket-name (kubevirt-iommufd.sock) is KubeVirt's: its in-tree plugin (or the
 *   Go plugin) removes whatever is there, binds and registers at once, which on a path
 *   we had registered would race the kubelet into that stuck state. We never register
 *   it: we serve one of two names of our own beside it, kubevirt-iommufd-0.sock and
 *   kubevirt-iommufd-1.sock, and watch it. A live foreign server there is never
 *   touched: we report it (log, metric, /healthz), end our streams so the kubelet
 *   drops our endpoint alone, and serve again once it is gone;
 * - a newer instance of ours (a rolling update) finds the first name live and serves
 *   the other; the older one, seeing it appear, steps aside for good: it stops
 *   listening, serves only its pending offers, and keeps its ListAndWatch stream open
 *   and silent (the kubelet applies any device list to the resource name, so an empty
 *   one would zero the newer instance's devices) until it exits;
 * - if the kubelet ends our last stream while we serve, we register again at once
 *   (older kubelets end the newest endpoint's stream when any endpoint of the name
 *   goes), and a Register refused as "already connected" moves us to the other name;
 * - our socket deleted without a kubelet restart gets a grace before we serve it
 *   again.
 * Where we are is one enum registration_state, changed only by registration_set_state(). */
#include "registration.h"
#include "registration_names.h"
#include "../basic/error_text.h"
#include "device_plugin.h"
#include "../basic/unix_socket.h"
#include "../grpc/client.h"
#include "../handoff/handoff.h"
#include "../loop/loop_inotify.h"
#include "../log.h"
#include "../util.h"

#include <errno.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <string.h>

#define KUBELET_SOCKET "kubelet.sock"
/* The kubelet's answer to a Register on a path whose endpoint it still holds
 * (devicemanager PluginConnected, 1.33+). */
#define KUBELET_ALREADY_CONNECTED "device plugin already connected"
#define REGISTER_TIMEOUT_USEC	  5000000ULL
/* The kubelet's socket file appears at bind(), a moment before listen(): a connect in
 * between is refused, so the first retry comes quickly. */
#define BACKOFF_FIRST_USEC 5000ULL
#define BACKOFF_MAX_USEC   10000000ULL
/* Our socket vanished without a kubelet restart: wait this long for whoever removed
 * it to bind there before we serve it again. */
#define SOCKET_GONE_GRACE_USEC 1000000ULL
/* A stream-ended Register again this long after the last one is at once again. */
#define STREAM_ENDED_CALM_USEC 60000000ULL
/* Looks at a socket on --socket-name that does not answer yet: 1 s, then every 10 s. */
#define CANONICAL_LOOKS 6
/* While a foreign server holds our path: how often to look whether it died. */
#define FOREIGN_PROBE_USEC 10000000ULL

struct registration {
	struct loop *loop;
	const struct kubelet_options *config;
	struct device_plugin *plugin;
	struct handoff *handoff;	  /* knows our other instances */
	enum registration_state state;	  /* changed only by registration_set_state() */
	struct loop_timer endpoint_timer; /* grace after a deletion, foreign probes */
	char *kubelet_socket;
	char *plugin_socket; /* --socket-name: KubeVirt's; watched, never served */
	char *slots[2];	     /* our two names: the second while an older instance has the first */
	const char *serving; /* the slot we serve, or will try first */
	struct loop_inotify dir_watch;		/* the kubelet's directory */
	struct registration_dir_events changes; /* of the batch being read */
	struct loop_timer retry_timer;		/* backoff after a failed Register */
	struct grpc_client *client;		/* the Register call in flight, if any */
	unsigned long long backoff_usec;
	unsigned long long stream_ended_at;	/* now_usec() of the last stream-ended trigger */
	unsigned long long stream_backoff_usec; /* before the next one's Register; 0: at once */
	int canonical_looks_left; /* more looks at a --socket-name that did not answer */
	struct registration_stats stats;
};

static void registration_register(struct registration *reg);
static int registration_claim(struct registration *reg);
static int registration_move(struct registration *reg);

int registration_set_state(struct registration *reg, enum registration_state next)
{
	return registration_state_change(&reg->state, next);
}

static bool path_is_instance(const struct registration *reg, const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 &&
	       handoff_endpoint_is_instance(reg->handoff,
					    &(struct file_id){.dev = st.st_dev, .ino = st.st_ino});
}

/* A live server on --socket-name that is not an instance of ours. */
static bool foreign_live(const struct registration *reg)
{
	return unix_socket_probe(reg->plugin_socket) == 0 &&
	       !path_is_instance(reg, reg->plugin_socket);
}

static const char *other_slot(const struct registration *reg)
{
	return reg->serving == reg->slots[0] ? reg->slots[1] : reg->slots[0];
}

static void registration_cancel_call(struct registration *reg)
{
	grpc_client_free(reg->client);
	reg->client = NULL;
}

unsigned long long registration_backoff_next(unsigned long long current_usec)
{
	if (!current_usec)
		return BACKOFF_FIRST_USEC;
	return current_usec >= BACKOFF_MAX_USEC / 2 ? BACKOFF_MAX_USEC : current_usec * 2;
}

/* Retries with exponential backoff, but only while kubelet.sock exists: when it does
 * not, its creation (inotify) is what starts the next attempt. */
static void registration_schedule_retry(struct registration *reg)
{
	if (access(reg->kubelet_socket, F_OK) < 0) {
		log_info("waiting for %s to appear", reg->kubelet_socket);
		return;
	}
	reg->backoff_usec = registration_backoff_next(reg->backoff_usec);
	log_info("retrying Register in %llu ms", reg->backoff_usec / 1000);
	loop_timer_arm(&reg->retry_timer, reg->backoff_usec);
}

static void registration_done(void *data, enum grpc_status status, const char *message)
{
	struct registration *reg = data;

	registration_cancel_call(reg);
	if (status != GRPC_STATUS_OK) {
		registration_set_state(reg, REGISTRATION_SERVING);
		reg->stats.register_failures++;
		log_error_f(LOG_FIELDS(LOG_STR("socket", reg->kubelet_socket),
				       LOG_NUM("grpc_status", status), LOG_STR("reason", message)),
			    "Register with the kubelet on %s failed: status %d: %s",
			    reg->kubelet_socket, (int)status, message);
		if (message && strstr(message, KUBELET_ALREADY_CONNECTED) &&
		    registration_move(reg) == 0) {
			/* The other name is served: register it on the next turn. */
			reg->backoff_usec = 0;
			loop_timer_arm(&reg->retry_timer, BACKOFF_FIRST_USEC);
			return;
		}
		registration_schedule_retry(reg);
		return;
	}
	registration_set_state(reg, REGISTRATION_REGISTERED);
	reg->backoff_usec = 0;
	log_info_f(LOG_FIELDS(LOG_STR("resource", reg->config->resource_name),
			      LOG_STR("endpoint", registration_socket_name(reg->serving))),
		   "%s with the kubelet as %s (endpoint %s)",
		   reg->stats.registrations ? "registered again" : "registered",
		   reg->config->resource_name, registration_socket_name(reg->serving));
	reg->stats.registrations++;
}

static void registration_response(void *data, const uint8_t *msg, size_t len)
{
	(void)data;
	(void)msg;
	(void)len; /* Register returns Empty: the status is all that matters. */
}

static void endpoint_bound(void *data, const struct file_id *id)
{
	struct registration *reg = data;
	int r = handoff_record_endpoint(reg->handoff, id);

	if (r < 0)
		log_warning("cannot record our DevicePlugin socket for other instances: %s",
			    error_text(-r));
}

/* Someone else's live socket is at our path: step aside. */
static void registration_step_aside(struct registration *reg, bool ours)
{
	enum registration_state was = reg->state;

	registration_cancel_call(reg);
	loop_timer_arm(&reg->retry_timer, 0);
	device_plugin_stop_listening(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR);
	if (ours) {
		/* Our stream stays open until we exit, so the kubelet holds our endpoint
		 * until the newer one's is connected: never a moment without one. */
		device_plugin_go_silent(reg->plugin);
		registration_set_state(reg, REGISTRATION_SUPERSEDED);
		loop_timer_arm(&reg->endpoint_timer, 0);
		log_info("a newer instance of this plugin took over: no longer serving the "
			 "kubelet; pending handoff sockets are still served until we are stopped");
		return;
	}
	/* The foreign server registers on the path we served: the kubelet must drop our
	 * endpoint there first, and it does when our stream ends. */
	device_plugin_end_streams(reg->plugin);
	registration_set_state(reg, REGISTRATION_FOREIGN);
	loop_timer_arm(&reg->endpoint_timer, FOREIGN_PROBE_USEC);
	if (was == REGISTRATION_FOREIGN)
		return;
	reg->stats.foreign_conflicts++;
	log_error("another device plugin serves %s (for example KubeVirt's own iommufd "
		  "plugin in virt-handler with the IOMMUFD feature gate on): not "
		  "registering %s while it does. Turn the IOMMUFD feature gate off, or "
		  "run this plugin with another --socket-name and --resource-name; we "
		  "serve the path once it is free",
		  reg->plugin_socket, reg->config->resource_name);
}

/* Serves one of our names unless a foreign plugin serves --socket-name. Returns 0 or
 * -errno (-EADDRINUSE: a foreign plugin is there; we stepped aside). */
static int registration_claim(struct registration *reg)
{
	bool was_foreign = reg->state == REGISTRATION_FOREIGN;

	if (reg->state == REGISTRATION_SUPERSEDED)
		return -EADDRINUSE;
	if (registration_state_serving(reg->state) &&
	    device_plugin_socket_present(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR))
		return 0;
	if (foreign_live(reg)) {
		registration_step_aside(reg, false);
		return -EADDRINUSE;
	}
	const char *path = reg->slots[0];
	int r = device_plugin_listen(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR, path, false,
				     endpoint_bound, reg);
	bool beside = false;
	if (r == -EADDRINUSE) {
		/* An older instance of ours (a rolling update), or whoever took our
		 * name: the other one, under its final name only once our identity is
		 * recorded, so the older one knows it for ours. A third instance would
		 * replace a second there. */
		beside = path_is_instance(reg, path);
		path = reg->slots[1];
		r = device_plugin_listen(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR, path,
					 true, endpoint_bound, reg);
	}
	if (r < 0) {
		log_error("cannot serve %s: %s", path, error_text(-r));
		return r;
	}
	if (reg->stats.registrations)
		reg->stats.socket_recreations++;
	registration_set_state(reg, REGISTRATION_SERVING);
	reg->serving = path;
	loop_timer_arm(&reg->endpoint_timer, 0);
	if (beside)
		log_info("the running instance of this plugin serves %s: serving %s beside it; "
			 "it steps aside and keeps serving its pending handoff sockets",
			 reg->slots[0], path);
	else if (was_foreign)
		log_info("%s is free again: serving %s", reg->plugin_socket, path);
	log_info("serving DevicePlugin on %s", path);
	return 0;
}

/* The kubelet refused our Register because it holds a connected endpoint on our path
 * that is not ours any more (it then forgets how to remove it: only its own restart
 * clears it). A path it does not hold is the way out: serve the other name. */
static int registration_move(struct registration *reg)
{
	const char *other = other_slot(reg);

	if (!registration_state_serving(reg->state))
		return -EINVAL;
	device_plugin_stop_listening(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR);
	int r = device_plugin_listen(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR, other, false,
				     endpoint_bound, reg);
	if (r < 0) {
		log_error("the kubelet holds a stale endpoint on %s, and %s cannot be served: %s",
			  reg->serving, other, error_text(-r));
		/* The listener is gone with the attempt: serve our path again, retry later. */
		return registration_claim(reg) < 0 ? r : -EAGAIN;
	}
	log_warning("the kubelet holds a stale endpoint on %s (it says \"%s\"; only its restart "
		    "clears that): serving %s instead",
		    reg->serving, KUBELET_ALREADY_CONNECTED, other);
	reg->stats.stale_endpoint_moves++;
	reg->serving = other;
	return 0;
}

/* Our socket file changed under us: deleted (a kubelet restart, or a plugin about to
 * bind there) or replaced (another server bound or renamed onto the path). */
static void registration_socket_changed(struct registration *reg)
{
	if (!registration_state_serving(reg->state) ||
	    device_plugin_socket_present(reg->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR))
		return;
	if (unix_socket_probe(reg->serving) == 0) {
		registration_step_aside(reg, path_is_instance(reg, reg->serving));
		return;
	}
	log_info("%s was removed (kubelet restart?): serving it again when the kubelet starts "
		 "or within %llu ms",
		 reg->serving, SOCKET_GONE_GRACE_USEC / 1000);
	/* A Register in flight names a socket that is gone. */
	registration_cancel_call(reg);
	registration_set_state(reg, REGISTRATION_GONE);
	loop_timer_arm(&reg->endpoint_timer, SOCKET_GONE_GRACE_USEC);
}

/* A socket appeared under our other name: a newer instance of ours (it found ours
 * live). It registers now, and we step aside. */
static void registration_other_appeared(struct registration *reg)
{
	const char *other = other_slot(reg);

	if (registration_state_serving(reg->state) && unix_socket_probe(other) == 0 &&
	    path_is_instance(reg, other))
		registration_step_aside(reg, true);
}

/* --socket-name changed: a foreign plugin bound it (step aside), or left it. */
static void registration_canonical_changed(struct registration *reg)
{
	if (reg->state == REGISTRATION_FOREIGN) {
		/* The foreign server may be leaving: look once the dust has settled. */
		loop_timer_arm(&reg->endpoint_timer, SOCKET_GONE_GRACE_USEC);
		return;
	}
	if (!registration_state_serving(reg->state))
		return;
	if (foreign_live(reg)) {
		registration_step_aside(reg, false);
		return;
	}
	/* A socket that does not answer yet: a server between its bind() and listen().
	 * Look again in a moment, then a few more times (a restarting server unlinks and
	 * binds anew, which is another event). */
	struct stat st;
	if (lstat(reg->plugin_socket, &st) == 0 && S_ISSOCK(st.st_mode)) {
		reg->canonical_looks_left = CANONICAL_LOOKS;
		loop_timer_arm(&reg->endpoint_timer, SOCKET_GONE_GRACE_USEC);
	}
}

/* Serves our socket and registers if the kubelet is there: the way in at start and
 * once a grace or a foreign server ends. Returns 0 (stepped aside too: reported, and
 * watched until the path is free) or the -errno of serving the socket (logged). */
static int registration_serve(struct registration *reg)
{
	int r = registration_claim(reg);

	if (r < 0)
		return r == -EADDRINUSE ? 0 : r;
	if (access(reg->kubelet_socket, F_OK) < 0) {
		log_info("waiting for the kubelet: %s does not exist yet", reg->kubelet_socket);
		return 0;
	}
	reg->backoff_usec = 0;
	registration_register(reg);
	return 0;
}

/* The grace after a deletion ran out, or it is time to look at a foreign server. */
static void registration_endpoint_timer(void *data)
{
	struct registration *reg = data;

	if (registration_state_serving(reg->state)) {
		/* Looking again at a --socket-name that did not answer. */
		if (foreign_live(reg))
			registration_step_aside(reg, false);
		else if (reg->canonical_looks_left && --reg->canonical_looks_left)
			loop_timer_arm(&reg->endpoint_timer, FOREIGN_PROBE_USEC);
		return;
	}
	if (reg->state != REGISTRATION_GONE && reg->state != REGISTRATION_FOREIGN)
		return;
	if (reg->state == REGISTRATION_FOREIGN && foreign_live(reg)) {
		loop_timer_arm(&reg->endpoint_timer, FOREIGN_PROBE_USEC);
		return;
	}
	registration_serve(reg); /* a failure is logged; the next change tries again */
}

static void registration_register(struct registration *reg)
{
	V1beta1__RegisterRequest request = V1BETA1__REGISTER_REQUEST__INIT;
	V1beta1__DevicePluginOptions options;

	registration_cancel_call(reg);
	loop_timer_arm(&reg->retry_timer, 0);
	if (reg->state == REGISTRATION_REGISTERING || reg->state == REGISTRATION_REGISTERED)
		registration_set_state(reg, REGISTRATION_SERVING);
	int claimed = registration_claim(reg);
	if (claimed == -EADDRINUSE)
		return; /* someone else serves the path: nothing to register */
	if (claimed < 0) {
		registration_schedule_retry(reg);
		return;
	}
	int r = grpc_client_connect(reg->loop, reg->kubelet_socket, &reg->client);
	if (r < 0) {
		reg->stats.register_failures++;
		log_warning("cannot connect to the kubelet on %s: %s", reg->kubelet_socket,
			    error_text(-r));
		reg->client = NULL;
		registration_schedule_retry(reg);
		return;
	}
	device_plugin_options(&options);
	request.version = "v1beta1";
	request.endpoint =
	    (char *)registration_socket_name(reg->serving); /* protobuf-c: not written */
	request.resource_name = (char *)reg->config->resource_name;
	request.options = &options;
	registration_set_state(reg, REGISTRATION_REGISTERING);
	r = grpc_client_call_within(reg->client, "/v1beta1.Registration/Register", &request.base,
				    REGISTER_TIMEOUT_USEC, registration_response, registration_done,
				    reg);
	if (r < 0)
		registration_done(reg, GRPC_STATUS_UNAVAILABLE, "connection failed");
}

static void registration_retry(void *data)
{
	registration_register(data);
}

static void registration_dir_event(void *data, const struct inotify_event *ev)
{
	struct registration *reg = data;

	reg->changes.canonical = registration_socket_name(reg->plugin_socket);
	reg->changes.serving = registration_socket_name(reg->serving);
	reg->changes.other = registration_socket_name(other_slot(reg));
	registration_dir_events_add(&reg->changes, ev);
}

/* A batch of the directory's events is read: act on what changed, once. */
static void registration_dir_changed(void *data)
{
	struct registration *reg = data;
	struct registration_dir_events de = reg->changes;

	reg->changes = (struct registration_dir_events){0};
	if (de.canonical_changed)
		registration_canonical_changed(reg);
	if (de.ours_changed)
		registration_socket_changed(reg);
	if (de.other_appeared)
		registration_other_appeared(reg);
	if (de.kubelet_started && access(reg->kubelet_socket, F_OK) == 0) {
		if (reg->state == REGISTRATION_FOREIGN || reg->state == REGISTRATION_SUPERSEDED) {
			/* The other plugin re-registers too: it keeps the path if it wants. */
			log_info("%s appeared; another server had %s, looking again in %llu ms",
				 reg->kubelet_socket, reg->plugin_socket,
				 SOCKET_GONE_GRACE_USEC / 1000);
			if (reg->state == REGISTRATION_FOREIGN)
				loop_timer_arm(&reg->endpoint_timer, SOCKET_GONE_GRACE_USEC);
			return;
		}
		log_info("%s appeared: registering", reg->kubelet_socket);
		reg->backoff_usec = 0;
		registration_register(reg);
	}
}

/* The kubelet ended our ListAndWatch stream while we serve and are not stopping: it
 * dropped our endpoint (an older kubelet does so when another endpoint of the
 * resource ends, and a kubelet that stops does too): register again at once. Not while
 * a Register is in flight (reg->client) or due (the retry timer): that one makes the
 * kubelet open a new stream anyway. */
static void registration_stream_ended(void *data)
{
	struct registration *reg = data;
	unsigned long long now = now_usec();

	if (!registration_state_serving(reg->state) || reg->client ||
	    loop_timer_armed(&reg->retry_timer))
		return;
	reg->stats.streams_ended++;
	/* The first time at once; again soon after, with the backoff: whoever ends streams
	 * over and over (a peer that opens and cancels them) gets a Register every 10 s
	 * at most, not one per stream. */
	if (now - reg->stream_ended_at > STREAM_ENDED_CALM_USEC)
		reg->stream_backoff_usec = 0;
	reg->stream_ended_at = now;
	reg->backoff_usec = 0;
	if (!reg->stream_backoff_usec) {
		log_info("the kubelet ended our ListAndWatch stream while we serve %s: "
			 "registering again",
			 reg->serving);
		reg->stream_backoff_usec = registration_backoff_next(0);
		registration_register(reg);
		return;
	}
	log_info("our ListAndWatch streams ended again while we serve %s: registering again in "
		 "%llu ms",
		 reg->serving, reg->stream_backoff_usec / 1000);
	loop_timer_arm(&reg->retry_timer, reg->stream_backoff_usec);
	reg->stream_backoff_usec = registration_backoff_next(reg->stream_backoff_usec);
}

int registration_new(struct loop *loop, const struct kubelet_options *config,
		     struct device_plugin *plugin, struct handoff *handoff,
		     struct registration **out)
{
	struct registration *reg = xcalloc(1, sizeof(*reg));

	reg->loop = loop;
	reg->config = config;
	reg->plugin = plugin;
	reg->handoff = handoff;
	reg->state = REGISTRATION_NONE;
	loop_timer_init(loop, &reg->retry_timer, registration_retry, reg);
	loop_timer_init(loop, &reg->endpoint_timer, registration_endpoint_timer, reg);
	reg->kubelet_socket = xasprintf("%s/%s", config->kubelet_dir, KUBELET_SOCKET);
	reg->plugin_socket = xasprintf("%s/%s", config->kubelet_dir, config->socket_name);
	for (int i = 0; i < 2; i++)
		reg->slots[i] = registration_slot_name(reg->plugin_socket, i);
	reg->serving = reg->slots[0];
	*out = reg;
	return 0;
}

int registration_start(struct registration *reg)
{
	int r;

	if ((r = mkdir_parents(reg->config->kubelet_dir, 0755)) < 0) {
		log_error("cannot create %s: %s", reg->config->kubelet_dir, error_text(-r));
		return r;
	}
	r = loop_inotify_start(reg->loop, &reg->dir_watch, reg->config->kubelet_dir,
			       IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM,
			       registration_dir_event, registration_dir_changed, reg);
	if (r < 0) {
		log_error("cannot watch %s: %s", reg->config->kubelet_dir, error_text(-r));
		return r;
	}
	device_plugin_set_stream_ended(reg->plugin, registration_stream_ended, reg);
	return registration_serve(reg);
}

void registration_stop(struct registration *reg)
{
	device_plugin_set_stream_ended(reg->plugin, NULL, NULL);
	registration_cancel_call(reg);
	loop_timer_destroy(&reg->retry_timer);
	loop_timer_destroy(&reg->endpoint_timer);
	loop_inotify_stop(&reg->dir_watch);
}

void registration_free(struct registration *reg)
{
	if (!reg)
		return;
	registration_stop(reg);
	free(reg->kubelet_socket);
	free(reg->plugin_socket);
	free(reg->slots[0]);
	free(reg->slots[1]);
	free(reg);
}

bool registration_registered(const struct registration *reg)
{
	return reg->state == REGISTRATION_REGISTERED;
}

enum registration_state registration_state(const struct registration *reg)
{
	return reg->state;
}

const struct registration_stats *registration_stats(const struct registration *reg)
{
	return &reg->stats;
}
