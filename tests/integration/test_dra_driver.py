"""iommufd-dra-driver, its kubelet side (issue 23).

grpcio plays the kubelet: its plugin watcher dials our socket in plugins_registry/,
calls GetInfo, reports the registration, then calls the DRAPlugin service at the
endpoint given, with the messages generated from proto/dra_v1.proto. The API side is
not here: the driver is pointed at an API server address where nobody listens (or, in
a tree without the API client, has none), so NodePrepareResources must answer each
claim with the reason, not fail the call; the full Prepare path needs a kube-apiserver
(tests/cluster) and is skipped here with that message.
"""

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import grpc
import pytest

from harness import PLUGIN_BIN, Plugin, wait_until
from kubelet import REPO
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

    def __init__(self, env):
        self.env = env
        self.registry = os.path.join(env.tmp, "plugins_registry")
        self.plugin_dir = os.path.join(env.tmp, "plugins", "drv")
        self.cdi_dir = os.path.join(env.tmp, "cdi")
        self.state_dir = os.path.join(env.tmp, "claims")
        self.metrics = os.path.join(env.tmp, "metrics.sock")
        self.registration_socket = os.path.join(self.registry, DRIVER + "-reg.sock")
        self.endpoint = os.path.join(self.plugin_dir, "dra.sock")
        with open(os.path.join(env.tmp, "token"), "w") as f:
            f.write("not-a-token\n")
        with open(os.path.join(env.tmp, "ca.pem"), "w") as f:
            f.write("not a CA\n")
        # An address where nobody listens: every ResourceClaim GET fails.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.dead_api = "127.0.0.1:%d" % s.getsockname()[1]

    def start(self, *extra):
        if not os.path.exists(DRA_BIN):
            pytest.skip("DRA driver not built: %s (set DRA_BIN)" % DRA_BIN)
        env = self.env
        args = env.base_args() + [
            "--plugins-registry-dir", self.registry, "--plugin-dir", self.plugin_dir,
            "--cdi-dir", self.cdi_dir, "--state-dir", self.state_dir, "--devices", "4",
            "--node-name", "node-1", "--metrics-address", self.metrics,
            "--kube-api", self.dead_api, "--kube-ca", os.path.join(env.tmp, "ca.pem"),
            "--kube-token-file", os.path.join(env.tmp, "token"), "--selinux", "off",
        ] + list(extra)
        plugin = Plugin(args, env.tmp, binary=DRA_BIN)
        env.plugins.append(plugin)
        wait_until(lambda: os.path.exists(self.registration_socket) or not plugin.alive(), 10,
                   what="the registration socket")
        assert plugin.alive(), plugin.stderr_text()[-3000:]
        wait_serving(self.metrics, plugin)
        return plugin

    def register(self):
        """The kubelet's plugin watcher: GetInfo, then a successful registration."""
        watcher = PluginWatcherClient(self.registration_socket)
        info = watcher.get_info(pr.InfoRequest(), timeout=5)
        watcher.notify(pr.RegistrationStatus(plugin_registered=True), timeout=5)
        watcher.close()
        return info


def _call(endpoint, method, request, response_cls):
    with grpc.insecure_channel("unix://" + endpoint) as channel:
        call = channel.unary_unary(SERVICE + method, request_serializer=type(request).SerializeToString,
                                   response_deserializer=response_cls.FromString)
        return call(request, timeout=10)


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


def test_prepare_through_the_api_server():
    pytest.skip("needs a kube-apiserver with a ResourceClaim allocated to this driver: "
                "covered by tests/cluster once the API client (src/kube) lands")


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
