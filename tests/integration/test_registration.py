"""Registration with the kubelet: contents, late kubelet, kubelet restarts, retries."""

import os
import socket
import stat
import time

from harness import DEFAULT_RESOURCE, SLOT_NAMES, wait_until
from kubelet import pb


def test_register_request_carries_version_endpoint_resource_and_options(env):
    env.start()
    req = env.registration
    assert req.version == "v1beta1"
    assert req.endpoint == SLOT_NAMES[0]
    assert req.resource_name == DEFAULT_RESOURCE
    assert req.options.pre_start_required is False
    assert req.options.get_preferred_allocation_available is True


def test_register_endpoint_and_resource_follow_flags(env):
    env.socket_name = "other.sock"
    env.start("--socket-name", "other.sock", "--resource-name", "example.com/thing")
    # --socket-name is the foreign plugin's name: ours are derived from it.
    assert env.registration.endpoint == "other-0.sock"
    assert env.registration.resource_name == "example.com/thing"
    assert stat.S_ISSOCK(os.stat(os.path.join(env.kubelet_dir, "other-0.sock")).st_mode)
    assert not os.path.exists(os.path.join(env.kubelet_dir, "other.sock"))


def test_get_device_plugin_options_equal_register_options(env):
    env.start()
    opts = env.client().get_device_plugin_options()
    assert opts == env.registration.options
    assert opts == pb.DevicePluginOptions(pre_start_required=False, get_preferred_allocation_available=True)


def test_daemon_started_before_kubelet_registers_when_kubelet_appears(env):
    plugin = env.start(start_kubelet=False, wait_register=False)
    wait_until(lambda: os.path.exists(env.plugin_socket), 5, what="the daemon's socket before any kubelet")
    time.sleep(0.5)
    assert plugin.alive()
    env.kubelet.start()
    req = env.kubelet.wait_register(timeout=2)
    assert req.endpoint == SLOT_NAMES[0]
    assert env.client().get_device_plugin_options().get_preferred_allocation_available


def registered_lines(plugin):
    """How many Register calls the daemon has seen answered (its 'registered' lines)."""
    return plugin.stderr_text().count(" with the kubelet as ")


def test_kubelet_restart_recreates_socket_and_reregisters(env):
    """How fast is bench/'s 'kubelet restart -> Register again' row; here: that it does.
    A kubelet opens our stream for a Register it has answered, and a stream that ends
    while our Register is still in flight needs nothing (that Register makes the kubelet
    open a new one): so each step waits for the daemon to have the answer (its
    'registered' line), which a loaded machine may deliver after the test's next step."""
    plugin = env.start()
    answered = 1

    def wait_answered():
        wait_until(lambda: registered_lines(plugin) >= answered, 30,
                   what="the daemon's 'registered' line number %d" % answered)

    wait_answered()
    for _ in range(3):
        env.kubelet.restart()
        req = env.kubelet.wait_register(timeout=5)
        wait_until(lambda: os.path.exists(env.plugin_socket), 5,
                   what="the daemon's socket after a kubelet restart")
        assert req.endpoint == SLOT_NAMES[0]
        answered += 1
        wait_answered()
        with env.client() as c:
            call = c.list_and_watch()
            assert len(next(call).devices) == 110
            call.cancel()
        # The kubelet (this test) ended the only stream while we serve: the daemon takes
        # it for the kubelet dropping its endpoint and registers again at once.
        assert env.kubelet.wait_register(timeout=5).endpoint == SLOT_NAMES[0]
        answered += 1
        wait_answered()
    assert env.kubelet.register_count == 7


def test_kubelet_ending_the_last_stream_registers_again_but_not_while_another_is_open(env):
    plugin = env.start("--devices", "2")
    first = env.client().list_and_watch()
    assert len(next(first).devices) == 2
    second = env.client().list_and_watch()
    assert len(next(second).devices) == 2
    before = env.kubelet.register_count
    second.cancel()
    # Another stream is still open: the kubelet still watches us, nothing to do.
    assert env.client().get_device_plugin_options() is not None
    assert env.kubelet.register_count == before
    first.cancel()
    assert env.kubelet.wait_register(timeout=5).endpoint == SLOT_NAMES[0]
    wait_until(lambda: "the kubelet ended our ListAndWatch stream while we serve" in plugin.stderr_text(),
               5, what="the log line")


def test_a_kubelet_holding_a_stale_endpoint_on_our_path_gets_the_other_name(env):
    """kubelet 1.37 refuses a Register on a path whose endpoint it still holds, and keeps
    refusing until it restarts: we move to the alternate name and register that."""
    env.kubelet.start()
    env.kubelet.fail_next_registrations(1, "device plugin already connected: %s")
    plugin = env.start(wait_register=False)
    assert env.kubelet.wait_register(timeout=10).endpoint == SLOT_NAMES[0]
    moved = env.kubelet.wait_register(timeout=10)
    assert moved.endpoint == SLOT_NAMES[1]
    wait_until(lambda: "registered with the kubelet" in plugin.stderr_text(), 10, what="the registration")
    assert not os.path.exists(os.path.join(env.kubelet_dir, SLOT_NAMES[0]))
    with env.client() as c:  # the endpoint the kubelet was told about
        assert len(next(c.list_and_watch()).devices) == 110


def test_failed_register_is_retried(env):
    env.kubelet.fail_next_registrations(2)
    env.kubelet.start()
    plugin = env.start(wait_register=False)
    for _ in range(3):
        env.kubelet.wait_register(timeout=15)
    assert env.kubelet.register_count == 3
    assert plugin.alive()


def test_stale_sockets_in_socket_dir_are_removed_at_start(env):
    os.makedirs(env.socket_dir, mode=0o700)
    stale = os.path.join(env.socket_dir, "iommufd7-stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()
    other = os.path.join(env.socket_dir, "notes.txt")
    open(other, "w").close()
    env.start()
    assert not os.path.exists(stale)
    assert os.path.exists(other)


def test_socket_dir_is_created_with_mode_0700(env):
    assert not os.path.exists(env.socket_dir)
    env.start()
    st = os.stat(env.socket_dir)
    assert stat.S_ISDIR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o700
