"""Issue 13: the systemd unit (deploy/systemd/iommufd-device-plugin.service) and its
drop-in for --socket-owner (deploy/systemd/socket-owner.conf). systemd accepts both
(`systemd-analyze verify`, with no warning at all), the sandbox opens exactly the paths
its ExecStart names, the exposure score docs/install.md states is the one `systemd-analyze
security` gives, and the binary started with the unit's own ExecStart arguments
registers with the test kubelet and serves Allocate and the handoff.

The ExecStart run redirects only what a test on a shared CI machine must not touch:
the kubelet's directory (--kubelet-dir: the fake kubelet's), --socket-dir and
--pod-resources-socket (host state under /run and /var/lib/kubelet) into the test's
temporary directory, the port of --metrics-address (9110 may be taken; the host stays
127.0.0.1), and --iommu-device to /dev/null with --rlimit-mode=best-effort as in every
integration test, whatever the host has at /dev/iommu: a stand-in node left by the
real-cluster suite, or a real IOMMUFD kernel without IOMMU_OPTION, must not decide the
result (the real device is the vm and cluster suites' subject). It runs under the unit's
UMask. The sandbox itself needs systemd as PID 1, which the test machine does not have;
two parts of it are checked without: the capability bounding set and no_new_privs are
applied with setpriv, and every system call the plugin makes under strace, from its
exec through Register, ListAndWatch, Allocate, the handoff and a SIGTERM shutdown, is
checked against the unit's SystemCallFilter= as systemd expands it. Mounts, the device
cgroup and the address families remain systemd-analyze's.
"""

import functools
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile

import grpc
import pytest

from harness import PLUGIN_BIN, PLUGIN_WRAPPER, Env, Plugin, deadline, wait_until
from kubelet import REPO, is_sanitized
from receiver import allocate_socket, assert_is_dev_null, kubevirt_receive

UNIT = os.path.join(REPO, "deploy", "systemd", "iommufd-device-plugin.service")
SOCKET_OWNER = os.path.join(REPO, "deploy", "systemd", "socket-owner.conf")
INSTALL_MD = os.path.join(REPO, "docs", "install.md")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
STRACE = shutil.which("strace")
SETPRIV = shutil.which("setpriv")
needs_systemd_analyze = pytest.mark.skipif(
    not SYSTEMD_ANALYZE, reason="systemd-analyze missing (Debian package systemd, in scripts/deps.sh)")


def read_unit(*drop_ins):
    """{(section, key): [values]} of the unit file and then its drop-ins, as systemd reads
    them: continuation lines joined, comments dropped, repeated keys kept in order
    (systemd.syntax(7)), a drop-in's lines after the unit's (systemd.unit(5))."""
    entries = {}
    for path in (UNIT,) + drop_ins:
        section, pending = None, ""
        with open(path) as f:
            for raw in f:
                line = raw.rstrip("\n")
                if not pending and (not line.strip() or line.lstrip()[0] in "#;"):
                    continue
                if line.endswith("\\"):
                    pending += line[:-1] + " "
                    continue
                line, pending = pending + line, ""
                if line.startswith("["):
                    section = line.strip()[1:-1]
                    continue
                key, _, value = line.partition("=")
                entries.setdefault((section, key.strip()), []).append(value.strip())
    return entries


def exec_start(unit):
    (command,) = unit[("Service", "ExecStart")]
    argv = shlex.split(command)
    assert not argv[0][0] in "-@:+!", "no ExecStart prefix: the sandbox applies"
    return argv


def flags(argv):
    out = {}
    for arg in argv[1:]:
        assert arg.startswith("--") and "=" in arg, "write flags as --flag=value: %s" % arg
        name, _, value = arg[2:].partition("=")
        out[name] = value
    return out


def copy_root(tmp, drop_ins=()):
    """A root for `systemd-analyze verify --root`: the system's units, the unit under
    test in /etc/systemd/system with drop_ins in its .d directory, and the built binary
    where ExecStart expects it."""
    unit = read_unit(*drop_ins)
    root = os.path.join(tmp, "root")
    shutil.copytree("/usr/lib/systemd/system", os.path.join(root, "usr/lib/systemd/system"), symlinks=True)
    os.makedirs(os.path.join(root, "etc/systemd/system"))
    shutil.copy(UNIT, os.path.join(root, "etc/systemd/system"))
    if drop_ins:
        directory = os.path.join(root, "etc/systemd/system", os.path.basename(UNIT) + ".d")
        os.makedirs(directory)
        for drop_in in drop_ins:
            shutil.copy(drop_in, directory)
    binary = os.path.join(root, exec_start(unit)[0].lstrip("/"))
    os.makedirs(os.path.dirname(binary))
    shutil.copy(PLUGIN_BIN, binary)
    for pre in unit.get(("Service", "ExecStartPre"), []):
        program = shlex.split(pre.lstrip("-@:+!"))[0]
        os.makedirs(os.path.join(root, os.path.dirname(program).lstrip("/")), exist_ok=True)
        shutil.copy(program, os.path.join(root, program.lstrip("/")))
    return root


def verify(root):
    name = os.path.basename(UNIT)
    return subprocess.run([SYSTEMD_ANALYZE, "verify", "--root=" + root, "/etc/systemd/system/" + name],
                          capture_output=True, text=True, timeout=120)


@needs_systemd_analyze
@pytest.mark.parametrize("drop_ins", [(), (SOCKET_OWNER,)], ids=["unit", "unit+socket-owner.conf"])
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(drop_ins):
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_root(tmp, drop_ins)
        result = verify(root)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
        # verify exits 0 on an unknown key and only warns: the check is the silence.
        path = os.path.join(root, "etc/systemd/system", os.path.basename(UNIT))
        with open(path, "a") as f:
            f.write("ProtectSystm=strict\n")
        result = verify(root)
        assert "Unknown key" in result.stdout + result.stderr


def exposure_score(drop_ins=()):
    """`systemd-analyze security`'s score of the unit with drop_ins, installed in a root
    of their own: (number, word)."""
    name = os.path.basename(UNIT)
    with tempfile.TemporaryDirectory() as root:
        directory = os.path.join(root, "etc/systemd/system")
        os.makedirs(os.path.join(directory, name + ".d"))
        shutil.copy(UNIT, directory)
        for drop_in in drop_ins:
            shutil.copy(drop_in, os.path.join(directory, name + ".d"))
        result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", "--root=" + root, name],
                                capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout + result.stderr)
    assert m, result.stdout + result.stderr
    return m.group(1), m.group(2)


@needs_systemd_analyze
@pytest.mark.parametrize("drop_ins, stated", [((), "rates it exposure level"),
                                              ((SOCKET_OWNER,), "The drop-in raises it to exposure level")],
                         ids=["unit", "unit+socket-owner.conf"])
def test_the_exposure_score_in_install_md_is_the_measured_one(drop_ins, stated):
    score, word = exposure_score(drop_ins)
    with open(INSTALL_MD) as f:
        text = " ".join(f.read().split())
    assert "%s %s (%s)" % (stated, score, word) in text, \
        "docs/install.md must state `systemd-analyze security`: %s %s (%s)" % (stated, score, word)


def test_the_sandbox_opens_what_execstart_names_and_no_more():
    unit = read_unit()
    service = {key: values for (section, key), values in unit.items() if section == "Service"}
    argv = exec_start(unit)
    f = flags(argv)
    writable = " ".join(service["ReadWritePaths"]).split()
    # The directories the plugin binds sockets in are writable, nothing else is.
    assert sorted(writable) == sorted([f["kubelet-dir"], f["socket-dir"]])
    assert service["ProtectSystem"] == ["strict"]
    assert service["PrivateTmp"] == ["yes"] and service["NoNewPrivileges"] == ["yes"]
    # The one capability a host without SELinux labels needs (docs/security.md).
    assert f["selinux"] == "off"
    assert service["CapabilityBoundingSet"] == ["CAP_SYS_RESOURCE"]
    assert service["DevicePolicy"] == ["closed"]
    assert service["DeviceAllow"] == ["%s rw" % f["iommu-device"]]
    families = set(" ".join(service["RestrictAddressFamilies"]).split())
    tcp = not f.get("metrics-address", "/").startswith("/")
    assert families == ({"AF_UNIX", "AF_INET", "AF_INET6"} if tcp else {"AF_UNIX"})
    # Started before or after the kubelet: no dependency that ties the two together.
    for key in ("Requires", "BindsTo", "PartOf", "Requisite"):
        assert not any("kubelet" in v for v in unit.get(("Unit", key), []))
    # The ReadWritePaths exist before the kubelet has ever run: made by ExecStartPre.
    made = " ".join(shlex.split(" ".join(v.lstrip("+") for v in service["ExecStartPre"])))
    for path in writable:
        assert path in made, "%s is not created before the sandbox needs it" % path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def execstart_args(unit, env):
    """ExecStart's arguments with the redirections of the module docstring; returns
    (args, the metrics HOST:PORT)."""
    redirected = {
        "--kubelet-dir": env.kubelet_dir,
        "--socket-dir": env.socket_dir,
        "--pod-resources-socket": os.path.join(env.tmp, "pod-resources.sock"),
    }
    args, metrics = [], None
    for arg in exec_start(unit)[1:]:
        name, _, value = arg.partition("=")
        if name in redirected:
            arg = "%s=%s" % (name, redirected.pop(name))
        elif name == "--metrics-address":
            host = value.rsplit(":", 1)[0]
            arg = "%s=%s:%d" % (name, host, free_port())
            metrics = arg.split("=", 1)[1]
        elif name == "--iommu-device":
            arg = "--iommu-device=/dev/null"
            args.append("--rlimit-mode=best-effort")
        args.append(arg)
    assert not redirected, "ExecStart lost %s" % sorted(redirected)
    return args, metrics


def unit_environment(unit):
    """{name: value} of the unit's Environment= lines (an empty line resets them)."""
    out = {}
    for line in unit.get(("Service", "Environment"), []):
        if not line:
            out = {}
        for assignment in shlex.split(line):
            name, _, value = assignment.partition("=")
            out[name] = value
    return out


def capability_bounding_set(unit):
    """The capabilities the CapabilityBoundingSet= lines keep: systemd merges lines by OR
    (systemd.exec(5)); the lines that subtract (~) or reset are not used here."""
    lines = unit[("Service", "CapabilityBoundingSet")]
    assert all(line and not line.startswith("~") for line in lines), lines
    return set(" ".join(lines).split())


@functools.lru_cache(maxsize=None)
def syscall_set(name):
    """A system call, or a @group with its nested groups expanded as `systemd-analyze
    syscall-filter` lists them."""
    if not name.startswith("@"):
        return frozenset([name])
    listing = subprocess.run([SYSTEMD_ANALYZE, "syscall-filter", name], capture_output=True, text=True,
                             timeout=60, check=True).stdout.splitlines()
    assert listing and listing[0].strip() == name, listing[:3]
    members = set()
    for line in listing[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            members |= syscall_set(line)
    return frozenset(members)


def syscall_filter(unit):
    """What the SystemCallFilter= lines let through, read as systemd 252 reads them
    (systemd.exec(5), config_parse_syscall_filter): the first line makes an allow list,
    which starts with @default, or (~) a deny list; after it a line of the list's kind
    adds to the list and a line of the other kind takes from it; an empty line resets.
    Returns a predicate on system call names."""
    allow_list, listed = None, set()
    for line in unit.get(("Service", "SystemCallFilter"), []):
        if not line:
            allow_list, listed = None, set()
            continue
        deny = line.startswith("~")
        names = set().union(*(syscall_set(name) for name in line.lstrip("~").split()))
        if allow_list is None:
            allow_list = not deny
            listed = set(syscall_set("@default")) if allow_list else set()
        if deny != allow_list:
            listed |= names
        else:
            listed -= names
    if allow_list is None:
        return lambda name: True
    return (lambda name: name in listed) if allow_list else (lambda name: name not in listed)


STRACE_CALL = re.compile(r"^\d+ +([a-z_][a-z0-9_]*)\(")


def traced_syscalls(path):
    """The names of the system calls in an `strace -f -o path` file (an unfinished call's
    line names it; its "resumed" line is skipped; an unknown number is syscall_0x...)."""
    with open(path) as f:
        return {m.group(1) for m in map(STRACE_CALL.match, f) if m}


def sandbox(unit, trace=None):
    """The command prefix for what of the unit's sandbox applies without systemd: its
    capability bounding set, no inheritable or ambient capabilities (AmbientCapabilities=
    is empty) and NoNewPrivileges=, with setpriv; with trace, strace -f writing every
    system call of the plugin and its threads to that file."""
    assert unit[("Service", "AmbientCapabilities")] == [""]
    assert unit[("Service", "NoNewPrivileges")] == ["yes"]
    caps = "".join(",+" + cap[len("CAP_"):].lower() for cap in sorted(capability_bounding_set(unit)))
    prefix = [SETPRIV, "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all" + caps, "--no-new-privs"]
    return prefix + ([STRACE, "-f", "-qq", "-o", trace] if trace else [])


@pytest.fixture
def sandbox_tools():
    if os.geteuid() != 0:
        pytest.skip("the unit runs as root (User=root): setpriv's bounding set needs it")
    if not STRACE or not SETPRIV:
        pytest.skip("strace (Debian package strace) and setpriv (util-linux) are needed")
    if PLUGIN_WRAPPER:
        pytest.skip("the system calls traced would be PLUGIN_WRAPPER's (%s), not the plugin's" % PLUGIN_WRAPPER[0])
    if is_sanitized(PLUGIN_BIN):
        pytest.skip("a sanitizer build: LeakSanitizer aborts under ptrace, and its runtime's system calls "
                    "are not the release binary's (the normal and musl builds run this)")


def start_execstart(env, unit, prefix=()):
    """Starts the test kubelet and ExecStart (after the command prefix) with the unit's
    UMask and Environment=; returns (plugin, args, metrics HOST:PORT) once it has
    registered and serves its DevicePlugin socket."""
    args, metrics = execstart_args(unit, env)
    environment = unit_environment(unit)
    saved = {name: os.environ.get(name) for name in environment}
    old = os.umask(int(unit[("Service", "UMask")][0], 8))
    os.environ.update(environment)
    try:
        env.kubelet.start()
        if prefix:
            plugin = Plugin(list(prefix[1:]) + [PLUGIN_BIN] + args, env.tmp, binary=prefix[0])
        else:
            plugin = Plugin(args, env.tmp)
        env.plugins.append(plugin)
    finally:
        os.umask(old)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value
    registration = env.kubelet.wait_register(timeout=10)
    assert registration.resource_name == "devices.kubevirt.io/iommufd"
    assert registration.endpoint == "kubevirt-iommufd-0.sock"
    wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the DevicePlugin socket")
    return plugin, args, metrics


def healthz(metrics):
    host, port = metrics.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=deadline(5)) as c:
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return c.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def receive_the_fd(path, args):
    """The handoff as KubeVirt does it; the fd is /dev/null's: ExecStart was redirected there."""
    assert "--iommu-device=/dev/null" in args
    assert_is_dev_null(kubevirt_receive(path))  # closes it


def test_the_units_execstart_registers_and_serves_allocate():
    unit = read_unit()
    env = Env()
    try:
        _, args, metrics = start_execstart(env, unit)
        path = allocate_socket(env.client(), "iommufd0")
        assert path.startswith(env.socket_dir + "/")
        # The unit's UMask does not leak into the socket VM pods connect to.
        assert os.stat(path).st_mode & 0o777 == 0o666
        receive_the_fd(path, args)
        wait_until(lambda: healthz(metrics), 10, what="/healthz 200 on the unit's metrics host")
    finally:
        problems = env.teardown()
    assert not problems, problems


def child_of(pid):
    """The one process whose parent is pid, or None."""
    children = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as f:
                if entry.isdigit() and int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry))
        except (OSError, IndexError, ValueError):
            pass
    return children[0] if len(children) == 1 else None


def sandboxed_lifetime(unit, trace=True):
    """ExecStart under sandbox(unit), from its exec to its exit: Register, ListAndWatch
    (the devices, healthy), Allocate, the handoff (fd received and acknowledged),
    /healthz, SIGTERM and exit 0. A failed Allocate skips the handoff. Returns (the
    names of the system calls made, traced; os.lstat of the handoff socket; Allocate's
    grpc.RpcError or None)."""
    env = Env()
    trace_path = os.path.join(env.tmp, "strace.out") if trace else None
    try:
        plugin, args, metrics = start_execstart(env, unit, sandbox(unit, trace_path))
        client = env.client()
        stream = client.list_and_watch(timeout=30)
        devices = next(stream).devices
        assert devices and all(d.health == "Healthy" for d in devices)
        socket_stat, error = None, None
        try:
            path = allocate_socket(client, "iommufd0")
        except grpc.RpcError as e:
            error = e
        else:
            socket_stat = os.lstat(path)
            receive_the_fd(path, args)
        wait_until(lambda: healthz(metrics), 10, what="/healthz 200 on the unit's metrics host")
        # setpriv execs what follows it; strace forks the plugin.
        pid = wait_until(lambda: child_of(plugin.pid), 5, what="the plugin's pid under strace") if trace else plugin.pid
        os.kill(pid, signal.SIGTERM)
        assert plugin.wait(timeout=10) == 0, plugin.stderr_text()[-4000:]
        stream.cancel()
        syscalls = traced_syscalls(trace_path) if trace else None
    finally:
        problems = env.teardown()
    assert not problems, "\n".join(problems)
    return syscalls, socket_stat, error


@needs_systemd_analyze
def test_every_system_call_of_the_units_execstart_passes_its_filter(sandbox_tools):
    unit = read_unit()
    syscalls, _, error = sandboxed_lifetime(unit)
    assert error is None, error
    # The trace covers the lifetime: the exec, the handoff's SCM_RIGHTS, the exit.
    assert {"execve", "sendmsg", "exit_group"} <= syscalls, sorted(syscalls)
    allowed = syscall_filter(unit)
    refused = sorted(name for name in syscalls if not allowed(name))
    assert not refused, "the unit's SystemCallFilter= refuses %s (EPERM)" % refused


@needs_systemd_analyze
def test_socket_owner_is_refused_by_the_unit_and_works_with_its_drop_in(sandbox_tools):
    unit, with_drop_in = read_unit(), read_unit(SOCKET_OWNER)
    uid, gid = map(int, unit_environment(with_drop_in)["IOMMUFD_DP_SOCKET_OWNER"].split(":"))
    allowed_by_unit, allowed_with_drop_in = syscall_filter(unit), syscall_filter(with_drop_in)
    # The drop-in opens the sandbox by CAP_CHOWN and @chown, and nothing else.
    assert capability_bounding_set(with_drop_in) == capability_bounding_set(unit) | {"CAP_CHOWN"}
    opened = {name for name in syscall_set("@known") if allowed_with_drop_in(name) and not allowed_by_unit(name)}
    assert opened == syscall_set("@chown") & syscall_set("@known"), sorted(opened)
    syscalls, socket_stat, error = sandboxed_lifetime(with_drop_in)
    assert error is None, error
    assert (socket_stat.st_uid, socket_stat.st_gid) == (uid, gid)
    chown = syscalls & syscall_set("@chown")
    assert chown, "no @chown system call made: %s" % sorted(syscalls)
    assert not any(allowed_by_unit(name) for name in chown), "the unit alone allows %s" % sorted(chown)
    refused = sorted(name for name in syscalls if not allowed_with_drop_in(name))
    assert not refused, "unit + socket-owner.conf refuses %s (EPERM)" % refused
    # The capability half, run for real: the owner asked for, under the unit's own
    # bounding set (no CAP_CHOWN), fails Allocate on the chown.
    owner_only = dict(unit)
    owner_only[("Service", "Environment")] = with_drop_in[("Service", "Environment")]
    _, _, error = sandboxed_lifetime(owner_only, trace=False)
    assert error is not None, "Allocate chowned the socket without CAP_CHOWN"
    assert "cannot chown" in error.details() and "Operation not permitted" in error.details(), error.details()
