"""The job runtime (arguments, return values, ``loop``, ``post``), run in this process."""

from __future__ import annotations

import os
import shutil
import tarfile
import threading
from pathlib import Path
from typing import Any

import pytest
import staging_fixtures
from staging_fixtures import MotoServer

from cryoflow.graph.model import Outcome
from cryoflow.workers.base import JobResult, Task
from cryoflow.workers.handle import WorkerHandle
from cryoflow.workers.runtime import normalize, run_task

MODULES = Path(__file__).parent / "data" / "worker_modules"


class Collector:
    """A worker handle whose status and log messages land in lists."""

    def __init__(self) -> None:
        self.status: list[tuple[str, str, Any]] = []
        self.logs: list[tuple[str, str, str]] = []
        self.handle = WorkerHandle(
            "test-0",
            host="testhost",
            on_status=lambda *a: self.status.append(a),
            on_log=lambda *a: self.logs.append(a),
        )


moto = staging_fixtures.moto  # the S3 server fixture


def make_task(module: str, args: dict[str, Any] | None = None, **fields: Any) -> Task:
    fields.setdefault("module_ref", str(MODULES / f"{module}.py"))
    return Task(
        id=fields.pop("id", "job-1"),
        pebble_id=fields.pop("pebble_id", 7),
        node=fields.pop("node", "Node"),
        module=module,
        args=args or {},
        **fields,
    )


def run(task: Task, cancel: threading.Event | None = None) -> tuple[JobResult, Collector]:
    collector = Collector()
    return run_task(task, collector.handle, cancel or threading.Event()), collector


def test_a_cryocloud_module_runs_unchanged_with_its_sibling_import() -> None:
    task = make_task("cryocloud_wind", {"src": "/data/S1A_123.SAFE", "program": "wind.pro"})
    result, seen = run(task)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval == {
        "datafile": "/data/S1A_123.SAFE",
        "product": "S1A_123",
        "helper": "/data/S1A_123.SAFE",
    }
    assert ("job-1", "progress", 100) in seen.status
    assert ("job-1", "state", "helper ran") in seen.status
    assert seen.logs == [("job-1", "INFO", "Processing /data/S1A_123.SAFE")]


def test_an_exception_is_an_error_with_its_type_message_and_traceback() -> None:
    result, _ = run(make_task("probe_raise", {"message": "bad input"}))
    assert result.outcome is Outcome.ERROR
    assert result.error == "ValueError: bad input"
    assert "probe_raise.py" in result.stats["traceback"]
    assert "_inner" in result.stats["traceback"]


def test_a_failed_job_keeps_its_frames_when_python_cannot_mark_the_failing_expression(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def spurious(*args: Any, **kwargs: Any) -> list[str]:  # Python 3.11's threaded AST race
        raise SystemError("AST constructor recursion depth mismatch (before=15, after=-3)")

    monkeypatch.setattr("cryoflow.workers.runtime.traceback.format_exception", spurious)
    result, _ = run(make_task("probe_raise", {"message": "bad input"}))
    assert result.outcome is Outcome.ERROR
    assert result.error == "ValueError: bad input"
    text = result.stats["traceback"]
    assert text.startswith("Traceback (most recent call last):")
    assert "probe_raise.py" in text and "in _inner" in text
    assert text.rstrip().endswith("ValueError: bad input")


def test_a_progress_other_than_100_is_an_error_that_says_so() -> None:
    result, _ = run(make_task("probe_progress"))
    assert result.outcome is Outcome.ERROR
    assert result.error == "module returned progress 42 (expected 100)"


def test_a_bare_dict_and_none_both_count_as_success() -> None:
    assert run(make_task("probe_dict"))[0].retval == {"answer": 42}
    result, _ = run(make_task("probe_dict", {"none": True}))
    assert (result.outcome, result.retval) == (Outcome.SUCCESS, None)


@pytest.mark.parametrize(
    ("value", "outcome", "error"),
    [
        ((100, {"a": 1}), Outcome.SUCCESS, None),
        ((100, None), Outcome.SUCCESS, None),
        ((99.5, {}), Outcome.ERROR, "module returned progress 99.5 (expected 100)"),
        ("done", Outcome.ERROR, "module returned str (expected (progress, retval) or a dict)"),
    ],
)
def test_return_values_are_normalized(value: Any, outcome: Outcome, error: str | None) -> None:
    assert normalize(value)[0] is outcome
    assert normalize(value)[2] == error


def test_a_job_that_returns_after_its_cancel_event_was_set_ends_cancel() -> None:
    cancel = threading.Event()
    cancel.set()
    result, _ = run(make_task("probe_sleep", {"seconds": 30}), cancel)
    assert result.outcome is Outcome.CANCEL
    assert result.stats["runtime"] < 5


def test_every_job_is_measured() -> None:
    result, _ = run(make_task("probe_noop"))
    stats = result.stats
    assert {"runtime", "cpu_time", "max_memory", "started", "finished", "worker", "node"} <= set(
        stats
    )
    assert (stats["worker"], stats["node"]) == ("test-0", "testhost")
    assert stats["started"] <= stats["finished"] and stats["max_memory"] > 1 << 20


def test_a_module_is_imported_once_per_process_and_found_by_name_in_module_paths() -> None:
    task = make_task("probe_count", module_ref=None, module_paths=(str(MODULES),))
    first, second = run(task)[0], run(task)[0]
    assert second.retval["calls"] == first.retval["calls"] + 1


def test_a_module_that_cannot_be_imported_fails_the_job_with_a_clear_message() -> None:
    result, _ = run(make_task("nope", module_ref="no_such_module_anywhere"))
    assert result.outcome is Outcome.ERROR
    assert result.error is not None
    assert result.error.startswith("ModuleLoadError: cannot import module 'no_such_module")


def test_a_module_without_process_task_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty.py").write_text("ccmodule = {}\n")
    result, _ = run(make_task("empty", module_ref=str(tmp_path / "empty.py")))
    where = tmp_path / "empty.py"
    assert result.error == f"ModuleLoadError: module 'empty' ({where}) has no process_task function"


def test_the_job_runs_in_its_workdir_and_the_cwd_is_restored(tmp_path: Path) -> None:
    before = os.getcwd()
    result, _ = run(make_task("probe_count", workdir=str(tmp_path / "wd")))
    assert result.retval["cwd"] == str(tmp_path / "wd")
    assert os.getcwd() == before


# loop


def test_loop_calls_once_per_item_and_makes_each_output_an_ordered_list() -> None:
    result, _ = run(make_task("probe_loop", {"x": [1, 2, 3]}, loop="x"))
    assert result.outcome is Outcome.SUCCESS
    assert result.retval == {
        "double": [2, 4, 6],
        "x": [1, 2, 3],
        "extra": [None, "only two", None],
    }


def test_loop_stops_at_the_first_failing_item() -> None:
    result, _ = run(make_task("probe_loop", {"x": [1, "fail", 3]}, loop="x"))
    assert result.outcome is Outcome.ERROR
    assert result.error == "loop item 1: module returned progress 0 (expected 100)"


def test_loop_checks_cancel_between_items() -> None:
    result, _ = run(make_task("probe_loop", {"x": [1, "cancel", 3]}, loop="x"))
    assert result.outcome is Outcome.CANCEL
    assert result.error == "cancelled before loop item 2"


def test_loop_over_an_empty_list_gives_the_declared_outputs_as_empty_lists() -> None:
    result, _ = run(make_task("probe_loop", {"x": []}, loop="x"))
    assert result.retval == {"double": [], "x": []}


def test_loop_over_something_that_is_not_a_list_is_an_error() -> None:
    result, _ = run(make_task("probe_loop", {"x": 5}, loop="x"))
    assert result.error == "loop argument 'x' must be a list, not 5"


# file arguments (docs/staging.md)


def test_tempdirs_with_the_same_id_share_one_folder_per_pebble(tmp_path: Path) -> None:
    files = {"a": {"type": "tempdir", "id": "work"}, "b": {"type": "tempdir", "id": "work"}}
    args = {"a": str(tmp_path), "b": str(tmp_path)}
    task = make_task("probe_count", args, files=files, workflow="wf")
    first = run(task)[0].retval["args"]
    again = run(make_task("probe_count", args, files=files, workflow="wf", node="Other"))[0]
    other_pebble = run(make_task("probe_count", args, files=files, workflow="wf", pebble_id=8))[0]
    assert first["a"] == first["b"] == str(tmp_path / "cryoflow-wf-7-work")
    assert again.retval["args"]["a"] == first["a"]
    assert other_pebble.retval["args"]["a"] == str(tmp_path / "cryoflow-wf-8-work")
    assert Path(first["a"]).is_dir()


def test_dir_arguments_are_created_and_file_urls_are_used_in_place(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("x")
    files = {"out": {"type": "dir"}, "src": {"type": "file"}}
    args = {"out": str(tmp_path / "a" / "b"), "src": f"file://{tmp_path}/in.txt"}
    result, _ = run(make_task("probe_count", args, files=files))
    assert (tmp_path / "a" / "b").is_dir()
    assert result.retval["args"]["src"] == str(tmp_path / "in.txt")


def test_unzip_replaces_an_archive_by_its_top_level_entries_in_the_work_folder(
        tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("f")
    (tmp_path / "g.txt").write_text("g")
    with tarfile.open(tmp_path / "in.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "d", "d")
        tar.add(tmp_path / "g.txt", "g.txt")
    files = {"src": {"type": "file", "unzip": "true"}}
    result, _ = run(make_task("probe_count", {"src": str(tmp_path / "in.tar.gz")}, files=files))
    entries = [Path(p) for p in result.retval["args"]["src"]]
    assert [p.name for p in entries] == ["d", "g.txt"]
    folder = entries[0].parent
    assert folder.name == "in" and folder.parent.name.endswith("-inputs")
    assert (folder / "d" / "f.txt").read_text() == "f"
    assert not (tmp_path / "in").exists()  # never beside the archive
    assert (tmp_path / "in.tar.gz").is_file()
    shutil.rmtree(folder.parent)


def test_an_s3_input_is_fetched_so_the_module_reads_a_local_file(moto: MotoServer) -> None:
    bucket = moto.bucket()
    moto.client.put_object(Bucket=bucket, Key="in/scene.txt", Body=b"one\ntwo\n")
    files = {"src": {"type": "file"}}
    task = make_task("probe_count", {"src": f"s3://{bucket}/in/scene.txt"}, files=files,
                     staging=_s3_tree(moto))
    result, _ = run(task)
    assert result.outcome is Outcome.SUCCESS, result.error
    local = Path(result.retval["args"]["src"])
    assert local.name == "scene.txt" and local.read_bytes() == b"one\ntwo\n"


def test_an_unreachable_s3_input_fails_the_job_naming_the_url(moto: MotoServer) -> None:
    files = {"src": {"type": "file"}}
    task = make_task("probe_count", {"src": "s3://no-such-bucket-here/x"}, files=files,
                     staging=_s3_tree(moto))
    result, _ = run(task)
    assert result.outcome is Outcome.ERROR
    assert "s3://no-such-bucket-here/x" in (result.error or "")


def _s3_tree(moto: MotoServer) -> dict[str, Any]:
    return {"s3": {"endpoint_url": moto.endpoint, **moto.keys}, "cache": False,
            "retry": {"attempts": 1}}


def test_a_missing_local_input_file_is_an_error_that_names_it(tmp_path: Path) -> None:
    files = {"src": {"type": "file"}}
    result, _ = run(make_task("probe_count", {"src": str(tmp_path / "gone")}, files=files))
    assert (
        result.error
        == f"StagingError: input file {tmp_path / 'gone'} of argument 'src' does not exist here"
    )


# post (docs/staging.md)


def test_post_copies_outputs_to_a_local_folder_and_returns_the_new_paths(tmp_path: Path) -> None:
    (tmp_path / "out.txt").write_text("result")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "x").write_text("x")
    args = {"file": str(tmp_path / "out.txt"), "folder": str(tmp_path / "outdir")}
    post = (
        {"output": "file", "target": f"file://{tmp_path}/up", "basename": True},
        {"output": "folder", "target": str(tmp_path / "up2" / "renamed"), "basename": False},
    )
    result, _ = run(make_task("probe_noop", args, post=post))
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["file"] == str(tmp_path / "up" / "out.txt")
    assert (tmp_path / "up" / "out.txt").read_text() == "result"
    assert result.retval["folder"] == str(tmp_path / "up2" / "renamed")
    assert (tmp_path / "up2" / "renamed" / "x").read_text() == "x"
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == ["out.txt"]


def test_post_uploads_an_output_to_s3_and_returns_its_url(tmp_path: Path,
                                                          moto: MotoServer) -> None:
    bucket = moto.bucket()
    (tmp_path / "out.txt").write_text("result")
    post = ({"output": "file", "target": f"s3://{bucket}/prefix/"},)
    task = make_task("probe_noop", {"file": str(tmp_path / "out.txt")}, post=post,
                     staging=_s3_tree(moto))
    result, _ = run(task)
    assert result.outcome is Outcome.SUCCESS, result.error
    assert result.retval["file"] == f"s3://{bucket}/prefix/out.txt"
    body = moto.client.get_object(Bucket=bucket, Key="prefix/out.txt")["Body"].read()
    assert body == b"result"


def test_post_of_an_output_the_job_did_not_return_fails_the_job() -> None:
    result, _ = run(make_task("probe_noop", {}, post=({"output": "dst", "target": "/tmp"},)))
    assert result.error == "StagingError: post: the job returned no output 'dst' to upload"


# the worker handle


def test_status_and_log_are_published_only_while_a_job_is_bound() -> None:
    seen = Collector()
    seen.handle.status["progress"] = 5
    seen.handle.log.info("lost")
    seen.handle.bind("j", 3)
    seen.handle.status["progress"] = 50
    seen.handle.log.error("failed %d", 2)
    assert seen.status == [("j", "progress", 50)]
    assert seen.logs == [("j", "ERROR", "failed 2")]
    assert seen.handle.status["progress"] == 50
    seen.handle.bind(None)
    assert dict(seen.handle.status) == {}


def test_log_records_carry_the_job_and_pebble_ids() -> None:
    seen = Collector()
    records = []
    seen.handle.log.logger.addFilter(lambda record: records.append(record) or True)
    seen.handle.bind("j", 3)
    seen.handle.log.warning("w")
    assert (records[0].job_id, records[0].pebble_id) == ("j", 3)
