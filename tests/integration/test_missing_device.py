"""Issue 3: the iommu device node is missing, then appears and disappears at run time."""

import os
import stat

import grpc
import pytest

from harness import wait_until
from receiver import assert_is_dev_null, kubevirt_receive


def mknod_null(path):
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def healths(resp):
    return {d.health for d in resp.devices}


def test_missing_device_allow_allocates_without_mounts(env):
    dev = os.path.join(env.tmp, "iommu")
    env.start("--devices", "3", "--missing-device", "allow", iommu_device=dev)
    resp = env.client().allocate(["iommufd0"])
    assert len(resp.container_responses) == 1
    c = resp.container_responses[0]
    assert len(c.mounts) == 0 and len(c.devices) == 0
    assert [f for f in env.socket_files() if f.endswith(".sock")] == []


def test_missing_device_unhealthy_reports_unhealthy_and_refuses_allocate(env):
    dev = os.path.join(env.tmp, "iommu")
    env.start("--devices", "3", "--missing-device", "unhealthy", iommu_device=dev)
    client = env.client()
    call = client.list_and_watch()
    first = next(call)
    call.cancel()
    assert len(first.devices) == 3
    assert healths(first) == {"Unhealthy"}
    with pytest.raises(grpc.RpcError) as err:
        client.allocate(["iommufd0"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "iommu" in err.value.details().lower()


def test_device_appearing_and_disappearing_updates_health_live(env):
    dev = os.path.join(env.tmp, "iommu")
    plugin = env.start("--devices", "3", "--missing-device", "unhealthy", iommu_device=dev)
    client = env.client()
    call = client.list_and_watch(timeout=30)
    assert healths(next(call)) == {"Unhealthy"}

    mknod_null(dev)
    appeared = next(call)
    assert [d.ID for d in appeared.devices] == ["iommufd0", "iommufd1", "iommufd2"]
    assert healths(appeared) == {"Healthy"}
    resp = client.allocate(["iommufd2"])
    assert len(resp.container_responses[0].mounts) == 1
    assert_is_dev_null(kubevirt_receive(resp.container_responses[0].mounts[0].host_path))

    os.unlink(dev)
    assert healths(next(call)) == {"Unhealthy"}
    with pytest.raises(grpc.RpcError) as err:
        client.allocate(["iommufd0"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    call.cancel()
    # Each change is logged once, by the device plugin that acts on it.
    log = plugin.stderr_text().splitlines()
    assert len([l for l in log if l.endswith(dev + " appeared")]) == 1, log
    assert len([l for l in log if l.endswith(dev + " disappeared")]) == 1, log


def test_device_present_at_start_is_healthy_and_allocatable_in_unhealthy_mode(env):
    dev = os.path.join(env.tmp, "iommu")
    mknod_null(dev)
    env.start("--devices", "2", "--missing-device", "unhealthy", iommu_device=dev)
    client = env.client()
    call = client.list_and_watch()
    assert healths(next(call)) == {"Healthy"}
    call.cancel()
    resp = client.allocate(["iommufd0"])
    assert_is_dev_null(kubevirt_receive(resp.container_responses[0].mounts[0].host_path))


def test_missing_device_under_allow_is_a_warning_at_start_and_at_each_disappearance(env):
    # Issue 19: under the default allow, a missing device changed nothing anyone could
    # see (Healthy devices, /healthz 200, no line at any verbosity).
    dev = os.path.join(env.tmp, "iommu")
    plugin = env.start("--devices", "3", iommu_device=dev)
    warning = dev + " is missing: with --missing-device=allow"

    def count(needle):
        return len([l for l in plugin.stderr_text().splitlines() if needle in l])

    # At start: exactly once, and it is a warning (klog's W prefix).
    wait_until(lambda: count(warning) >= 1, 10, what="the warning at start")
    lines = [l for l in plugin.stderr_text().splitlines() if warning in l]
    assert len(lines) == 1 and lines[0].startswith("W"), lines

    # The device appears (the plugin logs it: our sentinel that the event was handled):
    # no new warning.
    mknod_null(dev)
    wait_until(lambda: count(dev + " appeared") == 1, 10, what="the device to appear")
    assert count(warning) == 1

    # It disappears: the warning again, once.
    os.unlink(dev)
    wait_until(lambda: count(warning) == 2, 10, what="the warning at the disappearance")
    assert count(dev + " disappeared") == 1

    # Restored: appears again, and nothing more is warned.
    mknod_null(dev)
    wait_until(lambda: count(dev + " appeared") == 2, 10, what="the device to come back")
    assert count(warning) == 2


def test_missing_device_under_unhealthy_is_not_warned_about(env):
    # Unhealthy devices say it themselves: the warning is for allow only.
    dev = os.path.join(env.tmp, "iommu")
    plugin = env.start("--devices", "3", "--missing-device", "unhealthy", iommu_device=dev)
    call = env.client().list_and_watch()
    assert healths(next(call)) == {"Unhealthy"}
    call.cancel()
    assert "is missing: with --missing-device=allow" not in plugin.stderr_text()
