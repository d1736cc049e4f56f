"""Issue 13: the systemd unit (deploy/systemd/iommufd-device-plugin.service). systemd
accepts it (`systemd-analyze verify`, with no warning at all), its sandbox opens exactly
the paths its ExecStart names, the exposure score docs/install.md states is the one
`systemd-analyze security` gives, and the binary started with the unit's own ExecStart
arguments registers with the test kubelet and serves Allocate and the handoff.

The ExecStart run redirects only what a test on a shared CI machine must not touch:
the kubelet's directory (--kubelet-dir: the fake kubelet's), --socket-dir and
--pod-resources-socket (host state under /run and /var/lib/kubelet) into the test's
temporary directory, the port of --metrics-address (9110 may be taken; the host stays
127.0.0.1), and, where the machine has no /dev/iommu, --iommu-device to /dev/null with
--rlimit-mode=best-effort as in every integration test. It runs under the unit's
UMask. The sandbox itself (capabilities, seccomp, mounts) needs systemd as PID 1,
which the test machine does not have: that part is systemd-analyze's.
"""

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile

import pytest

from harness import Env, Plugin, wait_until
from kubelet import REPO
from receiver import allocate_socket, assert_is_dev_null, kubevirt_receive

UNIT = os.path.join(REPO, "deploy", "systemd", "iommufd-device-plugin.service")
INSTALL_MD = os.path.join(REPO, "docs", "install.md")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    not SYSTEMD_ANALYZE, reason="systemd-analyze missing (Debian package systemd, in scripts/deps.sh)")


def read_unit(path=UNIT):
    """{(section, key): [values]} of a unit file: continuation lines joined, comments
    dropped, repeated keys kept in order (systemd's syntax, systemd.syntax(7))."""
    entries, section, pending = {}, None, ""
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


def copy_root(tmp):
    """A root for `systemd-analyze verify --root`: the system's units, the unit under
    test in /etc/systemd/system, and the built binary where ExecStart expects it."""
    unit = read_unit()
    root = os.path.join(tmp, "root")
    shutil.copytree("/usr/lib/systemd/system", os.path.join(root, "usr/lib/systemd/system"), symlinks=True)
    os.makedirs(os.path.join(root, "etc/systemd/system"))
    shutil.copy(UNIT, os.path.join(root, "etc/systemd/system"))
    binary = os.path.join(root, exec_start(unit)[0].lstrip("/"))
    os.makedirs(os.path.dirname(binary))
    from harness import PLUGIN_BIN
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
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning():
    with tempfile.TemporaryDirectory() as tmp:
        root = copy_root(tmp)
        result = verify(root)
        assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr
        # verify exits 0 on an unknown key and only warns: the check is the silence.
        path = os.path.join(root, "etc/systemd/system", os.path.basename(UNIT))
        with open(path, "a") as f:
            f.write("ProtectSystm=strict\n")
        result = verify(root)
        assert "Unknown key" in result.stdout + result.stderr


def exposure_score():
    result = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=yes", UNIT],
                            capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", result.stdout + result.stderr)
    assert m, result.stdout + result.stderr
    return m.group(1), m.group(2)


@needs_systemd_analyze
def test_the_exposure_score_in_install_md_is_the_measured_one():
    score, word = exposure_score()
    with open(INSTALL_MD) as f:
        text = f.read()
    assert "exposure level %s (%s)" % (score, word) in text, \
        "docs/install.md must state `systemd-analyze security` exposure level %s (%s)" % (score, word)


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


def test_the_units_execstart_registers_and_serves_allocate():
    unit = read_unit()
    argv = exec_start(unit)
    umask = int(unit[("Service", "UMask")][0], 8)
    env = Env()
    redirected = {
        "--kubelet-dir": env.kubelet_dir,
        "--socket-dir": env.socket_dir,
        "--pod-resources-socket": os.path.join(env.tmp, "pod-resources.sock"),
    }
    args = []
    for arg in argv[1:]:
        name, _, value = arg.partition("=")
        if name in redirected:
            arg = "%s=%s" % (name, redirected.pop(name))
        elif name == "--metrics-address":
            host = value.rsplit(":", 1)[0]
            arg = "%s=%s:%d" % (name, host, free_port())
            metrics = arg.split("=", 1)[1]
        elif name == "--iommu-device" and not os.path.exists(value):
            arg = "--iommu-device=/dev/null"
            args.append("--rlimit-mode=best-effort")
        args.append(arg)
    assert not redirected, "ExecStart lost %s" % sorted(redirected)
    old = os.umask(umask)
    try:
        env.kubelet.start()
        plugin = Plugin(args, env.tmp)
        env.plugins.append(plugin)
    finally:
        os.umask(old)
    try:
        registration = env.kubelet.wait_register(timeout=10)
        assert registration.resource_name == "devices.kubevirt.io/iommufd"
        assert registration.endpoint == "kubevirt-iommufd.sock"
        wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the DevicePlugin socket")
        client = env.client()
        path = allocate_socket(client, "iommufd0")
        assert path.startswith(env.socket_dir + "/")
        # The unit's UMask does not leak into the socket VM pods connect to.
        assert os.stat(path).st_mode & 0o777 == 0o666
        assert_is_dev_null(kubevirt_receive(path)) if "/dev/null" in args else kubevirt_receive(path).close()
        host, port = metrics.rsplit(":", 1)

        def healthz():
            try:
                with socket.create_connection((host, int(port)), timeout=5) as c:
                    c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                    return c.recv(100).startswith(b"HTTP/1.1 200")
            except OSError:
                return False

        wait_until(healthz, 10, what="/healthz 200 on the unit's metrics host")
    finally:
        problems = env.teardown()
    assert not problems, problems
