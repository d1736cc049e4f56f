/* The client's configuration from outside: the pod's in-cluster environment and the
 * service-account token file, read again whenever it changes (projected tokens rotate
 * by a symlink swap, so the file's inode changes). */
#include "kube_config.h"
#include "kube_client.h"
#include "../basic/error_text.h"
#include "../util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KUBE_TOKEN_MAX 16384 /* a projected token is ~1 KiB */
#define KUBE_SA_DIR    "/var/run/secrets/kubernetes.io/serviceaccount"

int kube_client_config_in_cluster(struct kube_client_config *cfg, struct error *err)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char *end;

	if (!host || !*host)
		return error_set(err, -ENOENT,
				 "KUBERNETES_SERVICE_HOST is not set: not in a cluster");
	unsigned long p = port && *port ? strtoul(port, &end, 10) : 443;
	if (port && *port && (*end || p == 0 || p > 65535))
		return error_set(err, -EINVAL, "KUBERNETES_SERVICE_PORT=%s is not a port", port);
	*cfg = (struct kube_client_config){
	    .host = host,
	    .port = (unsigned)p,
	    .ca_file = KUBE_SA_DIR "/ca.crt",
	    .token_file = KUBE_SA_DIR "/token",
	};
	return 0;
}

int kube_token_refresh(struct kube_token *token, const char *path, struct error *err)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return error_set(err, -errno, "cannot read token %s: %s", path, error_text(errno));
	if (token->header && st.st_ino == token->st.st_ino && st.st_dev == token->st.st_dev &&
	    st.st_size == token->st.st_size && st.st_mtim.tv_sec == token->st.st_mtim.tv_sec &&
	    st.st_mtim.tv_nsec == token->st.st_mtim.tv_nsec)
		return 0;
	cleanup_close int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return error_set(err, -errno, "cannot read token %s: %s", path, error_text(errno));
	if (fstat(fd, &st) < 0)
		return error_set(err, -errno, "cannot stat token %s: %s", path, error_text(errno));
	cleanup_free char *text = xmalloc(KUBE_TOKEN_MAX + 1);
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, text + len, KUBE_TOKEN_MAX + 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return error_set(err, -errno, "cannot read token %s: %s", path,
					 error_text(errno));
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > KUBE_TOKEN_MAX)
			return error_set(err, -EFBIG, "token %s is longer than %d bytes", path,
					 KUBE_TOKEN_MAX);
	}
	while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
		len--;
	text[len] = '\0';
	if (len == 0 || strpbrk(text, "\r\n"))
		return error_set(err, -EINVAL, "token %s is empty or not one line", path);
	free(token->header);
	token->header = xasprintf("Bearer %s", text);
	token->st = st;
	return 0;
}

void kube_token_free(struct kube_token *token)
{
	free(token->header);
	token->header = NULL;
}
