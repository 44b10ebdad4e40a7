"""stage_in / stage_out, URL parsing, config, retry policy, cache and sweep."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from staging_fixtures import (
    FaultyHttpServer,
    MotoServer,
    SshServer,
    http_server,
    make_config,
    moto,
    sshd,
)

from cryoflow.errors import ConfigError, StagingError, TransientStagingError
from cryoflow.staging.base import MissingObjectError, parse_url
from cryoflow.staging.config import StagingConfig
from cryoflow.staging.registry import stager_class
from cryoflow.staging.retry import RetryPolicy, call_with_retry
from cryoflow.staging.stage import stage_in, stage_out, sweep_staging
from cryoflow.workers.handle import WorkerHandle

__all__ = ["http_server", "moto", "sshd"]  # fixtures used by name

pytestmark = pytest.mark.timeout(60)


# -- URLs


def test_s3_urls_name_a_bucket_or_an_endpoint_host_then_a_bucket():
    plain = parse_url("s3://data-bucket/a/b.nc")
    assert (plain.host, plain.bucket, plain.key) == ("", "data-bucket", "a/b.nc")
    hosted = parse_url("s3://s3.example.org:9000/data-bucket/a/b.nc")
    assert (hosted.host, hosted.port, hosted.bucket, hosted.key) == (
        "s3.example.org",
        9000,
        "data-bucket",
        "a/b.nc",
    )


def test_redacted_urls_never_hold_a_password_or_an_http_query():
    assert parse_url("ssh://ann:s3cret@host:2222/d/f").redacted() == "ssh://ann@host:2222/d/f"
    assert "sig" not in parse_url("https://h/x?X-Amz-Signature=sig").redacted()
    assert "pw" not in str(parse_url("https://u:pw@h/x"))


@pytest.mark.parametrize(
    "text",
    [
        "gopher://h/x",
        "ftp://h/x",
        "dict://h:11211/",
        "ssh://-oProxyCommand=touch${IFS}x/p",
        "ssh://-bad@host/p",
        "ssh://host",
        "s3://ab/x",
        "file://otherhost/etc/passwd",
        "s3://bucket/../../etc/x",
        "s3://ak:sk@bucket/key",
    ],
)
def test_unsafe_or_unsupported_urls_are_refused_at_parse_time(text: str):
    with pytest.raises(StagingError):
        parse_url(text)


# -- config and retry


def test_config_is_built_from_the_staging_tree_and_unknown_keys_are_errors():
    config = StagingConfig.from_config(
        {
            "staging": {
                "s3": {"endpoint_url": "http://x:1", "part_bytes": "8388608"},
                "retry": {"attempts": 2},
                "cache": False,
            }
        }
    )
    assert config.s3.part_bytes == 8 << 20 and config.retry.attempts == 2
    assert config.cache_dir is None
    with pytest.raises(ConfigError, match="staging.s3.endpoint"):
        StagingConfig.from_config({"staging": {"s3": {"endpoint": "x"}}})


def test_backoff_doubles_up_to_the_cap_with_full_jitter():
    policy = RetryPolicy(attempts=6, base_s=0.5, max_s=3.0)
    assert [policy.delay_s(n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert policy.delay_s(3, lambda: 0.25) == 0.5


def test_transient_errors_are_retried_and_permanent_ones_are_not():
    calls, waits = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientStagingError("reset")
        return "ok"

    assert call_with_retry(flaky, RetryPolicy(attempts=3), sleep=waits.append) == "ok"
    assert len(waits) == 2

    def denied() -> str:
        calls.append(1)
        raise StagingError("403")

    calls.clear()
    with pytest.raises(StagingError):
        call_with_retry(denied, RetryPolicy(attempts=5), sleep=waits.append)
    assert len(calls) == 1


def test_retries_give_up_after_the_configured_attempts_naming_the_count():
    def down() -> None:
        raise TransientStagingError("S3 unreachable")

    with pytest.raises(TransientStagingError, match="after 3 attempts"):
        call_with_retry(down, RetryPolicy(attempts=3), sleep=lambda s: None)


def test_a_missing_library_fails_with_an_install_hint(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delitem(sys.modules, "cryoflow.staging.s3", raising=False)
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(StagingError, match=r"pip install 'cryoflow\[s3\]'"):
        stager_class("s3")


# -- stage_in


def test_local_paths_and_file_urls_are_used_in_place(tmp_path: Path):
    src = tmp_path / "in.txt"
    src.write_text("x")
    work = tmp_path / "work"
    assert stage_in(str(src), {}, work_dir=work, config=make_config()) == str(src)
    assert stage_in([f"file://{src}"], {}, work_dir=work, config=make_config()) == [str(src)]


def test_a_missing_local_path_with_no_producing_host_is_a_clear_error(tmp_path: Path):
    with pytest.raises(MissingObjectError, match="does not exist on this host"):
        stage_in(str(tmp_path / "gone"), {}, work_dir=tmp_path, config=make_config())


def test_s3_files_are_fetched_into_the_work_folder_and_lists_keep_order(
    moto: MotoServer, tmp_path: Path
):
    bucket = moto.bucket()
    for key, body in (("a/x.txt", b"one"), ("b/x.txt", b"two"), ("c/y.txt", b"three")):
        moto.client.put_object(Bucket=bucket, Key=key, Body=body)
    urls = [f"s3://{bucket}/a/x.txt", f"s3://{bucket}/b/x.txt", f"s3://{bucket}/c/y.txt"]
    config = make_config(s3=moto.settings())
    paths = stage_in(urls, {}, work_dir=tmp_path / "w", config=config)
    assert [Path(p).read_bytes() for p in paths] == [b"one", b"two", b"three"]
    assert [Path(p).name for p in paths] == ["x.txt", "2-x.txt", "y.txt"]
    assert sorted(os.listdir(tmp_path / "w")) == ["2-x.txt", "x.txt", "y.txt"]


def test_the_endpoint_host_form_of_s3_urls_reaches_that_endpoint(moto: MotoServer, tmp_path):
    bucket = moto.bucket()
    moto.client.put_object(Bucket=bucket, Key="k.bin", Body=b"hosted")
    config = make_config(s3=replace(moto.settings(), endpoint_url=None, allow_http=True))
    path = stage_in(
        f"s3://127.0.0.1:{moto.port}/{bucket}/k.bin", {}, work_dir=tmp_path, config=config
    )
    assert Path(path).read_bytes() == b"hosted"


def test_copy_false_leaves_remote_urls_to_the_module(tmp_path: Path):
    url = "s3://some-bucket/k"
    assert stage_in(url, {"copy": "false"}, work_dir=tmp_path, config=make_config()) == url


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_unzip_of_a_fetched_archive_gives_its_top_level_entries_and_drops_the_archive(
    moto: MotoServer, tmp_path: Path
):
    bucket = moto.bucket()
    archive = _tar_gz({"scene/band1.tif": b"b1", "scene/band2.tif": b"b2", "meta.xml": b"m"})
    moto.client.put_object(Bucket=bucket, Key="in/scene.tar.gz", Body=archive)
    work = tmp_path / "w"
    entries = stage_in(
        f"s3://{bucket}/in/scene.tar.gz",
        {"unzip": "true"},
        work_dir=work,
        config=make_config(s3=moto.settings()),
    )
    assert entries == [str(work / "scene" / "scene"), str(work / "scene" / "meta.xml")]
    assert (work / "scene" / "scene" / "band2.tif").read_bytes() == b"b2"
    assert not (work / "scene.tar.gz").exists()


def test_unzip_of_a_local_archive_extracts_into_the_work_folder_and_keeps_the_archive(
    tmp_path: Path,
):
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.txt", "A")
    work = tmp_path / "w"
    entries = stage_in(str(archive), {"unzip": True}, work_dir=work, config=make_config())
    assert entries == [str(work / "data" / "a.txt")] and archive.exists()


def test_a_path_produced_on_another_host_is_fetched_with_proto_ssh(sshd: SshServer, tmp_path: Path):
    (sshd.chroot / "data" / "produced.dat").write_bytes(b"from the other node")
    known = sshd.known_hosts(tmp_path / "known_hosts", sshd.chroot_port)
    config = make_config(ssh=sshd.settings(known))
    flags = {"host": f"127.0.0.1:{sshd.chroot_port}", "proto": "ssh"}
    assert not Path("/data/produced.dat").exists()
    path = stage_in("/data/produced.dat", flags, work_dir=tmp_path / "w", config=config)
    assert path == str(tmp_path / "w" / "produced.dat")
    assert Path(path).read_bytes() == b"from the other node"


def test_the_cache_serves_the_same_version_again_without_a_download(
    http_server: FaultyHttpServer, tmp_path: Path
):
    (http_server.docroot / "c.bin").write_bytes(b"v1" * 1000)
    config = make_config(cache_dir=tmp_path / "cache")
    url = http_server.url("/f/c.bin")
    first = stage_in(url, {}, work_dir=tmp_path / "w1", config=config)
    second = stage_in(url, {}, work_dir=tmp_path / "w2", config=config)
    assert Path(first).read_bytes() == Path(second).read_bytes() == b"v1" * 1000
    assert http_server.hits["/f/c.bin"] == 3  # HEAD + GET, then HEAD only
    (http_server.docroot / "c.bin").write_bytes(b"v2" * 1000)
    third = stage_in(url, {}, work_dir=tmp_path / "w3", config=config)
    assert Path(third).read_bytes() == b"v2" * 1000


def test_a_server_that_refuses_head_is_downloaded_without_the_cache(
    http_server: FaultyHttpServer, tmp_path: Path
):
    (http_server.docroot / "g.bin").write_bytes(b"presigned")
    config = make_config(cache_dir=tmp_path / "cache")
    path = stage_in(http_server.url("/getonly/g.bin"), {}, work_dir=tmp_path, config=config)
    assert Path(path).read_bytes() == b"presigned"


def test_sweep_removes_staging_leftovers_only(tmp_path: Path):
    (tmp_path / ".scene.nc.part-abc123").write_bytes(b"half")
    (tmp_path / ".x.tar.part-zz").mkdir()
    (tmp_path / "scene.nc").write_bytes(b"whole")
    (tmp_path / ".hidden").write_bytes(b"keep")
    removed = sweep_staging(tmp_path)
    assert sorted(p.name for p in removed) == [".scene.nc.part-abc123", ".x.tar.part-zz"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "scene.nc"]


def test_sweep_spares_leftovers_younger_than_min_age(tmp_path: Path):
    (tmp_path / ".a.part-1").write_bytes(b"")
    assert sweep_staging(tmp_path, min_age_s=3600) == []


_CRASHER = """
import sys
from pathlib import Path
from cryoflow.failpoints import Failpoints
from cryoflow.staging.stage import stage_in
from staging_fixtures import make_config
stage_in(sys.argv[1], {}, work_dir=Path(sys.argv[2]), config=make_config(),
         failpoints=Failpoints("download_midstream=crash"))
"""


def test_a_crash_before_the_rename_leaves_no_file_that_looks_complete(
    http_server: FaultyHttpServer, tmp_path: Path
):
    (http_server.docroot / "f.bin").write_bytes(b"z" * 100_000)
    work = tmp_path / "w"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    done = subprocess.run(
        [sys.executable, "-c", _CRASHER, http_server.url("/f/f.bin"), str(work)],
        env=env,
        timeout=30,
    )
    assert done.returncode == 137
    assert not (work / "f.bin").exists()
    assert [p.name.startswith(".f.bin.part-") for p in work.iterdir()] == [True]
    sweep_staging(work)
    assert list(work.iterdir()) == []


# -- stage_out


def test_stage_out_uploads_files_lists_and_folders_to_s3_and_returns_their_urls(
    moto: MotoServer, tmp_path: Path
):
    bucket = moto.bucket()
    config = make_config(s3=moto.settings())
    one = tmp_path / "one.txt"
    one.write_text("1")
    folder = tmp_path / "result"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b")
    target = f"s3://{bucket}/out/"
    assert stage_out(str(one), target, basename=True, config=config) == f"{target}one.txt"
    assert stage_out([str(folder)], target, basename=True, config=config) == [f"{target}result/"]
    keys = sorted(o["Key"] for o in moto.client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["out/one.txt", "out/result/a.txt", "out/result/sub/b.txt"]


def test_stage_out_without_basename_writes_exactly_the_target(moto: MotoServer, tmp_path: Path):
    bucket = moto.bucket()
    src = tmp_path / "local-name.txt"
    src.write_text("data")
    config = make_config(s3=moto.settings())
    url = stage_out(str(src), f"s3://{bucket}/final/name.txt", basename=False, config=config)
    assert url == f"s3://{bucket}/final/name.txt"
    with pytest.raises(StagingError, match="basename false needs one file"):
        stage_out([str(src), str(src)], f"s3://{bucket}/x", basename=False, config=config)


def test_stage_out_to_a_local_folder_returns_plain_paths(tmp_path: Path):
    src = tmp_path / "r.txt"
    src.write_text("r")
    out = stage_out(str(src), str(tmp_path / "out"), basename=True, config=make_config())
    assert out == str(tmp_path / "out" / "r.txt") and Path(out).read_text() == "r"


def test_stage_out_to_ssh_creates_folders_and_returns_ssh_urls(sshd: SshServer, tmp_path: Path):
    src = tmp_path / "r.txt"
    src.write_text("over ssh")
    known = sshd.known_hosts(tmp_path / "known_hosts")
    target = f"ssh://127.0.0.1:{sshd.port}{sshd.folder}/new/deeper/"
    url = stage_out(str(src), target, basename=True, config=make_config(ssh=sshd.settings(known)))
    assert url == f"{target}r.txt"
    assert (sshd.folder / "new" / "deeper" / "r.txt").read_text() == "over ssh"


def test_a_missing_output_fails_the_post_with_its_name(tmp_path: Path):
    with pytest.raises(MissingObjectError, match="nothing.txt"):
        stage_out(
            str(tmp_path / "nothing.txt"), str(tmp_path / "o"), basename=True, config=make_config()
        )


def test_errors_name_the_url_but_never_its_password(sshd: SshServer, tmp_path: Path):
    known = sshd.known_hosts(tmp_path / "known_hosts")
    config = make_config(ssh=sshd.settings(known))
    url = f"ssh://{sshd.user}:hunter2@127.0.0.1:{sshd.port}{sshd.folder}/absent.bin"
    with pytest.raises(StagingError) as caught:
        stage_in(url, {}, work_dir=tmp_path, config=config)
    assert "absent.bin" in str(caught.value) and "hunter2" not in str(caught.value)


# -- the copyfiles module


def _copyfiles() -> Any:
    path = Path(__file__).resolve().parents[1] / "cryoflow" / "builtin_modules" / "copyfiles.py"
    spec = importlib.util.spec_from_file_location("cryoflow_test_copyfiles", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_copyfiles_copies_between_http_s3_ssh_and_local_folders(
    http_server: FaultyHttpServer, moto: MotoServer, sshd: SshServer, tmp_path: Path
):
    (http_server.docroot / "p.bin").write_bytes(b"payload")
    bucket = moto.bucket()
    known = sshd.known_hosts(tmp_path / "known_hosts")
    worker = WorkerHandle("w1")
    worker.staging_config = make_config(s3=moto.settings(), ssh=sshd.settings(known))  # type: ignore[attr-defined]
    copy = _copyfiles().process_task
    task = {"args": {"src": http_server.url("/f/p.bin"), "dst": f"s3://{bucket}/in/"}}
    assert copy(worker, task) == (100, {"dst": f"s3://{bucket}/in/p.bin"})
    ssh_dir = f"ssh://127.0.0.1:{sshd.port}{sshd.folder}/copies/"
    task = {"args": {"src": [f"s3://{bucket}/in/p.bin"], "dst": ssh_dir}}
    assert copy(worker, task) == (100, {"dst": [f"{ssh_dir}p.bin"]})
    task = {"args": {"src": f"{ssh_dir}p.bin", "dst": str(tmp_path / "o.bin"), "basename": False}}
    assert copy(worker, task) == (100, {"dst": str(tmp_path / "o.bin")})
    assert (tmp_path / "o.bin").read_bytes() == b"payload"
    assert worker.status["progress"] == 100
