/* The daemon's configuration: command-line flags (getopt_long), each also readable
 * from an IOMMUFD_DP_<FLAG> environment variable (flags win). The result is the
 * modules' own option structs; their defaults are the modules' own (each module's
 * *_options_init or header), so a default is written once. */
#pragma once

#include "../handoff/handoff.h"
#include "../iommufd/iommufd.h"
#include "../selinux/selinux.h"
#include "../kubelet/kubelet_options.h"
#include "../kubelet/pod_resources.h"
#include "../dra/dra_plugin.h"
#include "../log.h"

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

/* Which program's flags: most are shared; the table marks the others. */
enum config_program {
	CONFIG_DEVICE_PLUGIN, /* iommufd-device-plugin */
	CONFIG_DRA_DRIVER,    /* iommufd-dra-driver */
};

/* The DRA driver's own flags, beside what it shares with the device plugin. */
struct config_dra {
	struct dra_plugin_options plugin; /* devices, socket path, node: from the shared flags */
	const char *kube_api;		  /* HOST:PORT; NULL: in-cluster configuration */
	const char *kube_ca;
	const char *kube_token_file;
};

struct config_flavor;

struct config {
	enum config_program program;
	const struct config_flavor *flavor; /* whose flags (config_table.h) */
	struct kubelet_options kubelet;
	struct iommufd_options iommufd; /* labeler: the caller's */
	struct handoff_options handoff; /* labeler: the caller's */
	struct pod_resources_options pod_resources;
	enum selinux_mode selinux;
	const char *selinux_label;
	const char *scratch_dir;     /* NULL: a private tmpfs when the mknod path needs one */
	const char *metrics_address; /* NULL: no /metrics and /healthz */
	unsigned long long drain_timeout_usec; /* 0: no drain on SIGTERM */
	int verbosity;
	enum log_format log_format;
	/* The recipient flags as given; config_parse turns them into handoff's fields. */
	const char *allowed_uids; /* NULL: any uid */
	const char *socket_owner; /* NULL: unchanged */
	uid_t *allowed_uid_list;  /* handoff.allowed_uids */
	struct config_dra dra;	  /* CONFIG_DRA_DRIVER only */
};

/* The longest any duration flag may be: 24 h. Deadlines are now + duration in
 * microseconds, so this keeps them far from wrapping. */
#define CONFIG_DURATION_MAX_USEC (24ULL * 3600 * 1000000)

enum config_result { CONFIG_RUN, CONFIG_EXIT_OK, CONFIG_EXIT_USAGE };

extern const struct config_flavor config_device_plugin_flavor;
extern const struct config_flavor config_dra_flavor;

/**
 * config_parse() - fill the configuration from defaults, environment and argv
 * @config: filled from the modules' defaults, the environment and @argv; free with
 *          config_free() in every case
 * @argc:   as main() got it
 * @argv:   as main() got it
 * @out:    where --help/--version are printed
 * @err:    where errors are printed
 *
 * Return: CONFIG_RUN, CONFIG_EXIT_OK (help or version shown) or CONFIG_EXIT_USAGE
 * (bad flag or value; the message names it).
 */
enum config_result config_parse(struct config *config, int argc, char **argv, FILE *out, FILE *err);

/**
 * config_parse_program() - config_parse() for one of the two programs
 * @config:  as config_parse()'s
 * @flavor:  whose flags, defaults, --help and checks: config_device_plugin_flavor
 *           (config_device_plugin.c) or config_dra_flavor (config_dra.c); each is
 *           linked only into its own program
 * @argc:    as main() got it
 * @argv:    as main() got it
 * @out:     where --help/--version are printed
 * @err:     where errors are printed
 *
 * Return: as config_parse().
 */
enum config_result config_parse_program(struct config *config, const struct config_flavor *flavor,
					int argc, char **argv, FILE *out, FILE *err);

/**
 * config_free() - free what config_parse() allocated
 * @config: the configuration
 */
void config_free(struct config *config);

/**
 * config_log() - log the effective configuration, one line
 * @config: the configuration
 */
void config_log(const struct config *config);
