#!/usr/bin/env bash
# The third-party notices and the SPDX SBOM of the shipped binaries, from the Debian
# source packages scripts/musl.sh builds them with: the copyright files of nghttp2,
# protobuf-c and mbedTLS (debian/copyright of the unpacked source packages) and of musl (musl-dev's
# /usr/share/doc/musl-dev/copyright), and an SPDX 2.3 JSON document naming each with
# its Debian source version. Same inputs, same bytes (the only time: SOURCE_DATE_EPOCH).
#   scripts/licenses.sh --arch amd64|arm64 BIN_DIR OUT_DIR
# writes OUT_DIR/licenses/{LICENSE,musl,nghttp2,protobuf-c,mbedtls}.copyright (mbedTLS:
# only when BIN_DIR holds iommufd-dra-driver, the one binary that links it)
# and OUT_DIR/sbom.spdx.json (BIN_DIR: the stripped binaries, for their checksums).
set -euo pipefail
cd "$(dirname "$0")/.."

arch=$(dpkg --print-architecture)
if [ "${1:-}" = --arch ]; then
	arch=${2:?--arch wants amd64 or arm64}
	shift 2
fi
[ $# -eq 2 ] || { echo "usage: scripts/licenses.sh [--arch amd64|arm64] BIN_DIR OUT_DIR" >&2; exit 2; }
bin=$1 out=$2
fail() { echo "licenses.sh: $*" >&2; exit 1; }

# The versions the binaries were linked with: musl.sh's key.txt beside its machine file.
machine_file=$(scripts/musl.sh --arch "$arch") || fail "scripts/musl.sh --arch $arch failed"
key=$(dirname "$machine_file")/key.txt
src=$(dirname "$(dirname "$machine_file")")/src
version_of() { sed -n "s/^$1 //p" "$key"; }
nghttp2=$(version_of nghttp2)
protobufc=$(version_of protobuf-c)
musl=$(version_of musl-dev)
mbedtls=$(version_of mbedtls)
[ -n "$nghttp2" ] && [ -n "$protobufc" ] && [ -n "$musl" ] && [ -n "$mbedtls" ] || fail "no versions in $key"
[ "$(dpkg-query -W -f='${source:Package}' "musl-dev:$arch")" = musl ] || fail "musl-dev:$arch is not built from musl"

mkdir -p "$out/licenses"
install -m 0644 LICENSE "$out/licenses/LICENSE"
copy() { # copy FILE NAME: FILE must exist; never a stale or empty notice
	[ -s "$1" ] || fail "no copyright file $1"
	install -m 0644 "$1" "$out/licenses/$2.copyright"
}
copy "$src/nghttp2_$nghttp2/debian/copyright" nghttp2
copy "$src/protobuf-c_$protobufc/debian/copyright" protobuf-c
copy "$(dpkg -L "musl-dev:$arch" | grep -m1 '/usr/share/doc/.*/copyright$')" musl
libs=("musl=$musl" "nghttp2=$nghttp2" "protobuf-c=$protobufc")
if [ -e "$bin/iommufd-dra-driver" ]; then
	copy "$src/mbedtls_$mbedtls/debian/copyright" mbedtls
	libs+=("mbedtls=$mbedtls")
fi

version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
/usr/bin/python3 - "$out/sbom.spdx.json" "$bin" "$arch" "$version" "${SOURCE_DATE_EPOCH:-0}" \
	"${libs[@]}" <<'PY'
import hashlib, json, os, sys, time

path, bindir, arch, version, epoch = sys.argv[1:6]
versions = dict(a.split("=", 1) for a in sys.argv[6:])
# The license of each component's library code (Files: * of its debian/copyright).
licenses = {"musl": "MIT", "nghttp2": "MIT", "protobuf-c": "BSD-2-Clause", "mbedtls": "Apache-2.0"}
# What each binary links statically (meson.build).
links = {"iommufd-device-plugin": ["musl", "nghttp2", "protobuf-c"], "iommufd-receive": ["musl"],
         "iommufd-dra-driver": ["musl", "nghttp2", "protobuf-c", "mbedtls"]}
links = {name: deps for name, deps in links.items() if os.path.exists(os.path.join(bindir, name))}

def sha256(name):
    with open(os.path.join(bindir, name), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()

def ref(name):
    return "SPDXRef-Package-" + name

packages, relationships = [], []
for name, deps in links.items():
    digest = sha256(name)
    packages.append({
        "SPDXID": ref(name), "name": name, "versionInfo": version, "primaryPackagePurpose": "APPLICATION",
        "packageFileName": "usr/bin/" + name, "checksums": [{"algorithm": "SHA256", "checksumValue": digest}],
        "supplier": "NOASSERTION", "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "licenseConcluded": "Apache-2.0", "licenseDeclared": "Apache-2.0", "copyrightText": "NOASSERTION"})
    relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": ref(name)})
    for dep in deps:
        relationships.append({"spdxElementId": ref(name), "relationshipType": "STATIC_LINK", "relatedSpdxElement": ref(dep)})
for name in sorted(versions):
    v = versions[name]
    packages.append({
        "SPDXID": ref(name), "name": name, "versionInfo": v, "primaryPackagePurpose": "LIBRARY",
        "supplier": "Organization: Debian", "downloadLocation": "https://deb.debian.org/debian/pool/main/",
        "filesAnalyzed": False, "licenseConcluded": licenses[name], "licenseDeclared": licenses[name],
        "copyrightText": "see licenses/%s.copyright" % name,
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": "pkg:deb/debian/%s@%s?arch=source&distro=debian-12" % (name, v)}]})
bins = "".join(sha256(n) for n in sorted(links))
doc = {
    "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
    "name": "iommufd-device-plugin-%s-linux-%s" % (version, arch),
    # Unique per content, the same for the same bytes (no random UUID).
    "documentNamespace": "https://spdx.invalid/iommufd-device-plugin/%s/%s/%s" % (
        version, arch, hashlib.sha256(bins.encode()).hexdigest()),
    "creationInfo": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch))),
                     "creators": ["Tool: iommufd-device-plugin scripts/licenses.sh"]},
    "packages": packages, "relationships": relationships,
}
with open(path, "w") as f:
    json.dump(doc, f, indent=1, sort_keys=True)
    f.write("\n")
PY
chmod 0644 "$out/sbom.spdx.json"
