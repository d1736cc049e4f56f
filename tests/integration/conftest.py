"""pytest fixtures; the machinery lives in harness.py (Plugin wrapper, Env, helpers)."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import PLUGIN_BIN, RECEIVE_BIN, Env, is_sanitized  # noqa: E402


@pytest.fixture
def env():
    e = Env()
    yield e
    problems = e.teardown()
    if problems:
        pytest.fail("\n".join(problems) + "\n(artifacts kept in %s)" % e.tmp, pytrace=False)


@pytest.fixture
def plugin_bin():
    if not os.path.exists(PLUGIN_BIN):
        pytest.skip("daemon binary not built: %s (set PLUGIN_BIN)" % PLUGIN_BIN)
    return PLUGIN_BIN


@pytest.fixture
def receive_bin():
    if not os.path.exists(RECEIVE_BIN):
        pytest.skip("receiver CLI not built: %s (set RECEIVE_BIN)" % RECEIVE_BIN)
    return RECEIVE_BIN


@pytest.fixture
def sanitized():
    return is_sanitized(PLUGIN_BIN)
