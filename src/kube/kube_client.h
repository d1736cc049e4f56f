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
	/* An IP literal, e.g. "10.96.0.1" or "127.0.0.1": no DNS (it would block the loop),
	 * and in-cluster KUBERNETES_SERVICE_HOST is one. The certificate must name it (IP SAN). */
	const char *host;
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
 *
 * Not from inside one of its own callbacks.
 */
void kube_client_free(struct kube_client *client);

/* KUBE_RESPONSE_MAX - the largest response body kept; a longer one fails with -EFBIG. */
#define KUBE_RESPONSE_MAX ((size_t)4 << 20)

/* A finished HTTP exchange; valid during the callback only. */
struct kube_response {
	int status;	     /* HTTP status, e.g. 200, 404, 409 */
	const uint8_t *body; /* the body as sent (protobuf bodies start with "k8s\0") */
	size_t len;
};

/* err: 0 (any HTTP status: see resp->status) or -errno: -ETIMEDOUT (deadline), -ECONNREFUSED
 * (cannot connect), -ECONNRESET (connection lost mid-request), -EPERM (server not
 * verified by the CA), -EPROTO (TLS or HTTP/2 failure), -EFBIG (body over
 * KUBE_RESPONSE_MAX), -EACCES/-ENOENT (token file), -ECANCELED (client freed). why: a
 * sentence when err != 0, "" otherwise. */
typedef void (*kube_response_fn)(void *data, int err, const struct kube_response *resp,
				 const char *why);

/**
 * kube_client_request() - one HTTP/2 request to the API server
 * @client:       the client
 * @method:       "GET", "POST", "PUT", "DELETE"
 * @path:         e.g. "/apis/resource.k8s.io/v1/resourceslices?fieldSelector=..."
 * @body:         copied; NULL for none (sent as application/vnd.kubernetes.protobuf)
 * @len:          its length
 * @timeout_ms:   deadline from now, connecting included
 * @fn:           called exactly once, never from inside this call
 * @data:         passed to @fn
 *
 * Connects first if needed. While a failed connection's back-off lasts, requests fail at
 * once with its error rather than hammering the server.
 *
 * Return: 0 (fn will be called); allocation failure aborts.
 */
int kube_client_request(struct kube_client *client, const char *method, const char *path,
			const uint8_t *body, size_t len, unsigned timeout_ms, kube_response_fn fn,
			void *data);

/**
 * kube_client_forget() - drop the callbacks of requests made with @data
 * @client: the client
 * @data:   the data pointer those requests were made with
 *
 * For an owner that goes away before its answers come: they are discarded.
 */
void kube_client_forget(struct kube_client *client, void *data);
