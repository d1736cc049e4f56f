/* Shared machinery of the libFuzzer targets: the daemon's core built as main.c builds
 * it (loop, iommufd opener on /dev/null, handoff on a private temp dir, DevicePlugin
 * service) and torn down after every input, plus the checks every target makes. */
#pragma once

#include "config/config.h"
#include "handoff/handoff.h"
#include "iommufd/iommufd.h"
#include "kubelet/device_plugin.h"
#include "loop/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Stops the process with a message when an invariant a target checks is broken:
 * libFuzzer saves the input as a crash. */
#define fuzz_assert(cond)                                                                          \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fuzz_fail(__FILE__, __LINE__, #cond);                                      \
	} while (0)

__attribute__((noreturn)) void fuzz_fail(const char *file, int line, const char *what);

/* Once per process: silences the daemon's log (set FUZZ_LOG=1 to keep it) and
 * creates the private temp dir the sockets live in. */
void fuzz_init(void);
/* "<temp dir>/<name>" in a static buffer. */
const char *fuzz_path(const char *name);

/* Open file descriptors of this process, to prove an input leaked none. */
int fuzz_fd_count(void);

struct fuzz_daemon {
	struct config config;
	struct loop *loop;
	struct iommufd_opener *opener;
	struct handoff *handoff;
	struct device_plugin *plugin;
	int client_fd; /* connected to the plugin's socket, non-blocking; -1 once closed */
};

/* Builds the daemon core, listens on its socket and connects client_fd to it
 * (accepted already). Aborts on any failure: the harness must work. */
void fuzz_daemon_start(struct fuzz_daemon *d);
/* Frees everything fuzz_daemon_start made (client_fd too, if still open). */
void fuzz_daemon_stop(struct fuzz_daemon *d);

/* Called with what the server sent to the client. */
typedef void (*fuzz_sink_fn)(void *data, const uint8_t *buf, size_t len);

/* Runs the loop without waiting until nothing is left to do, handing what arrives on
 * the client end to sink (NULL: discarded). Aborts if the loop never goes idle
 * (a busy loop is a bug). */
void fuzz_daemon_settle(struct fuzz_daemon *d, fuzz_sink_fn sink, void *data);
/* Writes len bytes to the client end in chunks of chunk bytes (0: all at once),
 * settling after each chunk. Returns false if the server closed the connection. */
bool fuzz_daemon_write(struct fuzz_daemon *d, const uint8_t *buf, size_t len, size_t chunk,
		       fuzz_sink_fn sink, void *data);

/* The client connection preface and an empty SETTINGS frame (RFC 9113 §3.4). */
extern const uint8_t fuzz_h2_preface[];
extern const size_t fuzz_h2_preface_len;
