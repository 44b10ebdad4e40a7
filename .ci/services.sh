#!/usr/bin/env bash
# Install the system packages the staging tests need; start nothing and export nothing.
# The tests start their own servers in pytest fixtures (tests/staging_fixtures.py):
# sshd on a free loopback port with generated keys, moto's S3 server on a free port.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)

if [ "${#missing[@]}" -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# sshd needs its privilege-separation folder; the package does not start a daemon here.
mkdir -p /run/sshd && chmod 755 /run/sshd
