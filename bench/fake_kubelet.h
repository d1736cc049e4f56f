/* The fake kubelet: the Registration service on <dir>/kubelet.sock, served by the
 * plugin's own gRPC server module on a loop of ours, and a kubelet restart's removal
 * of every socket in its directory. */
#pragma once

#include "bench.h"

#include <stdbool.h>

struct fake_kubelet {
	struct bench *bench; /* borrowed: for its failures */
	struct loop *loop;   /* borrowed */
	struct grpc_server *server;
	char *dir, *socket_path; /* owned by whoever fills them */
	unsigned registrations;	 /* Register calls accepted so far */
	unsigned long long last_register_ns;
	char endpoint[128]; /* the plugin's socket name, from its last Register */
	bool bad_request;
};

/* Starts serving socket_path; returns the time the socket was about to be bound.
 * Dies if it cannot listen. */
unsigned long long fake_kubelet_start(struct fake_kubelet *k);
/* Stops serving: its connections close; deferred frees run before it returns. */
void fake_kubelet_stop(struct fake_kubelet *k);
/* Removes every socket in dir, as a starting kubelet does (the plugin's too). */
void fake_kubelet_remove_sockets(struct fake_kubelet *k);
/* Runs the loop until count Register calls were accepted; dies after BENCH_WAIT_MS
 * or on a RegisterRequest that is not ours. */
void fake_kubelet_wait_register(struct fake_kubelet *k, unsigned count);
