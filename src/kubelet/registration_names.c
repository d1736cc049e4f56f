/* The names registration works with in the kubelet's directory: --socket-name's two
 * slot names (kubevirt-iommufd-0.sock, -1.sock), and which watched name a batch of
 * inotify events touched. */
#include "registration.h"
#include "registration_names.h"
#include "../util.h"

#include <string.h>
#include <sys/inotify.h>

#define KUBELET_SOCKET "kubelet.sock"

const char *registration_socket_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

char *registration_slot_name(const char *socket_path, int slot)
{
	size_t len = strlen(socket_path);
	const char *suffix = ".sock";
	size_t suffix_len = strlen(suffix);

	if (len > suffix_len && !strcmp(socket_path + len - suffix_len, suffix))
		return xasprintf("%.*s-%d%s", (int)(len - suffix_len), socket_path, slot, suffix);
	return xasprintf("%s-%d", socket_path, slot);
}

void registration_dir_events_add(struct registration_dir_events *de, const struct inotify_event *ev)
{
	if (ev->mask & IN_Q_OVERFLOW) {
		/* Events were lost: check what can be checked without them. */
		de->kubelet_started = de->ours_changed = de->canonical_changed = true;
		return;
	}
	if (!ev->len)
		return;
	bool created = ev->mask & (IN_CREATE | IN_MOVED_TO);
	if (!strcmp(ev->name, KUBELET_SOCKET))
		de->kubelet_started |= created;
	else if (!strcmp(ev->name, de->canonical))
		de->canonical_changed = true;
	else if (!strcmp(ev->name, de->serving))
		de->ours_changed = true;
	else if (!strcmp(ev->name, de->other))
		de->other_appeared |= created;
}
