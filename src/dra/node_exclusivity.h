/* KEP-5004: one node cannot back devices.kubevirt.io/iommufd with both a device plugin
 * and a DRA driver. This watches for the device plugin on this node; while one is
 * there, the DRA driver publishes no devices and reports not-ready (dra_main.c). */
#pragma once

#include "../loop/loop.h"

#include <stdbool.h>

struct kubelet_options;
struct node_exclusivity;

/* Called when the answer changes; @socket is the live socket found (NULL when none). */
typedef void (*node_exclusivity_fn)(void *data, bool conflict, const char *socket);

/**
 * node_exclusivity_new() - look for the device plugin now, and on every change
 * @loop: the loop
 * @k:    --kubelet-dir, --plugins-registry-dir, --socket-name: where it would be
 * @fn:   told of each change (not of the first answer: read node_exclusivity_conflict())
 * @data: passed to @fn
 * @out:  set to it
 *
 * A directory that cannot be watched is logged and checked at start only.
 *
 * Return: 0; allocation failure aborts.
 */
int node_exclusivity_new(struct loop *loop, const struct kubelet_options *k, node_exclusivity_fn fn,
			 void *data, struct node_exclusivity **out);

/**
 * node_exclusivity_free() - stop watching and free
 * @x: it, or NULL
 */
void node_exclusivity_free(struct node_exclusivity *x);

/**
 * node_exclusivity_conflict() - whether a device plugin for our resource is on this node
 * @x: it
 *
 * Return: true if one of its sockets has a live server.
 */
bool node_exclusivity_conflict(const struct node_exclusivity *x);

/**
 * node_exclusivity_socket() - the device plugin's live socket, for logs
 * @x: it
 *
 * Return: its path, or NULL when there is no conflict.
 */
const char *node_exclusivity_socket(const struct node_exclusivity *x);

struct metrics_writer;
/**
 * node_exclusivity_metrics_write() - the dra_device_plugin_conflict gauge
 * @w: the writer
 * @x: a const struct node_exclusivity *
 */
void node_exclusivity_metrics_write(struct metrics_writer *w, const void *x);
