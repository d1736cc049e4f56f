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
# Two images from one build (issue 23 Must 1: nodes that never run DRA pull neither
# mbedTLS nor the API client): each holds its program (the entrypoint) and
# iommufd-receive, the notices of what those link in (scripts/licenses.sh) and the SBOM.
COMMON_FILES = {"licenses/LICENSE", "licenses/musl.copyright", "licenses/nghttp2.copyright",
                "licenses/protobuf-c.copyright", "licenses/sbom.spdx.json", "usr/bin/iommufd-receive"}
IMAGES = {
    "iommufd-device-plugin": COMMON_FILES | {"usr/bin/iommufd-device-plugin"},
    "iommufd-dra-driver": COMMON_FILES | {"usr/bin/iommufd-dra-driver", "licenses/mbedtls.copyright"},
}
# What a node pulls per architecture (the config and the compressed layer, as a
# registry serves their blobs). The device plugin's: issue 13's 300 KiB (measured
# 193,489 B on amd64 and 206,155 B on arm64 on 2026-12-07). The DRA driver's: measured 282,405 B (amd64) and
# 293,898 B (arm64) on 2026-12-07 (287.0 KiB); 295 KiB: that with a few KiB of
# room, no more.
MAX_PULLED_BYTES = {"iommufd-device-plugin": 300 * 1024, "iommufd-dra-driver": 295 * 1024}
# Issue 7's budget, kept for the files the layer unpacks to.
MAX_UNPACKED_BYTES = 2 * 1024 * 1024
ELF_MACHINE = {"amd64": "x86-64", "arm64": "ARM aarch64"}


def meson_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        for line in f:
            if line.strip().startswith("version"):
                return line.split("'")[1]
    raise AssertionError("no version in meson.build")


def archive_path(program, arch):
    return os.path.join(REPO, "build-image", "%s-%s.tar" % (program, arch))


@pytest.fixture(scope="module", params=ARCHES)
def built(request):
    """Builds both images for one architecture (one image.sh run); returns the arch."""
    arch = request.param
    result = subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "--arch", arch],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, "image.sh --arch %s failed:\n%s%s" % (arch, result.stdout, result.stderr)
    return arch


@pytest.fixture(scope="module", params=sorted(IMAGES))
def image(request, built):
    """One image of one architecture: (program, arch, {name: bytes} of its archive)."""
    program = request.param
    with tarfile.open(archive_path(program, built)) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    return program, built, blobs


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


def test_image_is_scratch_plus_its_program_and_receive(image):
    program, arch, blobs = image
    index, manifest, config = manifest_and_config(blobs)
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == meson_version()
    assert config["os"] == "linux" and config["architecture"] == arch
    assert config["config"]["Entrypoint"] == ["/usr/bin/" + program]
    assert config["config"]["User"] == "0:0"
    labels = config["config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == meson_version()
    assert labels["org.opencontainers.image.title"] == program
    assert labels["org.opencontainers.image.description"].startswith(
        {"iommufd-device-plugin": "Kubernetes device plugin ", "iommufd-dra-driver": "Kubernetes DRA driver "}[program])
    for key in ("title", "description", "licenses", "revision", "source", "url", "vendor"):
        assert labels.get("org.opencontainers.image." + key), "no OCI label %s" % key
    files = layer_files(blobs, manifest)
    assert set(files) == IMAGES[program]
    # The SBOM names exactly the binaries in this layer, by checksum.
    sbom = json.loads(files["licenses/sbom.spdx.json"][1])
    sums = {p["name"]: p["checksums"][0]["checksumValue"] for p in sbom["packages"] if p.get("checksums")}
    binaries = sorted(name for name in files if name.startswith("usr/bin/"))
    assert sorted("usr/bin/" + name for name in sums) == binaries
    for name in binaries:
        assert sums[name[len("usr/bin/"):]] == hashlib.sha256(files[name][1]).hexdigest(), name
        assert files[name][0] == 0o755
    # mbedTLS is named only where it is linked in.
    libraries = {p["name"] for p in sbom["packages"] if p["primaryPackagePurpose"] == "LIBRARY"}
    assert ("mbedtls" in libraries) == (program == "iommufd-dra-driver"), libraries


def test_image_pulls_at_most_its_budget(image):
    program, arch, blobs = image
    _, manifest, _ = manifest_and_config(blobs)
    pulled = 0
    for descriptor in [manifest["config"]] + manifest["layers"]:
        data = blob(blobs, descriptor["digest"])  # the bytes a registry serves for it
        assert len(data) == descriptor["size"], "%s: manifest says %d bytes, blob has %d" % (
            descriptor["digest"], descriptor["size"], len(data))
        pulled += len(data)
    unpacked = sum(len(data) for _, data in layer_files(blobs, manifest).values())
    print("%s %s image: %d bytes to pull (%.1f KiB), %d bytes unpacked" % (
        arch, program, pulled, pulled / 1024, unpacked))
    assert pulled <= MAX_PULLED_BYTES[program], "%s %s: %d bytes to pull, over %d KiB" % (
        arch, program, pulled, MAX_PULLED_BYTES[program] // 1024)
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
    _, arch, blobs = image
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


def test_device_plugin_binary_keeps_its_budget_and_carries_no_dra_code(built, tmp_path):
    arch = built
    with tarfile.open(archive_path("iommufd-device-plugin", arch)) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
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


def test_image_build_is_reproducible(built):
    arch = built

    def digests():
        result = {}
        for program in IMAGES:
            with open(archive_path(program, arch), "rb") as f:
                result[program] = hashlib.sha256(f.read()).hexdigest()
        return result

    first = digests()
    time.sleep(1.1)  # a clock leaking into the bytes would now show
    subprocess.run([os.path.join(REPO, "scripts", "image.sh"), "--arch", arch],
                   check=True, capture_output=True, timeout=1800)
    assert digests() == first
