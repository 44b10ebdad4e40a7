"""Real servers for the staging tests, started by fixtures on free loopback ports.

- ``sshd``: Debian's OpenSSH server with generated host and client keys and its own
  ``authorized_keys`` (skipped with a reason when ``/usr/sbin/sshd`` is missing;
  ``.ci/services.sh`` installs it).
- ``moto``: moto's ``ThreadedMotoServer`` (a real HTTP S3 endpoint, signatures not checked).
- ``http_server``: a threaded ``http.server`` that serves files and can fail, truncate,
  redirect, drip and flood on purpose.

Test files import what they use by name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from cryoflow.staging.base import ParsedURL, Stager, parse_url
from cryoflow.staging.config import (
    HttpSettings,
    S3Settings,
    SshSettings,
    StagingConfig,
)
from cryoflow.staging.registry import open_stager
from cryoflow.staging.retry import RetryPolicy

SSHD = Path("/usr/sbin/sshd")
S3_KEYS = {"access_key": "testing", "secret_key": "testing", "region": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


# -- sshd


@dataclass(frozen=True)
class SshServer:
    port: int
    folder: Path
    client_key: Path
    other_key: Path
    host_pub: str
    other_host_pub: str
    user: str
    chroot_port: int
    chroot: Path
    """Sessions on ``chroot_port`` see ``chroot`` as ``/``: a remote-only file system."""

    def known_hosts(self, path: Path, *ports: int, host_pub: str | None = None) -> Path:
        """Write a known_hosts file naming this server's key on ``ports``."""
        key = host_pub or self.host_pub
        path.write_text("".join(f"[127.0.0.1]:{p} {key}\n" for p in ports or (self.port,)))
        return path

    def settings(self, known_hosts: Path, *, key: Path | None = None) -> SshSettings:
        return SshSettings(
            user=self.user,
            key_files=(str(key or self.client_key),),
            known_hosts=str(known_hosts),
            use_agent=False,
            look_for_keys=False,
            connect_timeout_s=5.0,
            read_timeout_s=5.0,
        )


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    kind, data, *_ = path.with_suffix(".pub").read_text().split()
    return f"{kind} {data}"


def _sshd_config(folder: Path, port: int, chroot_port: int, chroot: Path) -> Path:
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nPort {chroot_port}\nListenAddress 127.0.0.1\n"
        f"HostKey {folder}/hostkey\n"
        f"PidFile {folder}/sshd.pid\nAuthorizedKeysFile {folder}/authorized_keys\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n"
        "UsePAM no\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        f"Match LocalPort {chroot_port}\n  ChrootDirectory {chroot}\n"
        "  ForceCommand internal-sftp\n"
    )
    return config


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshServer]:
    if not SSHD.is_file() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed (run .ci/services.sh)")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture runs as root (privilege separation folder, chroot)")
    folder = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(folder / "hostkey")
    other_host_pub = _keygen(folder / "otherhostkey")
    _keygen(folder / "clientkey")
    _keygen(folder / "otherkey")
    shutil.copy(folder / "clientkey.pub", folder / "authorized_keys")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    port, chroot_port = free_port(), free_port()
    chroot = Path(f"/run/cryoflow-test-sshroot-{uuid.uuid4().hex[:8]}")  # root-owned parents
    (chroot / "data").mkdir(mode=0o755, parents=True)
    config = _sshd_config(folder, port, chroot_port, chroot)
    log = open(folder / "sshd.log", "wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    try:
        wait_for_port(port)
        data = tmp_path_factory.mktemp("sshdata")
        user = os.environ.get("USER") or _user_name()
        keys = (folder / "clientkey", folder / "otherkey", host_pub, other_host_pub)
        yield SshServer(port, data, *keys, user, chroot_port, chroot)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()
        shutil.rmtree(chroot, ignore_errors=True)


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


# -- moto


@dataclass(frozen=True)
class MotoServer:
    """An S3 endpoint for tests: moto's server, or the real one named by the environment."""

    endpoint: str
    port: int
    client: Any
    keys: dict[str, str] = field(default_factory=lambda: dict(S3_KEYS))

    def bucket(self) -> str:
        name = f"b-{uuid.uuid4().hex[:12]}"
        self.client.create_bucket(Bucket=name)
        return name

    def settings(self, endpoint: str | None = None, **more: Any) -> S3Settings:
        values: dict[str, Any] = {
            **self.keys,
            "endpoint_url": endpoint or self.endpoint,
            "part_bytes": 5 << 20,
            "multipart_threshold_bytes": 6 << 20,
            "max_concurrency": 4,
            "connect_timeout_s": 2.0,
            "read_timeout_s": 2.0,
            **more,
        }
        return S3Settings(**values)


@pytest.fixture(scope="session")
def moto() -> Iterator[MotoServer]:
    server_module = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        try:
            yield MotoServer(endpoint, int(port), client)
        finally:
            client.close()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def real_s3() -> Iterator[MotoServer]:
    """A real S3 server (Ceph RGW, MinIO, ...) named by ``CRYOFLOW_TEST_S3_URL``
    (``http://ACCESS:SECRET@host:port``); skipped when unset. Buckets made here are
    emptied and removed at the end."""
    text = os.environ.get("CRYOFLOW_TEST_S3_URL")
    if not text:
        pytest.skip("no real S3 server: set CRYOFLOW_TEST_S3_URL=http://KEY:SECRET@host:port")
    boto3 = pytest.importorskip("boto3")
    parts = urlsplit(text)
    endpoint = f"{parts.scheme}://{parts.hostname}:{parts.port}"
    keys = {
        "access_key": unquote(parts.username or ""),
        "secret_key": unquote(parts.password or ""),
        "region": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=keys["access_key"],
        aws_secret_access_key=keys["secret_key"],
        region_name="us-east-1",
    )
    server = MotoServer(endpoint, int(parts.port or 80), client, keys)
    try:
        yield server
    finally:
        _remove_test_buckets(client)
        client.close()


def _remove_test_buckets(client: Any) -> None:
    for bucket in client.list_buckets().get("Buckets", []):
        name = bucket["Name"]
        if not name.startswith("b-"):
            continue
        for upload in client.list_multipart_uploads(Bucket=name).get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)


# -- HTTP


class _Handler(BaseHTTPRequestHandler):
    """Routes (GET and HEAD):

    ``/f/NAME`` a file of the docroot · ``/fail/N/NAME`` 500 for the first N requests,
    then the file · ``/short/NAME`` Content-Length 1000 more than sent · ``/redirect/N/NAME``
    a chain of N redirects · ``/loop`` redirects to itself · ``/to?u=URL`` redirects to URL ·
    ``/drip/N`` N bytes, one per ``drip_s`` · ``/big/N`` N bytes without Content-Length ·
    ``/status/CODE`` that status · ``/getonly/NAME`` the file, but 403 for HEAD.
    """

    server: FaultyHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        route = getattr(self, f"route_{parts[0]}", None)
        if route is None:
            self.send_error(404)
            return
        try:
            route(*parts[1:])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self, data: bytes, *, length: int | None = None, etag: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(data) if length is None else length))
        if etag:
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()[:32]}"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _file(self, name: str) -> bytes | None:
        path = self.server.docroot / name
        if not path.is_file():
            self.send_error(404)
            return None
        return path.read_bytes()

    def route_f(self, *name: str) -> None:
        data = self._file("/".join(name))
        if data is not None:
            self._body(data)

    def route_fail(self, count: str, *name: str) -> None:
        if self.server.hits[self.path] <= int(count):
            self.send_error(500)
        else:
            self.route_f(*name)

    def route_short(self, *name: str) -> None:
        data = self._file("/".join(name))
        if data is not None:
            self._body(data, length=len(data) + 1000)

    def route_redirect(self, count: str, *name: str) -> None:
        left = int(count)
        rest = "/".join(name)
        self._redirect(f"/redirect/{left - 1}/{rest}" if left > 1 else f"/f/{rest}")

    def route_loop(self) -> None:
        self._redirect("/loop")

    def route_to(self) -> None:
        self._redirect(self.path.split("u=", 1)[1])

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_drip(self, count: str) -> None:
        self.send_response(200)
        self.send_header("Content-Length", count)
        self.end_headers()
        for _ in range(int(count)):
            if self.server.stopping.wait(self.server.drip_s):
                return
            self.wfile.write(b"x")
            self.wfile.flush()

    def route_big(self, count: str) -> None:
        self.send_response(200)
        self.end_headers()
        block = b"\0" * 65536
        for start in range(0, int(count), len(block)):
            self.wfile.write(block[: int(count) - start])

    def route_status(self, code: str) -> None:
        self.send_error(int(code))

    def route_getonly(self, *name: str) -> None:
        if self.command == "HEAD":
            self.send_error(403)
        else:
            self.route_f(*name)


class FaultyHttpServer(ThreadingHTTPServer):
    def __init__(self, docroot: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.docroot = docroot
        self.hits: dict[str, int] = {}
        self.drip_s = 0.5
        self.stopping = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[FaultyHttpServer]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    server = FaultyHttpServer(docroot)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- configs and backend cases


def quick_retry(attempts: int = 4) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base_s=0.01, max_s=0.05)


def make_config(**parts: Any) -> StagingConfig:
    """A config with fast retries, no cache and the loopback test servers allowed."""
    http = HttpSettings(
        schemes=("http", "https"),
        allow_hosts=("127.0.0.1",),
        connect_timeout_s=2.0,
        read_timeout_s=2.0,
    )
    base = StagingConfig(http=http, retry=quick_retry(), cache_dir=None)
    return replace(base, **parts)


@dataclass
class BackendCase:
    """One backend under the contract suite: how to name, seed and inspect objects."""

    name: str
    stager: Stager
    url_of: Callable[[str], str]
    seed: Callable[[str, bytes], None]
    exists: Callable[[str], bool]
    writable: bool = True

    def url(self, name: str) -> ParsedURL:
        return parse_url(self.url_of(name))


def _write(root: Path) -> Callable[[str, bytes], None]:
    def seed(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    return seed


def local_case(tmp_path: Path) -> BackendCase:
    root = tmp_path / "store"
    root.mkdir()
    stager = open_stager("file", make_config())
    return BackendCase(
        "local", stager, lambda n: str(root / n), _write(root), lambda n: (root / n).exists()
    )


def s3_case(moto: MotoServer, name: str = "s3") -> BackendCase:
    bucket = moto.bucket()
    stager = open_stager("s3", make_config(s3=moto.settings()))

    def seed(name: str, data: bytes) -> None:
        moto.client.put_object(Bucket=bucket, Key=name, Body=data)

    def exists(name: str) -> bool:
        listed = moto.client.list_objects_v2(Bucket=bucket, Prefix=name)
        return any(
            o["Key"] == name or o["Key"].startswith(name.rstrip("/") + "/")
            for o in listed.get("Contents", [])
        )

    return BackendCase(name, stager, lambda n: f"s3://{bucket}/{n}", seed, exists)


def ssh_case(sshd: SshServer, tmp_path: Path) -> BackendCase:
    root = sshd.folder / uuid.uuid4().hex[:8]
    root.mkdir()
    known = sshd.known_hosts(tmp_path / "known_hosts")
    stager = open_stager("ssh", make_config(ssh=sshd.settings(known)))
    return BackendCase(
        "ssh",
        stager,
        lambda n: f"ssh://127.0.0.1:{sshd.port}{root}/{n}",
        _write(root),
        lambda n: (root / n).exists(),
    )


def http_case(server: FaultyHttpServer) -> BackendCase:
    stager = open_stager("http", make_config())
    return BackendCase(
        "http",
        stager,
        lambda n: server.url(f"/f/{n}"),
        _write(server.docroot),
        lambda n: (server.docroot / n).exists(),
        writable=False,
    )


@pytest.fixture(params=["local", "s3", "ssh", "http", "s3-real"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendCase]:
    """Every stager backend in turn, against its real server (``s3-real``: see real_s3)."""
    name = request.param
    if name == "local":
        case = local_case(tmp_path)
    elif name == "s3":
        case = s3_case(request.getfixturevalue("moto"))
    elif name == "s3-real":
        case = s3_case(request.getfixturevalue("real_s3"), name)
    elif name == "ssh":
        case = ssh_case(request.getfixturevalue("sshd"), tmp_path)
    else:
        case = http_case(request.getfixturevalue("http_server"))
    try:
        yield case
    finally:
        case.stager.close()
