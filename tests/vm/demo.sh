#!/bin/bash
# The README's demo on a machine without /dev/iommu: boots the VM test's kernel (tests/vm) and shows
# the real plugin, kubelet-sim and an unprivileged iommufd-receive getting an fd whose
# IOMMU_OPTION_RLIMIT_MODE reads 1. First run builds the kernel (about 6 minutes).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/run.sh" --demo "$@"
