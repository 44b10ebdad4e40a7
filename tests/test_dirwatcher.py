"""The dirwatcher: real files in temporary folders, a real head and store.

Each version of a file must become exactly one pebble, and only once it has settled.
The loop's own logic is also driven step by step with a fake clock and handler.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from enginekit import node
from watchkit import ROOT, Rig, input_node, still, wait_for, watch_graph

from cryoflow.errors import InputError, StoreError
from cryoflow.graph.expr import parse_restriction
from cryoflow.store import Store
from cryoflow.watch.dirwatch import DirwatchConfig, DirWatcher, Event
from cryoflow.watch.files import seen_key
from cryoflow.watch.settle import Version

QUIET = 0.3

# watchdog warns from its inotify thread when `mkdir -p` races its own recursive watch
# registration; as an error (pytest's setting) it would kill that shared thread.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")


def dirwatch(src: Path, **args: Any) -> Any:
    return input_node("In", "dirwatcher", {"src": str(src), "stabilize": QUIET, **args},
                      **args.pop("_node", {}))


def done(rig: Rig, count: int) -> list[dict[str, Any]]:
    pebbles = rig.pebbles()
    if len(pebbles) == count and all(p["state"] == "done" for p in pebbles):
        return pebbles
    return []


def output(rig: Rig, pebble: Mapping[str, Any]) -> dict[str, Any]:
    found = rig.pebble(pebble["id"])
    assert found is not None
    return dict(found["nodes"]["PIn"][""]["output"])


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------- real files


def test_a_slowly_written_file_becomes_one_pebble_only_after_it_settles(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    digest = hashlib.sha256()
    with Rig(watch_graph(dirwatch(src, stabilize=0.5)), tmp_path / "state") as rig:
        with open(src / "scene.dat", "wb") as f:
            for chunk in range(25):
                data = bytes([chunk]) * 4096
                f.write(data)
                f.flush()
                digest.update(data)
                assert rig.pebbles() == [], "a file still being written was offered"
                time.sleep(0.04)  # the writer's own pace
        pebbles = wait_for(lambda: done(rig, 1), what="one finished pebble")
        assert output(rig, pebbles[0])["sha256"] == digest.hexdigest()
        assert pebbles[0]["item"]["datasize"] == 25 * 4096
        assert still(lambda: len(rig.pebbles()) == 1, for_s=0.6)


def test_a_file_renamed_into_place_is_one_pebble_and_its_temp_name_is_ignored(
        tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with Rig(watch_graph(dirwatch(src)), tmp_path / "state") as rig:
        digest = write(src / "x.tmp", b"payload" * 100)
        os.rename(src / "x.tmp", src / "x.dat")
        pebbles = wait_for(lambda: done(rig, 1), what="the renamed file")
        assert pebbles[0]["item"]["relpath"] == "x.dat"
        assert output(rig, pebbles[0])["sha256"] == digest
        assert still(lambda: len(rig.pebbles()) == 1, for_s=2 * QUIET)


def test_a_file_deleted_before_it_settles_never_becomes_a_pebble(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with Rig(watch_graph(dirwatch(src, stabilize=0.5)), tmp_path / "state") as rig:
        write(src / "short-lived.dat", b"gone soon")
        time.sleep(0.05)  # the file exists for a moment, well under the quiet period
        (src / "short-lived.dat").unlink()
        write(src / "marker.dat", b"stays")
        pebbles = wait_for(lambda: done(rig, 1), what="the marker file")
        assert [p["item"]["relpath"] for p in pebbles] == ["marker.dat"]
        assert still(lambda: len(rig.pebbles()) == 1, for_s=0.6)


def test_files_that_arrived_while_the_head_was_down_are_picked_up_once_after_a_restart(
        tmp_path: Path) -> None:
    src, state = tmp_path / "in", tmp_path / "state"
    src.mkdir()
    g = watch_graph(dirwatch(src))
    write(src / "before.dat", b"1")
    with Rig(g, state) as rig:
        wait_for(lambda: done(rig, 1), what="the first file")
    write(src / "while-down.dat", b"2")
    with Rig(g, state) as rig:
        pebbles = wait_for(lambda: done(rig, 2), what="the file that came while down")
        assert still(lambda: len(rig.pebbles()) == 2, for_s=2 * QUIET)
    assert sorted(p["item"]["relpath"] for p in pebbles) == ["before.dat", "while-down.dat"]


def test_a_rewritten_file_is_a_new_pebble_and_an_untouched_one_is_not(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with Rig(watch_graph(dirwatch(src)), tmp_path / "state") as rig:
        write(src / "keep.dat", b"same")
        write(src / "data.dat", b"version one")
        wait_for(lambda: done(rig, 2), what="both files")
        new = write(src / "data.dat", b"version two, longer")
        pebbles = wait_for(lambda: done(rig, 3), what="the rewritten file")
        latest = max(pebbles, key=lambda p: p["id"])
        assert latest["item"]["relpath"] == "data.dat"
        assert output(rig, latest)["sha256"] == new
        assert still(lambda: len(rig.pebbles()) == 3, for_s=2 * QUIET)


def test_hidden_partial_and_unmatched_names_are_skipped(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    with Rig(watch_graph(dirwatch(src, patterns=["*.dat"])), tmp_path / "state") as rig:
        for name in (".hidden.dat", "upload.part", "note.txt", "scratch.tmp", "wanted.dat"):
            write(src / name, name.encode())
        pebbles = wait_for(lambda: done(rig, 1), what="the wanted file")
        assert pebbles[0]["item"]["relpath"] == "wanted.dat"
        assert still(lambda: len(rig.pebbles()) == 1, for_s=2 * QUIET)


def test_recursive_watching_finds_files_in_new_subfolders_and_plain_watching_does_not(
        tmp_path: Path) -> None:
    deep, flat = tmp_path / "deep", tmp_path / "flat"
    deep.mkdir()
    flat.mkdir()
    g = watch_graph(input_node("Deep", "dirwatcher", {"src": str(deep), "stabilize": QUIET,
                                                       "recursive": True}),
                    input_node("Flat", "dirwatcher", {"src": str(flat), "stabilize": QUIET}))
    with Rig(g, tmp_path / "state") as rig:
        for root in (deep, flat):
            (root / "a" / "b").mkdir(parents=True)
            write(root / "a" / "b" / "f.dat", b"nested")
            write(root / "top.dat", b"top")
        wait_for(lambda: len(rig.pebbles("Deep")) == 2 and len(rig.pebbles("Flat")) == 1,
                 what="two deep items and one flat item")
        assert still(lambda: len(rig.pebbles()) == 3, for_s=2 * QUIET)
        relpaths = sorted(p["item"]["relpath"] for p in rig.pebbles("Deep"))
    assert relpaths == [os.path.join("a", "b", "f.dat"), "top.dat"]


def test_dirs_mode_offers_a_folder_once_nothing_below_it_changed(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    g = watch_graph(dirwatch(src, dirs=True, stabilize=0.5), value={"output": "parent.relpath"})
    with Rig(g, tmp_path / "state") as rig:
        product = src / "product"
        (product / "inner").mkdir(parents=True)
        for index in range(6):
            write(product / "inner" / f"part{index}.bin", b"x" * 100)
            assert rig.pebbles() == [], "a folder still being filled was offered"
            time.sleep(0.1)  # the producer's own pace
        pebbles = wait_for(lambda: done(rig, 1), what="the settled folder")
        item = pebbles[0]["item"]
        assert (item["relpath"], item["isdir"], item["datasize"]) == ("product", True, 600)
        assert still(lambda: len(rig.pebbles()) == 1, for_s=0.6)


def test_a_restriction_on_the_input_node_holds_files_back_until_it_holds(
        tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    gate = (parse_restriction("Gate:open", "==1"),)
    g = watch_graph(input_node("In", "dirwatcher", {"src": str(src), "stabilize": 0.1},
                               restrictions=gate))
    with Rig(g, tmp_path / "state") as rig:
        for index in range(3):
            write(src / f"f{index}.dat", b"queued")
        assert still(lambda: rig.pebbles() == [], for_s=0.6)
        rig.set_status("Gate", "open", 1)
        wait_for(lambda: done(rig, 3), what="all three held-back files")


def test_odd_file_names_become_pebbles_with_keys_of_their_own(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    names = ["two words.dat", "line\nbreak.dat", os.fsdecode(b"bytes-\xff\xfe.dat"),
             "-leading-dash.dat", "pipe|and%percent.dat"]
    with Rig(watch_graph(dirwatch(src)), tmp_path / "state") as rig:
        for name in names:
            write(src / name, name.encode("utf-8", "surrogateescape"))
        pebbles = wait_for(lambda: done(rig, len(names)), what="every odd name")
        assert sorted(p["item"]["relpath"] for p in pebbles) == sorted(names)
        assert all(p["outcome"] == "completed" for p in pebbles)


def test_a_burst_of_files_becomes_as_many_pebbles_none_twice(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    count = 1500
    with Rig(watch_graph(dirwatch(src, stabilize=0.2)), tmp_path / "state", workers=0) as rig:
        for index in range(count):
            write(src / f"f{index:05}.dat", str(index).encode())
        wait_for(lambda: len(rig.pebbles()) >= count, timeout=60, what=f"{count} pebbles")
        assert still(lambda: len(rig.pebbles()) == count, for_s=0.5)
        assert len({p["item"]["relpath"] for p in rig.pebbles()}) == count


def test_two_dirwatchers_on_one_folder_each_get_their_own_pebble(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    g = watch_graph(*(input_node(name, "dirwatcher", {"src": str(src), "stabilize": QUIET})
                      for name in ("A", "B")))
    with Rig(g, tmp_path / "state") as rig:
        write(src / "shared.dat", b"both")
        wait_for(lambda: len(rig.pebbles("A")) == 1 and len(rig.pebbles("B")) == 1,
                 what="one pebble per input node")


def test_a_crash_between_settling_and_commit_loses_no_file_and_duplicates_none(
        tmp_path: Path) -> None:
    src, state = tmp_path / "in", tmp_path / "state"
    src.mkdir()
    for index in range(3):
        write(src / f"f{index}.dat", b"x" * index)
    crashed = _watch_in_child(state, src, "watcher_seen_before_commit=crash@2")
    assert crashed.wait(20) == 137
    with Store.open(state, workflow="t") as store:
        assert len(store.pebbles()) <= 1
    survivor = _watch_in_child(state, src, "")
    try:
        wait_for(lambda: Store.describe(state)["pebbles"] == 3, what="all three files")
    finally:
        survivor.kill()
        survivor.wait(10)
    with Store.open(state, workflow="t") as store:
        assert sorted(p["item"]["relpath"] for p in store.pebbles()) == [
            "f0.dat", "f1.dat", "f2.dat"]


def _watch_in_child(state: Path, src: Path, failpoints: str) -> subprocess.Popen[bytes]:
    script = ROOT / "tests" / "data" / "watch_modules" / "serve_dirwatcher.py"
    env = {**os.environ, "CRYOFLOW_FAILPOINTS": failpoints}
    return subprocess.Popen([sys.executable, str(script), str(state), str(src)],
                            stdout=subprocess.DEVNULL, env=env)


# ---------------------------------------------------------------------- the loop, stepped


class FakeHead:
    """The head as a watcher sees it: accepting, no status values, nothing seen."""

    accepting = True
    unfinished = 0
    node_order = ("In",)

    def status_value(self, channel: str, param: str) -> Any:
        return None

    def has_seen(self, key: str) -> bool:
        return False

    def pebble(self, pebble_id: int) -> Mapping[str, Any] | None:
        return None

    def failpoint(self, name: str) -> None:
        pass

    def release(self) -> None:
        pass


class FakeHandler:
    """Records offers; can refuse the next ones as a full store would."""

    def __init__(self) -> None:
        self.node = node("In", module="dirwatcher")
        self.head = FakeHead()
        self.offered: list[tuple[dict[str, Any], str | None]] = []
        self.refuse = 0

    def submit(self, item: Mapping[str, Any], *, idem_key: str | None = None,
               seen_key: str | None = None) -> Future[int]:
        future: Future[int] = Future()
        if self.refuse:
            self.refuse -= 1
            future.set_exception(StoreError("the disk is full"))
        else:
            self.offered.append((dict(item), seen_key))
            future.set_result(len(self.offered))
        return future


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stepped(src: Path, **args: Any) -> tuple[DirWatcher, FakeHandler, Clock]:
    handler, clock = FakeHandler(), Clock()
    config = DirwatchConfig.from_args("In", {"src": str(src), "stabilize": 5, **args})
    return DirWatcher(config, handler, clock=clock), handler, clock


def test_files_no_event_announced_are_found_by_a_rescan_after_an_overflow(
        tmp_path: Path) -> None:
    watcher, handler, clock = stepped(tmp_path)
    watcher.step()
    write(tmp_path / "missed.dat", b"the kernel dropped this event")
    clock.now += 10
    watcher.step()
    assert handler.offered == []
    watcher.request_rescan()
    watcher.step()
    clock.now += 5
    watcher.step()
    assert [item["relpath"] for item, _ in handler.offered] == ["missed.dat"]


def test_an_offer_the_store_refuses_is_offered_again_later(tmp_path: Path) -> None:
    watcher, handler, clock = stepped(tmp_path)
    write(tmp_path / "a.dat", b"a")
    handler.refuse = 1
    watcher.step()
    clock.now += 5
    watcher.step()
    watcher.step()
    assert handler.offered == []
    clock.now += 1
    watcher.step()
    assert [item["relpath"] for item, _ in handler.offered] == ["a.dat"]
    assert len(watcher.offers) == 0


def test_a_write_event_restarts_the_quiet_period(tmp_path: Path) -> None:
    watcher, handler, clock = stepped(tmp_path)
    path = tmp_path / "a.dat"
    write(path, b"a")
    watcher.step()
    clock.now += 4
    watcher._events.put(Event("change", str(path)))
    watcher.step()
    clock.now += 4
    watcher.step()
    assert handler.offered == []
    clock.now += 1
    watcher.step()
    assert len(handler.offered) == 1


def test_a_committed_version_is_not_offered_again_by_a_sweep(tmp_path: Path) -> None:
    watcher, handler, clock = stepped(tmp_path, sweep=30)
    write(tmp_path / "a.dat", b"a")
    watcher.step()
    clock.now += 5
    watcher.step()
    clock.now += 60
    watcher.step()
    clock.now += 5
    watcher.step()
    assert len(handler.offered) == 1


def test_the_seen_key_names_node_path_and_version_in_plain_ascii() -> None:
    key = seen_key("In", os.fsdecode(b"/d/a|b%\xff\n.dat"), Version(10, 20, 30))
    assert key == "In|/d/a%7Cb%25%FF%0A.dat|10|20|30"
    assert key.isascii()


def test_bad_arguments_are_refused_with_a_sentence_naming_them(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="argument 'src' is required"):
        DirwatchConfig.from_args("In", {})
    with pytest.raises(InputError, match="must be an existing folder"):
        DirwatchConfig.from_args("In", {"src": str(tmp_path / "missing")})
    with pytest.raises(InputError, match="argument 'stabilize' must be a number"):
        DirwatchConfig.from_args("In", {"src": str(tmp_path), "stabilize": "soon"})
    with pytest.raises(InputError, match="argument 'recursive' must be true or false"):
        DirwatchConfig.from_args("In", {"src": str(tmp_path), "recursive": "maybe"})


def test_a_missing_folder_stops_the_input_node_with_a_clear_error(tmp_path: Path) -> None:
    g = watch_graph(dirwatch(tmp_path / "nowhere"))
    with Rig(g, tmp_path / "state") as rig:
        errors = wait_for(rig.input_errors, what="the input error")
    assert "must be an existing folder" in errors[0]
