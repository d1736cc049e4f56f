/* config_parse: the modules' defaults, flags of every kind, the IOMMUFD_DP_*
 * environment (flags win), and a clear error for every bad value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "config/config.h"
#include "test_helpers.h"

/* Whose flags parse() reads: the device plugin's unless a test says otherwise. */
static const struct config_flavor *program = &config_device_plugin_flavor;

struct parsed {
	struct config config;
	enum config_result result;
	char *out, *err;
};

/* Parses the NULL-terminated flags after a program name, capturing both streams. */
static void parse(struct parsed *p, ...)
{
	char *argv[32] = {"iommufd-device-plugin"};
	size_t out_size, err_size;
	int argc = 1;
	va_list ap;

	va_start(ap, p);
	for (char *arg; (arg = va_arg(ap, char *));)
		argv[argc++] = arg;
	va_end(ap);
	assert_true(argc < (int)ARRAY_SIZE(argv));
	FILE *out = open_memstream(&p->out, &out_size);
	FILE *err = open_memstream(&p->err, &err_size);
	assert_non_null(out);
	assert_non_null(err);
	p->result = config_parse_program(&p->config, program, argc, argv, out, err);
	assert_int_equal(fclose(out), 0);
	assert_int_equal(fclose(err), 0);
}

static void parsed_free(struct parsed *p)
{
	config_free(&p->config);
	free(p->out);
	free(p->err);
}

/* Parses one bad flag: usage exit, and the message names the flag and the value. */
static void expect_usage_error(const char *flag, const char *message)
{
	struct parsed p;

	parse(&p, flag, NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	if (!strstr(p.err, message))
		fail_msg("%s: '%s' not in: %s", flag, message, p.err);
	parsed_free(&p);
}

static int clear_environment(void **state)
{
	(void)state;
	program = &config_device_plugin_flavor;
	return clearenv();
}

static void config_defaults_are_the_modules_own(void **state)
{
	struct kubelet_options kubelet;
	struct iommufd_options iommufd;
	struct handoff_options handoff;
	struct pod_resources_options pod_resources;
	struct parsed p;

	(void)state;
	kubelet_options_init(&kubelet);
	iommufd_options_init(&iommufd);
	handoff_options_init(&handoff);
	pod_resources_options_init(&pod_resources);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_string_equal(p.err, "");
	const struct config *c = &p.config;
	assert_string_equal(c->kubelet.kubelet_dir, kubelet.kubelet_dir);
	assert_string_equal(c->kubelet.socket_name, "kubevirt-iommufd.sock");
	assert_string_equal(c->kubelet.resource_name, "devices.kubevirt.io/iommufd");
	assert_int_equal(c->kubelet.devices, 110);
	assert_int_equal(c->kubelet.registration, KUBELET_REGISTRATION_KUBELET_SOCKET);
	assert_int_equal(c->kubelet.missing_device, KUBELET_MISSING_ALLOW);
	assert_string_equal(c->kubelet.container_socket_path, kubelet.container_socket_path);
	assert_false(c->kubelet.expose_device_node);
	assert_string_equal(c->kubelet.device_node_host_path, "/dev/iommu");
	assert_string_equal(c->iommufd.device_path, "/dev/iommu");
	assert_int_equal(c->iommufd.policy, IOMMUFD_RLIMIT_REQUIRED);
	assert_string_equal(c->iommufd.scratch_dir, iommufd.scratch_dir);
	assert_true(c->iommufd.scratch_tmpfs);
	assert_string_equal(c->handoff.socket_dir, handoff.socket_dir);
	assert_int_equal(c->handoff.ttl_usec, 15ULL * 60 * 1000000);
	assert_int_equal(c->handoff.ack_timeout_usec, handoff.ack_timeout_usec);
	assert_int_equal(c->handoff.socket_mode, 0666);
	assert_int_equal(c->handoff.socket_uid, (uid_t)-1);
	assert_int_equal(c->handoff.socket_gid, (gid_t)-1);
	assert_int_equal(c->handoff.allowed_uid_count, 0);
	assert_int_equal(c->handoff.max_peers, handoff.max_peers);
	assert_string_equal(c->pod_resources.socket_path, pod_resources.socket_path);
	assert_int_equal(c->pod_resources.interval_usec, 10ULL * 1000000);
	assert_int_equal(c->pod_resources.grace_usec, pod_resources.grace_usec);
	assert_int_equal(c->drain_timeout_usec, 25ULL * 1000000);
	assert_int_equal(c->selinux, SELINUX_MODE_AUTO);
	assert_string_equal(c->selinux_label, SELINUX_DEFAULT_LABEL);
	assert_null(c->metrics_address);
	assert_int_equal(c->log_format, LOG_FORMAT_TEXT);
	assert_int_equal(c->verbosity, 0);
	/* One flag, two modules: the same value, not a second default. */
	assert_ptr_equal(c->kubelet.iommu_device, c->iommufd.device_path);
	assert_ptr_equal(c->pod_resources.resource_name, c->kubelet.resource_name);
	parsed_free(&p);
}

static void config_flags_of_every_kind_reach_the_module_fields(void **state)
{
	struct parsed p;

	(void)state;
	parse(&p, "--devices=4", "--rlimit-mode", "best-effort", "--registration=both",
	      "--missing-device=unhealthy", "--expose-device-node", "--handoff-ttl=500ms",
	      "--ack-timeout=2m", "--drain-timeout=0", "--pod-resources-interval=1h",
	      "--socket-mode=0600", "--allowed-uids=107,0", "--socket-owner=107:108",
	      "--scratch-dir=/tmp/scratch", "--iommu-device=/dev/null", "--selinux=off",
	      "--log-format=json", "--metrics-address=127.0.0.1:9100", "-v", "3",
	      "--resource-name=example.com/iommufd", "--device-node-host-path=/node/dev/iommu",
	      NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	const struct config *c = &p.config;
	assert_int_equal(c->kubelet.devices, 4);
	assert_int_equal(c->iommufd.policy, IOMMUFD_RLIMIT_BEST_EFFORT);
	assert_int_equal(c->kubelet.registration, KUBELET_REGISTRATION_BOTH);
	assert_true(kubelet_uses_kubelet_socket(&c->kubelet));
	assert_true(kubelet_uses_plugin_watcher(&c->kubelet));
	assert_int_equal(c->kubelet.missing_device, KUBELET_MISSING_UNHEALTHY);
	assert_true(c->kubelet.expose_device_node);
	assert_string_equal(c->kubelet.device_node_host_path, "/node/dev/iommu");
	assert_int_equal(c->handoff.ttl_usec, 500000);
	assert_int_equal(c->handoff.ack_timeout_usec, 120ULL * 1000000);
	assert_int_equal(c->drain_timeout_usec, 0);
	assert_int_equal(c->pod_resources.interval_usec, 3600ULL * 1000000);
	assert_int_equal(c->handoff.socket_mode, 0600);
	assert_int_equal(c->handoff.allowed_uid_count, 2);
	assert_int_equal(c->handoff.allowed_uids[0], 107);
	assert_int_equal(c->handoff.allowed_uids[1], 0);
	assert_int_equal(c->handoff.socket_uid, 107);
	assert_int_equal(c->handoff.socket_gid, 108);
	assert_string_equal(c->iommufd.scratch_dir, "/tmp/scratch");
	assert_false(c->iommufd.scratch_tmpfs);
	assert_string_equal(c->iommufd.device_path, "/dev/null");
	assert_string_equal(c->kubelet.iommu_device, "/dev/null");
	assert_int_equal(c->selinux, SELINUX_MODE_OFF);
	assert_int_equal(c->log_format, LOG_FORMAT_JSON);
	assert_string_equal(c->metrics_address, "127.0.0.1:9100");
	assert_int_equal(c->verbosity, 3);
	assert_string_equal(c->pod_resources.resource_name, "example.com/iommufd");
	parsed_free(&p);

	/* A bool takes an explicit value too; an owner without a group keeps the gid. */
	parse(&p, "--expose-device-node=false", "--socket-owner=5", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_false(p.config.kubelet.expose_device_node);
	assert_int_equal(p.config.handoff.socket_uid, 5);
	assert_int_equal(p.config.handoff.socket_gid, (gid_t)-1);
	parsed_free(&p);
}

static void config_environment_sets_flags_and_flags_win(void **state)
{
	struct parsed p;

	(void)state;
	assert_int_equal(setenv("IOMMUFD_DP_DEVICES", "7", 1), 0);
	assert_int_equal(setenv("IOMMUFD_DP_RLIMIT_MODE", "best-effort", 1), 0);
	assert_int_equal(setenv("IOMMUFD_DP_POD_RESOURCES_GRACE", "45s", 1), 0);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_int_equal(p.config.kubelet.devices, 7);
	assert_int_equal(p.config.iommufd.policy, IOMMUFD_RLIMIT_BEST_EFFORT);
	assert_int_equal(p.config.pod_resources.grace_usec, 45ULL * 1000000);
	parsed_free(&p);

	parse(&p, "--devices=9", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_int_equal(p.config.kubelet.devices, 9);
	parsed_free(&p);

	/* A bad environment value is named by its variable. */
	assert_int_equal(setenv("IOMMUFD_DP_DEVICES", "many", 1), 0);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	assert_non_null(strstr(p.err, "IOMMUFD_DP_DEVICES: --devices wants a whole number"));
	parsed_free(&p);

	/* A variable that names no flag (a typo) is refused, as an unknown flag is;
	 * other variables, with or without the prefix's look, are not ours. */
	assert_int_equal(setenv("IOMMUFD_DP_DEVICES", "3", 1), 0);
	assert_int_equal(setenv("IOMMUFD_DP_RLIMIT", "off", 1), 0);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	assert_non_null(strstr(p.err, "IOMMUFD_DP_RLIMIT names no flag"));
	parsed_free(&p);
	assert_int_equal(unsetenv("IOMMUFD_DP_RLIMIT"), 0);
	/* Only the upper-case, '_' spelling names a flag. */
	assert_int_equal(setenv("IOMMUFD_DP_devices", "5", 1), 0);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	assert_non_null(strstr(p.err, "IOMMUFD_DP_devices names no flag"));
	parsed_free(&p);
	assert_int_equal(unsetenv("IOMMUFD_DP_devices"), 0);
	assert_int_equal(setenv("IOMMUFD_DPX", "1", 1), 0);
	assert_int_equal(setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1), 0);
	parse(&p, NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_int_equal(p.config.kubelet.devices, 3);
	parsed_free(&p);
}

static void config_bad_values_are_usage_errors_that_name_the_flag(void **state)
{
	(void)state;
	expect_usage_error("--devices=0",
			   "--devices wants a whole number from 1 to 100000, not '0'");
	expect_usage_error("--devices=4x", "--devices wants a whole number");
	expect_usage_error("-v=11", "-v wants a whole number from 0 to 10");
	expect_usage_error("--handoff-ttl=5x", "--handoff-ttl wants a duration like 500ms");
	expect_usage_error("--handoff-ttl=-1s", "--handoff-ttl wants a duration");
	expect_usage_error("--ack-timeout=99999999999999999999h", "--ack-timeout wants a duration");
	expect_usage_error("--rlimit-mode=sometimes",
			   "--rlimit-mode wants one of best-effort required, not 'sometimes'");
	expect_usage_error("--expose-device-node=yes", "--expose-device-node wants true or false");
	expect_usage_error("--socket-mode=0999", "--socket-mode wants octal permission bits");
	expect_usage_error("--socket-mode=1777", "--socket-mode wants octal permission bits");
	expect_usage_error("--allowed-uids=107,abc", "--allowed-uids wants numeric uids");
	expect_usage_error("--allowed-uids=4294967295", "--allowed-uids wants numeric uids");
	expect_usage_error("--socket-owner=1:x", "--socket-owner wants UID or UID:GID");
	expect_usage_error("--socket-name=a/b", "--socket-name must be a plain file name");
	expect_usage_error("--resource-name=plain", "--resource-name must be domain/name");
	expect_usage_error("--kubelet-dir=", "--kubelet-dir must not be empty");
	expect_usage_error("--device-node-host-path=dev/iommu",
			   "--device-node-host-path must be absolute");
	expect_usage_error("--no-such-flag", "unknown flag or missing value: --no-such-flag");
	expect_usage_error("stray", "unexpected argument 'stray'");

	struct parsed p;
	parse(&p, "--registration=plugin-watcher", "--plugin-dir=relative", NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	assert_non_null(strstr(p.err, "--plugin-dir and --plugins-registry-dir must be absolute"));
	parsed_free(&p);
	/* The same relative dir is no error while the plugin watcher is not used. */
	parse(&p, "--plugin-dir=relative", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	parsed_free(&p);
}

static void config_help_prints_the_module_defaults_and_exits_ok(void **state)
{
	struct parsed p;

	(void)state;
	parse(&p, "--devices=3", "--help", NULL);
	assert_int_equal(p.result, CONFIG_EXIT_OK);
	/* The defaults, not what the flags before --help set. */
	assert_non_null(strstr(p.out, "(default 110)"));
	assert_non_null(strstr(p.out, "--rlimit-mode MODE"));
	assert_non_null(strstr(p.out, "(default required)"));
	assert_non_null(strstr(p.out, "(default 15m)"));
	assert_non_null(strstr(p.out, "(default 25s)"));
	assert_non_null(strstr(p.out, "(default 0666)"));
	assert_non_null(strstr(p.out, "(default /dev/iommu)"));
	assert_non_null(strstr(p.out, "IOMMUFD_DP_<FLAG>"));
	/* No default is printed for what is off unless given. */
	const char *metrics = strstr(p.out, "--metrics-address");
	assert_non_null(metrics);
	char line[512];
	snprintf(line, sizeof(line), "%.*s", (int)strcspn(metrics, "\n"), metrics);
	assert_non_null(strstr(line, "default: off"));
	assert_null(strstr(line, "(default"));
	parsed_free(&p);

	parse(&p, "--version", NULL);
	assert_int_equal(p.result, CONFIG_EXIT_OK);
	assert_string_equal(p.out, "iommufd-device-plugin " PLUGIN_VERSION "\n");
	parsed_free(&p);
}

static void config_log_names_every_flag_with_its_value(void **state)
{
	struct test_stderr_capture capture;
	struct parsed p;

	(void)state;
	parse(&p, "--handoff-ttl=90s", "--ack-timeout=1500ms", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	test_capture_stderr_begin(&capture);
	config_log(&p.config);
	char *log = test_capture_stderr_end(&capture);
	assert_non_null(strstr(log, "configuration: kubelet-dir="));
	assert_non_null(strstr(log, " handoff-ttl=90s "));
	assert_non_null(strstr(log, " ack-timeout=1500ms "));
	assert_non_null(strstr(log, " drain-timeout=25s "));
	assert_non_null(strstr(log, " rlimit-mode=required "));
	assert_non_null(strstr(log, " socket-mode=0666 "));
	assert_non_null(strstr(log, " metrics-address=(unset) "));
	assert_non_null(strstr(log, " v=0"));
	free(log);
	parsed_free(&p);
}

/* Issue 19 rows 11 and 12: configuration that parses but cannot work is refused. */
static void config_refuses_durations_over_a_day_and_socket_paths_over_sun_path(void **state)
{
	struct parsed p;
	char dir[128], flag[160];
	(void)state;

	expect_usage_error("--handoff-ttl=5124095576h", "--handoff-ttl is at most 24h");
	expect_usage_error("--ack-timeout=5124095576h", "--ack-timeout is at most 24h");
	expect_usage_error("--drain-timeout=1441m", "--drain-timeout is at most 24h");
	expect_usage_error("--pod-resources-grace=86401s", "--pod-resources-grace is at most 24h");
	expect_usage_error("--pod-resources-interval=25h",
			   "--pod-resources-interval is at most 24h");
	parse(&p, "--handoff-ttl=24h", "--ack-timeout=86400s", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_int_equal(p.config.handoff.ttl_usec, 24ULL * 3600 * 1000000);
	parsed_free(&p);

	/* --devices 10: a handoff socket adds 48 bytes to --socket-dir; 107 fit. */
	memset(dir, 'd', 59);
	dir[0] = '/';
	dir[59] = '\0';
	snprintf(flag, sizeof(flag), "--socket-dir=%s", dir);
	parse(&p, "--devices=10", flag, NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	parsed_free(&p);
	snprintf(flag, sizeof(flag), "--socket-dir=%sd", dir);
	parse(&p, "--devices=10", flag, NULL);
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	assert_non_null(strstr(p.err, "would be 108 bytes, a unix socket path holds at most 107"));
	parsed_free(&p);
	/* Our slot name (kubevirt-iommufd-1.sock, 23 bytes) under --kubelet-dir. */
	memset(dir, 'k', 84);
	dir[0] = '/';
	dir[84] = '\0';
	snprintf(flag, sizeof(flag), "--kubelet-dir=%s", dir);
	expect_usage_error(flag, "--kubelet-dir");
	expect_usage_error("--container-socket-path=/"
			   "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
			   "cccccccccccccccccccccccccccccccccccccc",
			   "--container-socket-path");
}

/* iommufd-dra-driver: its own flags, dirs named after the driver, what it takes from
 * the shared flags; neither program accepts the other's flags. */
static void config_dra_driver_has_its_own_flags_and_derived_dirs(void **state)
{
	struct parsed p;
	(void)state;

	parse(&p, "--driver-name=x.example.io", NULL); /* the device plugin has no such flag */
	assert_int_equal(p.result, CONFIG_EXIT_USAGE);
	parsed_free(&p);

	program = &config_dra_flavor;
	assert_int_equal(setenv("NODE_NAME", "node-7", 1), 0);
	parse(&p, "--devices=5", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	const struct dra_plugin_options *o = &p.config.dra.plugin;
	assert_string_equal(o->driver, "iommufd.iommufd-device-plugin.github.io");
	assert_string_equal(p.config.kubelet.plugin_dir,
			    "/var/lib/kubelet/plugins/iommufd.iommufd-device-plugin.github.io");
	assert_string_equal(
	    o->state_dir,
	    "/var/lib/kubelet/plugins/iommufd.iommufd-device-plugin.github.io/claims");
	assert_string_equal(o->cdi_dir, "/var/run/cdi");
	assert_string_equal(o->node_name, "node-7");
	assert_int_equal(o->devices, 5);
	assert_string_equal(o->container_socket_path, "/var/run/kubevirt/iommufd.sock");
	assert_null(o->device_node);
	assert_int_equal(p.config.kubelet.registration, KUBELET_REGISTRATION_PLUGIN_WATCHER);
	assert_int_equal(p.config.pod_resources.interval_usec, 0);
	assert_null(p.config.dra.kube_api);
	parsed_free(&p);

	parse(&p, "--driver-name=drv.example.io", "--plugin-dir=/p", "--expose-device-node",
	      "--node-name=n", "--kube-api=10.0.0.1:6443", "--kube-ca=/ca", "--kube-token-file=/t",
	      "--iommu-device=/host/dev/iommu", NULL);
	assert_int_equal(p.result, CONFIG_RUN);
	assert_string_equal(p.config.dra.plugin.state_dir, "/p/claims");
	assert_string_equal(p.config.dra.plugin.node_name, "n");
	assert_string_equal(p.config.dra.plugin.device_node, "/dev/iommu");
	assert_string_equal(p.config.dra.kube_api, "10.0.0.1:6443");
	parsed_free(&p);

	expect_usage_error("--driver-name=Not_A.Domain", "--driver-name must be a DNS subdomain");
	expect_usage_error("--kube-api=1.2.3.4:6443", "go together");
	expect_usage_error("--resource-name=a/b", "unknown flag"); /* the device plugin's */
	expect_usage_error("--cdi-dir=relative", "must be absolute");
}

#define T(f) cmocka_unit_test_setup(f, clear_environment)

int main(void)
{
	const struct CMUnitTest tests[] = {
	    T(config_defaults_are_the_modules_own),
	    T(config_flags_of_every_kind_reach_the_module_fields),
	    T(config_environment_sets_flags_and_flags_win),
	    T(config_bad_values_are_usage_errors_that_name_the_flag),
	    T(config_refuses_durations_over_a_day_and_socket_paths_over_sun_path),
	    T(config_help_prints_the_module_defaults_and_exits_ok),
	    T(config_log_names_every_flag_with_its_value),
	    T(config_dra_driver_has_its_own_flags_and_derived_dirs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
