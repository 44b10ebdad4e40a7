#!/usr/bin/env bash
# Set up everything the tests need and run every check: ruff, mypy, the import contracts
# (.importlinter), the test suite.
#   - system packages (as root, only what is missing): chromium for the web-view tests,
#     ffmpeg and git for the built-in modules that run them,
#     openssh-server for the ssh staging tests, docker.io + debootstrap for the executor tests;
#   - a virtual environment in .venv with cryoflow and its test extra;
#   - dockerd on a private socket with locally built images, and (as root) a single-node
#     Ceph RADOS Gateway as the real S3 server; both stopped again on exit.
# The other servers (sshd, moto's S3 server, Dask) are started by the test fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends chromium
fi
# ffmpeg and git for the tests of the ffmpeg and git built-in modules
if [ "$(id -u)" = 0 ] && { ! command -v ffmpeg >/dev/null || ! command -v git >/dev/null; }; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends ffmpeg git
fi
# redis-server: the real events queue of the operations' exit notices (started by a fixture)
if [ "$(id -u)" = 0 ] && ! command -v redis-server >/dev/null; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends redis-server
fi
bash .ci/services.sh

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/pip install -q -e '.[test]'

trap 'bash .ci/executors-stop.sh; bash .ci/ceph-stop.sh' EXIT
bash .ci/executors.sh
export DOCKER_HOST=unix://${CRYOFLOW_DOCKER_DIR:-/tmp/cryoflow-docker}/docker.sock
if [ "$(id -u)" = 0 ]; then
    CRYOFLOW_TEST_S3_URL=$(bash .ci/ceph.sh)
    export CRYOFLOW_TEST_S3_URL
fi

.venv/bin/ruff check cryoflow tests bench
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest -q "$@"
