"""Modules written for CryoCloud run unchanged: status objects, self.log, the stop
event, self.cfg and the CryoCloud/CryoCore names they import, and the built-in
modules that keep CryoCloud's contracts (unzip, noop, remove, ffmpeg, idl, git,
communicate)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from cryoflow.graph.model import Outcome
from cryoflow.graph.modules import ModuleFinder
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import run_task

MODULES = Path(__file__).parent / "data" / "cryocloud" / "modules"


class Seen:
    """A worker handle whose published status values and log lines land in lists."""

    def __init__(self) -> None:
        self.status: list[tuple[str, Any]] = []
        self.logs: list[tuple[str, str]] = []
        self.handle = WorkerHandle(
            "w-1", host="testhost",
            on_status=lambda _job, key, value: self.status.append((key, value)),
            on_log=lambda _job, level, message: self.logs.append((level, message)))

    def values(self, key: str) -> list[Any]:
        return [value for k, value in self.status if k == key]


def run(module: str, args: dict[str, Any], cancel: threading.Event | None = None,
        builtin: bool = False) -> tuple[JobResult, Seen]:
    seen = Seen()
    ref = None if builtin else str(MODULES / f"{module}.py")
    task = Task(id="job-1", pebble_id=3, node="N", module=module, module_ref=ref, args=args)
    return run_task(task, seen.handle, cancel or threading.Event()), seen


# the module API


def test_status_values_are_objects_with_set_get_and_inc_and_every_change_is_published() -> None:
    result, seen = run("status_user", {"items": ["a", "b", "c", "d"], "label": "L"})
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["counted"] == 4 and result.retval["had_label"] is True
    assert seen.values("counted") == [0, 1, 2, 3, 4]
    assert seen.values("progress") == [25.0, 50.0, 75.0, 100.0]
    assert seen.values("label") == ["L"]
    assert ("INFO", "counted 4 items for L") in seen.logs
    assert ("DEBUG", "counted a") in seen.logs


def test_the_worker_config_has_a_tempdir_and_get_arg_names_a_missing_argument() -> None:
    result, _ = run("status_user", {"items": []}, builtin=False)
    assert result.outcome is Outcome.ERROR  # progress of nothing: division by zero
    handle = WorkerHandle("w")
    assert os.path.isdir(handle.cfg["tempdir"]) and handle.cfg.get("datadir") == "/"
    with pytest.raises(KeyError, match="missing argument 'nope'"):
        handle.get_arg({"args": {"a": 1}}, "nope")
    assert handle.get_arg({"args": {}}, "nope", 7) == 7


def test_a_status_value_reads_like_its_value_and_unset_progress_is_zero() -> None:
    handle = WorkerHandle("w")
    handle.bind("j", 1)
    assert handle.status["progress"].get_value() == 0 and "progress" not in handle.status
    handle.status["progress"] = 40
    assert handle.status["progress"] == 40 and int(handle.status["progress"]) == 40
    assert f"{handle.status['progress']:03d}" == "040" and handle.status.get("progress") == 40
    handle.status["n"].inc(2)
    handle.status["n"].dec()
    assert dict(handle.status.values_dict()) == {"progress": 40, "n": 1}


def test_a_module_looping_on_its_stop_event_ends_when_the_job_is_cancelled() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    result, seen = run("stop_reader", {"seconds": 20}, cancel)
    assert time.monotonic() - started < 5
    assert result.outcome is Outcome.CANCEL
    assert any(level == "INFO" and message.startswith("stopped at") for level, message in seen.logs)


def test_cryocore_api_stop_event_is_set_only_for_the_cancelled_jobs_thread() -> None:
    from cryoflow.compat import install

    install()
    from CryoCore import API  # type: ignore[import-not-found]

    assert not API.api_stop_event.is_set()
    handle = WorkerHandle("w")
    cancel = threading.Event()
    handle.bind("j", 1, cancel)
    cancel.set()
    other: list[bool] = []
    thread = threading.Thread(target=lambda: other.append(API.api_stop_event.is_set()))
    thread.start()
    thread.join()
    assert API.api_stop_event.is_set() and other == [False]
    handle.bind(None)
    assert not API.api_stop_event.is_set()


def test_fileprep_and_the_cryocore_api_work_inside_a_job(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as zf:
        zf.writestr("inner.txt", "zipped")
    urls = [str(tmp_path / "a.txt"), f"file://{tmp_path}/b.zip?unzip=true"]
    result, seen = run("prep_user", {"urls": urls})
    assert result.outcome is Outcome.SUCCESS, result.error
    files = result.retval["fileList"]
    assert files[0] == str(tmp_path / "a.txt")
    assert [Path(f).name for f in files[1:]] == ["inner.txt"]
    assert Path(files[1]).read_text() == "zipped"
    assert result.retval["size"] == len("hello") + len("zipped")
    assert ("INFO", "prepared 2 files") in seen.logs
    assert seen.values("state") == ["prepared"]


def test_an_unknown_cryocloud_name_fails_the_job_with_the_missing_module() -> None:
    result, _ = run("noop", {}, builtin=True)
    assert result.outcome is Outcome.SUCCESS
    from cryoflow.compat import install

    install()
    with pytest.raises(ModuleNotFoundError, match="CryoCloud.Common.kubernetesmanager"):
        __import__("CryoCloud.Common.kubernetesmanager")


# built-ins with CryoCloud's contracts


def test_unzip_keeps_cryoclouds_outputs_and_unpacks_into_a_new_folder_under_tempdir(
        tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "s.zip", "w") as zf:
        zf.writestr("scene/band1.tif", "1")
        zf.writestr("meta.xml", "m")
    result, _ = run("unzip", {"src": str(tmp_path / "s.zip"), "tempDir": str(tmp_path / "t")},
                    builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    dest = Path(result.retval["destDir"])
    assert dest.parent == tmp_path / "t" and dest.name.startswith("unzip-")
    assert sorted(result.retval["fileList"]) == [str(dest / "meta.xml"), str(dest / "scene")]
    assert result.retval["error"] == "" and result.retval["files"] == result.retval["fileList"]


def test_unzip_removes_a_partly_unpacked_folder_unless_keep(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
    (tmp_path / "bad.zip").write_bytes(b"not a zip at all")
    sources = [str(tmp_path / "good.zip"), str(tmp_path / "bad.zip")]
    result, _ = run("unzip", {"src": sources, "tempDir": str(tmp_path / "t")}, builtin=True)
    assert result.outcome is Outcome.ERROR and list((tmp_path / "t").iterdir()) == []
    result, _ = run("unzip", {"src": sources, "tempDir": str(tmp_path / "k"), "keep": True},
                    builtin=True)
    assert result.outcome is Outcome.ERROR
    [kept] = (tmp_path / "k").iterdir()
    assert (kept / "ok.txt").read_text() == "fine"


def test_builtins_declare_cryoclouds_defaults_and_inputs() -> None:
    finder = ModuleFinder([])
    noop, unzip, move = finder.find("noop"), finder.find("unzip"), finder.find("move")
    assert noop.defaults["runOn"] == "always" and noop.defaults["priority"] == 10
    assert {"time", "randomize", "ignored"} <= set(noop.inputs or {})
    assert {"tempDir", "keep", "src", "dst"} <= set(unzip.inputs or {})
    assert {"destDir", "fileList", "error"} <= set(unzip.outputs or {})
    assert "type" not in unzip.defaults and "type" not in move.defaults
    assert move.defaults["runOn"] == "always"
    assert finder.find("remove").defaults["type"] == "admin"
    assert {"path"} <= set(finder.find("jsonparse").inputs or {})
    for name in ("communicate", "ffmpeg", "idl", "docker", "build_docker", "git"):
        assert finder.find(name).ref.endswith(f"builtin_modules/{name}.py")


def test_remove_removes_companion_files_and_the_unzipped_twin(tmp_path: Path) -> None:
    for name in ("img", "img.hdr", "pack.zip"):
        (tmp_path / name).write_text("x")
    (tmp_path / "pack").mkdir()
    result, _ = run("remove", {"src": [str(tmp_path / "img"), str(tmp_path / "pack.zip")],
                               "extension": ".hdr", "remove_unzipped": True,
                               "recursive": True}, builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["deleted"] == 4 and list(tmp_path.iterdir()) == []


def test_archive_into_a_folder_rolls_out_the_oldest_entries_beyond_maxsize(
        tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for i, name in enumerate(["old", "mid"]):
        (archive / name).write_bytes(b"x" * 600_000)
        os.utime(archive / name, (1_000_000 + i, 1_000_000 + i))
    (tmp_path / "new").write_bytes(b"y" * 600_000)
    result, _ = run("archive", {"src": str(tmp_path / "new"), "dst": str(archive),
                                "maxsize": 1.3}, builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert sorted(p.name for p in archive.iterdir()) == ["mid", "new"]
    assert result.retval["removed"] == [str(archive / "old")]


# built-ins that run tools


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    source = "testsrc=duration=2:size=64x48:rate=10"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_ffmpeg_transcodes_with_progress_and_picks_the_container_from_the_codec(
        video: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    result, seen = run("ffmpeg", {"src": str(video), "dst": str(out), "size": "32x24",
                                  "container": "auto"}, builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["dst"] == str(out) + ".mp4" and Path(result.retval["dst"]).stat().st_size
    assert seen.values("progress")[-1] == 100 and "converting" in seen.values("state")
    assert seen.values("frame")  # ffmpeg's own progress report reached the status
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width", "-of", "csv=p=0", result.retval["dst"]],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "32"


def test_ffmpeg_failure_names_the_exit_code_and_ffmpegs_last_words(tmp_path: Path) -> None:
    (tmp_path / "junk.mp4").write_text("not a video")
    result, _ = run("ffmpeg", {"src": str(tmp_path / "junk.mp4"), "dst": str(tmp_path / "o.mp4")},
                    builtin=True)
    assert result.outcome is Outcome.ERROR
    assert "ffmpeg exited with code" in (result.error or "") and "junk.mp4" in (result.error or "")


def test_idl_says_clearly_when_idl_is_not_installed(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result, _ = run("idl", {"cmd": ["-e", "print, 1"]}, builtin=True)
    assert result.outcome is Outcome.ERROR
    assert "'idl' is not installed on this worker" in (result.error or "")


def fake_idl(folder: Path, body: str) -> None:
    script = folder / "idl"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_idl_output_sets_status_logs_and_outputs(monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    fake_idl(tmp_path, 'echo "[progress] 50"\necho "<warning> low on coffee"\n'
                       'echo "product=S1_123"\necho \'ret={"wind": 7}\'\necho "args: $*"\n')
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    result, seen = run("idl", {"cmd": ["-e", "wind"], "dir": str(tmp_path)}, builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["product"] == "S1_123" and result.retval["wind"] == 7
    assert result.retval["status"] == "ok"
    assert seen.values("progress") == ["50", 100]
    assert ("WARNING", "low on coffee") in seen.logs


def test_idl_is_stopped_after_max_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_idl(tmp_path, "sleep 30\n")
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    started = time.monotonic()
    result, seen = run("idl", {"cmd": [], "max_time": 0.5}, builtin=True)
    assert time.monotonic() - started < 10
    assert result.outcome is Outcome.ERROR
    assert "ran longer than max_time 0.5 s" in (result.error or "")
    assert seen.values("idl")[-1].startswith("killed")


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@x"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_git_clones_then_updates_a_repository(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    git("init", "-q", "-b", "main", cwd=src)
    git("commit", "-q", "--allow-empty", "-m", "one", cwd=src)
    args = {"src": str(src), "dst": str(tmp_path / "clones"), "name": "repo", "branch": "main"}
    result, seen = run("git", args, builtin=True)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["branch"] == "main" and "cloning repo" in seen.values("state")
    git("commit", "-q", "--allow-empty", "-m", "two", cwd=src)
    result, _ = run("git", args, builtin=True)
    assert result.retval["commit"] == git("rev-parse", "HEAD", cwd=src)
    bad, _ = run("git", {**args, "name": "other", "src": str(tmp_path / "nothing")}, builtin=True)
    assert bad.outcome is Outcome.ERROR and "git exited with code 128" in (bad.error or "")


def test_communicate_lets_two_pebbles_with_one_msgid_meet(tmp_path: Path) -> None:
    results: dict[str, JobResult] = {}

    def party(name: str) -> None:
        args = {"msgid": "S1_123", "party": name, "resolveOn": "Wave", "dir": str(tmp_path),
                "timeout": 20}
        results[name] = run("communicate", args, builtin=True)[0]

    threads = [threading.Thread(target=party, args=(n,)) for n in ("Wind", "Wave")]
    threads[0].start()
    time.sleep(0.3)
    threads[1].start()
    for thread in threads:
        thread.join()
    wind, wave = results["Wind"], results["Wave"]
    assert wind.outcome is Outcome.SUCCESS and wave.outcome is Outcome.SUCCESS
    assert wind.retval["parties"] == ["Wind", "Wave"] == wave.retval["parties"]
    assert (wind.retval["resolved"], wave.retval["resolved"]) == (False, True)
    assert wave.retval["messages"]["Wind"]["party"] == "Wind"


def test_communicate_alone_times_out_naming_who_arrived(tmp_path: Path) -> None:
    result, _ = run("communicate", {"msgid": "m", "party": "A", "dir": str(tmp_path),
                                    "timeout": 0.3}, builtin=True)
    assert result.outcome is Outcome.ERROR
    assert "1 of 2 parties arrived within 0.3 s (A)" in (result.error or "")


def test_the_tools_the_builtins_run_are_installed() -> None:
    assert shutil.which("ffmpeg") and shutil.which("git"), "scripts/test.sh installs them"


def test_a_text_result_of_a_module_without_outputs_is_kept_as_retval() -> None:
    result, _ = run("text_result", {"errors": "b.tif: missing"})
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval == {"retval": "b.tif: missing"}


# the CryoCloud.Common helpers


def test_the_netwatcher_helper_hands_posts_to_on_add_and_checks_its_schema() -> None:
    import json
    import urllib.error
    import urllib.request

    from cryoflow.compat import install

    install()
    from CryoCloud.Common import NetWatcher  # type: ignore[import-not-found]

    posted: list[dict[str, Any]] = []

    def on_add(info: dict[str, Any]) -> int:
        posted.append(info)
        return len(posted)

    stop = threading.Event()
    schema = {"type": "object", "required": ["product"]}
    watcher = NetWatcher(0, onAdd=on_add, stop_event=stop, schema=schema)
    watcher.start()
    url = f"http://127.0.0.1:{watcher.port}/task"
    try:
        request = urllib.request.Request(url, data=json.dumps({"product": "S1"}).encode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert (reply.status, json.loads(reply.read())) == (202, {"id": 1})
        bad = urllib.request.Request(url, data=b'{"other": 1}')
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(bad, timeout=10)
        assert refused.value.code == 400
        assert "'product' is a required property" in refused.value.read().decode()
    finally:
        stop.set()
        watcher.join(10)
    assert posted == [{"product": "S1"}]


def test_the_directory_watcher_helper_offers_each_settled_file_once(tmp_path: Path) -> None:
    from cryoflow.compat.CryoCloud.Common.directorywatcher import DirectoryWatcher

    seen: list[dict[str, Any]] = []
    watcher = DirectoryWatcher(1, str(tmp_path), seen.append, stabilize=0.5)
    (tmp_path / "a.dat").write_text("12")
    watcher.scan(0.0)
    watcher.scan(0.2)
    assert seen == []  # not settled yet
    watcher.scan(0.6)
    watcher.scan(5.0)
    assert [(i["relpath"], i["datasize"]) for i in seen] == [("a.dat", 2)]
    with pytest.raises(FileNotFoundError, match="it is not a folder"):
        DirectoryWatcher(2, str(tmp_path / "none"), seen.append)
