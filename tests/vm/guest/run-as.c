/* Guest-side launcher for the VM test: runs a command with a chosen identity, RLIMIT_MEMLOCK and
 * without chosen capabilities (bounding, permitted, effective, inheritable and ambient sets), the
 * way a container runtime would start an unprivileged consumer or a plugin lacking a capability. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

static const char *prog = "run-as";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s [--uid N] [--gid N] [--memlock BYTES] [--drop-cap NAME]...\n"
		"       [--drop-all-caps] [--open FD:PATH] -- CMD [ARGS...]\n"
		"NAME is sys_resource, ipc_lock, sys_admin, dac_override or a number.\n",
		prog);
	exit(2);
}

static void die(const char *what, const char *on)
{
	fprintf(stderr, "%s: %s %s failed: %s\n", prog, what, on, strerror(errno));
	exit(127);
}

/* Capability numbers from include/uapi/linux/capability.h. */
static int cap_number(const char *name)
{
	static const struct {
		const char *name;
		int cap;
	} names[] = {
	    {"dac_override", CAP_DAC_OVERRIDE},
	    {"ipc_lock", CAP_IPC_LOCK},
	    {"sys_admin", CAP_SYS_ADMIN},
	    {"sys_resource", CAP_SYS_RESOURCE},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(name, names[i].name) == 0)
			return names[i].cap;
	char *end;
	long n = strtol(name, &end, 10);
	if (*end || n < 0 || n > CAP_LAST_CAP) {
		fprintf(stderr, "%s: unknown capability '%s'\n", prog, name);
		exit(2);
	}
	return (int)n;
}

static unsigned long long parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'K':
		return v << 10;
	case 'M':
		return v << 20;
	case 'G':
		return v << 30;
	case '\0':
		return v;
	}
	fprintf(stderr, "%s: bad size '%s'\n", prog, s);
	exit(2);
}

/* Removes the capabilities in drop[] from the bounding and ambient sets. Needs CAP_SETPCAP, so
 * it runs before the uid change. */
static void drop_bounding(const bool drop[CAP_LAST_CAP + 1])
{
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
		if (!drop[cap])
			continue;
		/* EINVAL: a capability this kernel does not know. */
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
			die("prctl(PR_CAPBSET_DROP)", "self");
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, cap, 0, 0) < 0 && errno != EINVAL)
			die("prctl(PR_CAP_AMBIENT_LOWER)", "self");
	}
}

/* Removes the capabilities in drop[] from the effective, permitted and inheritable sets. Runs
 * after the uid change, which needs CAP_SETUID/CAP_SETGID while it happens. */
static void drop_sets(const bool drop[CAP_LAST_CAP + 1])
{
	/* capget/capset with _LINUX_CAPABILITY_VERSION_3 use two 32-bit words per set. */
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	if (syscall(SYS_capget, &hdr, data) < 0)
		die("capget", "self");
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++) {
		if (!drop[cap])
			continue;
		uint32_t mask = ~CAP_TO_MASK(cap);
		data[CAP_TO_INDEX(cap)].effective &= mask;
		data[CAP_TO_INDEX(cap)].permitted &= mask;
		data[CAP_TO_INDEX(cap)].inheritable &= mask;
	}
	if (syscall(SYS_capset, &hdr, data) < 0)
		die("capset", "self");
}

int main(int argc, char **argv)
{
	long uid = -1, gid = -1;
	bool drop[CAP_LAST_CAP + 1] = {false};
	bool any_drop = false;
	int i;

	for (i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *opt = argv[i];
		if (i + 1 >= argc)
			usage();
		if (strcmp(opt, "--drop-all-caps") == 0) {
			for (int c = 0; c <= CAP_LAST_CAP; c++)
				drop[c] = true;
			any_drop = true;
			continue;
		}
		const char *val = argv[++i];
		if (strcmp(opt, "--uid") == 0) {
			uid = strtol(val, NULL, 10);
		} else if (strcmp(opt, "--gid") == 0) {
			gid = strtol(val, NULL, 10);
		} else if (strcmp(opt, "--memlock") == 0) {
			struct rlimit rl;
			rl.rlim_cur = rl.rlim_max = parse_size(val);
			if (setrlimit(RLIMIT_MEMLOCK, &rl) < 0)
				die("setrlimit(RLIMIT_MEMLOCK)", val);
		} else if (strcmp(opt, "--drop-cap") == 0) {
			drop[cap_number(val)] = true;
			any_drop = true;
		} else if (strcmp(opt, "--open") == 0) {
			/* FD:PATH opened read-write before privileges go, like a plain fd a
			 * privileged parent would hand down. */
			char *end;
			long fd = strtol(val, &end, 10);
			if (*end != ':' || fd < 3)
				usage();
			int got = open(end + 1, O_RDWR);
			if (got < 0)
				die("open", end + 1);
			if (got != fd) {
				if (dup2(got, (int)fd) < 0)
					die("dup2", end + 1);
				close(got);
			}
		} else {
			usage();
		}
	}
	if (i + 1 >= argc)
		usage();
	char **cmd = &argv[i + 1];

	if (gid < 0 && uid >= 0)
		gid = uid;
	if (gid >= 0) {
		gid_t g = (gid_t)gid;
		if (setgroups(1, &g) < 0)
			die("setgroups", "self");
		if (setresgid(g, g, g) < 0)
			die("setresgid", "self");
	}
	if (any_drop)
		drop_bounding(drop);
	if (uid >= 0) {
		/* Without SECBIT_KEEP_CAPS, leaving uid 0 clears permitted and effective caps. */
		if (setresuid((uid_t)uid, (uid_t)uid, (uid_t)uid) < 0)
			die("setresuid", "self");
	}
	if (any_drop)
		drop_sets(drop);
	execvp(cmd[0], cmd);
	die("exec", cmd[0]);
	return 127;
}
