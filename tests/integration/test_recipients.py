"""Issue 5 part 6: who gets the fd, and nothing else leaks.

--allowed-uids refuses peers of other uids (SO_PEERCRED) and keeps the offer for the
right one; every handoff and refusal names the peer's pid, uid, gid and cgroup (which
carries the pod UID on a kubelet node); --socket-mode and --socket-owner set the
socket files; every fd of a busy daemon is close-on-exec; iommufd-receive's command
inherits exactly the fd it asked for.
"""

import os
import shutil
import socket
import stat
import subprocess
import tempfile

import pytest

from harness import stable_fd_count, wait_until
from kubelet import FakePodResources
from receiver import allocate_socket, assert_is_dev_null, connect, kubevirt_receive, receive_on

QEMU_UID = 107
O_CLOEXEC = 0o2000000
# uid 107 with CAP_DAC_OVERRIDE kept, to reach the socket through the 0700 socket dir
# on the host; in a pod the kubelet bind-mounts the socket file itself instead.
AS_QEMU = ["setpriv", "--reuid=%d" % QEMU_UID, "--regid=%d" % QEMU_UID, "--clear-groups",
           "--inh-caps=+dac_override", "--ambient-caps=+dac_override"]


def cgroup_of(pid):
    """The cgroup the daemon logs for pid: a kubepods path, else cgroup v2's, else the first."""
    with open("/proc/%d/cgroup" % pid) as f:
        lines = f.read().splitlines()
    paths = [(line.split(":", 2)[0], line.split(":", 2)[2]) for line in lines if line.count(":") >= 2]
    for _, path in paths:
        if "kubepods" in path:
            return path
    for hierarchy, path in paths:
        if hierarchy == "0":
            return path
    return paths[0][1]


def receive_as_qemu(receive_bin, path):
    """iommufd-receive run as uid 107; returns (pid, completed process)."""
    proc = subprocess.Popen(AS_QEMU + [receive_bin, "--socket", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=10)
    return proc.pid, proc.returncode, out, err


@pytest.fixture
def setpriv():
    if os.geteuid() != 0 or subprocess.run(AS_QEMU + ["true"]).returncode != 0:
        pytest.skip("needs root and setpriv with ambient capabilities")


def test_peer_with_a_uid_not_allowed_is_refused_and_the_offer_stays(env, receive_bin, setpriv):
    plugin = env.start("--devices", "2", "--allowed-uids", str(QEMU_UID))
    path = allocate_socket(env.client(), "iommufd0")
    with connect(path) as s:  # we are root: not in the list
        got = receive_on(s)
    assert got.data == b"" and got.fds == [], "a refused peer must get no fd"
    line = wait_until(lambda: [l for l in plugin.stderr_text().splitlines() if "refused pid" in l], 5,
                      what="the refusal to be logged")[0]
    assert line.startswith("W")
    assert "refused pid %d (uid 0, gid 0, cgroup %s) on %s" % (os.getpid(), cgroup_of(os.getpid()), path) in line
    assert os.path.exists(path), "the offer must stay for the right peer"
    pid, rc, out, err = receive_as_qemu(receive_bin, path)
    assert rc == 0, err
    assert "rdev=1:3" in out
    wait_until(lambda: not os.path.exists(path), 5, what="the socket consumed by uid 107")


def test_each_handoff_logs_the_peer_pid_uid_gid_and_cgroup(env, receive_bin, setpriv):
    plugin = env.start("--devices", "2", "--allowed-uids", "0,%d" % QEMU_UID)
    client = env.client()
    path = allocate_socket(client, "iommufd1")
    pid, rc, out, err = receive_as_qemu(receive_bin, path)
    assert rc == 0, err
    expected = "handed the fd of iommufd1 to pid %d (uid %d, gid %d, cgroup %s) via %s" % (
        pid, QEMU_UID, QEMU_UID, cgroup_of(os.getpid()), path)
    wait_until(lambda: expected in plugin.stderr_text(), 5, what=expected)
    # root is in the list too
    assert_is_dev_null(kubevirt_receive(allocate_socket(client, "iommufd0")))


def test_any_uid_gets_the_fd_without_allowed_uids(env, receive_bin, setpriv):
    env.start("--devices", "2")
    pid, rc, out, err = receive_as_qemu(receive_bin, allocate_socket(env.client(), "iommufd0"))
    assert rc == 0, err


def test_socket_dir_is_0700_and_sockets_0666_by_default(env):
    env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd0")
    assert stat.S_IMODE(os.stat(env.socket_dir).st_mode) == 0o700
    st = os.lstat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666


def test_socket_mode_and_owner_flags_set_the_socket_file(env, receive_bin, setpriv):
    env.start("--devices", "2", "--socket-mode", "0600", "--socket-owner", "%d:%d" % (QEMU_UID, 108))
    path = allocate_socket(env.client(), "iommufd0")
    st = os.lstat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, QEMU_UID, 108)
    # the owner may connect through a bind mount of the file, as in the pod
    pid, rc, out, err = subprocess_bind_mounted_receive(receive_bin, path, env.tmp)
    assert rc == 0, err


def subprocess_bind_mounted_receive(receive_bin, path, tmp):
    """What the kubelet arranges: the socket FILE bind-mounted where the container looks;
    qemu (uid 107, no capabilities) connects there."""
    container = tempfile.mkdtemp(prefix="pod-", dir="/tmp")  # not under the 0700 test dir
    try:
        os.chmod(container, 0o755)
        target = os.path.join(container, "iommufd.sock")
        open(target, "w").close()
        script = 'mount --bind "$1" "$2" && exec setpriv --reuid=%d --regid=%d --clear-groups "$3" --socket "$2"' % (
            QEMU_UID, QEMU_UID)
        proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                               path, target, receive_bin], capture_output=True, text=True, timeout=10)
    finally:
        shutil.rmtree(container, ignore_errors=True)
    if proc.returncode != 0 and "mount" in proc.stderr and "permission" in proc.stderr.lower():
        pytest.skip("cannot bind-mount here: " + proc.stderr)
    return None, proc.returncode, proc.stdout, proc.stderr


def test_with_mode_0600_another_uid_cannot_connect_through_the_bind_mount(env, receive_bin, setpriv):
    env.start("--devices", "2", "--socket-mode", "0600")  # owner root
    path = allocate_socket(env.client(), "iommufd0")
    _, rc, out, err = subprocess_bind_mounted_receive(receive_bin, path, env.tmp)
    assert rc != 0 and "(EACCES)" in err, err
    assert os.path.exists(path)


@pytest.mark.parametrize("flag,value", [
    ("--socket-mode", "0888"), ("--socket-mode", "01777"), ("--socket-mode", "rw"),
    ("--socket-owner", "qemu"), ("--socket-owner", "107:"), ("--socket-owner", "107:x"),
    ("--allowed-uids", "107,"), ("--allowed-uids", "-1"), ("--allowed-uids", "4294967295"),
])
def test_bad_recipient_flags_exit_2_naming_the_flag(flag, value, plugin_bin):
    r = subprocess.run([plugin_bin, flag, value], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert flag in r.stderr and value in r.stderr


def test_recipient_flags_come_from_the_environment_too(plugin_bin):
    r = subprocess.run([plugin_bin], capture_output=True, text=True, timeout=10,
                       env=dict(os.environ, IOMMUFD_DP_ALLOWED_UIDS="qemu"))
    assert r.returncode == 2 and "--allowed-uids" in r.stderr and "'qemu'" in r.stderr


def fd_flags(pid, fd):
    with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError("no flags for fd %s" % fd)


def test_every_fd_of_a_busy_daemon_is_close_on_exec(env):
    pods = FakePodResources(os.path.join(env.tmp, "pods.sock"))
    pods.stall = 60  # keeps a List (and its connection) in flight
    pods.start()
    try:
        metrics = os.path.join(env.tmp, "metrics.sock")
        plugin = env.start("--devices", "3", "--metrics-address", metrics,
                           "--pod-resources-socket", pods.socket_path, "--pod-resources-interval", "2s")
        client = env.client()
        stream = client.list_and_watch()
        next(stream)  # a ListAndWatch stream is open
        allocate_socket(client, "iommufd0")  # a pending handoff
        peer = connect(allocate_socket(client, "iommufd1"))  # a connected peer, not yet ACKed
        receive_on(peer).close()
        scrape = socket.socket(socket.AF_UNIX)
        scrape.connect(metrics)  # an open metrics connection
        pods.wait_calls(1)
        stable_fd_count(plugin, quiet=0.2)
        fds = os.listdir("/proc/%d/fdinfo" % plugin.pid)
        targets = dict(plugin.fd_targets())
        leaking = {}
        for fd in fds:
            if int(fd) <= 2:
                continue  # stdin, stdout, stderr: given to us, not ours to hide
            try:
                if not fd_flags(plugin.pid, fd) & O_CLOEXEC:
                    leaking[int(fd)] = targets.get(int(fd))
            except FileNotFoundError:
                pass
        assert not leaking, "fds without O_CLOEXEC: %r" % leaking
        kinds = " ".join(str(t) for t in targets.values())
        for kind in ("socket:", "/dev/null", "timerfd", "eventpoll", "signalfd", "inotify"):
            assert kind in kinds, "expected a %s fd among %r" % (kind, targets)
        assert len([t for t in targets.values() if t.startswith("socket:")]) >= 8
        peer.close()
        scrape.close()
        stream.cancel()
    finally:
        pods.stop()


@pytest.mark.parametrize("target", [3, 4, 9])
def test_iommufd_receive_command_inherits_only_the_fd_it_asked_for(env, receive_bin, target):
    env.start("--devices", "2")
    path = allocate_socket(env.client(), "iommufd0")
    # LC_ALL=C: sleep's setlocale() then opens no locale file, which a look at its fds
    # right after the exec could otherwise catch open (seen once on a loaded machine).
    proc = subprocess.Popen([receive_bin, "--socket", path, "--fd", str(target), "--", "sleep", "30"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, LC_ALL="C"))
    try:
        wait_until(lambda: os.readlink("/proc/%d/exe" % proc.pid).endswith("/sleep"), 5,
                   what="iommufd-receive to exec the command")
        fds = sorted(int(fd) for fd in os.listdir("/proc/%d/fd" % proc.pid))
        assert fds == [0, 1, 2, target]
        assert os.readlink("/proc/%d/fd/%d" % (proc.pid, target)) == "/dev/null"
        assert not fd_flags(proc.pid, target) & O_CLOEXEC
    finally:
        proc.kill()
        proc.communicate()
