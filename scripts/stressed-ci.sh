#!/usr/bin/env bash
# Issue 22's no-flake check: the CI run (.ci/run) on a clean clone of this checkout's
# HEAD, with every core kept busy by stress-ng (3 hogs: with the suite's own work the
# 1-minute load average stays above 4 on a 2-core machine), the load sampled once a
# minute beside the log. Never two at once, nor beside other users of the real
# cluster: its phase waits for /run/iommufd-cluster.lock.
#   scripts/stressed-ci.sh NAME    -> /tmp/NAME (clone), /tmp/NAME.log, /tmp/NAME.load
set -uo pipefail
name=${1:?usage: scripts/stressed-ci.sh NAME}
src=$(cd "$(dirname "$0")/.." && pwd)
command -v stress-ng >/dev/null || apt-get install -y -qq stress-ng >/dev/null
rm -rf "/tmp/$name" && git clone -q "$src" "/tmp/$name" && cd "/tmp/$name" || exit 1
git log --oneline -1 >"/tmp/$name.commit"
stress-ng --cpu 3 --timeout 90m >/dev/null 2>&1 &
hogs=$!
(while sleep 60; do cat /proc/loadavg; done) >"/tmp/$name.load" &
sampler=$!
start=$(date +%s)
.ci/run >"/tmp/$name.log" 2>&1
rc=$?
echo "EXIT $rc after $(($(date +%s) - start)) s" >>"/tmp/$name.log"
kill "$hogs" "$sampler" 2>/dev/null
awk '{print $1}' "/tmp/$name.load" | sort -n |
	awk '{a[NR] = $1} END {if (NR) print "load average: median " a[int((NR + 1) / 2)] ", max " a[NR] " (" NR " samples)"}'
tail -1 "/tmp/$name.log"
exit "$rc"
