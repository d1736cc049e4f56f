# The README's commands. Meson + ninja do the real build; this file only names the
# things a newcomer runs.
.PHONY: all demo test test-fast test-cluster static image release clean

all:
	scripts/deps.sh
	[ -f build/build.ninja ] || meson setup build
	ninja -C build

# The plugin's job end to end: kubelet simulator -> Register -> ListAndWatch ->
# Allocate -> a consumer receives the iommufd over SCM_RIGHTS.
demo:
	scripts/demo.sh

# Every test; ends with 'N passed, N failed'.
test:
	scripts/test.sh

# Everything but the real-kernel (qemu) test and the real-cluster suite.
test-fast:
	scripts/test.sh --no-vm --no-cluster

# The real-cluster suite alone (tests/cluster; docs/cluster.md).
test-cluster:
	tests/cluster/run.sh

# The release artifact: fully static musl binaries in build-static/ (scripts/musl.sh
# gives the toolchain and the libraries). make static LIBC=glibc: static glibc
# instead, in build-static-glibc/. build-static/ is set up again when it was made with
# another machine file (a glibc build from before, older musl libraries).
static:
	scripts/deps.sh
ifeq ($(LIBC),glibc)
	[ -f build-static-glibc/build.ninja ] || meson setup build-static-glibc -Dstatic_binary=true -Dbuildtype=release -Dstrip=true
	ninja -C build-static-glibc
else
	musl_file=$$(scripts/musl.sh) && { grep -qsF "$$musl_file" build-static/meson-private/cmd_line.txt || { rm -rf build-static && meson setup build-static --native-file "$$musl_file" -Dstatic_binary=true -Dbuildtype=release -Doptimization=2 -Dstrip=true; }; }
	ninja -C build-static
endif

# The container images as OCI archives, build-image/iommufd-device-plugin-<arch>.tar and
# build-image/iommufd-dra-driver-<arch>.tar (buildah, no Docker engine): make image [ARCH=arm64]
image:
	scripts/image.sh --arch $(or $(ARCH),$(shell dpkg --print-architecture))

# The reproducible release in build-release/: amd64 and arm64 binaries and both images, a
# tarball, SHA256SUMS. scripts/release.sh --verify builds twice and compares.
release:
	scripts/release.sh

clean:
	rm -rf build build-asan build-musl build-static build-static-glibc build-ship-* build-logs build-image build-release
