/* kube-client-test: drives the API-server client for tests/integration/test_kube_api.py.
 * "claim NS NAME UID DRIVER" reads one ResourceClaim and prints what came back; "slice"
 * runs the ResourceSlice reconciler, taking "devices N true|false" lines on stdin and
 * printing "synced N" each time the server has what was asked. Not installed. */
#include "basic/error_text.h"
#include "kube/resource_claim.h"
#include "kube/resource_slice.h"
#include "log.h"
#include "loop/loop.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

struct driver {
	struct loop *loop;
	struct kube_client *client;
	struct resource_slice *slice;
	struct loop_watch input;
	char line[256];
	size_t line_len;
	unsigned n;
	int exit_code;
};

static const char *errno_name(int e)
{
	static const struct {
		int code;
		const char *name;
	} names[] = {
	    {ENOENT, "ENOENT"},		{ESTALE, "ESTALE"},	  {ENODATA, "ENODATA"},
	    {E2BIG, "E2BIG"},		{ETIMEDOUT, "ETIMEDOUT"}, {ECONNREFUSED, "ECONNREFUSED"},
	    {ECONNRESET, "ECONNRESET"}, {EPROTO, "EPROTO"},	  {EPERM, "EPERM"},
	    {EACCES, "EACCES"},		{ECANCELED, "ECANCELED"}, {EFBIG, "EFBIG"},
	    {EINVAL, "EINVAL"},
	};
	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (names[i].code == e)
			return names[i].name;
	return "E?";
}

static void claim_done(void *data, int err, const struct claim_allocation *alloc, const char *why)
{
	struct driver *d = data;

	if (err) {
		printf("error %s %s\n", errno_name(-err), why);
		d->exit_code = 2;
	} else {
		printf("ok uid=%s devices=%zu\n", alloc->uid, alloc->n_devices);
		for (size_t i = 0; i < alloc->n_devices; i++)
			printf("device %s %s %s\n", alloc->devices[i].request,
			       alloc->devices[i].pool, alloc->devices[i].device);
	}
	fflush(stdout);
	loop_quit(d->loop, 0);
}

/* A decimal number, or UINT_MAX if @s is not one. */
static unsigned parse_unsigned(const char *s, char **end)
{
	errno = 0;
	unsigned long v = strtoul(s, end, 10);
	return errno || *end == s || v >= UINT_MAX ? UINT_MAX : (unsigned)v;
}

/* One "devices N true|false" or "quit" line from stdin. */
static void driver_command(struct driver *d, const char *line)
{
	char *end;

	if (strcmp(line, "quit") == 0) {
		d->exit_code = 0;
	} else if (strncmp(line, "devices ", 8) == 0 &&
		   (d->n = parse_unsigned(line + 8, &end)) != UINT_MAX && *end == ' ') {
		resource_slice_set_devices(d->slice, d->n, strcmp(end + 1, "true") == 0);
	} else {
		fprintf(stderr, "kube-client-test: unknown command: %s\n", line);
	}
}

static void driver_input(void *data, uint32_t events)
{
	struct driver *d = data;
	(void)events;
	ssize_t n = read(STDIN_FILENO, d->line + d->line_len, sizeof(d->line) - 1 - d->line_len);

	if (n <= 0) {
		d->exit_code = 0; /* stdin closed: the test is done */
		return;
	}
	d->line_len += (size_t)n;
	d->line[d->line_len] = '\0';
	char *nl;
	while ((nl = strchr(d->line, '\n'))) {
		*nl = '\0';
		driver_command(d, d->line);
		d->line_len -= (size_t)(nl + 1 - d->line);
		memmove(d->line, nl + 1, d->line_len + 1);
	}
	if (d->line_len == sizeof(d->line) - 1)
		d->line_len = 0; /* an overlong line: dropped */
}

static int run_slice(struct driver *d, const struct resource_slice_spec *spec)
{
	bool synced = false;

	resource_slice_new(d->loop, d->client, spec, &d->slice);
	if (loop_watch_add(d->loop, &d->input, STDIN_FILENO, EPOLLIN, driver_input, d) < 0)
		return 1;
	for (;;) {
		int r = loop_run_once(d->loop, -1);
		if (r < 0)
			return 1;
		bool now = resource_slice_synced(d->slice);
		if (now != synced) {
			printf(now ? "synced %u\n" : "unsynced\n", d->n);
			fflush(stdout);
			synced = now;
		}
		if (d->exit_code >= 0)
			break;
	}
	loop_watch_remove(d->loop, &d->input);
	resource_slice_free(d->slice);
	return 0;
}

int main(int argc, char **argv)
{
	struct kube_client_config cfg = {.host = "127.0.0.1"};
	struct resource_slice_spec spec = {.owner_kind = "DaemonSet",
					   .owner_api_version = "apps/v1"};
	struct driver d = {.exit_code = -1};
	struct error err = {0};
	static const struct option options[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"ca", required_argument, NULL, 'c'},
	    {"token", required_argument, NULL, 't'},
	    {"driver", required_argument, NULL, 'd'},
	    {"node", required_argument, NULL, 'n'},
	    {"owner-name", required_argument, NULL, 'o'},
	    {"owner-uid", required_argument, NULL, 'u'},
	    {"resync", required_argument, NULL, 'r'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"owner-kind", required_argument, NULL, 'k'},
	    {"owner-api-version", required_argument, NULL, 'a'},
	    {NULL, 0, NULL, 0},
	};
	int opt;
	char *end;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'H':
			cfg.host = optarg;
			break;
		case 'p':
			cfg.port = parse_unsigned(optarg, &end);
			break;
		case 'c':
			cfg.ca_file = optarg;
			break;
		case 't':
			cfg.token_file = optarg;
			break;
		case 'd':
			spec.driver = optarg;
			break;
		case 'n':
			spec.node_name = optarg;
			break;
		case 'o':
			spec.owner_name = optarg;
			break;
		case 'u':
			spec.owner_uid = optarg;
			break;
		case 'k':
			spec.owner_kind = optarg;
			break;
		case 'a':
			spec.owner_api_version = optarg;
			break;
		case 'r':
			spec.resync_seconds = parse_unsigned(optarg, &end);
			break;
		case 'v':
			log_set_verbosity(4);
			break;
		default:
			return 1;
		}
	}
	if (optind >= argc || !cfg.ca_file) {
		fprintf(stderr,
			"usage: kube-client-test --ca FILE [--token FILE] [--host IP] --port N "
			"claim NS NAME UID DRIVER | slice --driver D --node N\n");
		return 1;
	}
	if (loop_new(&d.loop) < 0)
		return 1;
	if (kube_client_new(d.loop, &cfg, &d.client, &err) < 0) {
		printf("error %s %s\n", errno_name(-err.code), error_message(&err));
		loop_free(d.loop);
		return 2;
	}
	int code = 0;
	if (strcmp(argv[optind], "claim") == 0 && argc - optind == 5) {
		int r =
		    resource_claim_get(d.client, argv[optind + 1], argv[optind + 2],
				       argv[optind + 3], argv[optind + 4], 10000, claim_done, &d);
		if (r < 0) {
			printf("error %s bad arguments\n", errno_name(-r));
			code = 2;
		} else {
			loop_run(d.loop);
			code = d.exit_code > 0 ? d.exit_code : 0;
		}
	} else if (strcmp(argv[optind], "slice") == 0 && spec.driver && spec.node_name) {
		spec.kernel_release = "6.1.0-test";
		spec.rlimit_mode = "required";
		code = run_slice(&d, &spec);
	} else {
		fprintf(stderr, "kube-client-test: unknown command %s\n", argv[optind]);
		code = 1;
	}
	kube_client_free(d.client);
	loop_free(d.loop);
	return code;
}
