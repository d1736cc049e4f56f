"""Command line: --help, --version, bad flags, --flag=value."""

import json
import os
import subprocess
import tempfile

import pytest

from harness import child_env, sanitizer_report


def run(plugin_bin, *args):
    r = subprocess.run([plugin_bin] + list(args), capture_output=True, timeout=10, env=child_env(), text=True)
    assert not sanitizer_report(r.stderr), r.stderr
    return r


def test_help_exits_zero_and_lists_flags(plugin_bin):
    r = run(plugin_bin, "--help")
    assert r.returncode == 0, r.stderr
    text = r.stdout + r.stderr
    for flag in ("--kubelet-dir", "--devices", "--iommu-device", "--rlimit-mode", "--handoff-ttl"):
        assert flag in text


def test_version_exits_zero_and_prints_a_version(plugin_bin):
    r = run(plugin_bin, "--version")
    assert r.returncode == 0, r.stderr
    assert any(ch.isdigit() for ch in r.stdout + r.stderr)


def test_unknown_flag_exits_2_with_message_naming_it(plugin_bin):
    r = run(plugin_bin, "--no-such-flag")
    assert r.returncode == 2
    assert "no-such-flag" in r.stderr


def test_bad_flag_values_exit_2_with_message(plugin_bin):
    for args in (
        ["--devices", "many"],
        ["--devices", "-1"],
        ["--rlimit-mode", "sometimes"],
        ["--missing-device", "maybe"],
        ["--handoff-ttl", "soon"],
        ["--ack-timeout=10parsecs"],
        ["--selinux", "perhaps"],
    ):
        r = run(plugin_bin, *args)
        assert r.returncode == 2, (args, r.returncode, r.stderr)
        assert r.stderr.strip(), args


def run_env(plugin_bin, extra_env, *args):
    r = subprocess.run([plugin_bin] + list(args), capture_output=True, timeout=10,
                       env=dict(child_env(), **extra_env), text=True)
    assert not sanitizer_report(r.stderr), r.stderr
    return r


@pytest.mark.parametrize("args, extra, names", [
    (["--devices", "many", "--log-format", "json"], {}, "--devices"),
    (["--log-format", "json", "--no-such-flag"], {}, "--no-such-flag"),
    (["--log-format=json", "--handoff-ttl", "soon"], {}, "--handoff-ttl"),
    (["--devices", "many"], {"IOMMUFD_DP_LOG_FORMAT": "json"}, "--devices"),
], ids=["flag-after-the-error", "flag-before", "equals-form", "environment"])
def test_usage_errors_are_json_when_json_logs_are_asked_for(plugin_bin, args, extra, names):
    # The error may come before the flag that asks for JSON is parsed: it is still JSON.
    r = run_env(plugin_bin, extra, *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and entry["reason"] == "usage", entry
    assert names in entry["msg"], entry


def test_usage_errors_stay_text_when_the_flag_overrides_the_environment(plugin_bin):
    r = run_env(plugin_bin, {"IOMMUFD_DP_LOG_FORMAT": "json"}, "--log-format", "text", "--devices", "many")
    assert r.returncode == 2
    assert r.stderr.startswith("iommufd-device-plugin: --devices wants a whole number"), r.stderr
    assert r.stderr.count("\n") == 1, r.stderr


def test_flag_without_its_value_exits_2(plugin_bin):
    r = run(plugin_bin, "--devices")
    assert r.returncode == 2
    assert r.stderr.strip()


def test_equals_form_of_flags_is_accepted(env):
    env.start("--devices=3", "--resource-name=example.com/iommufd")
    assert env.registration.resource_name == "example.com/iommufd"
    call = env.client().list_and_watch()
    assert len(next(call).devices) == 3
    call.cancel()


def test_verbosity_flag_is_accepted(env):
    env.start("-v", "4", "--devices", "1")
    assert env.client().get_device_plugin_options().get_preferred_allocation_available


def test_durations_whose_deadlines_would_wrap_exit_2_naming_the_cap(plugin_bin, tmp_path):
    # Issue 19 row 11: now + 5124095576h wraps a 64-bit microsecond clock, which
    # withdrew every offer at once. Every duration flag is capped at 24h.
    for flag in ("--handoff-ttl", "--ack-timeout", "--drain-timeout", "--pod-resources-interval",
                 "--pod-resources-grace"):
        # Paths of our own: a binary that accepts the flag must not touch the host's.
        r = run(plugin_bin, "--kubelet-dir", str(tmp_path / "k"), "--socket-dir", str(tmp_path / "s"),
                flag, "5124095576h")
        assert r.returncode == 2, (flag, r.returncode, r.stderr)
        assert f"{flag} is at most 24h" in r.stderr, (flag, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = run(plugin_bin, "--kubelet-dir", str(tmp_path / "k"), "--socket-dir", str(tmp_path / "s"),
            "--handoff-ttl", "25h")
    assert r.returncode == 2 and "at most 24h" in r.stderr, r.stderr


def test_a_socket_dir_too_long_for_sun_path_exits_2(plugin_bin, tmp_path):
    # Issue 19 row 12: accepted, it advertised Healthy devices whose every Allocate
    # failed INTERNAL. A dir that fits by itself but not with the instance dir and the
    # longest socket name in it is refused too.
    # Under tmp_path: a binary that accepts it must not create it at the root.
    long_dir = os.path.join(str(tmp_path), "d" * 60)
    r = run(plugin_bin, "--socket-dir", long_dir, "--kubelet-dir", str(tmp_path))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "--socket-dir" in r.stderr and "too long" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    with tempfile.TemporaryDirectory(prefix="cli", dir="/tmp") as short:  # fits as --socket-dir
        r = run(plugin_bin, "--kubelet-dir", os.path.join(short, "k" * 100), "--socket-dir", short)
    assert r.returncode == 2 and "--kubelet-dir" in r.stderr and "too long" in r.stderr, r.stderr


def test_socket_dir_at_the_bound_is_accepted_and_one_byte_more_is_not(env, plugin_bin):
    # The bound is the longest real path, not a guess. With --devices 10 a handoff
    # socket adds "/<12 hex>/iommufd9-<20 digits>.sock" (48 bytes) to --socket-dir, so
    # a 59-byte dir fills sun_path's 107 exactly; 60 does not fit.
    sockets = os.path.join(env.tmp, "s")
    if len(sockets) > 58:
        pytest.skip(f"the test's directory {env.tmp} is too long for this bound")
    sockets += "x" * (59 - len(sockets))
    r = run(plugin_bin, "--devices", "10", "--socket-dir", sockets + "x", "--kubelet-dir", env.kubelet_dir)
    assert r.returncode == 2 and "would be 108 bytes" in r.stderr, r.stderr
    env.start("--devices", "10", "--socket-dir", sockets)
    resp = env.client().allocate(["iommufd9"])
    assert len(resp.container_responses[0].mounts) == 1
