"""Issue 7: `make release` (scripts/release.sh). --verify builds the release twice from
scratch, the second time from a copy of the tree elsewhere, and compares SHA256SUMS;
then the artifacts are checked as a user would receive them: the tarball and the two
images (iommufd-device-plugin and iommufd-dra-driver), each per architecture and
multi-arch, each with its SBOMs."""

import gzip
import hashlib
import json
import os
import subprocess
import tarfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(REPO, "build-release")
PROGRAMS = ("iommufd-device-plugin", "iommufd-dra-driver")


def meson_version():
    with open(os.path.join(REPO, "meson.build")) as f:
        for line in f:
            if line.strip().startswith("version"):
                return line.split("'")[1]
    raise AssertionError("no version in meson.build")


@pytest.fixture(scope="module")
def release():
    result = subprocess.run([os.path.join(REPO, "scripts", "release.sh"), "--verify"],
                            capture_output=True, text=True, timeout=3600)
    assert result.returncode == 0, "release.sh --verify failed:\n%s%s" % (result.stdout[-4000:], result.stderr[-4000:])
    assert "reproducible: a second build" in result.stdout
    return meson_version()


def test_release_is_reproducible_and_sums_match(release):
    with open(os.path.join(OUT, "SHA256SUMS")) as f:
        sums = dict(reversed(line.split()) for line in f)
    name = "iommufd-device-plugin-" + release
    images = {"%s-%s-image%s" % (program, release, suffix) for program in PROGRAMS
              for suffix in (".oci.tar", "-amd64.oci.tar", "-arm64.oci.tar", "-amd64.spdx.json", "-arm64.spdx.json")}
    assert set(sums) == {name + ".tar.gz", name + "-linux-amd64.spdx.json", name + "-linux-arm64.spdx.json"} | images
    for file, digest in sums.items():
        with open(os.path.join(OUT, file), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == digest, file


def test_tarball_holds_both_architectures_manifests_and_docs(release):
    name = "iommufd-device-plugin-" + release
    path = os.path.join(OUT, name + ".tar.gz")
    with open(path, "rb") as f:
        header = f.read(10)
    # gzip -n: no file name (FLG.FNAME, RFC 1952) and no time stamp (MTIME 0).
    assert header[3] & 0x08 == 0 and header[4:8] == b"\0\0\0\0"
    with tarfile.open(path) as t:
        members = {m.name: m for m in t.getmembers()}
        mtimes = {m.mtime for m in members.values()}
        assert all(m.uid == 0 and m.gid == 0 and m.uname in ("", "root") for m in members.values())
        install = t.extractfile(members[name + "/install.yaml"]).read().decode()
    assert len(mtimes) == 1, "every entry carries SOURCE_DATE_EPOCH"
    for arch in ("amd64", "arm64"):
        for binary in ("iommufd-device-plugin", "iommufd-receive", "iommufd-dra-driver"):
            assert members["%s/bin/linux-%s/%s" % (name, arch, binary)].mode == 0o755
    for arch in ("amd64", "arm64"):
        assert "%s/bin/linux-%s/sbom.spdx.json" % (name, arch) in members
    for f in ("LICENSE", "README.md", "deploy/kustomization.yaml", "deploy/base/daemonset.yaml",
              "licenses/musl.copyright", "licenses/nghttp2.copyright", "licenses/protobuf-c.copyright",
              "docs/install.md", "docs/operations.md", "docs/architecture.md"):
        assert name + "/" + f in members, f
    assert "kind: DaemonSet" in install and "image: set-your-registry.invalid/iommufd-device-plugin:" + release in install


@pytest.mark.parametrize("program", PROGRAMS)
def test_multiarch_archive_indexes_both_images(release, program):
    path = os.path.join(OUT, "%s-%s-image.oci.tar" % (program, release))
    with tarfile.open(path) as t:
        blobs = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    top = json.loads(blobs["index.json"])["manifests"][0]
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert top["annotations"]["org.opencontainers.image.ref.name"] == release
    index = json.loads(blobs["blobs/sha256/" + top["digest"].split(":")[1]])
    platforms = {m["platform"]["architecture"] for m in index["manifests"]}
    assert platforms == {"amd64", "arm64"}
    for m in index["manifests"]:
        manifest = json.loads(blobs["blobs/sha256/" + m["digest"].split(":")[1]])
        config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
        assert config["architecture"] == m["platform"]["architecture"]
        assert config["config"]["Entrypoint"] == ["/usr/bin/" + program]
        for layer in manifest["layers"]:
            data = blobs["blobs/sha256/" + layer["digest"].split(":")[1]]
            assert hashlib.sha256(data).hexdigest() == layer["digest"].split(":")[1]
            gzip.decompress(data)


@pytest.mark.parametrize("program", PROGRAMS)
def test_each_image_sbom_names_its_own_binaries(release, program):
    for arch in ("amd64", "arm64"):
        with open(os.path.join(OUT, "%s-%s-image-%s.spdx.json" % (program, release, arch))) as f:
            sbom = json.load(f)
        binaries = {p["name"] for p in sbom["packages"] if p["primaryPackagePurpose"] == "APPLICATION"}
        assert binaries == {program, "iommufd-receive"}, (arch, binaries)
