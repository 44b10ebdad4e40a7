#!/usr/bin/env bash
# Prepares the executor tests (Docker, Dask, Kubernetes against the fake API):
#   - installs docker.io and debootstrap from apt when missing;
#   - starts dockerd on a private socket, without a bridge or iptables rules
#     (ENVIRONMENT.md section 3), and records its PID in $D/dockerd.pid;
#   - builds the test images locally (no registry pulls are possible here):
#     local/debian-py:bookworm (a debootstrap rootfs with python3, cached in the
#     daemon's data root) and local/cryoflow-worker:ci (environments/Dockerfile).
# Then export DOCKER_HOST=unix://$D/docker.sock for the tests; stop the daemon
# with .ci/executors-stop.sh. The Python packages come from setup.cfg's test extra.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${CRYOFLOW_DOCKER_DIR:-/tmp/cryoflow-docker}
BASE_IMAGE=local/debian-py:bookworm
WORKER_IMAGE=local/cryoflow-worker:ci
export DEBIAN_FRONTEND=noninteractive
export DOCKER_HOST=unix://$D/docker.sock

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q "${missing[@]}"
fi

mkdir -p "$D/data" "$D/exec"
if ! docker info >/dev/null 2>&1; then
    dockerd --host "$DOCKER_HOST" --data-root "$D/data" --exec-root "$D/exec" \
        --pidfile "$D/dockerd.pid" --bridge=none --iptables=false --ip-forward=false \
        --ip-masq=false > "$D/dockerd.log" 2>&1 &
    for _ in $(seq 1 300); do
        docker info >/dev/null 2>&1 && break
        sleep 0.1
    done
    docker info >/dev/null 2>&1 || { tail -20 "$D/dockerd.log"; echo "dockerd did not start" >&2; exit 1; }
fi
echo "dockerd pid $(cat "$D/dockerd.pid") on $DOCKER_HOST"

if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    rm -rf "$D/rootfs"
    debootstrap --variant=minbase --include=python3 bookworm "$D/rootfs" \
        http://deb.debian.org/debian > "$D/debootstrap.log" 2>&1 \
        || { tail -20 "$D/debootstrap.log"; exit 1; }
    tar -C "$D/rootfs" -c . | docker import - "$BASE_IMAGE" >/dev/null
    rm -rf "$D/rootfs"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r cryoflow setup.cfg pyproject.toml README.md "$context"/
find "$context" -name __pycache__ -prune -exec rm -rf {} +
DOCKER_BUILDKIT=0 docker build -q -f environments/Dockerfile --build-arg BASE="$BASE_IMAGE" \
    --build-arg EXTRAS= -t "$WORKER_IMAGE" "$context" > "$D/build.log" 2>&1 \
    || { tail -20 "$D/build.log"; exit 1; }
echo "images ready: $BASE_IMAGE $WORKER_IMAGE"
