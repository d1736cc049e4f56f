/* Whether the kubelet has us, through any configured registration path (kubelet.sock,
 * the plugin watcher): what /healthz answers and the registered gauge shows. */
#pragma once

struct metrics_writer;
struct plugin_watcher;
struct registration;

/* The registration paths in use; both borrowed, either may be NULL (not configured). */
struct kubelet_readiness {
	const struct registration *registration;
	const struct plugin_watcher *plugin_watcher;
};

/**
 * kubelet_readiness_reason() - why the kubelet does not have us
 * @readiness: a const struct kubelet_readiness *
 *
 * A metrics_readiness_fn.
 *
 * Return: NULL while one of the paths is registered, else why not (another plugin
 * serves our socket path, a newer instance took over, or simply not registered).
 */
const char *kubelet_readiness_reason(const void *readiness);

/**
 * kubelet_readiness_metrics_write() - the registered gauge
 * @w:         the writer
 * @readiness: a const struct kubelet_readiness *
 *
 * A metrics_source_fn.
 */
void kubelet_readiness_metrics_write(struct metrics_writer *w, const void *readiness);
