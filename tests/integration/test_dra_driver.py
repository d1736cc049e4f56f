"""iommufd-dra-driver, its kubelet side (issue 23).

grpcio plays the kubelet: its plugin watcher dials our socket in plugins_registry/,
calls GetInfo, reports the registration, then calls the DRAPlugin service at the
endpoint given, with the messages generated from proto/dra_v1.proto. The first tests
point the driver at an address where nobody listens; the rest at a REAL etcd +
kube-apiserver (kube_apiserver.py), where kubectl creates and allocates the claims.
There is no /dev/iommu here: --iommu-device /dev/null with --rlimit-mode best-effort
stands in (harness.base_args), so the consumer receives an fd of /dev/null.
"""

import importlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile

import grpc
import pytest

from harness import PLUGIN_BIN, Plugin, wait_until
from kube_apiserver import KubeAPI, make_ca
from kubelet import REPO, deadline
from receiver import assert_is_dev_null, kubevirt_receive
from test_metrics import PREFIX, healthz, http_get, scrape, wait_serving
from test_plugin_watcher import PluginWatcherClient, pr

DRA_BIN = os.path.abspath(os.environ.get("DRA_BIN") or
                          os.path.join(os.path.dirname(PLUGIN_BIN), "iommufd-dra-driver"))
DRIVER = "iommufd.iommufd-device-plugin.github.io"
UID = "0f3c6a3e-3f3a-4e55-9a1f-1b2c3d4e5f60"
SERVICE = "/k8s.io.kubelet.pkg.apis.dra.v1.DRAPlugin/"


def _messages():
    out = tempfile.mkdtemp(prefix="dra-proto-")
    proto = os.path.join(REPO, "proto", "dra_v1.proto")
    subprocess.run(["protoc", "--proto_path=" + os.path.dirname(proto), "--python_out=" + out, proto],
                   check=True)
    sys.path.insert(0, out)
    module = importlib.import_module("dra_v1_pb2")
    sys.path.remove(out)
    shutil.rmtree(out, ignore_errors=True)
    return module


dra = _messages()


class DraWorld:
    """The dirs a DRA driver uses, under the test's env."""

    def __init__(self, env, kubeapi=None, node="node-1"):
        self.env = env
        self.kubeapi = kubeapi
        self.node = node
        self.registry = os.path.join(env.tmp, "plugins_registry")
        self.plugin_dir = os.path.join(env.tmp, "plugins", "drv")
        self.cdi_dir = os.path.join(env.tmp, "cdi")
        self.state_dir = os.path.join(env.tmp, "claims")
        self.metrics = os.path.join(env.tmp, "metrics.sock")
        self.registration_socket = os.path.join(self.registry, DRIVER + "-reg.sock")
        self.endpoint = os.path.join(self.plugin_dir, "dra.sock")
        if not kubeapi:
            # An address where nobody listens, so every ResourceClaim GET fails; the CA
            # must still be one (the client loads it at start).
            with open(os.path.join(env.tmp, "token"), "w") as f:
                f.write("not-a-token\n")
            make_ca(env.tmp, "ca")
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.dead_api = "127.0.0.1:%d" % s.getsockname()[1]

    def kube_args(self):
        k = self.kubeapi
        if not k:
            return ["--kube-api", self.dead_api, "--kube-ca", os.path.join(self.env.tmp, "ca.crt"),
                    "--kube-token-file", os.path.join(self.env.tmp, "token")]
        return ["--kube-api", "127.0.0.1:%d" % k.port, "--kube-ca", os.path.join(k.dir, "ca.crt"),
                "--kube-token-file", k.token_file("driver")]

    def start(self, *extra):
        if not os.path.exists(DRA_BIN):
            pytest.skip("DRA driver not built: %s (set DRA_BIN)" % DRA_BIN)
        env = self.env
        args = env.base_args() + [
            "--plugins-registry-dir", self.registry, "--plugin-dir", self.plugin_dir,
            "--cdi-dir", self.cdi_dir, "--state-dir", self.state_dir, "--devices", "4",
            "--node-name", self.node, "--metrics-address", self.metrics, "--selinux", "off",
        ] + self.kube_args() + list(extra)
        plugin = Plugin(args, env.tmp, binary=DRA_BIN)
        env.plugins.append(plugin)
        wait_until(lambda: os.path.exists(self.registration_socket) or not plugin.alive(), 10,
                   what="the registration socket")
        assert plugin.alive(), plugin.stderr_text()[-3000:]
        wait_serving(self.metrics, plugin)
        return plugin

    def register(self):
        """The kubelet's plugin watcher: GetInfo, then a successful registration. As the
        kubelet does, only once the socket accepts: after a crash the dead instance's
        socket file is there before the new instance listens on it (seen under valgrind)."""
        wait_until(lambda: _accepts(self.registration_socket), 60, what="the registration socket to accept")
        watcher = PluginWatcherClient(self.registration_socket)
        info = watcher.get_info(pr.InfoRequest(), timeout=5)
        watcher.notify(pr.RegistrationStatus(plugin_registered=True), timeout=5)
        watcher.close()
        return info


def _accepts(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def _call(endpoint, method, request, response_cls, timeout=10):
    with grpc.insecure_channel("unix://" + endpoint) as channel:
        call = channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString,
                                   response_deserializer=response_cls.FromString)
        return call(request, timeout=deadline(timeout))


def _claim(uid=UID):
    return dra.Claim(namespace="vms", name="vm-a-iommufd", uid=uid)


def test_registers_as_a_dra_plugin_with_both_services(env):
    world = DraWorld(env)
    world.start()
    info = world.register()
    assert info.type == "DRAPlugin"
    assert info.name == DRIVER
    assert list(info.supported_versions) == ["v1.DRAPlugin", "v1beta1.DRAPlugin"]
    assert info.endpoint == world.endpoint
    # Unprepare of a claim never prepared here is a success (an entry without error).
    answer = _call(info.endpoint, "NodeUnprepareResources",
                   dra.NodeUnprepareResourcesRequest(claims=[_claim()]), dra.NodeUnprepareResourcesResponse)
    assert list(answer.claims) == [UID]
    assert answer.claims[UID].error == ""


def test_prepare_without_the_api_server_answers_each_claim_with_the_reason(env):
    world = DraWorld(env)
    plugin = world.start()
    info = world.register()
    answer = _call(info.endpoint, "NodePrepareResources",
                   dra.NodePrepareResourcesRequest(claims=[_claim()]), dra.NodePrepareResourcesResponse)
    assert list(answer.claims) == [UID]
    error = answer.claims[UID].error
    assert error.startswith("claim vms/vm-a-iommufd: "), error
    assert len(answer.claims[UID].devices) == 0
    assert os.listdir(world.cdi_dir) == []  # nothing prepared, nothing left
    assert env.socket_files() == []
    assert "NodePrepareResources of claim %s failed: %s" % (UID, error) in plugin.stderr_text()
    assert scrape(world.metrics)[(PREFIX + "dra_claim_prepare_failures_total", ())] == 1


def _conflict(world):
    return scrape(world.metrics)[(PREFIX + "dra_device_plugin_conflict", ())]


def test_a_device_plugin_on_the_node_keeps_the_driver_unpublished_and_not_ready(env):
    world = DraWorld(env)
    # The device plugin of our resource serves on kubelet.sock first.
    device_plugin = env.start("--devices", "2")
    driver = world.start("-v", "1")
    world.register()
    assert _conflict(world) == 1
    status, _, body = http_get(world.metrics, "/healthz")
    assert status == 503
    assert b"a device plugin for our resource serves on this node" in body
    assert "a device plugin for our resource serves on this node (%s)" % env.plugin_socket \
        in driver.stderr_text()
    # It leaves (its socket goes): the driver sees it through inotify.
    device_plugin.signal(signal.SIGTERM)
    assert device_plugin.wait(timeout=10) == 0
    wait_until(lambda: _conflict(world) == 0, 10, what="the conflict to clear")
    assert "no device plugin for our resource on this node any more" in driver.stderr_text()
    # A server binds (inotify tells the driver) before it listens: the driver sees a
    # socket nobody listens on, says so, and checks again until it listens.
    path = os.path.join(env.kubelet_dir, "kubevirt-iommufd-1.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(path)
        wait_until(lambda: "%s is a socket nobody listens on (yet)" % path in driver.stderr_text(), 10,
                   what=lambda: "the driver to see the bound socket:\n" + driver.stderr_text()[-3000:])
        assert _conflict(world) == 0
        s.listen(1)
        wait_until(lambda: _conflict(world) == 1, 10, what="a new device plugin to be seen")
    assert healthz(world.metrics) == 503


# ---- against a real kube-apiserver (kube_apiserver.py) ----

NAMESPACE = "vms"
CLAIM_YAML = """
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: %s, namespace: vms}
spec:
  devices:
    requests:
    - name: vm
      exactly: {deviceClassName: iommufd}
"""
CONTAINER_SOCKET = "/var/run/kubevirt/iommufd.sock"


@pytest.fixture(scope="module")
def kubeapi():
    if not os.path.exists(DRA_BIN):
        pytest.skip("DRA driver not built: %s (set DRA_BIN)" % DRA_BIN)
    k = KubeAPI()
    k.kubectl("create", "namespace", NAMESPACE)
    yield k
    k.close()


def _slices(k, node):
    return k.get_json("resourceslices", "--field-selector", "spec.nodeName=%s" % node)["items"]


def _result(node, device="iommufd1", driver=DRIVER):
    return {"request": "vm", "driver": driver, "pool": node, "device": device}


def _make_claim(k, name, results=None):
    """kubectl create, then (when results are given) status.allocation written through
    the status subresource, as the scheduler would. Returns the claim's uid."""
    k.kubectl("create", "-f", "-", input=CLAIM_YAML % name)
    if results is not None:
        k.kubectl("patch", "resourceclaim", name, "-n", NAMESPACE, "--subresource=status", "--type=merge",
                  "-p", json.dumps({"status": {"allocation": {"devices": {"results": results}}}}))
    return k.get_json("resourceclaim", name, "-n", NAMESPACE)["metadata"]["uid"]


def _prepare(endpoint, name, uid, timeout=30):
    """One claim's NodePrepareResources; returns its NodePrepareResourceResponse."""
    request = dra.NodePrepareResourcesRequest(claims=[dra.Claim(namespace=NAMESPACE, name=name, uid=uid)])
    answer = _call(endpoint, "NodePrepareResources", request, dra.NodePrepareResourcesResponse, timeout)
    assert list(answer.claims) == [uid]
    return answer.claims[uid]


def _unprepare(endpoint, name, uid):
    request = dra.NodeUnprepareResourcesRequest(claims=[dra.Claim(namespace=NAMESPACE, name=name, uid=uid)])
    answer = _call(endpoint, "NodeUnprepareResources", request, dra.NodeUnprepareResourcesResponse)
    assert list(answer.claims) == [uid]
    return answer.claims[uid].error


def _cdi_spec(world, uid):
    with open(os.path.join(world.cdi_dir, "%s-%s.json" % (DRIVER, uid))) as f:
        return json.load(f)


def _host_socket(spec):
    """The socket the spec mounts at KubeVirt's path (the only mount it has)."""
    [device] = spec["devices"]
    [mount] = device["containerEdits"]["mounts"]
    assert mount["containerPath"] == CONTAINER_SOCKET, mount
    return mount["hostPath"]


def _assert_prepared(world, answer, uid, device="iommufd1"):
    assert answer.error == "", answer.error
    [d] = answer.devices
    assert (list(d.request_names), d.pool_name, d.device_name) == (["vm"], world.node, device)
    assert list(d.cdi_device_ids) == ["%s/iommufd=%s" % (DRIVER, uid)]


def _kube_world(env, kubeapi, node, *extra):
    world = DraWorld(env, kubeapi, node)
    plugin = world.start("-v", "1", *extra)
    return world, plugin, world.register()


def test_the_node_slice_is_published_only_while_no_device_plugin_serves(env, kubeapi):
    k, node = kubeapi, "node-slice"
    world = DraWorld(env, k, node)
    device_plugin = env.start("--devices", "2")
    driver = world.start("-v", "2")
    world.register()
    # The sentinel: the driver has listed the node's slices and is in sync with "none".
    synced = "ResourceSlice of %s on %s: listing -> synced" % (DRIVER, node)
    wait_until(lambda: synced in driver.stderr_text(), 60, what="the first sync")
    assert _conflict(world) == 1
    assert _slices(k, node) == []
    # The device plugin leaves: the slice is published, with the node's devices.
    device_plugin.signal(signal.SIGTERM)
    assert device_plugin.wait(timeout=10) == 0
    wait_until(lambda: _slices(k, node), 60, what="the ResourceSlice")
    [s] = _slices(k, node)
    spec = s["spec"]
    assert (spec["driver"], spec["nodeName"], spec["pool"]["name"]) == (DRIVER, node, node)
    assert spec["pool"]["resourceSliceCount"] == 1
    assert [d["name"] for d in spec["devices"]] == ["iommufd%d" % i for i in range(4)]
    for d in spec["devices"]:
        assert d["attributes"] == {"kernelRelease": {"string": os.uname().release},
                                   "rlimitMode": {"string": "best-effort"},
                                   "rlimitModeSupported": {"bool": False}}  # /dev/null has no IOMMU_OPTION
    # A device plugin comes back: the slice is deleted.
    env.start("--devices", "2")
    wait_until(lambda: _slices(k, node) == [], 60, what="the ResourceSlice to be deleted")
    assert _conflict(world) == 1


def test_a_kubelet_restart_that_wiped_the_slice_gets_it_back_at_registration(env, kubeapi):
    """The kubelet deletes every ResourceSlice of its node when it starts, then registers
    the drivers again (dra_plugin_manager.go, wipeResourceSlices at start-up): the driver
    must put its slice back then, not at its next resync (5 minutes: no pod of the node
    could be scheduled through DRA until then)."""
    k, node = kubeapi, "node-rewipe"
    world = DraWorld(env, k, node)
    driver = world.start("-v", "2")
    world.register()
    wait_until(lambda: _slices(k, node), 60, what="the ResourceSlice")
    synced = "ResourceSlice of %s on %s: listing -> synced" % (DRIVER, node)
    wait_until(lambda: synced in driver.stderr_text(), 60, what="the first sync")
    # The restarted kubelet's wipe, then its registration of the driver.
    k.kubectl("delete", "resourceslices", "--field-selector", "spec.nodeName=%s" % node)
    assert _slices(k, node) == []
    world.register()
    # Well inside the 300 s resync, which would also bring it back.
    wait_until(lambda: _slices(k, node), 60, what="the ResourceSlice back after the registration")
    [s] = _slices(k, node)
    assert [d["name"] for d in s["spec"]["devices"]] == ["iommufd%d" % i for i in range(4)]


def test_the_slice_follows_the_device_node_vanishing_and_coming_back(env, kubeapi):
    """Issue 23 Must 3: the slice stays true when /dev/iommu vanishes (no devices: the
    slice is deleted, no pod is scheduled to a node that cannot serve it) and when it
    comes back (published again). A stand-in char device (/dev/null's numbers) in the
    test's dir plays /dev/iommu."""
    k, node = kubeapi, "node-presence"
    dev = os.path.join(env.tmp, "iommu")
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    world = DraWorld(env, k, node)
    world.start("--iommu-device", dev)
    world.register()
    wait_until(lambda: len(_slices(k, node)) == 1, 60, what="the ResourceSlice")
    os.unlink(dev)
    wait_until(lambda: _slices(k, node) == [], 60, what="the ResourceSlice deleted with the device gone")
    os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    wait_until(lambda: len(_slices(k, node)) == 1, 60, what="the ResourceSlice back with the device")
    [s] = _slices(k, node)
    assert [d["name"] for d in s["spec"]["devices"]] == ["iommufd%d" % i for i in range(4)]


def test_an_allocated_claim_is_prepared_and_its_fd_handed_over(env, kubeapi):
    k, node = kubeapi, "node-prepare"
    world, _, info = _kube_world(env, k, node)
    uid = _make_claim(k, "vm-prepare", [_result(node)])
    answer = _prepare(info.endpoint, "vm-prepare", uid)
    _assert_prepared(world, answer, uid)
    spec = _cdi_spec(world, uid)
    assert spec["kind"] == DRIVER + "/iommufd" and spec["devices"][0]["name"] == uid
    path = _host_socket(spec)
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert_is_dev_null(kubevirt_receive(path))


def test_with_expose_device_node_the_cdi_spec_adds_the_node_as_dev_iommu_from_the_host_path(env, kubeapi):
    """The driver opens /dev/null (--iommu-device, /host/dev/iommu in the manifests); the
    spec's device node is /dev/iommu in the container, found on the node at
    --device-node-host-path (default /dev/iommu)."""
    k, node = kubeapi, "node-devnode"
    world, _, info = _kube_world(env, k, node, "--expose-device-node")
    uid = _make_claim(k, "vm-devnode", [_result(node)])
    _assert_prepared(world, _prepare(info.endpoint, "vm-devnode", uid), uid)
    edits = _cdi_spec(world, uid)["devices"][0]["containerEdits"]
    assert edits["deviceNodes"] == [{"path": "/dev/iommu", "hostPath": "/dev/iommu", "permissions": "rw"}], edits
    assert_is_dev_null(kubevirt_receive(_host_socket(_cdi_spec(world, uid))))


def test_prepare_again_answers_the_same_and_unprepare_removes_everything(env, kubeapi):
    k, node = kubeapi, "node-repeat"
    world, _, info = _kube_world(env, k, node)
    uid = _make_claim(k, "vm-repeat", [_result(node, "iommufd3")])
    first = _prepare(info.endpoint, "vm-repeat", uid)
    _assert_prepared(world, first, uid, "iommufd3")
    path = _host_socket(_cdi_spec(world, uid))
    again = _prepare(info.endpoint, "vm-repeat", uid)
    assert again == first
    assert _host_socket(_cdi_spec(world, uid)) == path
    assert _unprepare(info.endpoint, "vm-repeat", uid) == ""
    assert os.listdir(world.cdi_dir) == []
    assert not os.path.exists(path)
    assert env.socket_files() == []
    # Unprepare again, and of a claim never seen: success.
    assert _unprepare(info.endpoint, "vm-repeat", uid) == ""
    assert _unprepare(info.endpoint, "never-seen", UID) == ""


def test_bad_claims_are_answered_with_the_claim_and_the_reason(env, kubeapi):
    k, node = kubeapi, "node-bad"
    world, plugin, info = _kube_world(env, k, node)
    uid = _make_claim(k, "vm-stale", [_result(node)])
    stale = ("1" if uid[0] == "0" else "0") + uid[1:]
    cases = [
        ("vm-stale", stale, "claim vms/vm-stale: ResourceClaim vms/vm-stale has uid %s, not %s (deleted and recreated?)"
         % (uid, stale)),
        ("vm-pending", _make_claim(k, "vm-pending"), "claim vms/vm-pending: ResourceClaim vms/vm-pending is not "
                                                     "allocated"),
        ("vm-range", _make_claim(k, "vm-range", [_result(node, "iommufd4")]),
         'claim vms/vm-range: unknown device "iommufd4": driver %s publishes iommufd0..iommufd3' % DRIVER),
        ("vm-pool", _make_claim(k, "vm-pool", [_result("node-x")]),
         'claim vms/vm-pool: device iommufd1 is in pool "node-x", not this node\'s ("node-bad")'),
        ("vm-other", _make_claim(k, "vm-other", [_result(node, "gpu0", "gpu.example.com")]),
         "claim vms/vm-other has no device of driver %s" % DRIVER),
        ("vm-missing", UID, "claim vms/vm-missing: ResourceClaim vms/vm-missing not found"),
    ]
    for name, claim_uid, error in cases:
        answer = _prepare(info.endpoint, name, claim_uid)
        assert answer.error == error, (name, answer.error)
        assert len(answer.devices) == 0
    assert os.listdir(world.cdi_dir) == []
    assert env.socket_files() == []
    assert scrape(world.metrics)[(PREFIX + "dra_claim_prepare_failures_total", ())] == len(cases)
    assert "NodePrepareResources of claim %s failed: %s" % (stale, cases[0][2]) in plugin.stderr_text()


def test_a_claim_prepared_before_a_crash_is_served_after_the_restart(env, kubeapi):
    k, node = kubeapi, "node-restart"
    world, driver, info = _kube_world(env, k, node)
    uid = _make_claim(k, "vm-restart", [_result(node, "iommufd0")])
    first = _prepare(info.endpoint, "vm-restart", uid)
    _assert_prepared(world, first, uid, "iommufd0")
    path = _host_socket(_cdi_spec(world, uid))
    driver.signal(signal.SIGKILL)
    driver.wait(timeout=10)
    world.start("-v", "1")
    info = world.register()
    assert_is_dev_null(kubevirt_receive(path))  # the same path, served again
    # The kubelet asking again (it does not, after a restart, but may): the same answer,
    # from the claim's record (no second offer: the spec still names the first socket).
    assert _prepare(info.endpoint, "vm-restart", uid) == first
    assert _host_socket(_cdi_spec(world, uid)) == path
    assert _unprepare(info.endpoint, "vm-restart", uid) == ""
    assert not os.path.exists(path)


def _prepare_in_flight(driver, endpoint, name, uid):
    """Starts one claim's Prepare and waits until the driver has asked the API server:
    the answer is the returned future's."""
    waits = driver.stderr_text().count("1 claim(s) wait for the API server")
    channel = grpc.insecure_channel("unix://" + endpoint)
    call = channel.unary_unary(SERVICE + "NodePrepareResources",
                               request_serializer=dra.NodePrepareResourcesRequest.SerializeToString,
                               response_deserializer=dra.NodePrepareResourcesResponse.FromString)
    request = dra.NodePrepareResourcesRequest(claims=[dra.Claim(namespace=NAMESPACE, name=name, uid=uid)])
    future = call.future(request, timeout=deadline(60))
    future.add_done_callback(lambda _: channel.close())
    wait_until(lambda: driver.stderr_text().count("1 claim(s) wait for the API server") > waits, 30,
               what="the Prepare to be in flight")
    return future


def _all_threads_stopped(pid):
    """SIGSTOP is asynchronous: true once every thread of pid is in state T."""
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return True


def test_the_api_server_gone_mid_prepare_fails_that_claim_then_recovers(env, kubeapi):
    k, node = kubeapi, "node-outage"
    world, driver, info = _kube_world(env, k, node)
    uid = _make_claim(k, "vm-outage", [_result(node, "iommufd2")])
    prefix = "claim vms/vm-outage: GET /apis/resource.k8s.io/v1/namespaces/vms/resourceclaims/vm-outage: "
    k.apiserver.send_signal(signal.SIGSTOP)  # the kernel still accepts; nobody answers
    try:
        wait_until(lambda: _all_threads_stopped(k.apiserver.pid), 30, what="every kube-apiserver thread stopped")
        # A server that hangs: the claim fails at the lookup's deadline (10 s), well
        # before the kubelet's (60 s here).
        hung = _prepare_in_flight(driver, info.endpoint, "vm-outage", uid).result()
        # (A stressed CI run once saw this claim prepared with the server stopped, not
        # reproduced since: the driver's log says what it did.)
        assert uid in hung.claims and \
            hung.claims[uid].error == prefix + "no answer from the API server within 10000 ms", \
            "%r\n--- driver log (tail) ---\n%s" % (hung, driver.stderr_text()[-4000:])
        # A server that goes away with the request unanswered: at once.
        future = _prepare_in_flight(driver, info.endpoint, "vm-outage", uid)
        k.apiserver.kill()
        k.apiserver.send_signal(signal.SIGCONT)
        k.apiserver.wait()
        assert future.result().claims[uid].error == prefix + "connection to the API server lost"
        assert os.listdir(world.cdi_dir) == []
        assert env.socket_files() == []
    finally:  # back, for this test's last step and the module's other tests
        k.apiserver.send_signal(signal.SIGCONT)
        k.apiserver.kill()
        k.apiserver.wait()
        k.start_apiserver()
    _assert_prepared(world, _prepare(info.endpoint, "vm-outage", uid, timeout=60), uid, "iommufd2")
