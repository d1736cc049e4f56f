/* The DRAPlugin service (k8s.io/kubelet/pkg/apis/dra v1 and v1beta1): the kubelet's
 * NodePrepareResources and NodeUnprepareResources. NodePrepareResources is answered in
 * dra_plugin.c: per claim, the allocation is read from the API server, an iommufd is
 * opened and offered on the claim's handoff socket, and a CDI spec mounts that socket. */
#pragma once

#include "../grpc/server.h"
#include "../loop/loop.h"

#include <stdbool.h>

struct dra_plugin;
struct error;
struct handoff;
struct iommufd_opener;
struct kube_client;

#define DRA_DEFAULT_DRIVER_NAME "iommufd.iommufd-device-plugin.github.io"
#define DRA_DEFAULT_CDI_DIR	"/var/run/cdi"
#define DRA_MAX_CLAIMS_PER_CALL 64   /* a request naming more is refused whole */
#define DRA_MAX_CLAIMS		4096 /* prepared (or being prepared) at once on a node */
#define DRA_LOOKUP_TIMEOUT_MS	10000
/* A prepared claim's offer is kept past --handoff-ttl this long: the kubelet says when
 * nobody will come (NodeUnprepareResources), and a slow image pull must not lose it. */
#define DRA_OFFER_KEEP_USEC (24ULL * 3600 * 1000000)
/* Our sockets: --plugin-dir/dra.sock, --plugins-registry-dir/<driver>-reg.sock (the
 * kubelet's documented convention for DRA drivers). */
#define DRA_SOCKET_NAME		"dra.sock"
#define DRA_REGISTRATION_SUFFIX "-reg.sock"

struct dra_plugin_options {
	const char *driver;    /* our driver name: results of other drivers are not ours */
	const char *node_name; /* our pool's name; NULL: not checked */
	int devices;	       /* iommufd0..devices-1 */
	const char *cdi_dir;   /* where specs are written */
	const char *state_dir; /* where prepared claims are recorded */
	const char *container_socket_path; /* the socket's path in the container */
	const char *device_node;	   /* NULL, or the node the CDI spec adds */
	unsigned lookup_timeout_ms;	   /* per ResourceClaim GET */
};

struct dra_plugin_stats {
	unsigned long long prepared;	     /* claims prepared (a repeat counts again) */
	unsigned long long prepare_failures; /* claims answered with an error */
	unsigned long long unprepared;	     /* claims unprepared (known ones) */
	unsigned long long unprepare_failures;
	unsigned long long restored; /* claims read back from the state dir at start */
	size_t claims;		     /* prepared now */
};

/**
 * dra_plugin_new() - create the service and read back the claims recorded before
 * @loop:    the loop
 * @o:       the options; borrowed, must outlive it
 * @opener:  borrowed: opens and configures each claim's iommufd
 * @handoff: borrowed: offers it; dead instances' sockets must be rescued before, so
 *           the restored claims' sockets are served again
 * @client:  borrowed: reads ResourceClaims; free it before this (pending lookups then
 *           end with -ECANCELED while the plugin still exists)
 * @out:     set to it
 * @e:       on failure, the reason
 *
 * Return: 0 or -errno (the CDI dir or the state dir is unusable).
 */
int dra_plugin_new(struct loop *loop, const struct dra_plugin_options *o,
		   struct iommufd_opener *opener, struct handoff *handoff,
		   struct kube_client *client, struct dra_plugin **out, struct error *e);

/**
 * dra_plugin_free() - free it; prepared claims stay recorded, specs stay written
 * @plugin: the plugin, or NULL
 */
void dra_plugin_free(struct dra_plugin *plugin);

/**
 * dra_plugin_listen() - serve the DRAPlugin service on a socket
 * @plugin:       a struct dra_plugin *
 * @path:         the socket's path
 * @replace_live: as grpc_server_listen()'s
 *
 * A plugin_watcher_listen_fn.
 *
 * Return: 0 or -errno as grpc_server_listen().
 */
int dra_plugin_listen(void *plugin, const char *path, bool replace_live);

/**
 * dra_plugin_shutdown() - stop listening and close the kubelet's connections
 * @plugin: the plugin
 * @done:   called once they are closed, always from the loop
 * @data:   passed to @done
 */
void dra_plugin_shutdown(struct dra_plugin *plugin, void (*done)(void *data), void *data);

/**
 * dra_plugin_stats() - counters, for metrics
 * @plugin: the plugin
 *
 * Return: the counters, valid until dra_plugin_free().
 */
const struct dra_plugin_stats *dra_plugin_stats(const struct dra_plugin *plugin);

struct metrics_writer;
/**
 * dra_plugin_metrics_write() - the DRA service's metrics
 * @w:      the writer
 * @plugin: a const struct dra_plugin *
 *
 * A metrics_source_fn: prepares, unprepares, their failures, claims prepared.
 */
void dra_plugin_metrics_write(struct metrics_writer *w, const void *plugin);
