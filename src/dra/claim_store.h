/* The claims this node has prepared, one small file per claim in a private state dir
 * (root, 0700), written atomically: the kubelet does not call NodePrepareResources
 * again after a plugin restart, so a restarted driver learns from here which claims it
 * answered, with what, and which handoff socket each one's container will come to. */
#pragma once

#include "../kube/resource_claim.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

struct error;

/* Kubernetes uids are RFC 4122 UUIDs, 36 characters; a handoff socket's path holds
 * one, so this bounds it (config_check.c). */
#define CLAIM_UID_MAX 36

/* A prepared claim, as recorded and as answered. */
struct claim_record {
	char uid[CLAIM_UID_MAX + 1];
	char namespace_[CLAIM_NAME_MAX];
	char name[CLAIM_NAME_MAX];
	char socket_path[PATH_MAX]; /* its handoff socket */
	size_t n_devices;
	struct claim_device devices[CLAIM_MAX_DEVICES];
};

struct claim_store;

/**
 * claim_store_open() - open (creating) the state dir and make it ours
 * @path: the dir; made root's (our euid's) 0700 through an O_NOFOLLOW fd
 * @out:  set to the store (free with claim_store_free())
 * @e:    on failure, the reason
 *
 * Return: 0 or -errno (see instance_dir_open_private()).
 */
int claim_store_open(const char *path, struct claim_store **out, struct error *e);

/**
 * claim_store_free() - close it; the records stay
 * @store: the store, or NULL
 */
void claim_store_free(struct claim_store *store);

/**
 * claim_store_save() - record a prepared claim (replacing an earlier record)
 * @store: the store
 * @rec:   the claim; its uid names the file
 * @e:     on failure, the reason
 *
 * Return: 0 or -errno: -EINVAL (a uid that cannot be a file name), write errors.
 */
int claim_store_save(struct claim_store *store, const struct claim_record *rec, struct error *e);

/**
 * claim_store_remove() - forget a claim; none recorded is success
 * @store: the store
 * @uid:   the claim's uid
 * @e:     on failure, the reason
 *
 * Return: 0 or -errno.
 */
int claim_store_remove(struct claim_store *store, const char *uid, struct error *e);

/**
 * claim_store_load() - call a function for each recorded claim
 * @store: the store
 * @fn:    called as fn(data, rec); rec is valid during the call
 * @data:  passed to @fn
 *
 * A file that does not parse is logged and skipped (left for an operator to see).
 *
 * Return: the number of records passed to @fn, or -errno if the dir cannot be read.
 */
int claim_store_load(struct claim_store *store,
		     void (*fn)(void *data, const struct claim_record *rec), void *data);

/**
 * claim_uid_valid() - whether a claim uid is fit for file and socket names
 * @uid: the uid
 *
 * Return: true for 1-CLAIM_UID_MAX characters of [A-Za-z0-9-], not starting with '-'.
 */
bool claim_uid_valid(const char *uid);
