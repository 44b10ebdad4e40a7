"""Fault injection for staging and its guards.

Real servers sit behind ``harness.proxy.FaultProxy``. Retries wait through a ``sleep``
passed in by the test, which also heals the proxy: "down, then back" is deterministic
and takes no wall time.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from harness.proxy import FaultProxy
from staging_fixtures import (
    FaultyHttpServer,
    MotoServer,
    SshServer,
    http_server,
    make_config,
    moto,
    quick_retry,
    sshd,
)

from cryoflow.errors import StagingError, TransientStagingError
from cryoflow.staging.base import parse_url
from cryoflow.staging.config import HttpSettings, StagingConfig
from cryoflow.staging.http import HttpStager
from cryoflow.staging.stage import stage_in, stage_out

__all__ = ["http_server", "moto", "sshd"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)
SLOWDOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: 96\r\n"
    b'Connection: close\r\n\r\n<?xml version="1.0"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce</Message></Error>\n\n\n"
)


class Healer:
    """A ``sleep`` for the retry loop: records waits and sets the proxy back to ``pass``."""

    def __init__(self, proxy: FaultProxy | None = None, after: int = 1) -> None:
        self.proxy, self.after, self.waits = proxy, after, []  # type: ignore[var-annotated]

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.proxy is not None and len(self.waits) == self.after:
            self.proxy.set_mode("pass")


@pytest.fixture
def proxy_factory() -> Iterator[Callable[[int], FaultProxy]]:
    proxies: list[FaultProxy] = []

    def start(port: int) -> FaultProxy:
        proxies.append(FaultProxy(("127.0.0.1", port)).start())
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.stop()


def _sha(data: bytes | Path) -> str:
    return hashlib.sha256(data.read_bytes() if isinstance(data, Path) else data).hexdigest()


def _only_final_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# -- S3


@pytest.fixture
def s3(moto: MotoServer, proxy_factory: Callable[[int], FaultProxy]) -> Iterator[Any]:
    proxy = proxy_factory(moto.port)
    bucket = moto.bucket()
    settings = moto.settings(
        endpoint=f"http://{proxy.address}", read_timeout_s=0.5, connect_timeout_s=0.5
    )
    yield proxy, bucket, make_config(s3=settings), moto


def _seed(moto: MotoServer, bucket: str, key: str, size: int) -> bytes:
    data = os.urandom(size)
    moto.client.put_object(Bucket=bucket, Key=key, Body=data)
    return data


@pytest.mark.parametrize(
    ("mode", "params"),
    [
        ("refuse", {}),
        ("reset_after", {"bytes": 1 << 20}),
        ("respond", {"data": SLOWDOWN}),
        ("truncate_after", {"bytes": 300_000}),
        ("blackhole", {}),
        ("corrupt_after", {"bytes": 2 << 20}),
    ],
)
@pytest.mark.parametrize("size", [3 << 20, 12 << 20], ids=["single", "ranged"])
def test_s3_downloads_are_retried_through_faults_and_then_match(
    s3: Any, tmp_path: Path, mode: str, params: dict[str, Any], size: int
):
    proxy, bucket, config, moto = s3
    data = _seed(moto, bucket, "obj.bin", size)
    proxy.set_mode(mode, **params)
    healer = Healer(proxy)
    path = stage_in(
        f"s3://{bucket}/obj.bin", {}, work_dir=tmp_path / "w", config=config, sleep=healer
    )
    assert _sha(Path(path)) == _sha(data)
    assert len(healer.waits) == 1
    assert _only_final_files(tmp_path / "w") == ["obj.bin"]


@pytest.mark.parametrize("uploader", ["cryoflow", "boto3"])
def test_a_corrupted_multipart_object_fails_its_etag_check_and_is_fetched_again(
    s3: Any, tmp_path: Path, uploader: str
):
    proxy, bucket, config, moto = s3
    src = tmp_path / "parts.bin"
    src.write_bytes(os.urandom(12 << 20))
    if uploader == "cryoflow":  # the part size is in the object's metadata
        url = stage_out(str(src), f"s3://{bucket}/", basename=True, config=config)
    else:  # the part size comes from HEAD ?partNumber=1
        chunks = TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20)
        moto.client.upload_file(str(src), bucket, "parts.bin", Config=chunks)
        url = f"s3://{bucket}/parts.bin"
    proxy.set_mode("corrupt_after", bytes=3 << 20)
    healer = Healer(proxy)
    path = stage_in(url, {}, work_dir=tmp_path / "w", config=config, sleep=healer)
    assert _sha(Path(path)) == _sha(src) and len(healer.waits) == 1


def test_s3_that_stays_down_fails_as_unreachable_leaving_no_file(s3: Any, tmp_path: Path):
    proxy, bucket, config, moto = s3
    _seed(moto, bucket, "obj.bin", 1000)
    proxy.set_mode("refuse")
    with pytest.raises(TransientStagingError, match=r"S3 unreachable.*after 4 attempts"):
        stage_in(
            f"s3://{bucket}/obj.bin", {}, work_dir=tmp_path / "w", config=config, sleep=Healer()
        )
    assert _only_final_files(tmp_path / "w") == []


def test_a_missing_s3_object_is_not_retried(s3: Any, tmp_path: Path):
    proxy, bucket, config, _ = s3
    healer = Healer()
    with pytest.raises(StagingError, match="does not exist") as caught:
        stage_in(f"s3://{bucket}/absent", {}, work_dir=tmp_path, config=config, sleep=healer)
    assert not isinstance(caught.value, TransientStagingError) and healer.waits == []


@pytest.mark.parametrize("size", [2 << 20, 12 << 20], ids=["single", "multipart"])
def test_an_upload_reset_midway_is_retried_to_one_object_and_no_open_multipart_upload(
    s3: Any, tmp_path: Path, size: int
):
    proxy, bucket, config, moto = s3
    src = tmp_path / "result.bin"
    src.write_bytes(os.urandom(size))
    proxy.set_mode("reset_after", bytes=1 << 20)
    healer = Healer(proxy)
    url = stage_out(str(src), f"s3://{bucket}/out/", basename=True, config=config, sleep=healer)
    assert url == f"s3://{bucket}/out/result.bin" and len(healer.waits) == 1
    listed = moto.client.list_objects_v2(Bucket=bucket, Prefix="out/")
    assert [o["Key"] for o in listed["Contents"]] == ["out/result.bin"]
    assert moto.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    body = moto.client.get_object(Bucket=bucket, Key="out/result.bin")["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == _sha(src)
    body.close()


@pytest.mark.parametrize("size", [2 << 20, 12 << 20], ids=["single", "multipart"])
def test_an_upload_damaged_on_the_way_is_caught_by_its_etag_and_sent_again(
    s3: Any, tmp_path: Path, size: int
):
    proxy, bucket, config, moto = s3
    src = tmp_path / "result.bin"
    src.write_bytes(os.urandom(size))
    proxy.set_mode("corrupt_after", bytes=1 << 20, side="client")
    healer = Healer(proxy)
    stage_out(str(src), f"s3://{bucket}/out/", basename=True, config=config, sleep=healer)
    assert len(healer.waits) == 1
    body = moto.client.get_object(Bucket=bucket, Key="out/result.bin")["Body"]
    assert hashlib.sha256(body.read()).hexdigest() == _sha(src)
    body.close()
    assert moto.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


# -- a full disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_fails_the_download_clearly_and_removes_the_staging_file(
    moto: MotoServer, tiny_disk: Path
):
    bucket = moto.bucket()
    _seed(moto, bucket, "big.bin", 3 << 20)
    healer = Healer()
    with pytest.raises(StagingError, match="no space left") as caught:
        stage_in(
            f"s3://{bucket}/big.bin",
            {},
            work_dir=tiny_disk,
            config=make_config(s3=moto.settings()),
            sleep=healer,
        )
    assert not isinstance(caught.value, TransientStagingError) and healer.waits == []
    assert os.listdir(tiny_disk) == []


# -- ssh


@pytest.fixture
def ssh(sshd: SshServer, proxy_factory: Callable[[int], FaultProxy], tmp_path: Path) -> Any:
    proxy = proxy_factory(sshd.port)
    known = sshd.known_hosts(tmp_path / "known_hosts", proxy.port)
    return proxy, sshd, known


def _ssh_url(proxy: FaultProxy, sshd: SshServer, name: str) -> str:
    return f"ssh://127.0.0.1:{proxy.port}{sshd.folder}/{name}"


# A reset can also end paramiko's read-ahead thread (EOFError); the download itself
# fails cleanly and is retried, which is what this test checks.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize(("mode", "params"), [("refuse", {}), ("reset_after", {"bytes": 200_000})])
def test_ssh_refused_or_reset_is_retried_and_then_succeeds(
    ssh: Any, tmp_path: Path, mode: str, params: dict[str, Any]
):
    proxy, sshd, known = ssh
    data = os.urandom(2 << 20)
    (sshd.folder / "f.bin").write_bytes(data)
    proxy.set_mode(mode, **params)
    healer = Healer(proxy)
    path = stage_in(
        _ssh_url(proxy, sshd, "f.bin"),
        {},
        work_dir=tmp_path / "w",
        config=make_config(ssh=sshd.settings(known)),
        sleep=healer,
    )
    assert _sha(Path(path)) == _sha(data) and len(healer.waits) == 1


@pytest.mark.parametrize("fault", ["wrong key", "changed host key", "unknown host"])
def test_ssh_login_and_host_key_failures_are_permanent_and_tried_once(
    ssh: Any, tmp_path: Path, fault: str
):
    proxy, sshd, known = ssh
    (sshd.folder / "f.txt").write_text("x")
    settings = sshd.settings(known)
    if fault == "wrong key":
        settings = sshd.settings(known, key=sshd.other_key)
    elif fault == "changed host key":
        sshd.known_hosts(known, proxy.port, host_pub=sshd.other_host_pub)
    else:
        known.write_text("")
    healer = Healer()
    with pytest.raises(StagingError) as caught:
        stage_in(
            _ssh_url(proxy, sshd, "f.txt"),
            {},
            work_dir=tmp_path / "w",
            config=make_config(ssh=settings),
            sleep=healer,
        )
    assert not isinstance(caught.value, TransientStagingError)
    assert healer.waits == [] and proxy.accepted == 1
    expected = {
        "wrong key": "login",
        "changed host key": "does not match",
        "unknown host": "not in known_hosts",
    }[fault]
    assert expected in str(caught.value)


def test_ssh_option_injection_in_the_host_is_refused_before_any_connection(tmp_path: Path):
    canary = tmp_path / "cf_canary"
    with pytest.raises(StagingError, match="unsafe host"):
        stage_in(
            f"ssh://-oProxyCommand=touch${{IFS}}{canary}/p",
            {},
            work_dir=tmp_path,
            config=make_config(),
        )
    assert not canary.exists()


# -- HTTP


def _http_config(**http: Any) -> StagingConfig:
    base = make_config()
    return replace(base, http=replace(base.http, **http))


def test_http_500_then_200_is_retried(http_server: FaultyHttpServer, tmp_path: Path):
    (http_server.docroot / "a.bin").write_bytes(b"a" * 5000)
    healer = Healer()
    path = stage_in(
        http_server.url("/fail/2/a.bin"), {}, work_dir=tmp_path, config=make_config(), sleep=healer
    )
    assert Path(path).read_bytes() == b"a" * 5000 and len(healer.waits) == 2


def test_a_body_shorter_than_its_content_length_is_retried_and_never_promoted(
    http_server: FaultyHttpServer, tmp_path: Path
):
    (http_server.docroot / "s.bin").write_bytes(b"s" * 5000)
    with pytest.raises(TransientStagingError, match="ended after 5000 of 6000"):
        stage_in(
            http_server.url("/short/s.bin"),
            {},
            work_dir=tmp_path / "w",
            config=make_config(),
            sleep=Healer(),
        )
    assert http_server.hits["/short/s.bin"] == 4
    assert _only_final_files(tmp_path / "w") == []


def test_redirects_are_followed_up_to_five_hops(http_server: FaultyHttpServer, tmp_path: Path):
    (http_server.docroot / "r.txt").write_text("found")
    path = stage_in(
        http_server.url("/redirect/5/r.txt"), {}, work_dir=tmp_path, config=make_config()
    )
    assert Path(path).read_text() == "found"
    with pytest.raises(StagingError, match="more than 5 redirects"):
        stage_in(
            http_server.url("/redirect/6/r.txt"), {}, work_dir=tmp_path / "x", config=make_config()
        )


def test_a_redirect_loop_stops_after_five_hops_without_retrying(
    http_server: FaultyHttpServer, tmp_path: Path
):
    healer = Healer()
    with pytest.raises(StagingError, match="more than 5 redirects"):
        stage_in(
            http_server.url("/loop"), {}, work_dir=tmp_path, config=make_config(), sleep=healer
        )
    assert http_server.hits["/loop"] == 6 and healer.waits == []


def test_a_slow_drip_hits_the_read_timeout(http_server: FaultyHttpServer, tmp_path: Path):
    http_server.drip_s = 1.0
    config = replace(_http_config(read_timeout_s=0.3), retry=quick_retry(2))
    with pytest.raises(TransientStagingError, match="timed out"):
        stage_in(
            http_server.url("/drip/100"), {}, work_dir=tmp_path / "w", config=config, sleep=Healer()
        )
    assert _only_final_files(tmp_path / "w") == []


@pytest.mark.parametrize("path", ["/big/3000000", "/f/over.bin"], ids=["streamed", "declared"])
def test_a_body_over_the_size_cap_is_aborted(
    http_server: FaultyHttpServer, tmp_path: Path, path: str
):
    (http_server.docroot / "over.bin").write_bytes(b"o" * 3_000_000)
    with pytest.raises(StagingError, match="cap of 1000000") as caught:
        stage_in(
            http_server.url(path),
            {},
            work_dir=tmp_path / "w",
            config=_http_config(max_bytes=1_000_000),
            sleep=Healer(),
        )
    assert not isinstance(caught.value, TransientStagingError)
    assert _only_final_files(tmp_path / "w") == []


# -- server-side request forgery


@pytest.fixture
def forbidden() -> Iterator[socket.socket]:
    """A listener on loopback that no refused download may ever reach."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def _no_accepts(sock: socket.socket) -> bool:
    try:
        sock.accept()[0].close()
    except BlockingIOError:
        return True
    return False


def _guarded(resolve: Any = socket.getaddrinfo, connect: Any = None, **http: Any) -> HttpStager:
    settings = HttpSettings(schemes=("http", "https"), connect_timeout_s=1, read_timeout_s=1)
    config = replace(make_config(), http=replace(settings, **http))
    if connect is None:
        return HttpStager(config, resolve=resolve)
    return HttpStager(config, resolve=resolve, connect=connect)


def _mapping(table: dict[str, list[str]]) -> Callable[..., list[Any]]:
    def resolve(host: str, port: int, **kwargs: Any) -> list[Any]:
        if host not in table:
            return socket.getaddrinfo(host, port, **kwargs)
        ips = table[host] if len(table[host]) == 1 else [table[host].pop(0)]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in ips]

    return resolve


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost.", "[::1]", "[::ffff:127.0.0.1]", "0.0.0.0", "127.1", "2130706433"],
)
def test_loopback_in_any_spelling_is_refused_before_connecting(
    forbidden: socket.socket, tmp_path: Path, host: str
):
    port = forbidden.getsockname()[1]
    with pytest.raises(StagingError, match="refusing to download"):
        _guarded().fetch(parse_url(f"http://{host}:{port}/x"), tmp_path / "d")
    assert _no_accepts(forbidden)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://internal.test/x", "private"),
    ],
)
def test_metadata_and_private_addresses_are_refused(tmp_path: Path, url: str, kind: str):
    stager = _guarded(
        _mapping({"internal.test": ["10.0.0.1"], "169.254.169.254": ["169.254.169.254"]}),
        connect=_never,
    )
    with pytest.raises(StagingError, match=kind):
        stager.fetch(parse_url(url), tmp_path / "d")


def _never(address: tuple[str, int], timeout: float) -> socket.socket:
    raise AssertionError(f"connected to {address}")


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    http_server: FaultyHttpServer, forbidden: socket.socket, tmp_path: Path
):
    target = f"http://127.0.0.1:{forbidden.getsockname()[1]}/"
    stager = _guarded(_mapping({"public.test": ["127.0.0.1"]}), allow_hosts=("public.test",))
    url = parse_url(f"http://public.test:{http_server.port}/to?u={target}")
    with pytest.raises(StagingError, match="refusing to download.*loopback"):
        stager.fetch(url, tmp_path / "d")
    assert _no_accepts(forbidden) and sum(http_server.hits.values()) == 1


def test_a_redirect_to_a_file_url_is_refused(http_server: FaultyHttpServer, tmp_path: Path):
    with pytest.raises(StagingError, match="redirected to file://"):
        stage_in(
            http_server.url("/to?u=file:///etc/passwd"), {}, work_dir=tmp_path, config=make_config()
        )


def test_dns_rebinding_cannot_move_a_checked_connection_to_loopback(
    forbidden: socket.socket, tmp_path: Path
):
    port = forbidden.getsockname()[1]
    connects: list[tuple[str, int]] = []

    def connect(address: tuple[str, int], timeout: float) -> socket.socket:
        connects.append(address)
        raise ConnectionRefusedError("public server down")

    resolve = _mapping({"rebind.test": ["93.184.216.34", "127.0.0.1"]})
    config = replace(make_config(), http=HttpSettings(schemes=("http",)))
    stager = HttpStager(config, resolve=resolve, connect=connect)
    with pytest.raises(TransientStagingError):
        stager.fetch(parse_url(f"http://rebind.test:{port}/x"), tmp_path / "d")
    with pytest.raises(StagingError, match="loopback"):
        stager.fetch(parse_url(f"http://rebind.test:{port}/x"), tmp_path / "d")
    assert connects == [("93.184.216.34", port)] and _no_accepts(forbidden)


def test_plain_http_needs_to_be_allowed_in_the_config(tmp_path: Path):
    stager = HttpStager(StagingConfig(), connect=_never)
    with pytest.raises(StagingError, match=r"http:// is not allowed"):
        stager.fetch(parse_url("http://example.org/x"), tmp_path / "d")
