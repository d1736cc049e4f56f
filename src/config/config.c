/* Flags and environment into struct config. One table drives getopt_long, the
 * IOMMUFD_DP_* environment variables, --help and the configuration log line, so they
 * cannot drift apart. The table names the fields of the modules' option structs; the
 * defaults are the modules' own, printed from the values. */
#include "config.h"
#include "config_check.h"
#include "config_table.h"
#include "../log.h"
#include "../util.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

/* KIND_CHOICE fields are the modules' enums, stored as the int they are. */
_Static_assert(sizeof(enum iommufd_rlimit_policy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum kubelet_missing_device) == sizeof(int), "enum size");
_Static_assert(sizeof(enum kubelet_registration) == sizeof(int), "enum size");
_Static_assert(sizeof(enum selinux_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_format) == sizeof(int), "enum size");

static const struct choice rlimit_choices[] = {
    {"best-effort", IOMMUFD_RLIMIT_BEST_EFFORT}, {"required", IOMMUFD_RLIMIT_REQUIRED}, {0}};
static const struct choice selinux_choices[] = {
    {"auto", SELINUX_MODE_AUTO}, {"on", SELINUX_MODE_ON}, {"off", SELINUX_MODE_OFF}, {0}};
static const struct choice log_format_choices[] = {
    {"text", LOG_FORMAT_TEXT}, {"json", LOG_FORMAT_JSON}, {0}};

static const struct option_spec specs[] = {
    {"kubelet-dir", KIND_STRING, FIELD(kubelet.kubelet_dir), "DIR",
     "the kubelet's device plugin directory (kubelet.sock and our socket; the DRA driver "
     "looks there for a device plugin of our resource)",
     NULL, 0, 0},
    {"socket-name", KIND_STRING, FIELD(kubelet.socket_name), "NAME",
     "KubeVirt's DevicePlugin socket name in --kubelet-dir: watched; ours are NAME-0/-1", NULL, 0,
     0},
    {"devices", KIND_INT, FIELD(kubelet.devices), "N",
     "virtual devices advertised (the kubelet's default max pods)", NULL, 1, 100000},
    {"plugins-registry-dir", KIND_STRING, FIELD(kubelet.plugins_registry_dir), "DIR",
     "the kubelet's plugin watcher directory", NULL, 0, 0},
    {"plugin-dir", KIND_STRING, FIELD(kubelet.plugin_dir), "DIR",
     "with the plugin watcher: where our service socket lives (the kubelet keeps it "
     "across restarts); the DRA driver's dra.sock: default /var/lib/kubelet/plugins/<driver>",
     NULL, 0, 0},
    {"iommu-device", KIND_STRING, FIELD(iommufd.device_path), "PATH",
     "the IOMMUFD character device", NULL, 0, 0},
    {"rlimit-mode", KIND_CHOICE, FIELD(iommufd.policy), "MODE",
     "required: fail the Allocate with the reason if RLIMIT_MODE cannot be set (old "
     "kernel, no CAP_SYS_RESOURCE); best-effort: hand over the fd anyway, with per-user "
     "accounting (every process of the uid shares one RLIMIT_MEMLOCK: the ENOMEM this "
     "plugin exists to prevent)",
     rlimit_choices, 0, 0},
    {"socket-dir", KIND_STRING, FIELD(handoff.socket_dir), "DIR",
     "where per-allocation handoff sockets are created (0700)", NULL, 0, 0},
    {"container-socket-path", KIND_STRING, FIELD(kubelet.container_socket_path), "PATH",
     "where the handoff socket appears in the container", NULL, 0, 0},
    {"expose-device-node", KIND_BOOL, FIELD(kubelet.expose_device_node), NULL,
     "also give the container the node as /dev/iommu (rw; libvirt 12.9 wants it)", NULL, 0, 0},
    {"device-node-host-path", KIND_STRING, FIELD(kubelet.device_node_host_path), "PATH",
     "with --expose-device-node: the node as the runtime finds it on the node (--iommu-device: "
     "where we open it, in a pod the node's /dev mounted elsewhere)",
     NULL, 0, 0},
    {"handoff-ttl", KIND_DURATION, FIELD(handoff.ttl_usec), "DURATION",
     "how long an unclaimed handoff socket and its fd are kept", NULL, 0, 0},
    {"drain-timeout", KIND_DURATION, FIELD(drain_timeout_usec), "DURATION",
     "on SIGTERM, keep serving pending handoff sockets this long at most (below the "
     "DaemonSet's terminationGracePeriodSeconds); 0: exit at once",
     NULL, 0, 0},
    {"ack-timeout", KIND_DURATION, FIELD(handoff.ack_timeout_usec), "DURATION",
     "how long a connected consumer has to acknowledge the fd", NULL, 0, 0},
    {"selinux", KIND_CHOICE, FIELD(selinux), "MODE",
     "auto: relabel where SELinux is enabled; on: always try; off: never", selinux_choices, 0, 0},
    {"selinux-label", KIND_STRING, FIELD(selinux_label), "LABEL",
     "SELinux label for the temporary device node and the handoff socket", NULL, 0, 0},
    {"scratch-dir", KIND_STRING, FIELD(scratch_dir), "DIR",
     "where temporary device nodes are made (must not be nodev); default: a private tmpfs", NULL, 0,
     0},
    {"metrics-address", KIND_STRING, FIELD(metrics_address), "ADDRESS",
     "serve GET /metrics (Prometheus), /livez and /healthz on HOST:PORT (numeric host, [IPv6] or "
     "empty for all) or an absolute unix socket path; default: off",
     NULL, 0, 0},
    {"log-format", KIND_CHOICE, FIELD(log_format), "FORMAT",
     "text: klog lines, as the kubelet's; json: one object per line (ts, level, caller, msg)",
     log_format_choices, 0, 0},
    {"allowed-uids", KIND_STRING, FIELD(allowed_uids), "UID,...",
     "only handoff peers with one of these uids get the fd (KubeVirt's qemu is 107); "
     "default: any uid",
     NULL, 0, 0},
    {"socket-mode", KIND_MODE, FIELD(handoff.socket_mode), "OCTAL",
     "mode of the handoff sockets (the kubelet mounts the file itself into the container, "
     "where qemu connects as uid 107; their directory is 0700)",
     NULL, 0, 0},
    {"socket-owner", KIND_STRING, FIELD(socket_owner), "UID[:GID]",
     "owner of the handoff sockets, numeric; default: ours", NULL, 0, 0},
    {"v", KIND_INT, FIELD(verbosity), "N", "log verbosity, as the kubelet's -v", NULL, 0, 10},

};

/* The flags a program knows: the shared table, then its own; NULL past the end. */
static const struct option_spec *spec_at(const struct config_flavor *flavor, size_t i)
{
	if (i < ARRAY_SIZE(specs))
		return &specs[i];
	i -= ARRAY_SIZE(specs);
	return i < flavor->n_specs ? &flavor->specs[i] : NULL;
}

/* A uid or gid: decimal, below the (id_t)-1 that means "unchanged". */
static int parse_id(const char *text, const char **end, unsigned *id)
{
	char *stop;

	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	unsigned long long value = strtoull(text, &stop, 10);
	if (errno || value >= UINT32_MAX)
		return -EINVAL;
	*id = (unsigned)value;
	*end = stop;
	return 0;
}

/* The defaults: the modules' own, and the daemon's for what only main uses. */
static void config_defaults(struct config *config, const struct config_flavor *flavor)
{
	*config = (struct config){
	    .program = flavor->program,
	    .flavor = flavor,
	    .selinux = SELINUX_MODE_AUTO,
	    .selinux_label = SELINUX_DEFAULT_LABEL,
	    /* Below the DaemonSet's terminationGracePeriodSeconds (30). */
	    .drain_timeout_usec = 25ULL * 1000000,
	    .log_format = LOG_FORMAT_TEXT,
	};
	kubelet_options_init(&config->kubelet);
	iommufd_options_init(&config->iommufd);
	handoff_options_init(&config->handoff);
	pod_resources_options_init(&config->pod_resources);
	if (flavor->defaults)
		flavor->defaults(config);
}

/* Turns --allowed-uids and --socket-owner into handoff's fields, and wires what one
 * flag gives two modules. */
static int config_finish(struct config *config, FILE *err)
{
	const char *p, *end;
	unsigned id, gid = 0;

	for (p = config->allowed_uids; p; p = *end ? end + 1 : NULL) {
		if (parse_id(p, &end, &id) < 0 || (*end && *end != ',')) {
			fprintf(err,
				"%s: --allowed-uids wants numeric uids separated by commas, like "
				"107 or 107,0, not '%s'\n",
				config->flavor->name, config->allowed_uids);
			return -EINVAL;
		}
		config->allowed_uid_list =
		    xrealloc(config->allowed_uid_list,
			     (config->handoff.allowed_uid_count + 1) * sizeof(uid_t));
		config->allowed_uid_list[config->handoff.allowed_uid_count++] = (uid_t)id;
	}
	config->handoff.allowed_uids = config->allowed_uid_list;
	if (config->socket_owner) {
		if (parse_id(config->socket_owner, &end, &id) < 0 ||
		    (*end == ':' && (parse_id(end + 1, &end, &gid) < 0 || *end)) ||
		    (*end && *end != ':')) {
			fprintf(err, "%s: --socket-owner wants UID or UID:GID, numeric, not '%s'\n",
				config->flavor->name, config->socket_owner);
			return -EINVAL;
		}
		config->handoff.socket_uid = (uid_t)id;
		if (strchr(config->socket_owner, ':'))
			config->handoff.socket_gid = (gid_t)gid;
	}
	if (config->scratch_dir) {
		config->iommufd.scratch_dir = config->scratch_dir;
		config->iommufd.scratch_tmpfs = false;
	}
	config->kubelet.iommu_device = config->iommufd.device_path;
	config->pod_resources.resource_name = config->kubelet.resource_name;
	return config->flavor->finish ? config->flavor->finish(config, err) : 0;
}

static void *field(struct config *config, const struct option_spec *spec)
{
	return (char *)config + spec->offset;
}

static const void *field_const(const struct config *config, const struct option_spec *spec)
{
	return (const char *)config + spec->offset;
}

static const struct {
	const char *suffix;
	unsigned long long scale;
} duration_units[] = {
    {"h", 3600000000ULL}, {"m", 60000000ULL}, {"s", 1000000ULL}, {"ms", 1000ULL}, {"", 1000000ULL}};

/* "500ms", "10s", "15m", "1h" or plain seconds. Returns 0 or -EINVAL. */
static int parse_duration(const char *text, unsigned long long *usec)
{
	char *end;

	if (!isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno)
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_SIZE(duration_units); i++) {
		if (strcmp(end, duration_units[i].suffix) == 0) {
			if (value > ULLONG_MAX / duration_units[i].scale)
				return -EINVAL;
			*usec = value * duration_units[i].scale;
			return 0;
		}
	}
	return -EINVAL;
}

/* Stores value into the spec's field; NULL value means "set" for a bool. */
static int config_set(struct config *config, const struct option_spec *spec, const char *value,
		      FILE *err, const char *origin)
{
	char *end;
	void *p = field(config, spec);

	switch (spec->kind) {
	case KIND_STRING:
		if (!value[0]) {
			fprintf(err, "%s: --%s must not be empty\n", origin, spec->name);
			return -EINVAL;
		}
		free(*(char **)p);
		*(char **)p = xstrdup(value);
		return 0;
	case KIND_INT: {
		errno = 0;
		long n = strtol(value, &end, 10);
		if (errno || end == value || *end || n < spec->min || n > spec->max) {
			fprintf(err, "%s: --%s wants a whole number from %d to %d, not '%s'\n",
				origin, spec->name, spec->min, spec->max, value);
			return -EINVAL;
		}
		*(int *)p = (int)n;
		return 0;
	}
	case KIND_DURATION: {
		unsigned long long usec;
		if (parse_duration(value, &usec) < 0) {
			fprintf(err,
				"%s: --%s wants a duration like 500ms, 10s, 15m or 1h, not '%s'\n",
				origin, spec->name, value);
			return -EINVAL;
		}
		/* Deadlines are now + duration in microseconds: a cap keeps every one of
		 * them far from wrapping (and no wait we have is meant to last a day). */
		if (usec > CONFIG_DURATION_MAX_USEC) {
			fprintf(err, "%s: --%s is at most %lluh, not '%s'\n", origin, spec->name,
				CONFIG_DURATION_MAX_USEC / 3600000000ULL, value);
			return -ERANGE;
		}
		*(unsigned long long *)p = usec;
		return 0;
	}
	case KIND_BOOL:
		if (!value || !strcmp(value, "true") || !strcmp(value, "1")) {
			*(bool *)p = true;
			return 0;
		}
		if (!strcmp(value, "false") || !strcmp(value, "0")) {
			*(bool *)p = false;
			return 0;
		}
		fprintf(err, "%s: --%s wants true or false, not '%s'\n", origin, spec->name, value);
		return -EINVAL;
	case KIND_CHOICE:
		for (const struct choice *c = spec->choices; c->name; c++) {
			if (!strcmp(value, c->name)) {
				*(int *)p = c->value;
				return 0;
			}
		}
		fprintf(err, "%s: --%s wants one of", origin, spec->name);
		for (const struct choice *c = spec->choices; c->name; c++)
			fprintf(err, " %s", c->name);
		fprintf(err, ", not '%s'\n", value);
		return -EINVAL;
	case KIND_MODE: {
		errno = 0;
		unsigned long mode = strtoul(value, &end, 8);
		if (errno || *end || !isdigit((unsigned char)value[0]) || mode > 0777) {
			fprintf(err,
				"%s: --%s wants octal permission bits like 0666 or 0600, not "
				"'%s'\n",
				origin, spec->name, value);
			return -EINVAL;
		}
		*(mode_t *)p = (mode_t)mode;
		return 0;
	}
	}
	return -EINVAL;
}

/* The field's value as a flag would give it (in buf or static); NULL when unset. */
static const char *config_format(const struct config *config, const struct option_spec *spec,
				 char *buf, size_t size)
{
	const void *p = field_const(config, spec);

	switch (spec->kind) {
	case KIND_STRING:
		return *(char *const *)p;
	case KIND_INT:
		snprintf(buf, size, "%d", *(const int *)p);
		return buf;
	case KIND_DURATION: {
		unsigned long long usec = *(const unsigned long long *)p;
		size_t i = 0;
		/* The largest unit that divides it; zero is "0s". */
		while (usec && i < 3 && usec % duration_units[i].scale)
			i++;
		if (!usec)
			i = 2;
		snprintf(buf, size, "%llu%s", usec / duration_units[i].scale,
			 duration_units[i].suffix);
		return buf;
	}
	case KIND_BOOL:
		return *(const bool *)p ? "true" : "false";
	case KIND_CHOICE:
		for (const struct choice *c = spec->choices; c->name; c++)
			if (c->value == *(const int *)p)
				return c->name;
		return NULL;
	case KIND_MODE:
		snprintf(buf, size, "%04o", (unsigned)*(const mode_t *)p);
		return buf;
	}
	return NULL;
}

static void config_usage(const struct config *defaults, FILE *out)
{
	char value[512];

	const struct config_flavor *flavor = defaults->flavor;
	const struct option_spec *s;

	fprintf(out, "Usage: %s [FLAG]...\n%s\n\n", flavor->name, flavor->summary);
	for (size_t i = 0; (s = spec_at(flavor, i)); i++) {
		char left[64];
		snprintf(left, sizeof(left), "%s%s%s%s", strlen(s->name) > 1 ? "--" : "-", s->name,
			 s->metavar ? " " : "", s->metavar ? s->metavar : "");
		fprintf(out, "  %-32s %s", left, s->help);
		const char *v = config_format(defaults, s, value, sizeof(value));
		if (v)
			fprintf(out, " (default %s)", v);
		fputc('\n', out);
	}
	fputs("  --help                           show this and exit\n"
	      "  --version                        show the version and exit\n\n"
	      "Durations: 500ms, 10s, 15m, 1h or plain seconds, at most 24h.\n"
	      "Every flag can also be set as an environment variable IOMMUFD_DP_<FLAG>,\n"
	      "upper case with '_' for '-' (IOMMUFD_DP_DEVICES=4, "
	      "IOMMUFD_DP_RLIMIT_MODE=best-effort); flags win. A variable IOMMUFD_DP_*\n"
	      "that names no flag is an error.\n",
	      out);
}

#define ENV_PREFIX "IOMMUFD_DP_"

/* The flag an IOMMUFD_DP_ variable names: the rest of its name, written in upper case
 * with '_' for '-' (IOMMUFD_DP_HANDOFF_TTL is --handoff-ttl). A lower-case letter or a
 * '-' in it names no flag. Returns its index, or -1. */
static const struct option_spec *env_spec(const struct config_flavor *flavor, const char *name,
					  size_t len)
{
	char flag[96];

	if (len >= sizeof(flag))
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (islower((unsigned char)name[i]) || name[i] == '-')
			return NULL; /* not how the variables are written: no flag */
		flag[i] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
	}
	flag[len] = '\0';
	const struct option_spec *s;
	for (size_t i = 0; (s = spec_at(flavor, i)); i++)
		if (!strcmp(s->name, flag))
			return s;
	return NULL;
}

/* One pass over the environment (a getenv() per flag would be a pass per flag: a
 * pod's environment holds a few variables per Service of its namespace). A variable
 * that names no flag is a usage error, as an unknown flag is. */
static int config_apply_environment(struct config *config, FILE *err)
{
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
			continue;
		const char *name = *e + strlen(ENV_PREFIX);
		const char *eq = strchr(name, '=');
		if (!eq)
			continue;
		const struct option_spec *spec =
		    env_spec(config->flavor, name, (size_t)(eq - name));
		char var[128];
		snprintf(var, sizeof(var), "%.*s", (int)(eq - *e), *e);
		if (!spec) {
			fprintf(err, "%s: %s names no flag. Try --help.\n", config->flavor->name,
				var);
			return -EINVAL;
		}
		if (config_set(config, spec, eq + 1, err, var) < 0)
			return -EINVAL;
	}
	return 0;
}

static enum config_result config_parse_flags(struct config *config,
					     const struct config_flavor *flavor, int argc,
					     char **argv, FILE *out, FILE *err)
{
	struct option longopts[ARRAY_SIZE(specs) + CONFIG_FLAVOR_MAX_SPECS + 3];
	enum { OPT_HELP = 1000, OPT_VERSION };
	const struct option_spec *s;
	config_defaults(config, flavor);
	/* Every string is ours to free, the defaults' too. */
	for (size_t i = 0; (s = spec_at(flavor, i)); i++) {
		char **p = field(config, s);
		if (s->kind == KIND_STRING && *p)
			*p = xstrdup(*p);
	}
	if (config_apply_environment(config, err) < 0)
		return CONFIG_EXIT_USAGE;

	size_t n = 0;
	for (size_t i = 0; (s = spec_at(flavor, i)) && n < ARRAY_SIZE(longopts) - 3; i++)
		longopts[n++] = (struct option){
		    s->name, s->kind == KIND_BOOL ? optional_argument : required_argument, NULL,
		    (int)i};
	longopts[n++] = (struct option){"help", no_argument, NULL, OPT_HELP};
	longopts[n++] = (struct option){"version", no_argument, NULL, OPT_VERSION};
	longopts[n] = (struct option){0};

	optind = 1;
	opterr = 0;
	for (;;) {
		int index = -1;
		int c = getopt_long_only(argc, argv, "", longopts, &index);
		if (c == -1)
			break;
		if (c == OPT_HELP) {
			struct config defaults;
			config_defaults(&defaults, flavor);
			config_usage(&defaults, out);
			return CONFIG_EXIT_OK;
		}
		if (c == OPT_VERSION) {
			fprintf(out, "%s %s\n", flavor->name, PLUGIN_VERSION);
			return CONFIG_EXIT_OK;
		}
		if (c == '?' || c == ':' || c < 0 || !(s = spec_at(flavor, (size_t)c))) {
			fprintf(err,
				"%s: unknown flag or missing value: %s\n"
				"Try --help.\n",
				flavor->name, argv[optind - 1]);
			return CONFIG_EXIT_USAGE;
		}
		if (config_set(config, s, optarg, err, flavor->name) < 0)
			return CONFIG_EXIT_USAGE;
	}
	if (optind < argc) {
		fprintf(err, "%s: unexpected argument '%s'. Try --help.\n", flavor->name,
			argv[optind]);
		return CONFIG_EXIT_USAGE;
	}
	const struct kubelet_options *k = &config->kubelet;
	if (kubelet_uses_plugin_watcher(k) &&
	    ((k->plugin_dir && k->plugin_dir[0] != '/') || k->plugins_registry_dir[0] != '/')) {
		fprintf(err,
			"%s: --plugin-dir and --plugins-registry-dir must be absolute: the "
			"kubelet dials the endpoint exactly as given\n",
			flavor->name);
		return CONFIG_EXIT_USAGE;
	}
	if (strchr(k->socket_name, '/')) {
		fprintf(err, "%s: --socket-name must be a plain file name\n", flavor->name);
		return CONFIG_EXIT_USAGE;
	}
	if (config_finish(config, err) < 0 || config_check_paths(config, err) < 0)
		return CONFIG_EXIT_USAGE;
	return CONFIG_RUN;
}

/* The --log-format asked for, found before anything is parsed, so that a usage error
 * is reported in it: IOMMUFD_DP_LOG_FORMAT, then the last --log-format (or
 * -log-format, with "=" or the next argument) before "--". Anything but "json" is
 * text. */
static enum log_format config_early_log_format(int argc, char **argv)
{
	const char *value = getenv(ENV_PREFIX "LOG_FORMAT");

	for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
		const char *arg = argv[i];
		if (arg[0] != '-')
			continue;
		arg += arg[1] == '-' ? 2 : 1;
		if (!strncmp(arg, "log-format=", strlen("log-format=")))
			value = arg + strlen("log-format=");
		else if (!strcmp(arg, "log-format") && i + 1 < argc)
			value = argv[++i];
	}
	return value && !strcmp(value, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
}

enum config_result config_parse(struct config *config, int argc, char **argv, FILE *out, FILE *err)
{
	return config_parse_program(config, &config_device_plugin_flavor, argc, argv, out, err);
}

enum config_result config_parse_program(struct config *config, const struct config_flavor *flavor,
					int argc, char **argv, FILE *out, FILE *err)
{
	if (config_early_log_format(argc, argv) == LOG_FORMAT_TEXT)
		return config_parse_flags(config, flavor, argc, argv, out, err);
	/* JSON: the usage error becomes one log line, its lines joined. */
	char *text = NULL;
	size_t size = 0;
	FILE *errors = open_memstream(&text, &size);
	if (!errors) /* out of memory: the error goes out as text */
		return config_parse_flags(config, flavor, argc, argv, out, err);
	enum config_result result = config_parse_flags(config, flavor, argc, argv, out, errors);
	if (fclose(errors) != 0 || !text) {
		fprintf(err, "%s: out of memory\n", flavor->name);
		free(text);
		return CONFIG_EXIT_USAGE;
	}
	while (size && text[size - 1] == '\n')
		text[--size] = '\0';
	for (char *nl = text; (nl = strchr(nl, '\n'));)
		*nl = ' ';
	if (size) {
		log_set_format(LOG_FORMAT_JSON);
		log_error_f(LOG_FIELDS(LOG_STR("reason", "usage")), "%s", text);
	}
	free(text);
	return result;
}

void config_free(struct config *config)
{
	const struct option_spec *s;

	for (size_t i = 0; config->flavor && (s = spec_at(config->flavor, i)); i++)
		if (s->kind == KIND_STRING)
			free(*(char **)field(config, s));
	free(config->allowed_uid_list);
	*config = (struct config){0};
}

/* Appends the n bytes at s to line, as far as they fit (one byte kept for the NUL). */
static void line_append(char *line, size_t size, size_t *used, const char *s, size_t n)
{
	if (*used + n >= size)
		n = size - 1 - *used;
	memcpy(line + *used, s, n);
	*used += n;
}

void config_log(const struct config *config)
{
	char line[1536];
	size_t used = 0;

	const struct option_spec *s;

	for (size_t i = 0; (s = spec_at(config->flavor, i)); i++) {
		char buf[32];
		const char *v = config_format(config, s, buf, sizeof(buf));
		if (!v)
			v = "(unset)";
		if (used)
			line_append(line, sizeof(line), &used, " ", 1);
		line_append(line, sizeof(line), &used, s->name, strlen(s->name));
		line_append(line, sizeof(line), &used, "=", 1);
		line_append(line, sizeof(line), &used, v, strlen(v));
	}
	line[used] = '\0';
	log_info("configuration: %s", line);
}
