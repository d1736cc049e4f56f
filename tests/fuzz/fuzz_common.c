/* The fuzz targets' shared daemon harness: builds the core the way main.c does, drives
 * the loop without blocking until it is idle, and frees everything per input so
 * LeakSanitizer and the fd count see what one input leaked. */
#include "fuzz_common.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* More loop iterations than this without going idle is a busy loop. */
#define FUZZ_MAX_ITERATIONS 100000

static char fuzz_dir[64];

const uint8_t fuzz_h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
				  "\x00\x00\x00\x04\x00\x00\x00\x00\x00";
const size_t fuzz_h2_preface_len = sizeof(fuzz_h2_preface) - 1;

void fuzz_fail(const char *file, int line, const char *what)
{
	fprintf(stderr, "%s:%d: fuzz invariant broken: %s\n", file, line, what);
	abort();
}

static void fuzz_remove_dir(void)
{
	DIR *dir = opendir(fuzz_dir);
	if (dir) {
		struct dirent *e;
		while ((e = readdir(dir)))
			if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
				unlinkat(dirfd(dir), e->d_name, 0);
		closedir(dir);
	}
	rmdir(fuzz_dir);
}

void fuzz_init(void)
{
	if (fuzz_dir[0])
		return;
	if (!getenv("FUZZ_LOG"))
		log_set_verbosity(-1); /* below 0 even errors are dropped */
	snprintf(fuzz_dir, sizeof(fuzz_dir), "/tmp/fuzz-XXXXXX");
	if (!mkdtemp(fuzz_dir)) {
		perror("mkdtemp");
		abort();
	}
	atexit(fuzz_remove_dir);
}

const char *fuzz_path(const char *name)
{
	static char path[128];

	snprintf(path, sizeof(path), "%s/%s", fuzz_dir, name);
	return path;
}

int fuzz_fd_count(void)
{
	DIR *dir = opendir("/proc/self/fd");
	int n = 0;

	fuzz_assert(dir);
	while (readdir(dir))
		n++;
	closedir(dir);
	return n;
}

void fuzz_daemon_start(struct fuzz_daemon *d)
{
	char *argv[] = {
	    "fuzz",
	    "--iommu-device=/dev/null",
	    "--rlimit-mode=best-effort", /* /dev/null has no RLIMIT_MODE */
	    "--devices=4",
	    "--kubelet-dir=/nonexistent",
	    (char *)"--socket-dir",
	    (char *)fuzz_path("handoff"),
	    NULL,
	};
	FILE *null = fopen("/dev/null", "we");

	fuzz_init();
	memset(d, 0, sizeof(*d));
	d->client_fd = -1;
	fuzz_assert(null);
	enum config_result cr =
	    config_parse(&d->config, (int)ARRAY_SIZE(argv) - 1, argv, null, null);
	fclose(null);
	fuzz_assert(cr == CONFIG_RUN);
	fuzz_assert(loop_new(&d->loop) == 0);

	d->config.iommufd.scratch_tmpfs = false;
	fuzz_assert(iommufd_opener_new(&d->config.iommufd, &d->opener) == 0);
	fuzz_assert(handoff_new(d->loop, &d->config.handoff, &d->handoff) == 0);

	fuzz_assert(
	    device_plugin_new(d->loop, &d->config.kubelet, d->opener, d->handoff, &d->plugin) == 0);
	const char *path = fuzz_path("dp.sock");
	fuzz_assert(device_plugin_listen(d->plugin, DEVICE_PLUGIN_ENDPOINT_KUBELET_DIR, path, false,
					 NULL, NULL) == 0);

	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	fuzz_assert(snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path) <
		    (int)sizeof(addr.sun_path));
	d->client_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	fuzz_assert(d->client_fd >= 0);
	fuzz_assert(connect(d->client_fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	/* Accept; the server's SETTINGS stay unread for the target's client to take. */
	for (int i = 0; loop_run_once(d->loop, 0) > 0; i++)
		fuzz_assert(i < FUZZ_MAX_ITERATIONS);
}

void fuzz_daemon_stop(struct fuzz_daemon *d)
{
	if (d->client_fd >= 0)
		close(d->client_fd);
	d->client_fd = -1;
	device_plugin_free(d->plugin);
	handoff_free(d->handoff);
	iommufd_opener_free(d->opener);
	/* Work deferred by the frees above (none expected) would run here. */
	loop_run_once(d->loop, 0);
	loop_free(d->loop);
	unlink(fuzz_path("dp.sock"));
	config_free(&d->config);
}

/* Reads what the server sent; returns false once the server has closed. */
static bool fuzz_daemon_drain(struct fuzz_daemon *d, fuzz_sink_fn sink, void *data)
{
	uint8_t buf[65536];

	if (d->client_fd < 0)
		return false;
	for (;;) {
		ssize_t n = recv(d->client_fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			if (sink)
				sink(data, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return true;
		return false; /* EOF, or ECONNRESET after the server closed with unread input */
	}
}

void fuzz_daemon_settle(struct fuzz_daemon *d, fuzz_sink_fn sink, void *data)
{
	for (int i = 0; i < FUZZ_MAX_ITERATIONS; i++) {
		fuzz_daemon_drain(d, sink, data);
		int n = loop_run_once(d->loop, 0);
		fuzz_assert(n >= 0);
		if (n == 0) {
			fuzz_daemon_drain(d, sink, data);
			return;
		}
	}
	fuzz_fail(__FILE__, __LINE__, "the loop never went idle (busy loop)");
}

bool fuzz_daemon_write(struct fuzz_daemon *d, const uint8_t *buf, size_t len, size_t chunk,
		       fuzz_sink_fn sink, void *data)
{
	size_t pos = 0;
	int stalled = 0;

	if (chunk == 0)
		chunk = len;
	while (pos < len) {
		/* The server reads whenever the connection is open: no progress for this
		 * long means it stopped reading without closing. */
		fuzz_assert(stalled++ < 1000);
		size_t want = len - pos < chunk ? len - pos : chunk;
		ssize_t n = send(d->client_fd, buf + pos, want, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN && errno != EINTR)
			return false; /* the server closed the connection */
		if (n > 0) {
			pos += (size_t)n;
			stalled = 0;
		}
		fuzz_daemon_settle(d, sink, data);
	}
	return true;
}
