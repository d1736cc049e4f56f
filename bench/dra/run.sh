#!/usr/bin/env bash
# Issue 23, Must 6: our DRA driver beside a Go DRA driver (build-peer.sh) on the real
# cluster, each alone on the node in turn, the same number of claims prepared and
# unprepared; prints RSS (VmRSS, VmHWM), threads and CPU per prepare. The cluster is
# used only through its pytest session (tests/cluster/conftest.py holds the machine's
# lock): this is tests/cluster/test_dra.py's test_dra_bench, which is skipped unless
# IOMMUFD_DRA_BENCH=1. Usage: bench/dra/run.sh [PREPARES] (default 40).
set -euo pipefail
cd "$(dirname "$0")/../.."
export IOMMUFD_DRA_BENCH=1 IOMMUFD_DRA_BENCH_PREPARES=${1:-40}
exec tests/cluster/run.sh -k test_dra_bench
