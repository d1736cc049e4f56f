#!/usr/bin/env bash
# The release, in one command: static musl binaries for amd64 and arm64, their two images
# (iommufd-device-plugin and iommufd-dra-driver: each one OCI archive per architecture,
# one multi-arch archive, an SPDX SBOM per architecture), the rendered manifests, a
# tarball (with licenses/: ours and the notices of musl, nghttp2, protobuf-c and mbedTLS,
# which are linked in), an SPDX SBOM of its binaries per architecture, and SHA256SUMS
# over all of it, in build-release/.
# Reproducible: every time comes from SOURCE_DATE_EPOCH (default: the last commit's),
# archives are written with sorted names, owner 0:0 and gzip -n, so the same sources
# give the same bytes. --verify proves it: builds a second time from a copy of the
# tree in another directory, from scratch, and compares every hash.
# Usage: scripts/release.sh [--verify]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

verify=0
case "${1:-}" in
"") ;;
--verify) verify=1 ;;
*) echo "usage: scripts/release.sh [--verify]" >&2; exit 2 ;;
esac

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH
REVISION=${REVISION:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
export REVISION
version=$(sed -n "s/^ *version *: *'\([^']*\)'.*/\1/p" meson.build | head -1)
name=iommufd-device-plugin-$version
out=$root/build-release
arches=(amd64 arm64)
# The images scripts/image.sh builds, one per program.
programs=(iommufd-device-plugin iommufd-dra-driver)

# tar_gz DIR NAME FILE: FILE is DIR packed as NAME/..., the same bytes every time.
tar_gz() {
	find "$1" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		--transform="s,^\.,$2," -C "$1" -cf - . | gzip -n -9 >"$3"
}

# multiarch_archive PROGRAM: one OCI archive holding PROGRAM's image for both
# architectures: an image index over the two manifests (OCI image-spec image-layout.md
# and image-index.md), for skopeo copy --all.
multiarch_archive() {
	local program=$1 layout=$out/multiarch
	rm -rf "$layout"
	mkdir -p "$layout/blobs/sha256"
	for arch in "${arches[@]}"; do
		cp -p "$root/build-image/$arch/$program/oci/blobs/sha256/"* "$layout/blobs/sha256/"
	done
	/usr/bin/python3 - "$layout" "$version" "$root/build-image" "$program" "${arches[@]}" <<'EOF'
import hashlib, json, os, sys

layout, version, images, program, arches = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]

def dump(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()

manifests = []
for arch in arches:
    with open(os.path.join(images, arch, program, "oci", "index.json")) as f:
        m = json.load(f)["manifests"][0]
    manifests.append({"mediaType": m["mediaType"], "digest": m["digest"], "size": m["size"],
                      "platform": {"architecture": arch, "os": "linux"}})
index = dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
              "manifests": manifests})
digest = hashlib.sha256(index).hexdigest()
with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
    f.write(index)
with open(os.path.join(layout, "index.json"), "wb") as f:
    f.write(dump({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + digest,
        "size": len(index), "annotations": {"org.opencontainers.image.ref.name": version}}]}))
with open(os.path.join(layout, "oci-layout"), "wb") as f:
    f.write(dump({"imageLayoutVersion": "1.0.0"}))
EOF
	find "$layout" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
	tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
		--format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$layout" -cf "$out/$program-$version-image.oci.tar" blobs index.json oci-layout
	rm -rf "$layout"
}

build() {
	rm -rf "$out"
	mkdir -p "$out"
	for arch in "${arches[@]}"; do
		scripts/image.sh --arch "$arch"
		for program in "${programs[@]}"; do
			cp "build-image/$program-$arch.tar" "$out/$program-$version-image-$arch.oci.tar"
			# The SPDX SBOM of the image's binaries (image.sh made it with scripts/licenses.sh).
			cp "build-image/$arch/$program/sbom.spdx.json" "$out/$program-$version-image-$arch.spdx.json"
		done
		# The SPDX SBOM of all the binaries, those of the tarball.
		cp "build-image/$arch/sbom.spdx.json" "$out/$name-linux-$arch.spdx.json"
	done
	for program in "${programs[@]}"; do
		multiarch_archive "$program"
	done

	# The tarball: binaries per architecture, the kustomizations and their default
	# rendering (kubectl apply -f install.yaml), the docs.
	local stage=$out/stage
	mkdir -p "$stage"
	for arch in "${arches[@]}"; do
		mkdir -p "$stage/bin/linux-$arch"
		cp -p "build-image/$arch/bin/"* "$stage/bin/linux-$arch/"
		cp -p "build-image/$arch/sbom.spdx.json" "$stage/bin/linux-$arch/sbom.spdx.json"
	done
	# The notices of what the binaries link in are the same for both architectures
	# (one Debian source version each; licenses.sh checks the versions per architecture).
	cmp -s build-image/amd64/licenses/musl.copyright build-image/arm64/licenses/musl.copyright ||
		{ echo "release.sh: the two architectures' musl notices differ" >&2; exit 1; }
	cp -rp build-image/amd64/licenses "$stage/licenses"
	cp -r deploy "$stage/deploy"
	local kustomize
	kustomize=$(command -v kustomize || tests/deploy/debian-tool.sh kustomize trixie kustomize)
	"$kustomize" build deploy >"$stage/install.yaml"
	mkdir -p "$stage/docs"
	cp LICENSE README.md "$stage/"
	cp docs/*.md "$stage/docs/" 2>/dev/null || true
	chmod -R u=rwX,go=rX "$stage"
	tar_gz "$stage" "$name" "$out/$name.tar.gz"
	rm -rf "$stage"

	(cd "$out" && sha256sum -- *.tar *.tar.gz *.spdx.json | LC_ALL=C sort -k2 >SHA256SUMS)
	echo "release.sh: $out"
	(cd "$out" && ls -l -- * | awk '{print "  " $5 "\t" $9}')
}

if [ "$verify" -eq 0 ]; then
	build
	exit 0
fi

# --verify: this tree from scratch, then a copy elsewhere from scratch; same hashes?
rm -rf build-ship-amd64 build-ship-arm64 build-image
build
copy=$(mktemp -d /tmp/release-verify.XXXXXX)
trap 'rm -rf "$copy"' EXIT
# The working tree as it is (tracked and untracked files, not ignored ones).
git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
	cpio -0 -pdm --quiet "$copy"
cp -r build-tools "$copy/" 2>/dev/null || true
(cd "$copy" && scripts/release.sh >/dev/null)
if diff -u "$out/SHA256SUMS" "$copy/build-release/SHA256SUMS"; then
	echo "release.sh: reproducible: a second build in $copy gave the same bytes"
else
	echo "release.sh: NOT reproducible: the hashes above differ" >&2
	exit 1
fi
