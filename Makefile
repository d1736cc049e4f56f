# The README's commands. Meson + ninja do the real build; this file only names the
# things a newcomer runs.
.PHONY: all demo test test-fast static clean

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

# Everything but the real-kernel (qemu) test.
test-fast:
	scripts/test.sh --no-vm

# The release artifact: fully static binaries in build-static/.
static:
	scripts/deps.sh
	[ -f build-static/build.ninja ] || meson setup build-static -Dstatic_binary=true -Dbuildtype=release -Dstrip=true
	ninja -C build-static

clean:
	rm -rf build build-asan build-static build-logs
