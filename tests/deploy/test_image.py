"""Issue 7: the container image. scripts/image.sh builds it for amd64 and arm64 (buildah,
FROM scratch, the static binaries); these tests open the OCI archive as a registry or
runtime would (index.json -> manifest -> config and layer), and run what is inside:
natively for amd64, under qemu-user for arm64."""

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
ARCHES = ["amd64", "arm64"]
# What a node pulls per architecture (the config and the compressed layer, as a
# registry serves their blobs). Issue 13's goal was 300 KiB for an image of one
# program; since issue 23 the image carries the DRA driver too (one image, the chart
# picks the program per node), measured 443,160 B (amd64) and 460,578 B (arm64) on
# 2026-12-07. 460 KiB: that, with a few KiB of room, no more. The device plugin's own
# binary keeps its budget (the test below); a DRA image of its own would bring the
# device plugin's back under 300 KiB (issue 23's note).
MAX_PULLED_BYTES = 460 * 1024
# Issue 7's budget, kept for the files the layer unpacks to.
MAX_UNPACKED_BYTES = 2 * 1024 * 1024
# Ours, the notices of the libraries linked in (scripts/licenses.sh), the SBOM.
EXPECTED_FILES = {"licenses/LICENSE", "licenses/musl.copyright", "licenses/nghttp2.copyright",
                  "licenses/protobuf-c.copyright", "licenses/mbedtls.copyright", "licenses/sbom.spdx.json",
                  "usr/bin/iommufd-device-plugin", "usr/bin/iommufd-receive", "usr/bin/iommufd-dra-driver"}
ELF_MACHINE = {"amd64": "x86-64", "arm64": "ARM aarch64"}


def meson_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        for line in f:
            if line.strip().startswith("version"):
                return line.split("'")[1]
    raise AssertionError("no version in meson.build")


def archive_path(arch):
    return os.path.join(REPO, "build-image", "iommufd-device-plugin-%s.tar" % arch)


@pytest.fixture(scope="module", params=ARCHES)
def image(request):
    """Builds the image for one architecture; returns (arch, {name: bytes} of the archive)."""
    arch = request.param
    result = subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "--arch", arch],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, "image.sh --arch %s failed:\n%s%s" % (arch, result.stdout, result.stderr)
    with tarfile.open(archive_path(arch)) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    return arch, blobs


def blob(blobs, digest):
    data = blobs["blobs/sha256/" + digest.split(":", 1)[1]]
    assert hashlib.sha256(data).hexdigest() == digest.split(":", 1)[1], "blob digest mismatch"
    return data


def manifest_and_config(blobs):
    index = json.loads(blobs["index.json"])
    assert json.loads(blobs["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    assert len(index["manifests"]) == 1
    manifest = json.loads(blob(blobs, index["manifests"][0]["digest"]))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = json.loads(blob(blobs, manifest["config"]["digest"]))
    return index, manifest, config


def layer_files(blobs, manifest):
    """{path: (mode, bytes)} of the image's one layer."""
    assert len(manifest["layers"]) == 1, "want one layer, got %d" % len(manifest["layers"])
    layer = manifest["layers"][0]
    assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    files = {}
    with tarfile.open(fileobj=io.BytesIO(blob(blobs, layer["digest"])), mode="r:gz") as t:
        for m in t.getmembers():
            assert m.uid == 0 and m.gid == 0, "%s is not owned by root" % m.name
            if m.isfile():
                files[m.name.lstrip("./")] = (m.mode, t.extractfile(m).read())
            else:
                assert m.isdir(), "unexpected %s in the layer" % m.name
    return files


def test_image_is_scratch_plus_the_static_binaries(image):
    arch, blobs = image
    index, manifest, config = manifest_and_config(blobs)
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == meson_version()
    assert config["os"] == "linux" and config["architecture"] == arch
    assert config["config"]["Entrypoint"] == ["/usr/bin/iommufd-device-plugin"]
    assert config["config"]["User"] == "0:0"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == meson_version()
    for key in ("title", "description", "licenses", "revision", "source", "url", "vendor"):
        assert labels.get("org.opencontainers.image." + key), "no OCI label %s" % key
    files = layer_files(blobs, manifest)
    assert set(files) == EXPECTED_FILES
    # The SBOM names the binaries in this layer, by checksum.
    sbom = json.loads(files["licenses/sbom.spdx.json"][1])
    sums = {p["name"]: p["checksums"][0]["checksumValue"] for p in sbom["packages"] if p.get("checksums")}
    for name in ("iommufd-device-plugin", "iommufd-receive", "iommufd-dra-driver"):
        assert sums[name] == hashlib.sha256(files["usr/bin/" + name][1]).hexdigest(), name
    for name in ("usr/bin/iommufd-device-plugin", "usr/bin/iommufd-receive", "usr/bin/iommufd-dra-driver"):
        assert files[name][0] == 0o755


def test_image_pulls_at_most_460_kib(image):
    arch, blobs = image
    _, manifest, _ = manifest_and_config(blobs)
    pulled = 0
    for descriptor in [manifest["config"]] + manifest["layers"]:
        data = blob(blobs, descriptor["digest"])  # the bytes a registry serves for it
        assert len(data) == descriptor["size"], "%s: manifest says %d bytes, blob has %d" % (
            descriptor["digest"], descriptor["size"], len(data))
        pulled += len(data)
    unpacked = sum(len(data) for _, data in layer_files(blobs, manifest).values())
    print("%s image: %d bytes to pull (%.1f KiB), %d bytes unpacked" % (arch, pulled, pulled / 1024, unpacked))
    assert pulled <= MAX_PULLED_BYTES, "%s: %d bytes to pull, over %d KiB" % (arch, pulled, MAX_PULLED_BYTES // 1024)
    assert unpacked <= MAX_UNPACKED_BYTES


def run_binary(arch, path, *args):
    command = [path] + list(args)
    if arch != "amd64":
        qemu = shutil.which("qemu-aarch64-static")
        assert qemu, "qemu-user-static is needed to run the arm64 binary (image.sh installs it)"
        command = [qemu] + command
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def extract_binaries(arch, blobs, directory):
    _, manifest, _ = manifest_and_config(blobs)
    paths = {}
    for name, (mode, data) in layer_files(blobs, manifest).items():
        if name.startswith("usr/bin/"):
            path = os.path.join(directory, os.path.basename(name))
            with open(path, "wb") as f:
                f.write(data)
            os.chmod(path, mode)
            paths[os.path.basename(name)] = path
    return paths


def test_binaries_in_the_image_are_static_and_run(image, tmp_path):
    arch, blobs = image
    paths = extract_binaries(arch, blobs, str(tmp_path))
    for name, path in paths.items():
        kind = subprocess.run(["file", "-b", path], capture_output=True, text=True).stdout
        assert "statically linked" in kind and ELF_MACHINE[arch] in kind, kind
        result = run_binary(arch, path, "--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "%s %s" % (name, meson_version())


# Issue 23: what only the DRA driver needs (its flags, the API client, TLS) is linked
# into iommufd-dra-driver alone; the device plugin keeps its own budget: 300 KiB on
# amd64, the goal as docs/performance.md measures it. arm64's code is ~4% larger and
# was 316,728 B (309.3 KiB) before the DRA driver came: it may not grow past 310 KiB.
MAX_DEVICE_PLUGIN_BYTES = {"amd64": 300 * 1024, "arm64": 310 * 1024}
DRA_ONLY_MARKERS = (b"--kube-api", b"kube-api", b"NodePrepareResources", b"resourceslices", b"mbedtls",
                    b"iommufd-dra-driver")


def test_device_plugin_binary_keeps_its_budget_and_carries_no_dra_code(image, tmp_path):
    arch, blobs = image
    path = extract_binaries(arch, blobs, str(tmp_path))["iommufd-device-plugin"]
    size = os.path.getsize(path)
    print("%s iommufd-device-plugin: %d bytes stripped (%.1f KiB)" % (arch, size, size / 1024))
    assert size <= MAX_DEVICE_PLUGIN_BYTES[arch], "%s: the device plugin is %d bytes, over %d KiB" % (
        arch, size, MAX_DEVICE_PLUGIN_BYTES[arch] // 1024)
    with open(path, "rb") as f:
        data = f.read()
    found = [m.decode() for m in DRA_ONLY_MARKERS if m in data]
    assert not found, "%s: the device plugin carries the DRA driver's %s" % (arch, found)


def test_arm64_daemon_registers_and_serves_healthz_under_qemu(tmp_path):
    """The cross-built daemon does its job on arm64 (emulated): Register with a kubelet,
    ListAndWatch, /healthz 200. (Allocate is not tried: qemu-user answers the unknown
    IOMMU_OPTION ioctl with ENOSYS, which no kernel does.)"""
    binary = os.path.join(REPO, "build-image", "arm64", "bin", "iommufd-device-plugin")
    if not os.path.exists(binary):
        subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "--arch", "arm64", "--binaries-only"],
                       check=True, capture_output=True, timeout=1800)
    qemu = shutil.which("qemu-aarch64-static")
    assert qemu, "qemu-user-static is needed (image.sh installs it)"
    sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
    from harness import Env, Plugin, wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = Env()
    try:
        env.kubelet.start()
        plugin = Plugin([binary] + env.base_args() + ["--metrics-address", "127.0.0.1:%d" % port],
                        env.tmp, binary=qemu)
        env.plugins.append(plugin)
        env.kubelet.wait_register(timeout=30)
        stream = env.client().list_and_watch(timeout=30)
        devices = next(iter(stream)).devices
        assert len(devices) == 110 and devices[0].health == "Healthy"
        stream.cancel()

        def healthz():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                return c.recv(4096).split(b"\r\n", 1)[0]

        wait_until(lambda: healthz() == b"HTTP/1.1 200 OK", 10, what="/healthz 200 from the arm64 daemon")
    finally:
        problems = env.teardown()
    assert not problems, "\n".join(problems)


def test_image_build_is_reproducible(image):
    arch, _ = image
    with open(archive_path(arch), "rb") as f:
        first = hashlib.sha256(f.read()).hexdigest()
    time.sleep(1.1)  # a clock leaking into the bytes would now show
    subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "--arch", arch],
                   check=True, capture_output=True, timeout=1800)
    with open(archive_path(arch), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == first
