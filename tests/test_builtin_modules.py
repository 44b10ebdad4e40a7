"""The built-in modules in cryoflow/builtin_modules/: declarations, and what each one does."""

from __future__ import annotations

import ast
import errno
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import staging_fixtures

from cryoflow.errors import UnsafeArchiveError
from cryoflow.graph.model import Outcome
from cryoflow.staging.extract import extract_archive
from cryoflow.workers.base import Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import BUILTIN_MODULES, run_task

MINE = ["noop", "remove", "move", "unzip", "waitforfile", "jsonparse", "archive", "cmdline"]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"builtin_{name}", BUILTIN_MODULES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(name: str, args: dict[str, Any], cancel: threading.Event | None = None) -> Any:
    worker = WorkerHandle("test-0", host="h")
    worker.bind("job", 1)
    progress, retval = load(name).process_task(worker, {"args": args}, cancel)
    assert progress == 100
    return retval


@pytest.mark.parametrize("name", MINE)
def test_every_builtin_module_declares_a_literal_ccmodule(name: str) -> None:
    tree = ast.parse((BUILTIN_MODULES / f"{name}.py").read_text())
    values = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ccmodule"
    ]
    declared = ast.literal_eval(values[0])
    required = {"description", "inputs", "outputs", "defaults", "status"}
    if name == "cmdline":  # its item is the workflow's options: no fixed outputs
        required.discard("outputs")
    assert required <= set(declared)
    module = load(name)
    entry = "start" if declared.get("input_type") else "process_task"
    assert callable(getattr(module, entry))


def test_noop_is_found_by_name_and_returns_its_args() -> None:
    task = Task(id="n", pebble_id=1, node="N", module="noop", module_ref=None, args={"a": 1})
    result = run_task(task, WorkerHandle("w"), threading.Event())
    assert (result.outcome, result.retval) == (Outcome.SUCCESS, {"a": 1})


def test_noop_sleeps_the_time_asked() -> None:
    started = time.monotonic()
    assert call("noop", {"time": "0.3"}) == {"time": "0.3"}
    assert 0.3 <= time.monotonic() - started < 0.6


def test_noop_ends_early_when_cancelled() -> None:
    cancel = threading.Event()
    threading.Timer(0.1, cancel.set).start()
    started = time.monotonic()
    call("noop", {"time": 30}, cancel)
    assert time.monotonic() - started < 2


def test_remove_deletes_files_and_folders_only_with_recursive(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(IsADirectoryError, match="set recursive"):
        call("remove", {"src": str(tmp_path / "d"), "ignoreerrors": False})
    kept = call("remove", {"src": str(tmp_path / "d")})  # ignoreerrors: reported, not raised
    assert (kept["deleted"], kept["errors"]) == (0, 1) and "set recursive" in kept["error"]
    out = call(
        "remove",
        {
            "src": [str(tmp_path / "f"), f"file://{tmp_path}/d", str(tmp_path / "gone")],
            "recursive": "true",
        },
    )
    assert out["removed"] == [str(tmp_path / "f"), str(tmp_path / "d")]
    assert (out["deleted"], out["errors"]) == (2, 0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        call("remove", {"src": str(tmp_path / "gone"), "ignoreerrors": False})


def test_move_renames_a_file_and_moves_a_list_into_a_folder(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    assert call("move", {"src": str(tmp_path / "a"), "dst": str(tmp_path / "x" / "a2")}) == {
        "dst": str(tmp_path / "x" / "a2")
    }
    out = call(
        "move", {"src": [str(tmp_path / "b"), str(tmp_path / "c")], "dst": str(tmp_path / "y")}
    )
    assert out == {"dst": [str(tmp_path / "y" / "b"), str(tmp_path / "y" / "c")]}
    assert (tmp_path / "x" / "a2").read_text() == "a" and not (tmp_path / "b").exists()


def test_move_copies_and_deletes_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("data")
    real_replace = os.replace

    def cross_device(a: Any, b: Any) -> None:
        if Path(a) == src:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", cross_device)
    out = call("move", {"src": str(src), "dst": str(tmp_path / "other" / "tree")})
    assert out == {"dst": str(tmp_path / "other" / "tree")}
    assert (tmp_path / "other" / "tree" / "sub" / "f").read_text() == "data"
    assert not src.exists()
    assert [p.name for p in (tmp_path / "other").iterdir()] == ["tree"]


def test_unzip_never_unpacks_beside_the_archive_and_dst_or_destdir_are_used_as_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f.txt").write_text("f")
    with tarfile.open(tmp_path / "pack.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "f.txt", "f.txt")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    tempfile.tempdir = None  # read TMPDIR again
    try:
        out = call("unzip", {"src": str(tmp_path / "pack.tar.gz")})
    finally:
        tempfile.tempdir = None
    folder = Path(out["destDir"])
    assert folder.parent == tmp_path / "tmp" and folder.name.startswith("unzip-")
    assert out == {"files": [str(folder / "f.txt")], "dst": str(folder),
                   "fileList": [str(folder / "f.txt")], "destDir": str(folder), "error": ""}
    assert not (tmp_path / "pack").exists()
    out = call("unzip", {"src": [str(tmp_path / "pack.tar.gz")], "dst": str(tmp_path / "to")})
    assert (out["files"], out["dst"]) == ([str(tmp_path / "to" / "f.txt")], [str(tmp_path / "to")])
    out = call("unzip", {"src": str(tmp_path / "pack.tar.gz"), "destDir": str(tmp_path / "d")})
    assert out["destDir"] == str(tmp_path / "d") and (tmp_path / "d" / "f.txt").exists()


def _unpack_in_a_graph(tmp_path: Path, **more: Any) -> tuple[Path, Path, dict[str, Any]]:
    """Run Start -> Unpack (unzip, no folder given) -> Read; return inbox, TMPDIR and
    Unpack's output."""
    inbox, scratch = tmp_path / "inbox", tmp_path / "scratch"
    inbox.mkdir(), scratch.mkdir()
    with zipfile.ZipFile(inbox / "scene.zip", "w") as zf:
        zf.writestr("band1.txt", "1")
    graph = {"workflow": {"name": "unpack", "nodes": [
        {"name": "Start", "module": "cmdline"},
        {"name": "Unpack", "module": "unzip", "downstreamOf": ["Start"],
         "args": {"src": str(inbox / "scene.zip"), **more}},
        {"name": "Read", "module": "bash", "downstreamOf": ["Unpack"],
         "args": {"script": "cat band1.txt", "cwd": {"output": "parent.destDir"}}}]}}
    (tmp_path / "g.json").write_text(json.dumps(graph))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYOFLOW_")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ccworkflow"), "g.json", "--no-http",
         "--report", "out.json"], cwd=tmp_path, capture_output=True, text=True, timeout=90,
        env={**env, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["scene.zip"]  # nothing beside it
    report = json.loads((tmp_path / "out.json").read_text())
    return inbox, scratch, report["pebbles"][0]["nodes"]["Unpack"]["output"]


def test_unzip_in_a_graph_unpacks_into_the_pebbles_work_folder_removed_with_the_pebble(
        tmp_path: Path) -> None:
    _, scratch, output = _unpack_in_a_graph(tmp_path)
    assert Path(output["destDir"]).parent == scratch / "cryoflow-unpack-1-Unpack"
    assert not list(scratch.iterdir())  # removed with the pebble


def test_unzip_in_a_graph_with_keep_leaves_its_folder_after_the_pebble(tmp_path: Path) -> None:
    _, scratch, output = _unpack_in_a_graph(tmp_path, keep=True)
    folder = Path(output["destDir"])
    assert folder.parent == scratch and (folder / "band1.txt").read_text() == "1"


def test_unzip_refuses_an_unsafe_archive(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        info = zipfile.ZipInfo("x")
        info.filename = "../evil"
        zf.writestr(info, "boom")
    with pytest.raises(UnsafeArchiveError, match="'../evil'"):
        call("unzip", {"src": str(tmp_path / "bad.zip")})
    assert not (tmp_path.parent / "evil").exists()


class FakeFile:
    """A file whose (size, mtime) follow a script, one entry per probe; None: missing."""

    def __init__(self, script: list[tuple[int, int] | None]) -> None:
        self.script = script
        self.clock = 0.0

    def stat(self, path: str) -> Any:
        state = self.script[min(int(self.clock), len(self.script) - 1)]
        if state is None:
            raise FileNotFoundError(path)
        return SimpleNamespace(st_size=state[0], st_mtime_ns=state[1])

    def poll(self) -> bool:
        self.clock += 1
        return False


def test_waitforfile_returns_once_size_and_mtime_held_still() -> None:
    fake = FakeFile([None, (1, 1), (5, 2), (5, 2), (5, 2), (5, 2)])
    states: list[str] = []
    wait = load("waitforfile").wait_until_stable
    size = wait(
        "f",
        stable_s=2,
        timeout_s=None,
        poll=fake.poll,
        report=states.append,
        stat=fake.stat,
        now=lambda: fake.clock,
    )
    assert (size, fake.clock) == (5, 4)
    assert states == ["waiting", "settling", "settling", "stable"]


def test_waitforfile_gives_up_after_its_timeout() -> None:
    fake = FakeFile([(n, n) for n in range(100)])
    wait = load("waitforfile").wait_until_stable
    with pytest.raises(TimeoutError, match="did not become stable within 5s"):
        wait(
            "f",
            stable_s=2,
            timeout_s=5,
            poll=fake.poll,
            report=lambda s: None,
            stat=fake.stat,
            now=lambda: fake.clock,
        )


def test_waitforfile_waits_for_a_real_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("12345")
    assert call("waitforfile", {"src": str(tmp_path / "f"), "stable_s": 0.1, "poll_s": 0.05}) == {
        "src": str(tmp_path / "f"),
        "size": 5,
    }


def test_jsonparse_reads_files_and_text(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"product": "S1", "n": 2}')
    parsed = {"product": "S1", "n": 2}
    assert call("jsonparse", {"src": str(tmp_path / "a.json")}) == {**parsed, "content": parsed}
    assert call("jsonparse", {"path": str(tmp_path / "a.json")})["content"] == parsed
    assert call("jsonparse", {"src": " [1, 2]"}) == {"value": [1, 2], "content": [1, 2]}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        call("jsonparse", {"src": str(tmp_path / "bad.json")})


@pytest.mark.parametrize("suffix", [".tar.gz", ".zip"])
def test_archive_packs_a_folder_and_files_that_unpack_the_same(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "x").write_text("x")
    (tmp_path / "f").write_text("f")
    dst = tmp_path / "out" / f"pack{suffix}"
    assert call(
        "archive", {"src": [str(tmp_path / "d"), str(tmp_path / "f")], "dst": str(dst)}
    ) == {"dst": str(dst)}
    tops = extract_archive(dst, tmp_path / "back")
    assert [p.name for p in tops] == ["d", "f"]
    assert (tmp_path / "back" / "d" / "e" / "x").read_text() == "x"
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]


def test_cmdline_offers_its_args_as_one_item() -> None:
    items: list[dict[str, Any]] = []
    handler = SimpleNamespace(onAdd=items.append)
    args = {"src": "/data/x", "force": True}
    load("cmdline").start(handler, args, threading.Event())
    assert items == [args] and items[0] is not args


moto = staging_fixtures.moto  # the S3 server fixture


def _run_builtin(name: str, args: dict[str, Any], staging: dict[str, Any]) -> Any:
    task = Task(id=f"1/{name}#1", pebble_id=1, node=name, module=name, module_ref=None,
                args=args, staging=staging)
    handle = WorkerHandle("w")
    handle.bind(task.id, 1)
    return run_task(task, handle, threading.Event())


def test_remove_deletes_an_s3_object_and_a_prefix_with_recursive(
        moto: staging_fixtures.MotoServer) -> None:
    bucket = moto.bucket()
    for key in ("one.txt", "dir/a", "dir/b"):
        moto.client.put_object(Bucket=bucket, Key=key, Body=b"x")
    staging = {"s3": {"endpoint_url": moto.endpoint, **moto.keys}, "cache": False}
    result = _run_builtin("remove", {"src": [f"s3://{bucket}/one.txt", f"s3://{bucket}/dir/"],
                                     "recursive": True}, staging)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert moto.client.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_remove_of_a_missing_s3_object_fails_only_when_asked_to(
        moto: staging_fixtures.MotoServer) -> None:
    bucket = moto.bucket()
    staging = {"s3": {"endpoint_url": moto.endpoint, **moto.keys}, "cache": False,
               "retry": {"attempts": 1}}
    quiet = _run_builtin("remove", {"src": f"s3://{bucket}/gone"}, staging)
    loud = _run_builtin("remove", {"src": f"s3://{bucket}/gone", "ignoreerrors": False},
                        staging)
    assert quiet.outcome is Outcome.SUCCESS and quiet.retval["removed"] == []
    assert loud.outcome is Outcome.ERROR and f"s3://{bucket}/gone" in (loud.error or "")
