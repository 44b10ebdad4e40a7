#!/usr/bin/env bash
# A single-node Ceph cluster (mon + in-memory OSD + RADOS Gateway) on loopback, so the
# S3 contract tests also run against a real S3 implementation (SigV4, multipart).
# Installs the packages when missing; PIDs are in $D/run/*.pid; stop with ceph-stop.sh.
# Prints the URL to export as CRYOFLOW_TEST_S3_URL.
set -euo pipefail
D=${CEPH_DIR:-/tmp/cryoflow-ceph}
RGW_PORT=${RGW_PORT:-7480}
export DEBIAN_FRONTEND=noninteractive
if ! command -v radosgw >/dev/null; then
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends radosgw ceph-mon ceph-osd ceph-common curl >/dev/null
fi
rm -rf "$D"
mkdir -p "$D"/{mon,osd0,run,log,rgw}
FSID=$(python3 -c 'import uuid; print(uuid.uuid4())')
cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:3300
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 6442450944
osd crush chooseleaf type = 0
run dir = $D/run
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
pid file = $D/run/\$name.pid
ms bind ipv6 = false
ms mon client mode = crc secure
mon data avail warn = 1
mon data avail crit = 0
mon data = $D/mon
osd data = $D/osd0
keyring = $D/keyring
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
rgw dns name = 127.0.0.1
CONF
export CEPH_CONF="$D/ceph.conf"
touch "$D/keyring"
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:3300]" "$D/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" -c "$CEPH_CONF"
ceph-mon -i a -c "$CEPH_CONF"
OSD_ID=$(ceph -c "$CEPH_CONF" osd create)
ceph-osd -i "$OSD_ID" --mkfs -c "$CEPH_CONF" 2>"$D/log/osd-mkfs.err"
ceph-osd -i "$OSD_ID" -c "$CEPH_CONF"
radosgw -n client.rgw.a -c "$CEPH_CONF" --rgw-init-timeout 60
for _ in $(seq 1 300); do
    curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break
    sleep 0.1
done
curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" || { echo "radosgw did not start" >&2; exit 1; }
radosgw-admin -c "$CEPH_CONF" user create --uid=cryo --display-name=cryo \
    --access-key=cryoaccess --secret=cryosecret0123456789 >/dev/null
echo "http://cryoaccess:cryosecret0123456789@127.0.0.1:$RGW_PORT"
