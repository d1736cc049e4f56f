/* Fuzz target: arbitrary bytes from a client of the DevicePlugin socket, into the real
 * daemon core (HTTP/2 via nghttp2, gRPC calls, every handler, Allocate's iommufd open
 * and handoff offer). Input: one byte of options, then the bytes the client sends. */
#include "fuzz_common.h"

#include <sys/socket.h>
#include <unistd.h>

enum {
	OPT_PREFACE = 1 << 0,	 /* send the client preface + SETTINGS first */
	OPT_HALF_CLOSE = 1 << 1, /* then shutdown(SHUT_WR) */
	OPT_CLOSE = 1 << 2,	 /* then close; else the server is freed with it open */
	/* bits 3-4: chunk size of the writes, settling the loop after each */
};

static const size_t chunk_sizes[] = {0, 1000, 100, 9};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_daemon d;

	if (size < 1)
		return 0;
	uint8_t opts = data[0];
	data++;
	size--;

	fuzz_init();
	int fds_before = fuzz_fd_count();
	fuzz_daemon_start(&d);
	int fds_started = fuzz_fd_count();
	size_t chunk = chunk_sizes[(opts >> 3) & 3];
	bool open = true;
	if (opts & OPT_PREFACE)
		open = fuzz_daemon_write(&d, fuzz_h2_preface, fuzz_h2_preface_len, 0, NULL, NULL);
	if (open)
		open = fuzz_daemon_write(&d, data, size, chunk, NULL, NULL);
	if (open && (opts & OPT_HALF_CLOSE)) {
		shutdown(d.client_fd, SHUT_WR);
		fuzz_daemon_settle(&d, NULL, NULL);
	}
	if (opts & OPT_CLOSE) {
		close(d.client_fd);
		d.client_fd = -1;
		fuzz_daemon_settle(&d, NULL, NULL);
		/* The server noticed: its end is closed; what stays open is each pending
		 * offer's listening socket and iommufd. */
		fuzz_assert(fuzz_fd_count() ==
			    fds_started - 2 + 2 * (int)handoff_pending(d.handoff));
	}
	fuzz_daemon_stop(&d);
	fuzz_assert(fuzz_fd_count() == fds_before);
	return 0;
}
