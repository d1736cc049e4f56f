/* The bearer token the client sends, read from its file and read again when the file
 * changes (see kube_config.c); kube_client_config_in_cluster() is declared in
 * kube_client.h, the contract. */
#pragma once

#include "../basic/error.h"

#include <sys/stat.h>

/**
 * struct kube_token - the token as last read
 * @header: "Bearer <token>", or NULL before the first read
 * @st:     the file version it came from
 */
struct kube_token {
	char *header;
	struct stat st;
};

/**
 * kube_token_refresh() - read the token file again if it changed since the last read
 * @token: the token; zeroed before the first call
 * @path:  the token file
 * @err:   why it cannot be read
 *
 * Return: 0 (@token->header is current), or -errno: -ENOENT/-EACCES (file), -EFBIG
 * (longer than 16 KiB), -EINVAL (empty or more than one line).
 */
int kube_token_refresh(struct kube_token *token, const char *path, struct error *err);

/**
 * kube_token_free() - free what it holds
 * @token: the token
 */
void kube_token_free(struct kube_token *token);
