/* Fuzz target: arbitrary bytes from a client of the metrics HTTP server, through its
 * connection handling in the loop (read, parse, answer, close). Every connection that
 * sent something gets one well-formed status line, and the server frees all of it.
 * Input: one byte of options, then the bytes the client sends. */
#include "fuzz_common.h"
#include "http/http.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

enum {
	OPT_HALF_CLOSE = 1 << 0,  /* shutdown(SHUT_WR) after writing */
	OPT_CLOSE_EARLY = 1 << 1, /* close without reading the answer */
				  /* bits 2-3: chunk size of the writes */
};

static const size_t chunk_sizes[] = {0, 1000, 100, 7};

struct answer {
	char buf[8192];
	size_t len;
};

static void handler(void *data, const struct http_request *request, struct http_response *response)
{
	(void)data;
	if (http_path_is(request, "/metrics"))
		http_response_append(response, "fuzz_requests_total %d\n", 1);
	else
		response->status = 404;
}

static void settle(struct loop *loop)
{
	for (int i = 0; loop_run_once(loop, 0) > 0; i++)
		fuzz_assert(i < 100000);
}

static void receive(int fd, struct answer *a)
{
	for (;;) {
		ssize_t n = recv(fd, a->buf + a->len, sizeof(a->buf) - a->len, MSG_DONTWAIT);
		if (n > 0 && a->len + (size_t)n < sizeof(a->buf)) {
			a->len += (size_t)n;
			continue;
		}
		if (n > 0) /* our handler's answers are small */
			fuzz_fail(__FILE__, __LINE__, "answer larger than 8 KiB");
		return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct loop *loop;
	struct http_server *server;
	struct answer a = {.len = 0};

	if (size < 1)
		return 0;
	uint8_t opts = data[0];
	data++;
	size--;
	fuzz_init();
	int fds_before = fuzz_fd_count();
	const char *path = fuzz_path("metrics.sock");
	fuzz_assert(loop_new(&loop) == 0);
	fuzz_assert(http_server_new(loop, path, handler, NULL, &server) == 0);

	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	fuzz_assert(fd >= 0);
	fuzz_assert(connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0);
	settle(loop);

	size_t chunk = chunk_sizes[(opts >> 2) & 3];
	if (!chunk)
		chunk = size ? size : 1;
	bool open = true;
	for (size_t pos = 0; open && pos < size;) {
		size_t want = size - pos < chunk ? size - pos : chunk;
		ssize_t n = send(fd, data + pos, want, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno != EAGAIN)
			open = false;
		else if (n > 0)
			pos += (size_t)n;
		settle(loop);
		receive(fd, &a);
		/* The server reads up to its limit and answers; it never blocks us for long. */
		fuzz_assert(n != 0);
	}
	if (open && (opts & OPT_HALF_CLOSE)) {
		shutdown(fd, SHUT_WR);
		settle(loop);
	}
	if (opts & OPT_CLOSE_EARLY) {
		close(fd);
		fd = -1;
		settle(loop);
	} else {
		receive(fd, &a);
		if (a.len > 0) {
			/* "HTTP/1.1 NNN " */
			fuzz_assert(a.len >= 13 && !memcmp(a.buf, "HTTP/1.1 ", 9));
			for (int i = 9; i < 12; i++)
				fuzz_assert(a.buf[i] >= '0' && a.buf[i] <= '9');
			fuzz_assert(a.buf[12] == ' ');
			fuzz_assert(memmem(a.buf, a.len, "\r\n\r\n", 4));
		}
	}
	http_server_free(server);
	loop_run_once(loop, 0);
	loop_free(loop);
	if (fd >= 0)
		close(fd);
	fuzz_assert(fuzz_fd_count() == fds_before);
	return 0;
}
