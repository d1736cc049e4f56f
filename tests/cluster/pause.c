/* pause: the sandbox ("infra") container of every pod in the test cluster, built here
 * because the cluster has no registry to pull registry.k8s.io/pause from. It holds the
 * pod's namespaces open, reaps any child that the pid namespace hands it, and exits 0 on
 * SIGTERM or SIGINT. Static, so the image needs nothing but this file. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction stop = {.sa_handler = on_stop};
	struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP};

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		puts("pause (iommufd-device-plugin tests/cluster)");
		return 0;
	}
	if (sigaction(SIGTERM, &stop, NULL) < 0 || sigaction(SIGINT, &stop, NULL) < 0 ||
	    sigaction(SIGCHLD, &child, NULL) < 0) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
