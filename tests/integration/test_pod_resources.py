"""Issue 5 part 5: pod-aware cleanup and audit through the kubelet's PodResources API.

A fake PodResourcesLister (kubelet.FakePodResources, python3-grpcio) answers List with
the pods a test sets. While handoff sockets are pending, and only then, the daemon asks
it every --pod-resources-interval: an offer whose device a pod holds is kept and its pod
logged once; an offer no pod holds, older than --pod-resources-grace, is withdrawn.
Without the API the TTL still removes unclaimed sockets.
"""

import os
import re
import time

import grpc
import pytest

from harness import DEFAULT_RESOURCE, settle_fds, stable_fd_count, wait_until
from kubelet import FakePodResources
from receiver import allocate_socket, assert_is_dev_null, kubevirt_receive

FAST = ("--pod-resources-interval", "200ms", "--pod-resources-grace", "1s")
UNAVAILABLE = re.compile(r"cannot list pods through the PodResources API")


@pytest.fixture
def pods(env):
    fake = FakePodResources(os.path.join(env.tmp, "pod-resources.sock"))
    fake.start()
    yield fake
    fake.stop()


def start(env, pods_socket, *extra):
    return env.start("--devices", "4", "--pod-resources-socket", pods_socket, *extra)


def count(plugin, pattern):
    return len([l for l in plugin.stderr_text().splitlines() if re.search(pattern, l)])


def test_offer_whose_pod_is_gone_is_withdrawn_after_a_poll(env, pods):
    plugin = start(env, pods.socket_path, *FAST)
    client = env.client()
    base = stable_fd_count(plugin)
    pods.hold("vms", "virt-launcher-a", "compute", DEFAULT_RESOURCE, ["iommufd0"])
    path = allocate_socket(client, "iommufd0")
    wait_until(lambda: count(plugin, r"iommufd0 .* went to pod vms/virt-launcher-a"), 10,
               what="the audit line of iommufd0")
    pods.clear()  # the pod is deleted before its container ever connected
    wait_until(lambda: not os.path.exists(path), 10, what="the socket of the vanished pod to go")
    line = [l for l in plugin.stderr_text().splitlines() if "withdrawing the unclaimed fd of iommufd0" in l]
    assert len(line) == 1 and "no pod holding %s iommufd0" % DEFAULT_RESOURCE in line[0], line
    settle_fds(plugin, base)


def test_only_the_offer_no_pod_holds_is_withdrawn(env, pods):
    plugin = start(env, pods.socket_path, *FAST)
    client = env.client()
    pods.hold("vms", "virt-launcher-b", "compute", DEFAULT_RESOURCE, ["iommufd1"])
    held = allocate_socket(client, "iommufd1")
    unheld = allocate_socket(client, "iommufd2")  # Allocate answered, pod never admitted
    wait_until(lambda: not os.path.exists(unheld), 10, what="the unheld socket to go")
    calls = pods.list_calls
    pods.wait_calls(calls + 3)  # several more polls: the held one stays
    assert os.path.exists(held)
    assert_is_dev_null(kubevirt_receive(held))
    assert plugin.alive()


def test_offer_held_by_a_pod_is_kept_and_the_log_names_namespace_pod_and_container(env, pods):
    plugin = start(env, pods.socket_path, *FAST)
    pods.hold("tenant-a", "virt-launcher-vm1-x7k2p", "compute", DEFAULT_RESOURCE, ["iommufd3"])
    path = allocate_socket(env.client(), "iommufd3")
    pods.wait_calls(8)  # 1.6 s of polls, past the 1 s grace
    assert os.path.exists(path)
    audit = r"iommufd3 \(socket %s\) went to pod tenant-a/virt-launcher-vm1-x7k2p, container compute" % re.escape(path)
    assert count(plugin, audit) == 1, plugin.stderr_text()[-3000:]
    assert count(plugin, "withdrawing") == 0
    assert_is_dev_null(kubevirt_receive(path))


def test_fresh_offer_that_no_pod_holds_yet_stays_within_the_grace(env, pods):
    plugin = start(env, pods.socket_path, "--pod-resources-interval", "200ms")  # grace 30 s
    path = allocate_socket(env.client(), "iommufd0")
    pods.wait_calls(5)
    assert os.path.exists(path)
    assert count(plugin, "withdrawing") == 0


def test_a_device_of_another_resource_does_not_hold_our_offer(env, pods):
    plugin = start(env, pods.socket_path, *FAST)
    pods.hold("vms", "gpu-pod", "main", "nvidia.com/gpu", ["iommufd0"])
    path = allocate_socket(env.client(), "iommufd0")
    wait_until(lambda: not os.path.exists(path), 10, what="the socket to go")
    assert count(plugin, "went to pod") == 0


def test_no_list_calls_while_nothing_is_pending(env, pods):
    plugin = start(env, pods.socket_path, "--pod-resources-interval", "100ms")
    client = env.client()
    time.sleep(1.0)
    assert pods.list_calls == 0, "the daemon polled PodResources with no socket pending"
    path = allocate_socket(client, "iommufd0")
    pods.wait_calls(2)
    assert_is_dev_null(kubevirt_receive(path))  # consumed: nothing pending any more
    wait_until(lambda: not os.path.exists(path), 5, what="the consumed socket to go")
    time.sleep(0.3)  # a List already in flight may still land
    settled = pods.list_calls
    time.sleep(1.0)
    assert pods.list_calls == settled, "the daemon kept polling after the last socket was consumed"
    assert plugin.alive()


def test_api_unavailable_warns_once_and_the_ttl_still_removes_the_socket(env):
    missing = os.path.join(env.tmp, "no-pod-resources.sock")
    plugin = start(env, missing, *FAST, "--handoff-ttl", "2s")
    path = allocate_socket(env.client(), "iommufd0")
    wait_until(lambda: count(plugin, UNAVAILABLE), 5, what="the warning about the missing API")
    wait_until(lambda: not os.path.exists(path), 10, what="the TTL to remove the socket")
    text = plugin.stderr_text()
    assert "nobody took the fd of iommufd0" in text
    assert count(plugin, UNAVAILABLE) == 1, "warned more than once:\n" + text[-3000:]
    (warning,) = [l for l in text.splitlines() if UNAVAILABLE.search(l)]
    assert warning.startswith("W") and missing in warning and "(ENOENT)" in warning


def test_api_failing_with_an_error_status_keeps_the_ttl_behaviour(env, pods):
    pods.fail = grpc.StatusCode.UNAVAILABLE
    plugin = start(env, pods.socket_path, *FAST, "--handoff-ttl", "2s")
    path = allocate_socket(env.client(), "iommufd0")
    pods.wait_calls(3)
    assert os.path.exists(path), "a failing List must not withdraw anything"
    wait_until(lambda: not os.path.exists(path), 10, what="the TTL to remove the socket")
    assert count(plugin, UNAVAILABLE) == 1
    assert count(plugin, "withdrawing") == 0


def test_cleanup_resumes_when_the_api_comes_back(env):
    fake = FakePodResources(os.path.join(env.tmp, "late.sock"))
    plugin = start(env, fake.socket_path, *FAST)
    path = allocate_socket(env.client(), "iommufd1")
    wait_until(lambda: count(plugin, UNAVAILABLE), 5, what="the warning about the missing API")
    fake.start()
    try:
        wait_until(lambda: not os.path.exists(path), 10, what="the socket to go once List answers")
    finally:
        fake.stop()
    assert count(plugin, "PodResources API on .* answers again") == 1


def test_a_list_that_does_not_answer_is_abandoned_at_its_deadline(env, pods):
    pods.stall = 60  # the kubelet accepts the call and never answers
    plugin = start(env, pods.socket_path, "--pod-resources-interval", "300ms",
                   "--pod-resources-grace", "1s")
    path = allocate_socket(env.client(), "iommufd2")
    wait_until(lambda: count(plugin, r"no answer within 0\.3 s"), 5, what="the deadline warning")
    assert os.path.exists(path)
    pods.unstall()
    wait_until(lambda: not os.path.exists(path), 10, what="the socket to go once List answers")
    assert plugin.alive()


def test_withdrawn_offers_and_list_calls_are_counted_in_metrics(env, pods):
    from test_metrics import scrape, value, wait_serving

    address = os.path.join(env.tmp, "metrics.sock")
    plugin = start(env, pods.socket_path, *FAST, "--metrics-address", address)
    wait_serving(address, plugin)
    path = allocate_socket(env.client(), "iommufd0")  # no pod ever holds it
    wait_until(lambda: not os.path.exists(path), 10, what="the unheld socket to go")
    samples = scrape(address)
    assert value(samples, "handoffs_total", outcome="abandoned") == 1
    assert value(samples, "pod_resources_lists_total") >= 1
    assert value(samples, "pod_resources_list_failures_total") == 0


# An hour between polls: only the Lists asked for by an offer made or taken can name a pod.
SLOW = ("--pod-resources-interval", "1h")


def test_a_new_offer_is_looked_up_at_once_not_at_the_next_poll(env, pods):
    plugin = start(env, pods.socket_path, *SLOW)
    pods.hold("tenant-b", "virt-launcher-vm2-abcde", "compute", DEFAULT_RESOURCE, ["iommufd0"])
    path = allocate_socket(env.client(), "iommufd0")
    audit = r"iommufd0 \(socket %s\) went to pod tenant-b/virt-launcher-vm2-abcde, container compute" % re.escape(path)
    wait_until(lambda: count(plugin, audit) == 1, 10, what="the audit line, long before the poll")
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: count(plugin, r"handed the fd of iommufd0") == 1, 10, what="the handoff")
    assert count(plugin, audit) == 1, plugin.stderr_text()[-3000:]  # once, not again when taken


def test_the_pod_of_an_offer_taken_before_any_list_named_it_is_logged_with_its_keys(env, pods):
    import json
    plugin = start(env, pods.socket_path, *SLOW, "-v", "1", "--log-format", "json")
    path = allocate_socket(env.client(), "iommufd1")
    # The List the offer asked for finds no pod yet (the kubelet has not recorded it).
    wait_until(lambda: "no pod holds iommufd1 yet" in plugin.stderr_text(), 10,
               what="the first List's answer")
    calls = pods.list_calls
    pods.hold("tenant-c", "virt-launcher-vm3-fghij", "compute", DEFAULT_RESOURCE, ["iommufd1"])
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: "went to pod tenant-c/virt-launcher-vm3-fghij" in plugin.stderr_text(), 10,
               what="the audit line of the taken offer")
    assert pods.list_calls == calls + 1  # one List for it, then nothing: no offer is pending
    entries = [json.loads(l) for l in plugin.stderr_text().splitlines()]
    audit = [e for e in entries if "went to pod" in e["msg"]]
    assert len(audit) == 1, audit
    assert {k: audit[0].get(k) for k in ("device", "socket", "namespace", "pod", "container")} == {
        "device": "iommufd1", "socket": path, "namespace": "tenant-c",
        "pod": "virt-launcher-vm3-fghij", "container": "compute"}


def test_an_offer_taken_while_a_list_is_in_flight_is_named_by_the_next_list(env, pods):
    plugin = start(env, pods.socket_path, *SLOW)
    pods.stall = 60.0
    path = allocate_socket(env.client(), "iommufd2")
    pods.wait_calls(1)  # the offer's List, sent before the pod exists: its answer lacks it
    pods.hold("tenant-d", "virt-launcher-vm4-klmno", "compute", DEFAULT_RESOURCE, ["iommufd2"])
    assert_is_dev_null(kubevirt_receive(path))
    wait_until(lambda: "handed the fd of iommufd2" in plugin.stderr_text(), 10, what="the handoff")
    pods.unstall()
    wait_until(lambda: "iommufd2 (socket %s) went to pod tenant-d/virt-launcher-vm4-klmno" % path
               in plugin.stderr_text(), 10, what="the audit line from the List after the take")
