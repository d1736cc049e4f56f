/* The daemon's configuration: command-line flags (getopt_long), each also readable
 * from an IOMMUFD_DP_<FLAG> environment variable (flags win), with defaults that
 * match a stock kubelet node and the existing Go plugin. */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

enum config_rlimit_mode { CONFIG_RLIMIT_BEST_EFFORT, CONFIG_RLIMIT_REQUIRED };
enum config_missing_device { CONFIG_MISSING_ALLOW, CONFIG_MISSING_UNHEALTHY };
enum config_selinux { CONFIG_SELINUX_AUTO, CONFIG_SELINUX_ON, CONFIG_SELINUX_OFF };
enum config_log_format { CONFIG_LOG_TEXT, CONFIG_LOG_JSON };
enum config_registration {
	CONFIG_REGISTRATION_KUBELET_SOCKET,
	CONFIG_REGISTRATION_PLUGIN_WATCHER,
	CONFIG_REGISTRATION_BOTH,
};

struct config {
	char *kubelet_dir;
	char *socket_name;
	char *resource_name;
	int devices;
	int verbosity;
	int registration; /* enum config_registration */
	char *plugins_registry_dir;
	char *plugin_dir;
	char *iommu_device;
	int rlimit_mode;    /* enum config_rlimit_mode */
	int missing_device; /* enum config_missing_device */
	char *socket_dir;
	char *container_socket_path;
	bool expose_device_node;
	unsigned long long handoff_ttl_usec;
	unsigned long long ack_timeout_usec;
	unsigned long long drain_timeout_usec; /* 0: no drain on SIGTERM */
	int selinux;			       /* enum config_selinux */
	char *selinux_label;
	char *scratch_dir;     /* NULL: a private tmpfs when the mknod path needs one */
	char *metrics_address; /* NULL: no /metrics and /healthz */
	int log_format;	       /* enum config_log_format */
	char *pod_resources_socket;
	unsigned long long pod_resources_interval_usec; /* 0: no PodResources polling */
	unsigned long long pod_resources_grace_usec;
	/* Handoff recipients and socket files. The strings are the flags as given; the
	 * fields after them are what config_parse made of them. */
	char *allowed_uids; /* NULL: any uid */
	char *socket_mode;
	char *socket_owner; /* NULL: unchanged */
	uid_t *allowed_uid_list;
	size_t allowed_uid_count;
	unsigned socket_mode_bits;
	uid_t socket_uid; /* (uid_t)-1: unchanged */
	gid_t socket_gid; /* (gid_t)-1: unchanged */
};

enum config_result { CONFIG_RUN, CONFIG_EXIT_OK, CONFIG_EXIT_USAGE };

/* Fills config from defaults, environment and argv. Prints --help/--version to out
 * and errors to err. Returns CONFIG_RUN, CONFIG_EXIT_OK (help or version shown) or
 * CONFIG_EXIT_USAGE (bad flag or value; the message names it). */
enum config_result config_parse(struct config *config, int argc, char **argv, FILE *out, FILE *err);
void config_free(struct config *config);

/* Which registration paths the configuration asks for. */
static inline bool config_uses_kubelet_socket(const struct config *config)
{
	return config->registration != CONFIG_REGISTRATION_PLUGIN_WATCHER;
}

static inline bool config_uses_plugin_watcher(const struct config *config)
{
	return config->registration != CONFIG_REGISTRATION_KUBELET_SOCKET;
}

/* Logs the effective configuration, one line. */
void config_log(const struct config *config);

/* Parses "500ms", "10s", "15m", "1h" or plain seconds. Returns 0 or -EINVAL. */
int config_parse_duration(const char *text, unsigned long long *usec);
