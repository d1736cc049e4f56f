/* Guest-side QMP client for the VM test: connects to a QEMU's QMP unix socket (retrying until it
 * exists and greets), leaves capabilities negotiation mode and prints the reply line to each
 * command given, in order. The greeting may come from QEMU's monitor I/O thread before the
 * machine is built; replies come from the main loop, so for a paused `-S` QEMU a reply means every
 * -device has been realized. QMP is line-oriented JSON (docs/interop/qmp-spec.rst); asynchronous
 * events are skipped. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static const char *prog = "qmp";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [--wait SECONDS] [--pid PID] SOCKET JSON-COMMAND...\n"
		"Prints one reply line per command. Exit: 0 every reply was a return, 1 an error\n"
		"reply, 2 usage, 3 no QMP server answered within SECONDS (default 120) or QEMU's\n"
		"PID exited first.\n",
		prog);
	exit(2);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Whether PID still runs: /proc/PID/stat exists and its state is not Z (a zombie is an exited
 * child its parent, the test's shell, has not waited for yet). */
static bool process_running(int pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return false;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	const char *state = strrchr(buf, ')'); /* after "pid (comm)" */
	return state && state[1] == ' ' && state[2] != 'Z';
}

/* Connects to PATH; returns the socket or -errno. */
static int qmp_connect(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

/* Reads one line (without the CR LF) into a malloc'd buffer; NULL at EOF or on error. */
static char *qmp_read_line(FILE *in)
{
	char *line = NULL;
	size_t size = 0;
	ssize_t n = getline(&line, &size, in);
	if (n < 0) {
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	return line;
}

/* Sends COMMAND and returns the reply line (malloc'd), skipping events; NULL if the connection
 * ended first. */
static char *qmp_execute(int fd, FILE *in, const char *command)
{
	size_t len = strlen(command);
	if (write(fd, command, len) != (ssize_t)len || write(fd, "\r\n", 2) != 2)
		return NULL;
	for (;;) {
		char *line = qmp_read_line(in);
		if (!line)
			return NULL;
		if (strncmp(line, "{\"return\"", 9) == 0 || strncmp(line, "{\"error\"", 8) == 0)
			return line;
		free(line); /* {"timestamp": ..., "event": ...} */
	}
}

int main(int argc, char **argv)
{
	double wait_seconds = 120;
	int pid = 0;
	int i = 1;
	while (i + 1 < argc && strncmp(argv[i], "--", 2) == 0) {
		if (strcmp(argv[i], "--wait") == 0)
			wait_seconds = atof(argv[i + 1]);
		else if (strcmp(argv[i], "--pid") == 0)
			pid = atoi(argv[i + 1]);
		else
			usage();
		i += 2;
	}
	if (argc - i < 2)
		usage();
	const char *path = argv[i++];

	/* QEMU binds the socket early but serves it only once its main loop runs. */
	double deadline = now_seconds() + wait_seconds;
	int fd;
	FILE *in;
	char *greeting;
	for (;;) {
		fd = qmp_connect(path);
		if (fd >= 0) {
			in = fdopen(dup(fd), "r");
			if (!in) {
				perror("fdopen");
				return 3;
			}
			greeting = qmp_read_line(in);
			if (greeting && strstr(greeting, "\"QMP\""))
				break;
			free(greeting);
			fclose(in);
			close(fd);
		}
		if (pid > 0 && !process_running(pid)) {
			fprintf(stderr, "%s: pid %d exited before QMP answered on %s\n", prog, pid,
				path);
			return 3;
		}
		if (now_seconds() > deadline) {
			fprintf(stderr, "%s: no QMP greeting on %s within %.0f s: %s\n", prog, path,
				wait_seconds, fd < 0 ? strerror(-fd) : "connection closed");
			return 3;
		}
		usleep(50 * 1000);
	}
	free(greeting);

	char *reply = qmp_execute(fd, in, "{\"execute\": \"qmp_capabilities\"}");
	if (!reply || strncmp(reply, "{\"return\"", 9) != 0) {
		fprintf(stderr, "%s: qmp_capabilities failed: %s\n", prog, reply ? reply : "EOF");
		return 3;
	}
	free(reply);

	bool failed = false;
	for (; i < argc; i++) {
		reply = qmp_execute(fd, in, argv[i]);
		if (!reply) {
			fprintf(stderr, "%s: connection closed before the reply to %s\n", prog,
				argv[i]);
			return 1;
		}
		printf("%s\n", reply);
		failed |= strncmp(reply, "{\"error\"", 8) == 0;
		free(reply);
	}
	fclose(in);
	close(fd);
	return failed ? 1 : 0;
}
