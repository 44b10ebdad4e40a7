#!/usr/bin/env bash
# Stops the dockerd started by .ci/executors.sh, by the PID it recorded.
set -uo pipefail
D=${CRYOFLOW_DOCKER_DIR:-/tmp/cryoflow-docker}
if [ -s "$D/dockerd.pid" ]; then
    pid=$(cat "$D/dockerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
fi
if mountpoint -q "$D/exec/netns/default" 2>/dev/null; then
    umount "$D/exec/netns/default"
fi
exit 0
