/* plugin-bench: runs the real plugin binary against a fake kubelet in a private
 * directory and prints one table of its costs (median and spread over several runs)
 * next to the goals and the Go plugin's figures; docs/performance.md explains them.
 * --smoke is the test suite's short run: it checks the table is complete, never times.
 * This file is the command line, the table's rows and the header; run.c is one run. */
#include "bench.h"
#include "elf_size.h"
#include "run.h"
#include "supervise.h"

#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <linux/magic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* The flags, one table: what each sets in struct bench_options (at offset) and how. */
enum flag_kind {
	FLAG_COUNT,  /* an int >= min */
	FLAG_STRING, /* a const char * */
	FLAG_BOOL,   /* a bool set to true */
	FLAG_HELP,
};

struct flag {
	const char *name;
	size_t offset;
	enum flag_kind kind;
	int min;
};

#define OPTION(field) offsetof(struct bench_options, field)
/* getopt_long's value for flags[i]: FLAG_VALUE + i, clear of '?' and 0. */
#define FLAG_VALUE 256

static const struct flag flags[] = {
    {"plugin", OPTION(plugin), FLAG_STRING, 0},
    {"size-binary", OPTION(size_binary), FLAG_STRING, 0},
    {"smoke", OPTION(smoke), FLAG_BOOL, 0},
    {"runs", OPTION(runs), FLAG_COUNT, 1},
    {"cycles", OPTION(cycles), FLAG_COUNT, 1},
    {"batch", OPTION(batch), FLAG_COUNT, 1},
    {"starts", OPTION(starts), FLAG_COUNT, 1},
    {"restarts", OPTION(restarts), FLAG_COUNT, 1},
    {"idle-ms", OPTION(idle_ms), FLAG_COUNT, 0},
    {"streams", OPTION(streams), FLAG_COUNT, 1},
    {"connections", OPTION(connections), FLAG_COUNT, 1},
    {"missing", OPTION(missing_allocations), FLAG_COUNT, 1},
    {"device", OPTION(device), FLAG_STRING, 0},
    {"tmpdir", OPTION(tmpdir), FLAG_STRING, 0},
    {"strace", OPTION(strace), FLAG_BOOL, 0},
    {"keep", OPTION(keep), FLAG_BOOL, 0},
    {"help", 0, FLAG_HELP, 0},
};

/* The private directory goes on tmpfs when there is one: the handoff sockets live in
 * /var/run (tmpfs on a node), and a socket's bind() on a disk filesystem costs far
 * more (ext4 with discard: ~90 us instead of ~6 us here). */
static const char *default_tmpdir(void)
{
	struct statfs st;
	const char *env = getenv("TMPDIR");

	if (statfs("/dev/shm", &st) == 0 && st.f_type == TMPFS_MAGIC &&
	    access("/dev/shm", W_OK | X_OK) == 0)
		return "/dev/shm";
	return env && *env ? env : "/tmp";
}

static void read_loadavg(char *buf, size_t size)
{
	FILE *f = fopen("/proc/loadavg", "re");

	snprintf(buf, size, "unknown");
	if (f) {
		if (fgets(buf, (int)size, f))
			buf[strcspn(buf, " ")] = '\0'; /* the 1-minute figure */
		fclose(f);
	}
}

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "Usage: plugin-bench [--plugin PATH] [--smoke] [options]\n"
	    "Starts the plugin against a fake kubelet in a private temporary directory and\n"
	    "prints one table of start-up, re-registration, memory, CPU, idle and growth\n"
	    "figures (median and spread over the runs) next to the goals and the Go plugin.\n"
	    "\n"
	    "  --plugin PATH        the plugin binary (default: %s)\n"
	    "  --size-binary PATH   the binary whose stripped size is reported (default: "
	    "--plugin)\n"
	    "  --smoke              a short run for the test suite: 2 runs, 300 cycles, 1 s idle\n"
	    "  --runs N             plugin processes measured one after the other (5)\n"
	    "  --cycles N           Allocate + handoff cycles per run (10000)\n"
	    "  --batch N            Allocates per batch, then as many handoffs (100)\n"
	    "  --starts N           plugin starts timed per run, exec -> Register (10)\n"
	    "  --restarts N         kubelet restarts per run (5)\n"
	    "  --idle-ms N          idle window with ListAndWatch open (10000)\n"
	    "  --streams N          cancelled ListAndWatch streams (1000)\n"
	    "  --connections N      closed kubelet connections (1000)\n"
	    "  --missing N          Allocates with the device missing (2000)\n"
	    "  --device PATH        --iommu-device for the plugin (/dev/null)\n"
	    "  --tmpdir DIR         where the private directory is made (/dev/shm if tmpfs,\n"
	    "                       else $TMPDIR or /tmp)\n"
	    "  --strace             also count the syscalls of one batch with strace -c -f\n"
	    "  --keep               keep the private directory (plugin logs)\n"
	    "Exit: 0 with a complete table, 1 if any step or figure failed, 2 usage.\n",
	    BENCH_DEFAULT_PLUGIN);
}

/* Sets the count flag f in o from text. Returns 0, or -EINVAL (said on stderr). */
static int parse_count(const struct flag *f, const char *text, struct bench_options *o)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || *end || v < f->min || v > 100000000) {
		fprintf(stderr, "plugin-bench: --%s wants a number >= %d, not \"%s\"\n", f->name,
			f->min, text);
		return -EINVAL;
	}
	*(int *)((char *)o + f->offset) = (int)v;
	return 0;
}

/* --smoke's settings: a short run, whatever order the flags come in. */
static void set_smoke(struct bench_options *o)
{
	o->smoke = true;
	o->runs = 2;
	o->cycles = 300;
	o->starts = 2;
	o->restarts = 2;
	o->idle_ms = 1000;
	o->streams = 100;
	o->connections = 50;
	o->missing_allocations = 100;
}

enum parse_result { PARSE_RUN, PARSE_HELP, PARSE_USAGE };

/* Fills o from the command line: --smoke first sets its defaults, explicit flags
 * after it still win. */
static enum parse_result parse_options(int argc, char **argv, struct bench_options *o)
{
	struct option long_options[ARRAY_SIZE(flags) + 1] = {{0}};
	int c;

	for (size_t i = 0; i < ARRAY_SIZE(flags); i++)
		long_options[i] = (struct option){
		    flags[i].name,
		    flags[i].kind == FLAG_COUNT || flags[i].kind == FLAG_STRING ? required_argument
										: no_argument,
		    NULL, FLAG_VALUE + (int)i};
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--smoke") == 0)
			set_smoke(o);
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
		if (c < FLAG_VALUE)
			return PARSE_USAGE; /* '?': getopt_long has said why */
		const struct flag *f = &flags[c - FLAG_VALUE];
		char *field = (char *)o + f->offset;
		if (f->kind == FLAG_HELP)
			return PARSE_HELP;
		if (f->kind == FLAG_BOOL)
			*(bool *)field = true;
		else if (f->kind == FLAG_STRING)
			*(const char **)field = optarg;
		else if (parse_count(f, optarg, o) < 0)
			return PARSE_USAGE;
	}
	return optind == argc ? PARSE_RUN : PARSE_USAGE;
}

/* The table's rows, in the order of the F_* ids: name, unit, goal, the Go plugin. */
static void define_figures(struct bench *b)
{
	const struct bench_options *o = &b->options;
	struct figures *t = &b->figures;
	char n_cycles[64];

	snprintf(n_cycles, sizeof(n_cycles), "%d", o->cycles);
	/* The goals are issue 13's, for the release (static musl) binary. */
	figure_define(t, F_EXEC_REGISTER, UNIT_MS, "<= 1 ms", 1e6, NULL,
		      "exec -> Register at the kubelet");
	figure_define(t, F_RESTART_REGISTER, UNIT_MS, "<= 50 ms", 50e6, "never",
		      "kubelet restart -> Register again");
	figure_define(t, F_RSS_REGISTER, UNIT_KIB, "<= 400 KiB", 400, "11.2 MB",
		      "VmRSS after Register");
	figure_define(t, F_ANON_REGISTER, UNIT_KIB, NULL, 0, NULL, "RssAnon after Register");
	figure_define(t, F_HWM_REGISTER, UNIT_KIB, NULL, 0, NULL, "VmHWM after Register");
	figure_define(t, F_THREADS_REGISTER, UNIT_COUNT, "1", 1, "7", "threads after Register");
	figure_define(t, F_FDS_REGISTER, UNIT_COUNT, NULL, 0, NULL, "open fds after Register");
	figure_define(t, F_RSS_CYCLES, UNIT_KIB, "<= 450 KiB", 450, NULL,
		      "VmRSS after %s Allocate+handoff", n_cycles);
	figure_define(t, F_ANON_CYCLES, UNIT_KIB, NULL, 0, NULL,
		      "RssAnon after %s Allocate+handoff", n_cycles);
	figure_define(t, F_HWM_CYCLES, UNIT_KIB, NULL, 0, NULL, "VmHWM after %s Allocate+handoff",
		      n_cycles);
	figure_define(t, F_THREADS_CYCLES, UNIT_COUNT, "1", 1, "7",
		      "threads after %s Allocate+handoff", n_cycles);
	figure_define(t, F_FDS_CYCLES, UNIT_COUNT, NULL, 0, NULL,
		      "open fds after %s Allocate+handoff", n_cycles);
	figure_define(t, F_CPU_ALLOCATE, UNIT_US, "<= 20 us", 20e3, "491 us (fd path)",
		      "plugin CPU per Allocate (fd path)");
	figure_define(t, F_CPU_HANDOFF, UNIT_US, NULL, 0, NULL, "plugin CPU per handoff");
	figure_define(t, F_CPU_ALLOCATE_MISSING, UNIT_US, "<= 20 us", 20e3, "164 us",
		      "plugin CPU per Allocate (no device)");
	figure_define(t, F_KERNEL_SHARE, UNIT_PERCENT, NULL, 0, NULL,
		      "kernel share of plugin CPU in the cycles");
	figure_define(t, F_LATENCY_P50, UNIT_US, NULL, 0, NULL, "Allocate latency p50 (client)");
	figure_define(t, F_LATENCY_P99, UNIT_US, NULL, 0, NULL, "Allocate latency p99 (client)");
	figure_define(t, F_LATENCY_MAX, UNIT_US, NULL, 0, NULL, "Allocate latency max (client)");
	figure_define(t, F_HANDOFF_P50, UNIT_US, NULL, 0, NULL,
		      "handoff p50 (connect -> fd -> ACK -> close)");
	figure_define(t, F_IDLE_SWITCHES, UNIT_COUNT, "0", 0, "~8",
		      "idle: context switches in %d s", o->idle_ms / 1000);
	figure_define(t, F_IDLE_CPU, UNIT_US, "0 us", 0, NULL, "idle: plugin CPU in %d s",
		      o->idle_ms / 1000);
	/* RSS moves in pages, and an allocator keeps or returns a few of them as it likes
	 * (musl's mallocng swings by 2-3): growth under 4 pages over the whole series is
	 * no per-stream cost. A leak of 16 B per stream shows over 1000 streams. */
	figure_define(t, F_STREAM_GROWTH, UNIT_BYTES, "0 (<4 pages)", 4 * 4096.0 / o->streams,
		      "~12.5 kB", "RSS growth per cancelled ListAndWatch stream");
	figure_define(t, F_CONNECTION_GROWTH, UNIT_BYTES, "0 (<4 pages)",
		      4 * 4096.0 / o->connections, NULL,
		      "RSS growth per closed kubelet connection");
	figure_define(t, F_BINARY_SIZE, UNIT_KIB, "<= 300 KiB", 300, "10.4 MB",
		      "binary size, stripped");
}

/* The binary size row: KiB, and the name says whether it is the release (static)
 * figure. */
static void measure_binary(struct bench *b, bool *is_static)
{
	struct figure *f = &b->figures.f[F_BINARY_SIZE];

	elf_measure_stripped(b, b->temp_root, is_static);
	f->v[0] /= 1024.0;
	snprintf(f->name, sizeof(f->name), "%s",
		 *is_static ? "binary size, static and stripped"
			    : "binary size, stripped (DYNAMIC build)");
}

static void print_header(const struct bench *b, int argc, char **argv, bool is_static,
			 const char *load_before)
{
	const struct bench_options *o = &b->options;
	struct statfs fs;
	char load_after[32];
	struct utsname u;
	char cpu[128] = "unknown", date[64];
	time_t now = time(NULL);
	FILE *f = fopen("/proc/cpuinfo", "re");

	if (f) {
		char line[256];
		while (fgets(line, sizeof(line), f)) {
			char *colon = strchr(line, ':');
			if (strncmp(line, "model name", 10) == 0 && colon) {
				snprintf(cpu, sizeof(cpu), "%s", colon + 2);
				cpu[strcspn(cpu, "\n")] = '\0';
				break;
			}
		}
		fclose(f);
	}
	if (uname(&u) < 0) {
		snprintf(u.sysname, sizeof(u.sysname), "unknown");
		u.release[0] = '\0';
	}
	read_loadavg(load_after, sizeof(load_after));
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M UTC", gmtime(&now));
	printf("plugin-bench %s: %s %s, %s, %ld CPUs\n", date, u.sysname, u.release, cpu,
	       sysconf(_SC_NPROCESSORS_ONLN));
	printf("command:");
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\nplugin: %s; size of: %s (%s)\n", o->plugin, o->size_binary,
	       is_static ? "static" : "dynamic: build-static has the release figure");
	printf("private dir: %s (%s); load average (1 min) before %s, after %s\n", b->temp_root,
	       statfs(b->temp_root, &fs) == 0 && fs.f_type == TMPFS_MAGIC ? "tmpfs" : "NOT tmpfs",
	       load_before, load_after);
	printf("%sruns %d; per run: %d plugin starts, %d Allocate+handoff cycles in batches of %d, "
	       "%d kubelet restarts, "
	       "%d ms idle, %d cancelled streams, %d closed connections, %d Allocates with the "
	       "device missing; --iommu-device %s, %d devices\n\n",
	       o->smoke ? "SMOKE RUN, figures not meaningful: " : "", o->runs, o->starts, o->cycles,
	       o->batch, o->restarts, o->idle_ms, o->streams, o->connections,
	       o->missing_allocations, o->device, o->devices);
}

int main(int argc, char **argv)
{
	struct bench b = {
	    .options =
		{
		    .plugin = BENCH_DEFAULT_PLUGIN,
		    .device = "/dev/null",
		    .runs = 5,
		    .cycles = 10000,
		    .batch = 100,
		    .devices = 110,
		    .starts = 10,
		    .restarts = 5,
		    .idle_ms = 10000,
		    .streams = 1000,
		    .connections = 1000,
		    .missing_allocations = 2000,
		},
	};
	struct bench_options *o = &b.options;

	switch (parse_options(argc, argv, o)) {
	case PARSE_RUN:
		break;
	case PARSE_HELP:
		usage(stdout);
		return 0;
	case PARSE_USAGE:
		usage(stderr);
		return 2;
	}
	if (o->batch > o->devices)
		o->batch = o->devices;
	if (!o->size_binary)
		o->size_binary = o->plugin;
	if (!o->tmpdir)
		o->tmpdir = default_tmpdir();
	if (access(o->plugin, X_OK) < 0)
		bench_die(&b, "cannot execute %s: %s", o->plugin, strerror(errno));
	supervise_init(&b);
	define_figures(&b);

	char *dir = xasprintf("%s/plugin-bench.XXXXXX", o->tmpdir);
	if (!mkdtemp(dir))
		bench_die(&b, "cannot create a directory in %s: %s", o->tmpdir, strerror(errno));
	b.temp_root = dir;

	char load_before[32];
	read_loadavg(load_before, sizeof(load_before));
	bool is_static = false;
	measure_binary(&b, &is_static);
	for (int run = 0; run < o->runs; run++) {
		cleanup_free char *run_dir = xasprintf("%s/run%d", dir, run);
		if (mkdir(run_dir, 0700) < 0)
			bench_die(&b, "cannot create %s: %s", run_dir, strerror(errno));
		run_once(&b, run, run_dir);
	}

	print_header(&b, argc, argv, is_static, load_before);
	int missing = figures_print_table(&b.figures);
	if (b.trace_out) {
		fclose(b.trace_out);
		fputs(b.trace_report, stdout);
		free(b.trace_report);
	}
	fflush(stdout);
	if (!o->keep)
		supervise_remove_tree(dir);
	else
		fprintf(stderr, "plugin-bench: kept %s\n", dir);
	b.temp_root = NULL;
	free(dir);
	figures_free(&b.figures);
	munmap(b.exec_stamp, sizeof(*b.exec_stamp));
	if (missing) {
		fprintf(stderr, "plugin-bench: %d figure(s) have no sample\n", missing);
		return 1;
	}
	return 0;
}
