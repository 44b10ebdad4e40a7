"""W7: staging throughput against a loopback S3 server, beside plain boto3.

Starts moto's S3 server in its own process on a free loopback port, writes a test file
(1 GiB, or 64 MiB with ``--quick``), and moves it up and down twice: with boto3's
``upload_file``/``download_file`` (the ``aws s3 cp`` machinery) and with cryoflow's
``stage_out``/``stage_in`` (verified, retried, through a staging file). Prints MB/s, the
ratio to boto3 and the peak RSS growth of this process during each transfer, sampled
every 10 ms: it must stay flat (streamed), far below the object size.

    .venv/bin/python bench/staging_bench.py [--quick] [--size-mib N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import psutil

from cryoflow.staging.config import S3Settings, StagingConfig
from cryoflow.staging.registry import StagerPool
from cryoflow.staging.stage import stage_in, stage_out

MiB = 1 << 20


@dataclass(frozen=True)
class Endpoint:
    """An S3 server to measure against, and its keys."""

    url: str
    access_key: str = "bench"
    secret_key: str = "bench"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """``http://KEY:SECRET@host:port``."""
        parts = urlsplit(text)
        url = f"{parts.scheme}://{parts.hostname}:{parts.port}"
        return cls(url, unquote(parts.username or ""), unquote(parts.password or ""))


@dataclass(frozen=True)
class Row:
    direction: str
    client: str
    seconds: float
    size: int
    peak_rss: int

    @property
    def mb_s(self) -> float:
        return self.size / 1e6 / self.seconds


class PeakRss:
    """Samples this process's RSS on a thread; ``growth`` is the peak minus the start."""

    def __init__(self, interval_s: float = 0.01) -> None:
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.start = self.peak = self.process.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.start


@contextmanager
def moto_server() -> Iterator[Endpoint]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        yield Endpoint(f"http://127.0.0.1:{port}")
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_for(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def write_file(path: Path, size: int) -> None:
    block = os.urandom(16 * MiB)
    with open(path, "wb") as out:
        for start in range(0, size, len(block)):
            out.write(block[: size - start])


def measure(direction: str, client: str, size: int, action: Callable[[], Any]) -> Row:
    with PeakRss() as rss:
        started = time.perf_counter()
        action()
        seconds = time.perf_counter() - started
    return Row(direction, client, seconds, size, rss.growth)


def run(size: int, folder: Path, repeat: int, server: Endpoint | None) -> list[Row]:
    src = folder / "object.bin"
    write_file(src, size)
    with nullcontext(server) if server else moto_server() as endpoint:
        rounds = [one_round(endpoint, src, folder, size) for _ in range(repeat)]
    return [best(same) for same in zip(*rounds)]


def best(rows: tuple[Row, ...]) -> Row:
    """The fastest of repeated runs, with the highest memory growth seen."""
    fastest = min(rows, key=lambda r: r.seconds)
    return replace(fastest, peak_rss=max(r.peak_rss for r in rows))


def one_round(endpoint: Endpoint, src: Path, folder: Path, size: int) -> list[Row]:
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint.url,
        aws_access_key_id=endpoint.access_key,
        aws_secret_access_key=endpoint.secret_key,
        region_name="us-east-1",
    )
    if "bench" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket="bench")
    settings = S3Settings(
        endpoint_url=endpoint.url,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        region="us-east-1",
    )
    config = StagingConfig(s3=settings)
    pool = StagerPool(config)  # made once, as a worker does; so is the boto3 client
    pool.get("s3")
    url = "s3://bench/boto3/object.bin"
    rows = [
        measure(
            "up",
            "boto3 upload_file",
            size,
            lambda: s3.upload_file(str(src), "bench", "boto3/object.bin"),
        ),
        measure(
            "up",
            "cryoflow stage_out",
            size,
            lambda: stage_out(
                str(src), "s3://bench/cryoflow/", basename=True, config=config, pool=pool
            ),
        ),
        measure(
            "down",
            "boto3 download_file",
            size,
            lambda: s3.download_file("bench", "boto3/object.bin", str(folder / "boto3.bin")),
        ),
        measure(
            "down",
            "cryoflow stage_in",
            size,
            lambda: stage_in(url, {}, work_dir=folder / "work", config=config, pool=pool),
        ),
    ]
    _check_same(src, folder / "work" / "object.bin")
    for key in ("boto3/object.bin", "cryoflow/object.bin"):
        s3.delete_object(Bucket="bench", Key=key)
    s3.close()
    pool.close()
    (folder / "boto3.bin").unlink()
    (folder / "work" / "object.bin").unlink()
    return rows


def _check_same(a: Path, b: Path) -> None:
    if a.stat().st_size != b.stat().st_size or not _same_bytes(a, b):
        raise SystemExit(f"{b} differs from {a}")


def _same_bytes(a: Path, b: Path) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(8 * MiB), fb.read(8 * MiB)
            if x != y:
                return False
            if not x:
                return True


def table(rows: list[Row]) -> str:
    base = {r.direction: r.mb_s for r in rows if r.client.startswith("boto3")}
    lines = [
        "| direction | client | seconds | MB/s | vs boto3 | peak RSS growth |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.direction} | {r.client} | {r.seconds:.2f} | {r.mb_s:.0f} | "
            f"{r.mb_s / base[r.direction]:.0%} | {r.peak_rss / MiB:.0f} MiB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB instead of 1 GiB")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument("--s3-url", help="measure against http://KEY:SECRET@host:port instead")
    parser.add_argument("--repeat", type=int, default=None, help="best of N (quick: 3)")
    args = parser.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 1)
    size = (args.size_mib or (64 if args.quick else 1024)) * MiB
    folder = Path(tempfile.mkdtemp(prefix="cryoflow-bench-"))
    try:
        server = Endpoint.parse(args.s3_url) if args.s3_url else None
        rows = run(size, folder, repeat, server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    where = urlsplit(args.s3_url).hostname if args.s3_url else "loopback moto S3"
    print(
        f"object: {size / MiB:.0f} MiB over {where}, best of {repeat} "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f})"
    )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
