"""The DevicePlugin service as the kubelet calls it: ListAndWatch, preferred allocation, Allocate."""

import os
import stat

import grpc
import pytest

from harness import CONTAINER_SOCKET


def ids(n):
    return ["iommufd%d" % i for i in range(n)]


def first_list(client):
    call = client.list_and_watch()
    try:
        return next(call)
    finally:
        call.cancel()


def test_list_and_watch_advertises_110_healthy_devices_by_default(env):
    env.start()
    resp = first_list(env.client())
    assert [d.ID for d in resp.devices] == ids(110)
    assert {d.health for d in resp.devices} == {"Healthy"}


def test_list_and_watch_advertises_the_configured_number_of_devices(env):
    env.start("--devices", "3")
    resp = first_list(env.client())
    assert [d.ID for d in resp.devices] == ids(3)
    assert all(d.health == "Healthy" for d in resp.devices)


def test_list_and_watch_stream_stays_open_after_first_message(env):
    env.start("--devices", "2")
    call = env.client().list_and_watch(timeout=1.0)
    assert len(next(call).devices) == 2
    # Nothing changes: no second message and no end of stream until our deadline.
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_get_preferred_allocation_puts_must_include_first_and_respects_size(env):
    env.start("--devices", "8")
    resp = env.client().get_preferred_allocation([(ids(8), ["iommufd5"], 3), (ids(8), [], 1)])
    assert len(resp.container_responses) == 2
    first = list(resp.container_responses[0].deviceIDs)
    assert len(first) == 3
    assert first[0] == "iommufd5"
    assert len(set(first)) == 3 and set(first) <= set(ids(8))
    second = list(resp.container_responses[1].deviceIDs)
    assert len(second) == 1 and second[0] in ids(8)


def test_get_preferred_allocation_picks_only_available_ids(env):
    env.start("--devices", "8")
    available = ["iommufd6", "iommufd2", "iommufd7"]
    resp = env.client().get_preferred_allocation([(available, [], 2)])
    got = list(resp.container_responses[0].deviceIDs)
    assert len(got) == 2 and set(got) <= set(available)


def test_pre_start_container_succeeds(env):
    env.start("--devices", "2")
    resp = env.client().pre_start_container(["iommufd0"])
    assert resp.ByteSize() == 0


def test_allocate_returns_one_socket_mount_per_container(env):
    env.start("--devices", "4")
    resp = env.client().allocate(["iommufd1"], ["iommufd3"])
    assert len(resp.container_responses) == 2
    for dev, cresp in zip(("iommufd1", "iommufd3"), resp.container_responses):
        assert len(cresp.mounts) == 1
        m = cresp.mounts[0]
        assert m.container_path == CONTAINER_SOCKET
        assert m.read_only is False
        assert os.path.dirname(os.path.dirname(m.host_path)) == env.socket_dir
        assert dev in os.path.basename(m.host_path)
        assert stat.S_ISSOCK(os.stat(m.host_path).st_mode)
        assert len(cresp.devices) == 0


def test_allocate_mount_follows_container_socket_path_flag(env):
    env.start("--devices", "1", "--container-socket-path", "/run/x/fd.sock")
    resp = env.client().allocate(["iommufd0"])
    assert resp.container_responses[0].mounts[0].container_path == "/run/x/fd.sock"


def test_allocate_rejects_unknown_device_id(env):
    env.start("--devices", "3")
    with pytest.raises(grpc.RpcError) as err:
        env.client().allocate(["iommufd0"], ["gpu7"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gpu7" in err.value.details()


def test_rejected_allocate_leaves_no_socket_behind(env):
    env.start("--devices", "3")
    with pytest.raises(grpc.RpcError):
        env.client().allocate(["iommufd0"], ["iommufd1", "bogus"])
    assert [f for f in env.socket_files() if f.endswith(".sock")] == []


def test_allocate_rejects_id_just_past_the_advertised_range(env):
    env.start("--devices", "3")
    with pytest.raises(grpc.RpcError) as err:
        env.client().allocate(["iommufd3"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "iommufd3" in err.value.details()


def test_allocate_naming_one_device_in_two_containers_is_invalid_argument(env):
    """Found by fuzzing: the second container's offer replaced the first's socket."""
    env.start("--devices", "4")
    with pytest.raises(grpc.RpcError) as err:
        env.client().allocate(["iommufd0"], ["iommufd0", "iommufd3"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "iommufd0" in err.value.details()
    assert [f for f in env.socket_files() if f.endswith(".sock")] == []


def test_allocate_with_expose_device_node_adds_rw_device_spec(env):
    """The node is opened as --iommu-device (here /dev/null; in the shipped manifests
    /host/dev/iommu), but the runtime finds it on the node at --device-node-host-path
    (default /dev/iommu) and puts it at /dev/iommu, where libvirt looks."""
    env.start("--devices", "2", "--expose-device-node")
    cresp = env.client().allocate(["iommufd0"]).container_responses[0]
    assert len(cresp.mounts) == 1
    [device] = cresp.devices
    assert (device.host_path, device.container_path, device.permissions) == ("/dev/iommu", "/dev/iommu", "rw")


def test_allocate_with_device_node_host_path_names_it_on_the_host_side_only(env):
    env.start("--devices", "2", "--expose-device-node", "--device-node-host-path", "/node/dev/iommu")
    [device] = env.client().allocate(["iommufd1"]).container_responses[0].devices
    assert (device.host_path, device.container_path, device.permissions) == ("/node/dev/iommu", "/dev/iommu", "rw")


def test_unknown_method_is_unimplemented(env):
    env.start("--devices", "1")
    client = env.client()
    for method in ("/v1beta1.DevicePlugin/NoSuchMethod", "/v1beta1.Nope/Allocate", "/x"):
        with pytest.raises(grpc.RpcError) as err:
            client.call_raw(method, b"")
        assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
    assert client.get_device_plugin_options().get_preferred_allocation_available
