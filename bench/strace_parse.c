/* strace -c -f on the plugin for one batch, and its summary table as calls per
 * operation; see strace_parse.h. The table is the rows between the first two lines of
 * dashes: "% time seconds usecs/call calls [errors] syscall". */
#include "strace_parse.h"

#include "procinfo.h"
#include "supervise.h"
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void tracer_start(struct bench *b, struct tracer *t, pid_t target, const char *out)
{
	char pid_text[16];

	snprintf(pid_text, sizeof(pid_text), "%d", (int)target);
	t->out = xstrdup(out);
	t->pid = supervise_fork(b, "strace");
	if (t->pid == 0) {
		supervise_child_quiet();
		execlp("strace", "strace", "-c", "-f", "-o", out, "-p", pid_text, (char *)NULL);
		_exit(127);
	}
	int r = proc_wait_traced(target, BENCH_WAIT_MS);
	if (r < 0)
		bench_die(b, "strace did not attach to pid %d: %s (is strace installed?)",
			  (int)target, strerror(-r));
}

int strace_summary_write(FILE *in, FILE *out, const char *what, int ops)
{
	char line[256];
	int dashes = 0;
	double total = 0;

	fprintf(out, "\nstrace -c -f on the plugin, %d %s: syscalls per %s\n", ops, what, what);
	while (fgets(line, sizeof(line), in)) {
		if (strncmp(line, "------", 6) == 0) {
			dashes++;
			continue;
		}
		if (dashes != 1)
			continue;
		char *tok[8];
		int n = 0;
		for (char *save, *p = strtok_r(line, " \n", &save); p && n < 8;
		     p = strtok_r(NULL, " \n", &save))
			tok[n++] = p;
		if (n < 5)
			continue;
		double calls = strtod(tok[3], NULL);
		double errors = n == 6 ? strtod(tok[4], NULL) : 0;
		total += calls;
		fprintf(out, "  %-16s %6.2f", tok[n - 1], calls / ops);
		if (errors > 0)
			fprintf(out, "  (%.2f failing)", errors / ops);
		fprintf(out, "\n");
	}
	fprintf(out, "  %-16s %6.2f\n", "total", total / ops);
	return ferror(in) ? -EIO : 0;
}

void tracer_finish(struct bench *b, struct tracer *t, const char *what, int ops)
{
	int status;

	if (kill(t->pid, SIGINT) < 0)
		bench_die(b, "cannot stop strace (pid %d): %s", (int)t->pid, strerror(errno));
	if (waitpid(t->pid, &status, 0) < 0)
		bench_die(b, "waitpid strace (pid %d): %s", (int)t->pid, strerror(errno));
	supervise_child_reaped(b, t->pid);
	FILE *in = fopen(t->out, "re");
	if (!in)
		bench_die(b, "cannot read %s: %s", t->out, strerror(errno));
	if (!b->trace_out &&
	    !(b->trace_out = open_memstream(&b->trace_report, &b->trace_report_len)))
		bench_die(b, "cannot open a memory stream for the strace report: %s",
			  strerror(errno));
	int r = strace_summary_write(in, b->trace_out, what, ops);
	if (r < 0)
		bench_die(b, "cannot read %s: %s", t->out, strerror(-r));
	fclose(in);
	free(t->out);
	t->out = NULL;
}
