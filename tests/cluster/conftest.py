"""The session's cluster (tests/cluster/cluster.sh), shared by every test file here:
built once (cached), up once, the plugin's DaemonSet applied from deploy/, down at the
end. An exclusive lock on /run/iommufd-cluster.lock keeps two sessions on one machine
from sharing /var/lib/kubelet."""

import fcntl
import os

import pytest

from clusterlib import (CLUSTER, DEVICES, DS, HERE, NAMESPACE, ROOT, CONSUMER_IMAGE, allocatable,
                        kubectl, plugin_image, plugin_overlay, run, wait_until)


class Cluster:
    """The running cluster, and the plugin's DaemonSet on it."""

    def __init__(self, tmp_factory, image, archive):
        self.tmp_factory, self.image, self.archive = tmp_factory, image, archive

    def deploy(self, flags=None, components=(), wait_devices=True):
        """Applies deploy/ (kustomize) with the imported image, best-effort RLIMIT_MODE and
        these flags (clusterlib.plugin_overlay), and waits for the rollout and, unless told
        not to, for the node to advertise DEVICES."""
        overlay, _ = plugin_overlay(str(self.tmp_factory.mktemp("overlay")), flags, components)
        kubectl("apply", "-k", overlay)
        kubectl("-n", NAMESPACE, "rollout", "status", "ds/" + DS, "--timeout=300s", timeout=320)
        if wait_devices:
            wait_until(lambda: allocatable() == DEVICES, 120, "the node to advertise %d devices" % DEVICES)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    lock = open("/run/iommufd-cluster.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    run(os.path.join(HERE, "build.sh"), timeout=3600)
    run("make", "-C", ROOT, "image", timeout=1800)
    consumer_tar = str(tmp_path_factory.mktemp("consumer") / "consumer.tar")
    run(os.path.join(HERE, "consumer", "build-image.sh"), consumer_tar, timeout=1800)
    try:
        # A session that was killed may have left its cluster up: we hold the lock.
        run(CLUSTER, "down", check=False, timeout=300)
        run(CLUSTER, "up", timeout=600)
        for line in run(CLUSTER, "env").stdout.splitlines():
            k, v = line.replace("export ", "", 1).split("=", 1)
            os.environ[k] = v.replace("$PATH", os.environ["PATH"])
        arch = run("dpkg", "--print-architecture").stdout.strip()
        image = plugin_image()
        archive = os.path.join(ROOT, "build-image", "iommufd-device-plugin-%s.tar" % arch)
        run(CLUSTER, "import-image", archive, image)
        # The DRA driver's image of its own (tests/cluster/test_dra.py deploys it).
        run(CLUSTER, "import-image", os.path.join(ROOT, "build-image", "iommufd-dra-driver-%s.tar" % arch),
            plugin_image("iommufd-dra-driver"))
        run(CLUSTER, "import-image", consumer_tar, CONSUMER_IMAGE)
        c = Cluster(tmp_path_factory, image, archive)
        c.deploy()
        yield c
    finally:
        run(CLUSTER, "down", check=False, timeout=300)
        lock.close()


@pytest.fixture
def plugin(cluster):
    """The default DaemonSet, put back after the test whatever the test changed."""
    yield cluster
    cluster.deploy()
