/* The kubelet's calls to the plugin's DevicePlugin service, over h2client.h, each
 * checked against what the plugin must answer; any failure is fatal (bench_die). */
#pragma once

#include "bench.h"
#include "h2client.h"

#include <stddef.h>

/* Connects to the plugin's socket at path; returns the connection (caller frees). */
struct h2c *call_connect(struct bench *b, const char *path);
/* Opens ListAndWatch as s on c and waits for the device list, which must hold the
 * plugin's --devices count. s stays open (the caller resets it). */
void call_list_and_watch(struct bench *b, struct h2c *c, struct h2c_stream *s);
/* GetDevicePluginOptions: once it is answered, the plugin has processed everything
 * sent on c before it. */
void call_round_trip(struct bench *b, struct h2c *c);
/* Allocate for one container holding device_id, as the kubelet sends it. Copies the
 * handoff socket's host path into host_path ("" if the answer mounts nothing). Returns
 * the latency in ns, from building the request to the trailers. */
unsigned long long call_allocate(struct bench *b, struct h2c *c, const char *device_id,
				 char *host_path, size_t size);
