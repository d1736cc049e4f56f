/* The fake kubelet's Registration service; see fake_kubelet.h. It checks each
 * RegisterRequest and stamps the time it was dispatched. */
#include "fake_kubelet.h"

#include "grpc/server.h"
#include "loop/loop.h"
#include "util.h"

#include "deviceplugin.pb-c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RESOURCE_NAME "devices.kubevirt.io/iommufd"

static void kubelet_register(void *data, struct grpc_call *call, const ProtobufCMessage *message)
{
	const V1beta1__RegisterRequest *request = (const V1beta1__RegisterRequest *)message;
	struct fake_kubelet *k = data;
	V1beta1__Empty empty = V1BETA1__EMPTY__INIT;
	unsigned long long now = bench_now_ns();

	if (strcmp(request->version, "v1beta1") != 0 ||
	    strcmp(request->resource_name, RESOURCE_NAME) != 0 ||
	    strlen(request->endpoint) >= sizeof(k->endpoint)) {
		k->bad_request = true;
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "unexpected RegisterRequest");
		return;
	}
	strcpy(k->endpoint, request->endpoint);
	k->last_register_ns = now;
	k->registrations++;
	grpc_call_send(call, &empty.base);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static const struct grpc_method kubelet_methods[] = {
    {"/v1beta1.Registration/Register", &v1beta1__register_request__descriptor, kubelet_register,
     NULL},
};

unsigned long long fake_kubelet_start(struct fake_kubelet *k)
{
	int r =
	    grpc_server_new(k->loop, kubelet_methods, ARRAY_SIZE(kubelet_methods), k, &k->server);
	if (r < 0)
		bench_die(k->bench, "cannot create the fake kubelet: %s", strerror(-r));
	unsigned long long t = bench_now_ns();
	r = grpc_server_listen(k->server, k->socket_path, false, NULL, NULL);
	if (r < 0)
		bench_die(k->bench, "fake kubelet cannot listen on %s: %s", k->socket_path,
			  strerror(-r));
	return t;
}

void fake_kubelet_stop(struct fake_kubelet *k)
{
	grpc_server_free(k->server);
	k->server = NULL;
	loop_run_once(k->loop, 0); /* deferred frees */
}

void fake_kubelet_remove_sockets(struct fake_kubelet *k)
{
	DIR *d = opendir(k->dir);
	if (!d)
		bench_die(k->bench, "cannot list %s: %s", k->dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISSOCK(st.st_mode) && unlinkat(dirfd(d), de->d_name, 0) < 0)
			bench_die(k->bench, "cannot remove %s/%s: %s", k->dir, de->d_name,
				  strerror(errno));
	}
	closedir(d);
}

void fake_kubelet_wait_register(struct fake_kubelet *k, unsigned count)
{
	unsigned long long deadline = bench_now_ns() + BENCH_WAIT_MS * 1000000ULL;

	while (k->registrations < count && !k->bad_request) {
		unsigned long long now = bench_now_ns();
		if (now >= deadline)
			bench_die(k->bench, "the plugin did not register within %d ms",
				  BENCH_WAIT_MS);
		int r = loop_run_once(k->loop, (int)((deadline - now) / 1000000ULL) + 1);
		if (r < 0)
			bench_die(k->bench, "fake kubelet event loop: %s", strerror(-r));
	}
	if (k->bad_request)
		bench_die(k->bench, "the plugin sent an unexpected RegisterRequest");
}
