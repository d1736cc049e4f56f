#!/bin/bash
# The README's demo on a machine without /dev/iommu: boots the VM test's kernel (tests/vm) and shows
# the real plugin, kubelet-sim and an unprivileged iommufd-receive getting an fd whose
# IOMMU_OPTION_RLIMIT_MODE reads 1, then a nested QEMU VM (uid 107, vfio-pci passthrough) started
# with a second fd and its pinned memory. First run builds the kernel (about 6 minutes) and gets
# the guest's QEMU (20-30 s).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --demo "$@"
