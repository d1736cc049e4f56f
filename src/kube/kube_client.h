/* A client of the Kubernetes API server for the DRA driver: in-cluster configuration
 * (service-account token and CA, KUBERNETES_SERVICE_HOST/PORT), TLS that verifies the
 * server, HTTP/2 through nghttp2, protobuf bodies through protobuf-c. Asynchronous on the
 * loop: one TLS connection, many streams, each request with its own deadline; bounded
 * response size. Linked only into iommufd-dra-driver, never into the device plugin.
 * CONTRACT written before the code (issue 23): the DRA kubelet side codes against it. */
#pragma once

#include "../basic/error.h"
#include "../loop/loop.h"

#include <stddef.h>

struct kube_client;

struct kube_client_config {
	const char *host;    /* e.g. "10.96.0.1" or "127.0.0.1" */
	unsigned port;	     /* e.g. 443 or 6443 */
	const char *ca_file; /* PEM bundle that verifies the server */
	const char
	    *token_file; /* bearer token, re-read when it changes (projected tokens rotate) */
};

/**
 * kube_client_config_in_cluster() - fill a config from the pod's environment
 * @cfg: filled; strings point into the environment or static storage
 * @err: why not (KUBERNETES_SERVICE_HOST unset, ...)
 *
 * Return: 0 or -errno (-ENOENT outside a cluster).
 */
int kube_client_config_in_cluster(struct kube_client_config *cfg, struct error *err);

/**
 * kube_client_new() - create a client; connects lazily, reconnects with back-off
 * @loop: the loop
 * @cfg:  copied
 * @out:  set to the client (free with kube_client_free())
 * @err:  why not (CA file unreadable, ...)
 *
 * Return: 0 or -errno.
 */
int kube_client_new(struct loop *loop, const struct kube_client_config *cfg,
		    struct kube_client **out, struct error *err);

/**
 * kube_client_free() - free it; pending requests complete with -ECANCELED first
 * @client: the client, or NULL
 */
void kube_client_free(struct kube_client *client);
