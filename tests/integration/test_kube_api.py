"""The DRA driver's API-server client (issue 23) against a REAL kube-apiserver (see
kube_apiserver.py), driven through tools/kube-client-test.c: ResourceSlice published,
updated, deleted and restored; ResourceClaims read back with our results only; TLS
verification (CA and IP SAN) and RBAC refusals; an API server restart mid-run."""

import json
import os
import queue
import shlex
import socket
import ssl
import subprocess
import threading
import time

import pytest

from harness import PLUGIN_BIN, sanitizer_report
from kube_apiserver import KubeAPI
from kubelet import deadline

KUBE_CLIENT_TEST = os.environ.get("KUBE_CLIENT_TEST") or os.path.join(os.path.dirname(PLUGIN_BIN), "kube-client-test")
# e.g. valgrind with --error-exitcode=99 and "ERROR: " markers; by default the daemon's
# (scripts/check.sh's valgrind run sets PLUGIN_WRAPPER), so that run covers the client too
KUBE_CLIENT_WRAPPER = shlex.split(os.environ.get("KUBE_CLIENT_WRAPPER") or os.environ.get("PLUGIN_WRAPPER", ""))
DRIVER = "iommufd.kubevirt.io"


@pytest.fixture(scope="module")
def kubeapi():
    if not os.path.exists(KUBE_CLIENT_TEST):
        pytest.skip("kube-client-test not built: %s" % KUBE_CLIENT_TEST)
    k = KubeAPI()
    yield k
    k.close()


def client_args(k, who="driver", ca="ca.crt", port=None, token=None):
    return KUBE_CLIENT_WRAPPER + [KUBE_CLIENT_TEST, "--port", str(port or k.port), "--ca", os.path.join(k.dir, ca),
            "--token", token or k.token_file(who)]


def run_claim(k, ns, name, uid, who="driver", ca="ca.crt", port=None):
    r = subprocess.run(client_args(k, who, ca, port) + ["claim", ns, name, uid, DRIVER], capture_output=True,
                       text=True, timeout=deadline(60))
    assert not sanitizer_report(r.stderr) and r.returncode in (0, 2), r.stderr
    assert "invalid state change" not in r.stderr, r.stderr
    return r.stdout.splitlines()


class SliceDriver:
    """kube-client-test slice: commands on stdin, 'synced N' lines on stdout."""

    def __init__(self, k, node, who="driver", resync=2, token=None):
        self.proc = subprocess.Popen(
            client_args(k, who, token=token) + ["--driver", DRIVER, "--node", node, "--owner-kind", "Node",
                                   "--owner-api-version", "v1", "--owner-name", node, "--owner-uid", "uid-" + node,
                                   "--resync", str(resync), "slice"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.stderr = []
        self.pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True),
                      threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True)]
        for t in self.pumps:
            t.start()

    @staticmethod
    def _pump(stream, put):
        for line in stream:
            put(line.rstrip("\n"))

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_line(self, want, timeout=60):
        seen = []
        while True:
            try:
                line = self.lines.get(timeout=deadline(timeout))
            except queue.Empty:
                raise AssertionError("no %r within %ss; saw %r; stderr: %s" % (want, timeout, seen, self.stderr[-10:]))
            seen.append(line)
            if line == want:
                return seen

    def wait_stderr(self, needle, timeout=60):
        end = deadline(timeout)
        t0 = time.monotonic()
        while time.monotonic() - t0 < end:
            for line in list(self.stderr):
                if needle in line:
                    return line
            time.sleep(0.1)
        raise AssertionError("no %r on stderr within %ss: %s" % (needle, timeout, self.stderr[-10:]))

    def close(self):
        self.send("quit")
        assert self.proc.wait(timeout=deadline(30)) == 0, self.stderr[-10:]
        for t in self.pumps:
            t.join(timeout=deadline(10))  # all of stderr read, sanitizer reports included
        assert not sanitizer_report("\n".join(self.stderr)), self.stderr
        assert not [line for line in self.stderr if "invalid state change" in line], self.stderr


def slices(k, node):
    return k.get_json("resourceslices", "--field-selector", "spec.nodeName=%s" % node)["items"]


def assert_slice(k, node, n, supported):
    items = slices(k, node)
    assert len(items) == 1, items
    s = items[0]
    assert s["spec"]["driver"] == DRIVER and s["spec"]["nodeName"] == node
    assert s["spec"]["pool"]["name"] == node and s["spec"]["pool"]["resourceSliceCount"] == 1
    assert s["metadata"]["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "uid-" + node}]
    assert [d["name"] for d in s["spec"]["devices"]] == ["iommufd%d" % i for i in range(n)]
    for d in s["spec"]["devices"]:
        assert d["attributes"] == {"kernelRelease": {"string": "6.1.0-test"}, "rlimitMode": {"string": "required"},
                                   "rlimitModeSupported": {"bool": supported}}
    return s


def test_slice_published_updated_deleted_and_restored_by_resync(kubeapi):
    k = kubeapi
    d = SliceDriver(k, "node-a")
    try:
        d.send("devices 2 true")
        d.wait_line("synced 2")
        first = assert_slice(k, "node-a", 2, True)
        d.send("devices 4 false")
        d.wait_line("synced 4")
        updated = assert_slice(k, "node-a", 4, False)
        assert updated["metadata"]["name"] == first["metadata"]["name"]  # updated in place
        assert updated["spec"]["pool"]["generation"] > first["spec"]["pool"]["generation"]
        d.send("devices 0 false")
        d.wait_line("synced 0")
        assert slices(k, "node-a") == []
        d.send("devices 3 true")
        d.wait_line("synced 3")
        gone = assert_slice(k, "node-a", 3, True)["metadata"]["name"]
        # Someone else deletes it: the resync (2 s here) notices and publishes it again.
        k.kubectl("delete", "resourceslice", gone)
        d.wait_line("synced 3", timeout=90)  # the sentinel: after "unsynced", synced again
        back = assert_slice(k, "node-a", 3, True)
        assert back["metadata"]["name"] != gone
    finally:
        d.close()


CLAIM = """
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: %s, namespace: default}
spec:
  devices:
    requests:
    - name: vm
      exactly: {deviceClassName: iommufd, allocationMode: ExactCount, count: 2}
    - name: gpu
      exactly: {deviceClassName: gpu}
"""

ALLOCATION = {"status": {"allocation": {"devices": {"results": [
    {"request": "vm", "driver": DRIVER, "pool": "node-a", "device": "iommufd0"},
    {"request": "gpu", "driver": "gpu.example.com", "pool": "node-a", "device": "gpu0"},
    {"request": "vm", "driver": DRIVER, "pool": "node-a", "device": "iommufd3"},
]}}}}


def make_claim(k, name, allocate):
    k.kubectl("apply", "-f", "-", input=CLAIM % name)
    if allocate:
        k.kubectl("patch", "resourceclaim", name, "-n", "default", "--subresource=status", "--type=merge",
                  "-p", json.dumps(ALLOCATION))
    return k.get_json("resourceclaim", name, "-n", "default")["metadata"]["uid"]


def test_claim_read_back_with_our_results_only(kubeapi):
    uid = make_claim(kubeapi, "claim-allocated", allocate=True)
    out = run_claim(kubeapi, "default", "claim-allocated", uid)
    assert out == ["ok uid=%s devices=2" % uid, "device vm node-a iommufd0", "device vm node-a iommufd3"]


def test_claim_errors_stale_missing_unallocated(kubeapi):
    uid = make_claim(kubeapi, "claim-errors", allocate=True)
    out = run_claim(kubeapi, "default", "claim-errors", "0" + uid[1:] if uid[0] != "0" else "1" + uid[1:])
    assert out[0].startswith("error ESTALE ") and uid in out[0], out
    out = run_claim(kubeapi, "default", "no-such-claim", uid)
    assert out[0] == "error ENOENT ResourceClaim default/no-such-claim not found", out
    uid2 = make_claim(kubeapi, "claim-pending", allocate=False)
    out = run_claim(kubeapi, "default", "claim-pending", uid2)
    assert out[0] == "error ENODATA ResourceClaim default/claim-pending is not allocated", out


def test_server_signed_by_another_ca_is_refused(kubeapi):
    out = run_claim(kubeapi, "default", "whatever", "u", ca="wrong-ca.crt")
    assert out[0].startswith("error EPERM ") and "not verified" in out[0] and "trusted CA" in out[0], out


def test_certificate_without_our_ip_is_refused(kubeapi, tmp_path):
    """A server whose certificate the CA signed, but for another IP: the IP SAN check."""
    k = kubeapi
    subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
                    tmp_path / "other.key", "-out", tmp_path / "other.csr"], check=True, capture_output=True)
    (tmp_path / "ext").write_text("subjectAltName=IP:127.0.0.2,DNS:localhost\n")
    subprocess.run(["openssl", "x509", "-req", "-in", tmp_path / "other.csr", "-CA", os.path.join(k.dir, "ca.crt"),
                    "-CAkey", os.path.join(k.dir, "ca.key"), "-CAcreateserial", "-days", "1", "-extfile",
                    tmp_path / "ext", "-out", tmp_path / "other.crt"], check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "other.crt", tmp_path / "other.key")
    ctx.set_alpn_protocols(["h2"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def serve():
        conn, _ = listener.accept()
        try:
            ctx.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        out = run_claim(k, "default", "whatever", "u", port=port)
    finally:
        listener.close()
    assert out[0].startswith("error EPERM ") and "not verified" in out[0] and "CN" in out[0], out


def test_identity_without_rights_gets_a_clear_403(kubeapi):
    out = run_claim(kubeapi, "default", "whatever", "u", who="nobody")
    assert out[0].startswith("error EACCES ") and "HTTP 403 Forbidden" in out[0], out
    assert 'User "nobody" cannot get resource "resourceclaims"' in out[0], out
    d = SliceDriver(kubeapi, "node-nobody", who="nobody")
    try:
        d.send("devices 1 true")
        line = d.wait_stderr("cannot publish ResourceSlice")
        assert "HTTP 403 Forbidden" in line and 'User "nobody" cannot list resource "resourceslices"' in line, line
        assert d.lines.empty()  # never synced
    finally:
        d.close()


def test_api_server_restart_loses_nothing(kubeapi):
    k = kubeapi
    d = SliceDriver(k, "node-r", resync=600)  # no resync: the catch-up is the retry's
    try:
        d.send("devices 2 true")
        d.wait_line("synced 2")
        k.stop_apiserver()
        try:
            d.send("devices 5 false")
            d.wait_line("unsynced")
            d.wait_stderr("cannot publish ResourceSlice")  # it tried while the server was away
        finally:
            k.start_apiserver()
        d.wait_line("synced 5", timeout=120)
        assert_slice(k, "node-r", 5, False)
        uid = make_claim(k, "claim-after-restart", allocate=True)
        assert run_claim(k, "default", "claim-after-restart", uid)[0] == "ok uid=%s devices=2" % uid
    finally:
        d.close()


def test_rotated_token_is_read_again(kubeapi, tmp_path):
    """Projected tokens rotate by a rename over the file: the next request sends the new one."""
    k = kubeapi
    token = tmp_path / "token"
    token.write_text(open(k.token_file("nobody")).read())
    d = SliceDriver(k, "node-t", resync=600, token=str(token))
    try:
        d.send("devices 1 true")
        d.wait_stderr('User "nobody" cannot list')
        rotated = tmp_path / "token.new"
        rotated.write_text(open(k.token_file("driver")).read())
        os.rename(rotated, token)
        d.wait_line("synced 1", timeout=90)  # the back-off's next try carries the new token
        assert_slice(k, "node-t", 1, True)
    finally:
        d.close()


def test_unreachable_or_silent_server_fails_at_the_deadline(kubeapi):
    k = kubeapi
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]  # bound, not listening: connection refused
    out = run_claim(k, "default", "whatever", "u", port=port)
    closed.close()
    assert out[0].startswith("error ECONNREFUSED ") and "cannot connect to API server" in out[0], out

    # A server that completes TLS (the right certificate, ALPN h2) and then never answers.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(k.dir, "server.crt"), os.path.join(k.dir, "server.key"))
    ctx.set_alpn_protocols(["h2"])
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    held = []

    def serve():
        conn, _ = listener.accept()
        held.append(ctx.wrap_socket(conn, server_side=True))
    threading.Thread(target=serve, daemon=True).start()
    try:
        out = run_claim(k, "default", "whatever", "u", port=listener.getsockname()[1])
    finally:
        for c in held:
            c.close()
        listener.close()
    assert out[0].startswith("error ETIMEDOUT ") and "no answer from the API server within 10000 ms" in out[0], out
    assert held, "the client never completed the handshake"


def test_response_over_the_cap_is_refused_not_buffered(kubeapi):
    """A LIST answer over KUBE_RESPONSE_MAX (4 MiB): the stream is reset and the step fails
    with a sentence, rather than the client buffering whatever the server sends."""
    k = kubeapi
    node, n_slices = "node-big", 16  # 16 slices of ~300 KiB in protobuf: ~5 MiB in one LIST

    def big_slice(i):
        attrs = {"a%02d" % a: {"string": ("%02d" % a) * 32} for a in range(32)}
        return {"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "%s-%d" % (node, i)},
                "spec": {"driver": DRIVER, "nodeName": node,
                         "pool": {"name": node, "generation": 1, "resourceSliceCount": n_slices},
                         "devices": [{"name": "dev%d" % d, "attributes": attrs} for d in range(128)]}}
    for i in range(n_slices):
        k.kubectl("create", "-f", "-", input=json.dumps(big_slice(i)))
    d = SliceDriver(k, node, resync=600)
    try:
        d.send("devices 1 true")
        line = d.wait_stderr("cannot publish ResourceSlice")
        assert "response longer than 4194304 bytes" in line, line
        assert d.lines.empty()  # never synced
    finally:
        d.close()
        k.kubectl("delete", "resourceslices", "--field-selector", "spec.nodeName=%s" % node)
