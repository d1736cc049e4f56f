/* Guest-side probe for the VM test: one iommufd/VFIO operation per call, its outcome printed as a
 * token (a value, "ok" or an errno name) for tests/vm/init to compare; diagnostics on stderr.
 * Built static against the test kernel's uapi headers (tests/vm/build-kernel.sh). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <linux/iommufd.h>
#include <linux/vfio.h>

static const char *prog = "iommufd-check";

static const char *errname(int err)
{
	const char *name = strerrorname_np(err);
	return name ? name : "EUNKNOWN";
}

static void usage(void)
{
	fprintf(stderr,
		"usage: %s open PATH\n"
		"       %s get IOMMUFD\n"
		"       %s set IOMMUFD VALUE\n"
		"       %s set-after-ioas IOMMUFD VALUE\n"
		"       %s map IOMMUFD VFIO_CDEV MIB [--hold]\n"
		"       %s path IOMMUFD\n"
		"       %s status\n"
		"IOMMUFD is fd:N (an inherited descriptor) or a path to open.\n",
		prog, prog, prog, prog, prog, prog, prog);
	exit(2);
}

/* "fd:N" names an inherited descriptor; anything else is a device node to open read-write. */
static int get_iommufd(const char *spec)
{
	if (strncmp(spec, "fd:", 3) == 0) {
		char *end;
		long fd = strtol(spec + 3, &end, 10);
		struct stat st;
		if (*end || fd < 0 || fd > 1024) {
			fprintf(stderr, "%s: bad descriptor spec '%s'\n", prog, spec);
			exit(2);
		}
		if (fstat((int)fd, &st) < 0) {
			fprintf(stderr, "%s: fstat of inherited fd %ld failed: %s\n", prog, fd,
				strerror(errno));
			printf("%s\n", errname(errno));
			exit(0);
		}
		return (int)fd;
	}
	int fd = open(spec, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: open %s failed: %s\n", prog, spec, strerror(errno));
		printf("open:%s\n", errname(errno));
		exit(0);
	}
	return fd;
}

/* IOMMU_OPTION with IOMMU_OPTION_RLIMIT_MODE (include/uapi/linux/iommufd.h): val64 0 = per-user
 * accounting, 1 = per-process (mm->locked_vm) accounting. object_id must be 0 for this option. */
static int rlimit_mode(int fd, uint16_t op, uint64_t *val)
{
	struct iommu_option opt = {
	    .size = sizeof(opt),
	    .option_id = IOMMU_OPTION_RLIMIT_MODE,
	    .op = op,
	    .object_id = 0,
	    .val64 = val ? *val : 0,
	};
	if (ioctl(fd, IOMMU_OPTION, &opt) < 0)
		return -errno;
	if (val)
		*val = opt.val64;
	return 0;
}

static int cmd_get(const char *spec)
{
	int fd = get_iommufd(spec);
	uint64_t val = 0;
	int rc = rlimit_mode(fd, IOMMU_OPTION_OP_GET, &val);
	if (rc < 0) {
		fprintf(stderr, "%s: IOMMU_OPTION GET RLIMIT_MODE on %s failed: %s\n", prog, spec,
			strerror(-rc));
		printf("%s\n", errname(-rc));
	} else {
		printf("%" PRIu64 "\n", val);
	}
	return 0;
}

static int ioas_alloc(int fd, uint32_t *ioas_id)
{
	struct iommu_ioas_alloc alloc = {.size = sizeof(alloc)};
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc) < 0)
		return -errno;
	*ioas_id = alloc.out_ioas_id;
	return 0;
}

static int cmd_set(const char *spec, const char *value, bool after_ioas)
{
	int fd = get_iommufd(spec);
	uint64_t val = strtoull(value, NULL, 0);
	if (after_ioas) {
		uint32_t ioas;
		int rc = ioas_alloc(fd, &ioas);
		if (rc < 0) {
			fprintf(stderr, "%s: IOMMU_IOAS_ALLOC on %s failed: %s\n", prog, spec,
				strerror(-rc));
			printf("ioas_alloc:%s\n", errname(-rc));
			return 0;
		}
	}
	int rc = rlimit_mode(fd, IOMMU_OPTION_OP_SET, &val);
	if (rc < 0) {
		fprintf(stderr, "%s: IOMMU_OPTION SET RLIMIT_MODE=%s on %s failed: %s\n", prog,
			value, spec, strerror(-rc));
		printf("%s\n", errname(-rc));
	} else {
		printf("ok\n");
	}
	return 0;
}

static int cmd_open(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "%s: open %s failed: %s\n", prog, path, strerror(errno));
		printf("%s\n", errname(errno));
		return 0;
	}
	close(fd);
	printf("ok\n");
	return 0;
}

/* Reads "<key>:   <n> kB" from /proc/self/status; -1 if absent. */
static long status_kb(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;
	size_t klen = strlen(key);
	if (!f) {
		fprintf(stderr, "%s: open /proc/self/status failed: %s\n", prog, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			kb = strtol(line + klen + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

static void print_status_line(const char *key)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	size_t klen = strlen(key);
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
			char *v = line + klen + 1;
			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			printf("%s=%s\n", key, v);
		}
	}
	fclose(f);
}

/* Which file the fd was opened through, as /proc/self/fd shows it: a received fd keeps the path
 * its opener used, e.g. a temporary device node, then marked " (deleted)". */
static int cmd_path(const char *spec)
{
	int fd = get_iommufd(spec);
	char link[64], path[PATH_MAX];
	struct stat st;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, path, sizeof(path) - 1);
	if (n < 0) {
		fprintf(stderr, "%s: readlink %s failed: %s\n", prog, link, strerror(errno));
		printf("path=%s\n", errname(errno));
		return 0;
	}
	path[n] = '\0';
	static const char deleted[] = " (deleted)";
	size_t len = (size_t)n, dlen = sizeof(deleted) - 1;
	bool is_deleted = len > dlen && strcmp(path + len - dlen, deleted) == 0;
	if (is_deleted)
		path[len - dlen] = '\0';
	if (fstat(fd, &st) < 0) {
		fprintf(stderr, "%s: fstat of %s failed: %s\n", prog, spec, strerror(errno));
		printf("path=%s rdev=%s\n", path, errname(errno));
		return 0;
	}
	char *slash = strrchr(path, '/');
	printf("path=%s dir=%.*s deleted=%s rdev=%u:%u\n", path, slash ? (int)(slash - path) : 0,
	       path, is_deleted ? "yes" : "no", major(st.st_rdev), minor(st.st_rdev));
	return 0;
}

/* Identity and capabilities of this process, so the test can show who the consumer is. */
static int cmd_status(void)
{
	printf("uid=%u euid=%u gid=%u\n", getuid(), geteuid(), getgid());
	print_status_line("CapEff");
	print_status_line("CapPrm");
	print_status_line("CapBnd");
	return 0;
}

/* Binds a VFIO cdev to the iommufd, attaches it to a fresh IOAS and maps MIB MiB of anonymous
 * memory: the step at which the pages get pinned and charged (drivers/iommu/iommufd/pages.c). */
static int cmd_map(const char *spec, const char *vfio_path, const char *mib_s, bool hold)
{
	int iommufd = get_iommufd(spec);
	size_t len = strtoull(mib_s, NULL, 10) << 20;
	int vfio = open(vfio_path, O_RDWR | O_CLOEXEC);
	if (vfio < 0) {
		fprintf(stderr, "%s: open %s failed: %s\n", prog, vfio_path, strerror(errno));
		printf("map=open:%s\n", errname(errno));
		return 0;
	}

	/* VFIO_DEVICE_BIND_IOMMUFD, include/uapi/linux/vfio.h: the cdev joins the iommufd ctx. */
	struct vfio_device_bind_iommufd bind = {
	    .argsz = sizeof(bind),
	    .flags = 0,
	    .iommufd = iommufd,
	};
	if (ioctl(vfio, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0) {
		fprintf(stderr, "%s: VFIO_DEVICE_BIND_IOMMUFD of %s to iommufd %s failed: %s\n",
			prog, vfio_path, spec, strerror(errno));
		printf("map=bind:%s\n", errname(errno));
		return 0;
	}

	uint32_t ioas;
	int rc = ioas_alloc(iommufd, &ioas);
	if (rc < 0) {
		fprintf(stderr, "%s: IOMMU_IOAS_ALLOC on %s failed: %s\n", prog, spec,
			strerror(-rc));
		printf("map=ioas_alloc:%s\n", errname(-rc));
		return 0;
	}

	/* VFIO_DEVICE_ATTACH_IOMMUFD_PT: attaching to an IOAS makes the kernel create a domain. */
	struct vfio_device_attach_iommufd_pt attach = {
	    .argsz = sizeof(attach),
	    .flags = 0,
	    .pt_id = ioas,
	};
	if (ioctl(vfio, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) < 0) {
		fprintf(stderr, "%s: VFIO_DEVICE_ATTACH_IOMMUFD_PT of %s to IOAS %u failed: %s\n",
			prog, vfio_path, ioas, strerror(errno));
		printf("map=attach:%s\n", errname(errno));
		return 0;
	}

	void *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		fprintf(stderr, "%s: mmap of %zu bytes failed: %s\n", prog, len, strerror(errno));
		printf("map=mmap:%s\n", errname(errno));
		return 0;
	}
	memset(buf, 0x5a, len);

	/* IOMMU_IOAS_MAP without IOMMU_IOAS_MAP_FIXED_IOVA: the kernel picks the IOVA. */
	struct iommu_ioas_map map = {
	    .size = sizeof(map),
	    .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
	    .ioas_id = ioas,
	    .user_va = (uintptr_t)buf,
	    .length = len,
	};
	long lck0 = status_kb("VmLck"), pin0 = status_kb("VmPin");
	if (ioctl(iommufd, IOMMU_IOAS_MAP, &map) < 0) {
		int err = errno;
		fprintf(stderr, "%s: IOMMU_IOAS_MAP of %zu MiB into IOAS %u failed: %s\n", prog,
			len >> 20, ioas, strerror(err));
		printf("map=%s vmlck_kb=%ld vmpin_kb=%ld\n", errname(err), status_kb("VmLck"),
		       status_kb("VmPin"));
		return 0;
	}
	long lck = status_kb("VmLck"), pin = status_kb("VmPin");
	printf("map=ok vmlck_kb=%ld vmpin_kb=%ld\n", lck - lck0, pin - pin0);
	fflush(stdout);
	if (hold) {
		/* Keep the pages pinned until the test kills us. */
		for (;;)
			pause();
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	if (strcmp(cmd, "open") == 0 && argc == 3)
		return cmd_open(argv[2]);
	if (strcmp(cmd, "get") == 0 && argc == 3)
		return cmd_get(argv[2]);
	if (strcmp(cmd, "set") == 0 && argc == 4)
		return cmd_set(argv[2], argv[3], false);
	if (strcmp(cmd, "set-after-ioas") == 0 && argc == 4)
		return cmd_set(argv[2], argv[3], true);
	if (strcmp(cmd, "map") == 0 && (argc == 5 || argc == 6)) {
		bool hold = argc == 6 && strcmp(argv[5], "--hold") == 0;
		if (argc == 6 && !hold)
			usage();
		return cmd_map(argv[2], argv[3], argv[4], hold);
	}
	if (strcmp(cmd, "path") == 0 && argc == 3)
		return cmd_path(argv[2]);
	if (strcmp(cmd, "status") == 0 && argc == 2)
		return cmd_status();
	usage();
	return 2;
}
