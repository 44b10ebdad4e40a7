#!/usr/bin/env bash
# Stops the Ceph daemons started by .ci/ceph.sh, by their recorded PIDs.
set -uo pipefail
D=${CEPH_DIR:-/tmp/cryoflow-ceph}
for name in client.rgw.a osd.0 mon.a; do
    f="$D/run/$name.pid"
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
done
exit 0
