"""Local checks of the consumer (no cluster): a Python sender stands in for the plugin.

Run: /usr/bin/python3 -m pytest -v tests/cluster/consumer/test_consumer_local.py
The binary is built with build.sh unless CONSUMER_BIN names one already built.
The sent fd is /dev/null's (char 1:3): what is checked is the handoff, not IOMMUFD.
"""

import os
import queue
import signal
import socket
import subprocess
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="session")
def consumer_bin(tmp_path_factory):
    path = os.environ.get("CONSUMER_BIN")
    if path:
        return path
    out = str(tmp_path_factory.mktemp("bin") / "iommufd-consumer")
    subprocess.run([os.path.join(HERE, "build.sh"), out], check=True, stdout=subprocess.DEVNULL)
    return out


class Consumer:
    """The consumer running with IOMMUFD_SOCKET=path; its stdout lines in a queue."""

    def __init__(self, binary, path, delay="0"):
        env = dict(os.environ, IOMMUFD_SOCKET=path, CONSUMER_DELAY=delay)
        self.started = time.monotonic()
        self.proc = subprocess.Popen([binary], env=env, stdout=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_line(self, prefix, timeout=10):
        """The first line starting with prefix; fails on timeout or exit."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                pytest.fail(f"no line {prefix!r} in {timeout}s; saw {seen}")
            if line is None:
                pytest.fail(f"consumer exited ({self.proc.wait()}) before {prefix!r}; saw {seen}")
            seen.append(line)
            if line.startswith(prefix):
                return line

    def result_lines(self):
        """Every 'iommufd:' line printed so far (does not wait)."""
        out = []
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return out
            if line is not None and line.startswith("iommufd:"):
                out.append(line)

    def terminate(self):
        """SIGTERM; the consumer must exit 0 promptly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=3)


@pytest.fixture
def run_consumer(consumer_bin):
    started = []

    def start(path, delay="0"):
        c = Consumer(consumer_bin, path, delay)
        started.append(c)
        return c

    yield start
    for c in started:
        if c.proc.poll() is None:
            c.proc.kill()
            c.proc.wait()


def listening(path):
    """A unix listener at path that accepts one connection, waiting at most 10 s."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    listener.settimeout(10)
    return listener


def test_receives_fd_and_acks(run_consumer, tmp_path):
    path = str(tmp_path / "iommufd.sock")
    listener = listening(path)
    devnull = os.open("/dev/null", os.O_RDWR)
    try:
        c = run_consumer(path, delay="1")
        conn, _ = listener.accept()
        waited = time.monotonic() - c.started
        assert waited >= 0.9, f"connected after {waited:.2f}s, before the 1s delay"
        with conn:
            # The plugin's message: one byte 0 and the fd (docs/protocol.md).
            socket.send_fds(conn, [b"\0"], [devnull])
            conn.settimeout(10)
            assert conn.recv(16) == b"\0"  # the ACK
            assert conn.recv(16) == b""  # then the consumer closes
        line = c.wait_line("iommufd:")
        assert line.startswith("iommufd: received fd=")
        fields = dict(f.split("=", 1) for f in line.split()[2:])
        assert fields["target"] == "/dev/null"
        assert fields["rdev"] == "1:3"
        assert fields["n"] == "1" and fields["data"] == "00"
        assert fields["fds"] == "1" and fields["ack"] == "ok"
        # It holds the fd while idle, as virt-launcher keeps it for libvirt.
        c.wait_line("consumer: idle")
        fd = fields["fd"]
        assert os.readlink(f"/proc/{c.proc.pid}/fd/{fd}") == "/dev/null"
        assert c.terminate() == 0
    finally:
        os.close(devnull)
        listener.close()


def test_socket_absent(run_consumer, tmp_path):
    c = run_consumer(str(tmp_path / "nothing-here.sock"))
    assert c.wait_line("iommufd:") == "iommufd: socket absent"
    c.wait_line("consumer: idle")
    assert c.terminate() == 0
    assert c.result_lines() == []


def test_no_listener_fails_once_without_retry(run_consumer, tmp_path):
    path = str(tmp_path / "iommufd.sock")
    # A socket file nobody listens on: bound, never listen()ed.
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    try:
        c = run_consumer(path)
        assert c.wait_line("iommufd:") == "iommufd: error: connect: ECONNREFUSED"
        assert c.wait_line("iommufd:").startswith("iommufd: detail: dial unix ")
        c.wait_line("consumer: idle")
        # No retry: a listener that appears at the same path gets no connection.
        dead.close()
        os.unlink(path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(2)
        with listener, pytest.raises(socket.timeout):
            listener.accept()
        assert c.result_lines() == []  # the error was printed once
        assert c.terminate() == 0
    finally:
        dead.close()


def test_sigterm_during_the_receive_exits_0(run_consumer, tmp_path):
    # A listener that accepts and never sends: the read has no deadline, so the
    # consumer waits; SIGTERM must still end it at once with status 0.
    path = str(tmp_path / "iommufd.sock")
    listener = listening(path)
    with listener:
        c = run_consumer(path)
        conn, _ = listener.accept()
        with conn:
            time.sleep(0.5)
            assert c.result_lines() == []  # still waiting: no deadline
            t = time.monotonic()
            assert c.terminate() == 0
            assert time.monotonic() - t < 1
