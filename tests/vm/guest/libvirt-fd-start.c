/* Guest-side libvirt client for the VM test: takes the iommufd the way KubeVirt's virt-launcher
 * does (ReceiveIOMMUFD: one connect, one recvmsg, the first fd, a one-byte ACK), then defines a
 * domain with <iommufd enabled='yes' fdgroup='iommu'/> and a vfio-pci hostdev, hands the fd to
 * libvirt with virDomainFDAssociate and starts the domain paused; or destroys a domain. Built on
 * the host against trixie-backports' libvirt headers, run against the guest's libvirt.so. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libvirt/libvirt-qemu.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#define URI	 "qemu:///session"
#define FD_GROUP "iommu"

static const char *prog = "libvirt-fd-start";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s start --name NAME --bdf DDDD:BB:SS.F --memory-mib N\n"
		"           (--socket PATH | --fd N) [--no-associate]\n"
		"       %s destroy --name NAME\n"
		"start prints key=value lines: fd, associate, start, error (libvirt's message),\n"
		"state, hostdev_realized. Exit status 0 if the domain runs, 1 if not, 2 on bad "
		"usage.\n",
		prog, prog);
	exit(2);
}

/* The last libvirt error as one line (libvirt's own text). */
static const char *libvirt_error(void)
{
	const char *msg = virGetLastErrorMessage();
	static char line[4096];
	snprintf(line, sizeof(line), "%s", msg ? msg : "unknown error");
	for (char *p = line; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return line;
}

/* ReceiveIOMMUFD (KubeVirt v1.9, pkg/virt-launcher/virtwrap/iommufd.go) as tests/cluster/consumer
 * reproduces it: one connect, one recvmsg into 32 data and 4096 control bytes with
 * MSG_CMSG_CLOEXEC, no control data is an error, the first fd of the first SCM_RIGHTS message
 * wins, then one byte 0 is written (its error ignored) and the connection closed. Returns the fd
 * or -1 with a message on stderr. */
static int receive_iommufd(const char *path)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(stderr, "%s: socket path %s is too long\n", prog, path);
		return -1;
	}
	strcpy(addr.sun_path, path);
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (sock < 0) {
		fprintf(stderr, "%s: socket(AF_UNIX) failed: %s\n", prog, strerror(errno));
		return -1;
	}
	if (connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		fprintf(stderr, "%s: connect to %s failed: %s\n", prog, path, strerror(errno));
		close(sock);
		return -1;
	}
	char data[32];
	union {
		char buf[4096];
		struct cmsghdr align;
	} control;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof(data)};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = control.buf,
			     .msg_controllen = sizeof(control.buf)};
	ssize_t n;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		fprintf(stderr, "%s: recvmsg on %s failed: %s\n", prog, path, strerror(errno));
		close(sock);
		return -1;
	}
	if (msg.msg_controllen == 0) {
		fprintf(stderr, "%s: no control data from %s (%zd data bytes)\n", prog, path, n);
		close(sock);
		return -1;
	}
	int fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c && fd < 0; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
		    c->cmsg_len >= CMSG_LEN(sizeof(int)))
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
	}
	if (fd < 0) {
		fprintf(stderr, "%s: no SCM_RIGHTS fd from %s\n", prog, path);
		close(sock);
		return -1;
	}
	(void)send(sock, "", 1, MSG_NOSIGNAL); /* the ACK; upstream ignores its error */
	close(sock);
	return fd;
}

/* The domain: TCG q35, RAM as given, no default devices besides the PCIe root, the e1000e at
 * BDF through vfio-pci in iommufd mode, the iommufd from the fd group. (No memtune: libvirt
 * refuses it in session mode.) */
static char *domain_xml(const char *name, unsigned dom, unsigned bus, unsigned slot, unsigned fn,
			unsigned memory_mib)
{
	char *xml;
	if (asprintf(&xml,
		     "<domain type='qemu'>\n"
		     "  <name>%s</name>\n"
		     "  <memory unit='MiB'>%u</memory>\n"
		     "  <vcpu>1</vcpu>\n"
		     "  <iommufd enabled='yes' fdgroup='" FD_GROUP "'/>\n"
		     "  <os><type arch='x86_64' machine='q35'>hvm</type></os>\n"
		     "  <devices>\n"
		     "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
		     "    <controller type='usb' model='none'/>\n"
		     "    <memballoon model='none'/>\n"
		     "    <hostdev mode='subsystem' type='pci' managed='no'>\n"
		     "      <driver name='vfio' iommufd='yes'/>\n"
		     "      <source><address domain='0x%04x' bus='0x%02x' slot='0x%02x' "
		     "function='0x%x'/></source>\n"
		     "      <alias name='hostdev0'/>\n"
		     "    </hostdev>\n"
		     "  </devices>\n"
		     "</domain>\n",
		     name, memory_mib, dom, bus, slot, fn) < 0)
		return NULL;
	return xml;
}

/* Asks QEMU through libvirt's monitor whether hostdev0 is realized; prints true/false or the
 * error. */
static void print_realized(virDomainPtr dom)
{
	char *reply = NULL;
	const char *cmd =
	    "{\"execute\": \"qom-get\", \"arguments\": "
	    "{\"path\": \"/machine/peripheral/hostdev0\", \"property\": \"realized\"}}";
	if (virDomainQemuMonitorCommand(dom, cmd, &reply, 0) < 0) {
		printf("hostdev_realized=error\nrealized_error=%s\n", libvirt_error());
		return;
	}
	int realized = strstr(reply, "\"return\":true") || strstr(reply, "\"return\": true");
	printf("hostdev_realized=%s\n", realized ? "true" : "false");
	free(reply);
}

/* A decimal number in [0, max], or exit 2 (bad usage). */
static unsigned parse_uint(const char *s, unsigned max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max) {
		fprintf(stderr, "%s: bad number '%s'\n", prog, s);
		exit(2);
	}
	return (unsigned)v;
}

static void quiet(void *opaque, virErrorPtr err)
{
	(void)opaque;
	(void)err;
}

static int start(const char *name, const char *bdf, unsigned memory_mib, const char *socket_path,
		 int given_fd, int associate)
{
	unsigned d, b, s, f;
	if (sscanf(bdf, "%x:%x:%x.%x", &d, &b, &s, &f) != 4)
		usage();
	int fd = socket_path ? receive_iommufd(socket_path) : given_fd;
	printf("fd=%d\n", fd);
	fflush(stdout);
	if (fd < 0)
		return 1;

	virConnectPtr conn = virConnectOpen(URI);
	if (!conn) {
		printf("connect=error\nerror=%s\n", libvirt_error());
		return 1;
	}
	char *xml = domain_xml(name, d, b, s, f, memory_mib);
	if (!xml) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 1;
	}
	virDomainPtr dom = virDomainDefineXML(conn, xml);
	free(xml);
	if (!dom) {
		printf("define=error\nerror=%s\n", libvirt_error());
		virConnectClose(conn);
		return 1;
	}
	printf("define=ok\n");
	if (associate) {
		if (virDomainFDAssociate(dom, FD_GROUP, 1, &fd, 0) < 0) {
			printf("associate=error\nerror=%s\n", libvirt_error());
			virDomainFree(dom);
			virConnectClose(conn);
			return 1;
		}
		printf("associate=ok\n");
	} else {
		printf("associate=skipped\n");
	}
	fflush(stdout);
	int rc = 0;
	if (virDomainCreateWithFlags(dom, VIR_DOMAIN_START_PAUSED) < 0) {
		printf("start=error\nerror=%s\n", libvirt_error());
		rc = 1;
	} else {
		printf("start=ok\n");
		int state, reason;
		if (virDomainGetState(dom, &state, &reason, 0) == 0)
			printf("state=%s\n", state == VIR_DOMAIN_PAUSED	   ? "paused"
					     : state == VIR_DOMAIN_RUNNING ? "running"
									   : "other");
		print_realized(dom);
	}
	virDomainFree(dom);
	virConnectClose(conn);
	return rc;
}

static int destroy(const char *name)
{
	virConnectPtr conn = virConnectOpen(URI);
	if (!conn) {
		printf("connect=error\nerror=%s\n", libvirt_error());
		return 1;
	}
	virDomainPtr dom = virDomainLookupByName(conn, name);
	int rc = 0;
	if (!dom) {
		printf("lookup=error\nerror=%s\n", libvirt_error());
		rc = 1;
	} else {
		if (virDomainIsActive(dom) == 1 && virDomainDestroy(dom) < 0) {
			printf("destroy=error\nerror=%s\n", libvirt_error());
			rc = 1;
		} else {
			printf("destroy=ok\n");
		}
		if (virDomainUndefine(dom) < 0) {
			printf("undefine=error\nerror=%s\n", libvirt_error());
			rc = 1;
		}
		virDomainFree(dom);
	}
	virConnectClose(conn);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"name", required_argument, NULL, 'n'},
	    {"bdf", required_argument, NULL, 'b'},
	    {"memory-mib", required_argument, NULL, 'm'},
	    {"socket", required_argument, NULL, 's'},
	    {"fd", required_argument, NULL, 'f'},
	    {"no-associate", no_argument, NULL, 'A'},
	    {NULL, 0, NULL, 0},
	};
	if (argc < 2)
		usage();
	const char *cmd = argv[1];
	const char *name = NULL, *bdf = NULL, *socket_path = NULL;
	unsigned memory_mib = 0;
	int fd = -1, associate = 1, c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'b':
			bdf = optarg;
			break;
		case 'm':
			memory_mib = parse_uint(optarg, 1u << 20);
			break;
		case 's':
			socket_path = optarg;
			break;
		case 'f':
			fd = (int)parse_uint(optarg, 1u << 20);
			break;
		case 'A':
			associate = 0;
			break;
		default:
			usage();
		}
	}
	if (!name || optind != argc)
		usage();
	/* libvirt's errors are reported through virGetLastErrorMessage; not twice on stderr. */
	virSetErrorFunc(NULL, quiet);
	if (strcmp(cmd, "destroy") == 0)
		return destroy(name);
	if (strcmp(cmd, "start") != 0 || !bdf || !memory_mib || (!socket_path) == (fd < 0))
		usage();
	return start(name, bdf, memory_mib, socket_path, fd, associate);
}
