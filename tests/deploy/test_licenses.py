"""Issue 21: the notices and the SBOM of what is linked into the binaries
(scripts/licenses.sh, which image.sh and release.sh call): the copyright files are the
Debian source packages' the musl build used, the SPDX document names each component
with that package's version, and the same inputs give the same bytes."""

import hashlib
import json
import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "scripts", "licenses.sh")


@pytest.fixture(scope="module")
def musl_prefix():
    """musl.sh's prefix for amd64: its key.txt (the versions) and the sources beside it."""
    result = subprocess.run([os.path.join(REPO, "scripts", "musl.sh"), "--arch", "amd64"],
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr
    prefix = os.path.dirname(result.stdout.strip())
    with open(os.path.join(prefix, "key.txt")) as f:
        versions = dict(line.rstrip("\n").split(" ", 1) for line in f)
    return prefix, versions


def run(tmp_path, out, epoch="1700000000", binaries=("iommufd-device-plugin", "iommufd-receive")):
    bindir = tmp_path / ("bin-" + out)
    bindir.mkdir(exist_ok=True)
    for name in binaries:
        (bindir / name).write_bytes(name.encode())
    result = subprocess.run([SCRIPT, "--arch", "amd64", str(bindir), str(tmp_path / out)],
                            env=dict(os.environ, SOURCE_DATE_EPOCH=epoch), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return tmp_path / out


def test_notices_are_the_debian_source_packages_copyright_files(tmp_path, musl_prefix):
    prefix, versions = musl_prefix
    src = os.path.join(os.path.dirname(prefix), "src")
    out = run(tmp_path, "a")
    assert sorted(os.listdir(out / "licenses")) == ["LICENSE", "musl.copyright", "nghttp2.copyright",
                                                    "protobuf-c.copyright"]
    for name, package in (("nghttp2", "nghttp2"), ("protobuf-c", "protobuf-c")):
        with open(os.path.join(src, "%s_%s" % (package, versions[name]), "debian", "copyright"), "rb") as f:
            assert (out / "licenses" / (name + ".copyright")).read_bytes() == f.read(), name
    with open("/usr/share/doc/musl-dev/copyright", "rb") as f:
        assert (out / "licenses" / "musl.copyright").read_bytes() == f.read()
    with open(os.path.join(REPO, "LICENSE"), "rb") as f:
        assert (out / "licenses" / "LICENSE").read_bytes() == f.read()


def test_the_sbom_names_each_component_with_its_debian_version(tmp_path, musl_prefix):
    _, versions = musl_prefix
    doc = json.loads((run(tmp_path, "a") / "sbom.spdx.json").read_text())
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["creationInfo"]["created"] == "2023-11-14T22:13:20Z", "the time is SOURCE_DATE_EPOCH's"
    packages = {p["name"]: p for p in doc["packages"]}
    assert packages["musl"]["versionInfo"] == versions["musl-dev"]
    assert packages["nghttp2"]["versionInfo"] == versions["nghttp2"]
    assert packages["protobuf-c"]["versionInfo"] == versions["protobuf-c"]
    assert packages["iommufd-device-plugin"]["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": hashlib.sha256(b"iommufd-device-plugin").hexdigest()}]
    links = {(r["spdxElementId"], r["relatedSpdxElement"]) for r in doc["relationships"]
             if r["relationshipType"] == "STATIC_LINK"}
    plugin = "SPDXRef-Package-iommufd-device-plugin"
    assert {(plugin, "SPDXRef-Package-" + n) for n in ("musl", "nghttp2", "protobuf-c")} <= links
    ids = {p["SPDXID"] for p in doc["packages"]} | {"SPDXRef-DOCUMENT"}
    assert all(r["spdxElementId"] in ids and r["relatedSpdxElement"] in ids for r in doc["relationships"])


def test_the_same_inputs_give_the_same_bytes(tmp_path, musl_prefix):
    a, b = run(tmp_path, "a"), run(tmp_path, "b")
    for rel in ("sbom.spdx.json", "licenses/musl.copyright", "licenses/nghttp2.copyright"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    c = run(tmp_path, "c", epoch="1700000001")
    assert (a / "sbom.spdx.json").read_bytes() != (c / "sbom.spdx.json").read_bytes(), \
        "SOURCE_DATE_EPOCH must be the document's time, or the check above proves nothing"


def test_the_dra_driver_brings_mbedtls_notice_and_its_links(tmp_path, musl_prefix):
    """Issue 23: mbedTLS is linked into iommufd-dra-driver alone; its notice ships, and
    the SBOM says which binary links it, only when that binary is there."""
    prefix, versions = musl_prefix
    src = os.path.join(os.path.dirname(prefix), "src")
    out = run(tmp_path, "d", binaries=("iommufd-device-plugin", "iommufd-receive", "iommufd-dra-driver"))
    with open(os.path.join(src, "mbedtls_%s" % versions["mbedtls"], "debian", "copyright"), "rb") as f:
        assert (out / "licenses" / "mbedtls.copyright").read_bytes() == f.read()
    doc = json.loads((out / "sbom.spdx.json").read_text())
    packages = {p["name"]: p for p in doc["packages"]}
    assert packages["mbedtls"]["versionInfo"] == versions["mbedtls"]
    assert packages["mbedtls"]["licenseConcluded"] == "Apache-2.0"
    links = {(r["spdxElementId"], r["relatedSpdxElement"]) for r in doc["relationships"]
             if r["relationshipType"] == "STATIC_LINK"}
    assert ("SPDXRef-Package-iommufd-dra-driver", "SPDXRef-Package-mbedtls") in links
    assert ("SPDXRef-Package-iommufd-device-plugin", "SPDXRef-Package-mbedtls") not in links

