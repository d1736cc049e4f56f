/* iommufd-receive: takes the iommufd from the plugin's handoff socket inside a
 * container. Prints what it got (fd, device number, accounting mode), or installs
 * the fd at a given number and runs a command with it. */
#include "iommufd_receive.h"
#include "../src/basic/error_text.h"
#include "../src/iommufd/iommufd_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "unknown"
#endif

#define EXIT_USAGE 2

static void usage(FILE *out, const char *argv0)
{
	fprintf(out,
		"Usage: %s [--socket PATH] [--timeout SECONDS]\n"
		"       %s [--socket PATH] [--timeout SECONDS] --fd N -- COMMAND [ARG...]\n"
		"\n"
		"Receives the iommufd offered on PATH (default %s).\n"
		"Without --fd, prints: fd=<n> rdev=<major>:<minor> rlimit_mode=<0|1|ERRNO>\n"
		"With --fd N, installs the fd as N (inherited, not close-on-exec) and runs\n"
		"COMMAND.\n"
		"\n"
		"  --socket PATH      handoff socket to connect to\n"
		"  --timeout SECONDS  bound for each step, 0 = wait forever (default %d)\n"
		"  --fd N             fd number to install the iommufd at\n"
		"  --help             show this help\n"
		"  --version          show the version\n"
		"\n"
		"Exit status: 0 on success, 1 if receiving failed, 2 on bad usage,\n"
		"126/127 if COMMAND cannot be run.\n",
		argv0, argv0, IOMMUFD_RECEIVE_DEFAULT_SOCKET,
		IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS / 1000);
}

static int parse_int(const char *s, int max, int *out)
{
	char *end;

	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < 0 || v > max)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

static void print_received(int fd)
{
	struct stat st;
	uint64_t mode = 0;
	char rdev[32] = "-";

	if (fstat(fd, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)))
		snprintf(rdev, sizeof(rdev), "%u:%u", major(st.st_rdev), minor(st.st_rdev));
	int r = iommufd_rlimit_mode_ioctl(fd, IOMMU_OPTION_OP_GET, &mode);
	/* An error by its name, the "(ENAME)" that ends error_text()'s wording. */
	const char *name = r < 0 ? strrchr(error_text(-r), '(') : NULL;
	if (r == 0)
		printf("fd=%d rdev=%s rlimit_mode=%llu\n", fd, rdev, (unsigned long long)mode);
	else if (name)
		printf("fd=%d rdev=%s rlimit_mode=%.*s\n", fd, rdev, (int)strlen(name) - 2,
		       name + 1);
	else
		printf("fd=%d rdev=%s rlimit_mode=errno%d\n", fd, rdev, -r);
}

/* Puts fd at target without close-on-exec and runs argv; returns only on failure. */
static int exec_with_fd(int fd, int target, char **argv)
{
	if (fd != target) {
		if (dup3(fd, target, 0) < 0) {
			fprintf(stderr, "iommufd-receive: cannot install the fd as %d: %s\n",
				target, error_text(errno));
			return 1;
		}
		close(fd);
	} else if (fcntl(fd, F_SETFD, 0) < 0) {
		fprintf(stderr, "iommufd-receive: cannot clear close-on-exec on fd %d: %s\n", fd,
			error_text(errno));
		return 1;
	}
	execvp(argv[0], argv);
	int err = errno;
	fprintf(stderr, "iommufd-receive: cannot run %s: %s\n", argv[0], error_text(err));
	return err == ENOENT ? 127 : 126;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
	    {"socket", required_argument, NULL, 's'}, {"timeout", required_argument, NULL, 't'},
	    {"fd", required_argument, NULL, 'f'},     {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},      {0},
	};
	const char *socket_path = IOMMUFD_RECEIVE_DEFAULT_SOCKET;
	int timeout_s = IOMMUFD_RECEIVE_DEFAULT_TIMEOUT_MS / 1000;
	int target = -1;
	int c;

	/* "+": stop at the first non-option, so COMMAND's own options stay its own. */
	while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 't':
			if (parse_int(optarg, INT_MAX / 1000, &timeout_s) < 0) {
				fprintf(stderr, "iommufd-receive: invalid --timeout %s\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			if (parse_int(optarg, INT_MAX, &target) < 0) {
				fprintf(stderr, "iommufd-receive: invalid --fd %s\n", optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout, argv[0]);
			return 0;
		case 'V':
			printf("iommufd-receive %s\n", PLUGIN_VERSION);
			return 0;
		default:
			usage(stderr, argv[0]);
			return EXIT_USAGE;
		}
	}
	char **command = argv + optind;
	if ((target >= 0) != (*command != NULL)) {
		fprintf(stderr, "iommufd-receive: --fd N and a COMMAND go together\n");
		usage(stderr, argv[0]);
		return EXIT_USAGE;
	}

	int fd;
	int r = iommufd_receive_timeout(socket_path, timeout_s * 1000, &fd);
	if (r < 0) {
		fprintf(stderr, "iommufd-receive: cannot receive the iommufd from %s: %s\n",
			socket_path, error_text(-r));
		return 1;
	}
	if (target >= 0)
		return exec_with_fd(fd, target, command);
	print_received(fd);
	close(fd);
	return 0;
}
