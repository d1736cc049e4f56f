/* Refuses, at start, socket paths that could not fit sun_path (and a relative device
 * node host path): found later, each would be an Allocate failing INTERNAL or a
 * registration that never happens, with Healthy devices advertised all along. */
#include "config_check.h"
#include "config_table.h"
#include "../dra/claim_store.h"
#include "../dra/dra_plugin.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/un.h>

/* sun_path holds the path and its NUL (unix(7)). */
#define SOCKET_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
/* What a handoff socket's path adds to --socket-dir (handoff_socket.c: an instance dir
 * of 12 hex digits, then "<device id>-<counter>.sock" with a decimal unsigned long long
 * counter, 20 digits at most); the device id is "iommufd<n>" (device_plugin.c). */
#define HANDOFF_INSTANCE_DIR_LEN 12
#define DEVICE_ID_PREFIX_LEN	 (sizeof("iommufd") - 1)
#define COUNTER_DIGITS_MAX	 20
/* Our DevicePlugin sockets are --socket-name with "-0"/"-1" before ".sock"
 * (registration_slot_name()). */
#define SLOT_SUFFIX_LEN 2
/* The DRA driver's device id is the claim's uid (a UUID, CLAIM_UID_MAX), its sockets
 * --plugin-dir/dra.sock and --plugins-registry-dir/<driver>-reg.sock (dra_main.c),
 * and their slot names one byte longer (registration_slot_name()). */
#define DRA_SOCKET_LEN	   (sizeof(DRA_SOCKET_NAME) - 1 + SLOT_SUFFIX_LEN)
#define DRA_REG_SUFFIX_LEN (sizeof(DRA_REGISTRATION_SUFFIX) - 1 + SLOT_SUFFIX_LEN)
#define KUBELET_SOCKET_LEN (sizeof("kubelet.sock") - 1)

static size_t decimal_digits(unsigned long long n)
{
	size_t digits = 1;

	while (n >= 10) {
		n /= 10;
		digits++;
	}
	return digits;
}

/* One path under dir with a name of name_len bytes; prints the refusal. */
static int check(FILE *err, const char *program, const char *flag, const char *dir, size_t name_len,
		 const char *what)
{
	size_t len = strlen(dir) + (name_len ? 1 + name_len : 0);

	if (len <= SOCKET_PATH_MAX)
		return 0;
	fprintf(err,
		"%s: --%s %s is too long: %s would be %zu bytes, a unix "
		"socket path holds at most %zu\n",
		program, flag, dir, what, len, SOCKET_PATH_MAX);
	return -ENAMETOOLONG;
}

/* The DRA driver's own sockets. */
static int check_dra(const struct config *config, FILE *err, const char *name)
{
	const struct kubelet_options *k = &config->kubelet;
	int r = check(err, name, "plugin-dir", k->plugin_dir, DRA_SOCKET_LEN,
		      "our DRAPlugin socket path");

	if (r == 0)
		r = check(err, name, "plugins-registry-dir", k->plugins_registry_dir,
			  strlen(config->dra.plugin.driver) + DRA_REG_SUFFIX_LEN,
			  "our registration socket path");
	return r;
}

int config_check_paths(const struct config *config, FILE *err)
{
	const struct kubelet_options *k = &config->kubelet;
	bool dra = config->program == CONFIG_DRA_DRIVER;
	const char *name = config->flavor->name;
	size_t device_id =
	    dra ? CLAIM_UID_MAX
		: DEVICE_ID_PREFIX_LEN + decimal_digits((unsigned long long)(k->devices - 1));
	size_t handoff_name =
	    HANDOFF_INSTANCE_DIR_LEN + 1 + device_id + 1 + COUNTER_DIGITS_MAX + strlen(".sock");
	size_t slot_name = strlen(k->socket_name) + SLOT_SUFFIX_LEN;
	int r = 0;

	if (r == 0)
		r = check(err, name, "socket-dir", config->handoff.socket_dir, handoff_name,
			  "its longest handoff socket path");
	if (r == 0 && dra)
		r = check_dra(config, err, name);
	if (r == 0 && !dra && kubelet_uses_kubelet_socket(k))
		r = check(err, name, "kubelet-dir", k->kubelet_dir,
			  slot_name > KUBELET_SOCKET_LEN ? slot_name : KUBELET_SOCKET_LEN,
			  "our DevicePlugin socket path");
	if (r == 0 && !dra && kubelet_uses_plugin_watcher(k))
		r = check(err, name, "plugin-dir", k->plugin_dir, strlen(k->socket_name),
			  "our DevicePlugin socket path");
	if (r == 0 && !dra && kubelet_uses_plugin_watcher(k))
		r = check(err, name, "plugins-registry-dir", k->plugins_registry_dir,
			  strlen(k->socket_name), "our registration socket path");
	if (r == 0 && config->pod_resources.interval_usec)
		r = check(err, name, "pod-resources-socket", config->pod_resources.socket_path, 0,
			  "the path");
	if (r == 0 && config->metrics_address && config->metrics_address[0] == '/')
		r = check(err, name, "metrics-address", config->metrics_address, 0, "the path");
	if (r == 0)
		r = check(err, name, "container-socket-path", k->container_socket_path, 0,
			  "the path qemu connects to");
	/* Not a socket, but read by the runtime on the node, relative to nothing. */
	if (r == 0 && k->device_node_host_path[0] != '/') {
		fprintf(err,
			"%s: --device-node-host-path must be absolute: the runtime finds it on "
			"the node\n",
			name);
		r = -EINVAL;
	}
	return r;
}
