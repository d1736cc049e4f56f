"""Registration through the kubelet's plugin watcher (pluginregistration v1).

grpcio plays the kubelet's plugin watcher: it dials the socket in plugins_registry/,
calls GetInfo, dials the endpoint exactly as given, and reports the outcome with
NotifyRegistrationStatus, as the kubelet's plugin watcher does for device plugins (the
real one is in tests/cluster)."""

import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import grpc
import pytest

from harness import wait_until
from kubelet import REPO, DevicePluginClient


def _messages():
    out = tempfile.mkdtemp(prefix="pr-proto-")
    proto = os.path.join(REPO, "proto", "pluginregistration.proto")
    subprocess.run(["protoc", "--proto_path=" + os.path.dirname(proto), "--python_out=" + out, proto],
                   check=True)
    sys.path.insert(0, out)
    module = importlib.import_module("pluginregistration_pb2")
    sys.path.remove(out)
    shutil.rmtree(out, ignore_errors=True)
    return module


pr = _messages()


class PluginWatcherClient:
    def __init__(self, socket_path):
        self.channel = grpc.insecure_channel("unix://" + socket_path)
        self.get_info = self.channel.unary_unary(
            "/pluginregistration.Registration/GetInfo",
            request_serializer=pr.InfoRequest.SerializeToString,
            response_deserializer=pr.PluginInfo.FromString)
        self.notify = self.channel.unary_unary(
            "/pluginregistration.Registration/NotifyRegistrationStatus",
            request_serializer=pr.RegistrationStatus.SerializeToString,
            response_deserializer=pr.RegistrationStatusResponse.FromString)

    def close(self):
        self.channel.close()


def start_with_plugin_watcher(env, mode="plugin-watcher"):
    registry = os.path.join(env.tmp, "plugins_registry")
    plugin_dir = os.path.join(env.tmp, "plugins", "kubevirt-iommufd")
    plugin = env.start("--registration", mode, "--plugins-registry-dir", registry,
                       "--plugin-dir", plugin_dir, "--devices", "4",
                       start_kubelet=(mode == "both"), wait_register=(mode == "both"))
    registration_socket = os.path.join(registry, "kubevirt-iommufd.sock")
    wait_until(lambda: os.path.exists(registration_socket), 5, what="the registration socket")
    return plugin, registration_socket, os.path.join(plugin_dir, "kubevirt-iommufd.sock")


def test_get_info_names_a_device_plugin_with_an_absolute_endpoint_outside_device_plugins(env):
    plugin, registration_socket, endpoint = start_with_plugin_watcher(env)
    watcher = PluginWatcherClient(registration_socket)
    info = watcher.get_info(pr.InfoRequest(), timeout=5)
    watcher.close()
    assert info.type == "DevicePlugin"
    assert info.name == "devices.kubevirt.io/iommufd"
    assert list(info.supported_versions) == ["v1beta1"]
    assert info.endpoint == endpoint
    assert os.path.isabs(info.endpoint)
    assert not info.endpoint.startswith(env.kubelet_dir)
    # The kubelet dials the endpoint exactly as given and lists the devices.
    with DevicePluginClient(info.endpoint) as client:
        devices = next(client.list_and_watch()).devices
        assert [d.ID for d in devices] == ["iommufd0", "iommufd1", "iommufd2", "iommufd3"]


def test_plugin_watcher_mode_does_not_touch_kubelet_sock(env):
    plugin, registration_socket, endpoint = start_with_plugin_watcher(env)
    env.kubelet.start()
    # No Register comes through kubelet.sock in this mode.
    with pytest.raises(Exception):
        env.kubelet.wait_register(timeout=0.5)
    assert plugin.alive()


def test_notify_registration_status_is_logged_for_success_and_failure(env):
    plugin, registration_socket, endpoint = start_with_plugin_watcher(env)
    watcher = PluginWatcherClient(registration_socket)
    watcher.notify(pr.RegistrationStatus(plugin_registered=True), timeout=5)
    watcher.notify(pr.RegistrationStatus(plugin_registered=False,
                                         error="resource name must be domain/name"), timeout=5)
    watcher.close()
    wait_until(lambda: "refused the plugin watcher registration" in plugin.stderr_text(), 5,
               what="the refusal in the log")
    log = plugin.stderr_text()
    assert "registered devices.kubevirt.io/iommufd through the plugin watcher" in log
    assert "resource name must be domain/name" in log


def test_kubelet_restart_leaves_plugin_watcher_sockets_serving(env):
    """The kubelet wipes only device-plugins/ on restart: our endpoint must not live there."""
    plugin, registration_socket, endpoint = start_with_plugin_watcher(env, mode="both")
    env.kubelet.restart()
    env.kubelet.wait_register(timeout=5)
    assert os.path.exists(registration_socket) and os.path.exists(endpoint)
    with DevicePluginClient(endpoint) as client:
        assert len(next(client.list_and_watch()).devices) == 4


def test_sigterm_removes_the_registration_socket_so_the_kubelet_deregisters(env):
    plugin, registration_socket, endpoint = start_with_plugin_watcher(env)
    plugin.signal(signal.SIGTERM)
    assert plugin.wait(timeout=2) == 0
    assert not os.path.exists(registration_socket)
    assert not os.path.exists(endpoint)


def test_a_second_instance_serves_beside_the_first_and_retires_its_registration(env):
    """The kubelet keys endpoints by path: the second instance takes the alternate names,
    and once the kubelet reports it registered, removes the first one's registration
    socket, so the watcher deregisters the first endpoint alone. The first keeps running."""
    first, registration_socket, endpoint = start_with_plugin_watcher(env)
    inodes = (os.stat(registration_socket).st_ino, os.stat(endpoint).st_ino)
    registry, plugin_dir = os.path.dirname(registration_socket), os.path.dirname(endpoint)
    second_registration = os.path.join(registry, "kubevirt-iommufd-1.sock")
    second_endpoint = os.path.join(plugin_dir, "kubevirt-iommufd-1.sock")
    second = env.start("--registration", "plugin-watcher", "--plugins-registry-dir", registry,
                       "--plugin-dir", plugin_dir, "--devices", "4", start_kubelet=False,
                       wait_register=False)
    wait_until(lambda: os.path.exists(second_registration), 5, what="the second registration socket")
    # The first instance's sockets are untouched until the second is registered.
    assert (os.stat(registration_socket).st_ino, os.stat(endpoint).st_ino) == inodes
    # No temporary name is left where the kubelet's watcher would try it.
    assert sorted(os.listdir(registry)) == ["kubevirt-iommufd-1.sock", "kubevirt-iommufd.sock"]
    watcher = PluginWatcherClient(second_registration)
    try:
        assert watcher.get_info(pr.InfoRequest(), timeout=5).endpoint == second_endpoint
        watcher.notify(pr.RegistrationStatus(plugin_registered=True), timeout=5)
    finally:
        watcher.close()
    wait_until(lambda: not os.path.exists(registration_socket), 10,
               what="the first registration socket to be retired")
    with DevicePluginClient(second_endpoint) as client:
        assert client.get_device_plugin_options() is not None
    # The first instance still serves its endpoint (its pending offers, its stream).
    with DevicePluginClient(endpoint) as client:
        assert client.get_device_plugin_options() is not None
    assert first.alive() and second.alive()


def test_relative_plugin_dir_is_refused_with_exit_2(plugin_bin):
    r = subprocess.run([plugin_bin, "--registration", "plugin-watcher", "--plugin-dir", "rel/dir"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "absolute" in r.stderr
