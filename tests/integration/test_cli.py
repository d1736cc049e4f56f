"""Command line: --help, --version, bad flags, --flag=value."""

import subprocess

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
