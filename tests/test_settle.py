"""The settle tracker: observations and time in, settled paths out; no disk, no sleeping."""

from __future__ import annotations

import pytest

from cryoflow.watch.settle import Settled, SettleTracker, Version


def probe(tracker: SettleTracker, path: str, size: int, now: float, *, mtime_ns: int = 1,
          inode: int = 7, touched: bool = False) -> list[Settled]:
    tracker.observe(path, size, mtime_ns, inode, now, touched=touched)
    return tracker.settled()


def test_a_file_settles_when_a_probe_after_the_quiet_period_finds_it_unchanged() -> None:
    tracker = SettleTracker(5.0)
    assert probe(tracker, "a", 10, 100.0) == []
    assert tracker.due(104.9) == []
    assert tracker.due(105.0) == ["a"]
    assert probe(tracker, "a", 10, 105.0) == [Settled("a", Version(10, 1, 7))]
    assert len(tracker) == 0


def test_a_growing_file_never_settles() -> None:
    tracker = SettleTracker(2.0)
    now = 0.0
    for size in range(1, 50):
        now += 1.0
        assert probe(tracker, "grow", size, now) == []
        for path in tracker.due(now):
            assert probe(tracker, path, size, now) == []
    assert "grow" in tracker


def test_a_change_of_mtime_or_inode_alone_restarts_the_clock() -> None:
    tracker = SettleTracker(1.0)
    probe(tracker, "f", 5, 0.0)
    assert probe(tracker, "f", 5, 1.0, mtime_ns=2) == []
    assert probe(tracker, "f", 5, 2.0, mtime_ns=2, inode=8) == []
    assert tracker.next_due() == 3.0
    assert probe(tracker, "f", 5, 3.0, mtime_ns=2, inode=8) == [Settled("f", Version(5, 2, 8))]


def test_a_touch_restarts_the_clock_even_when_size_and_mtime_look_the_same() -> None:
    tracker = SettleTracker(1.0)
    probe(tracker, "f", 5, 0.0)
    assert probe(tracker, "f", 5, 0.9, touched=True) == []
    assert tracker.due(1.5) == []
    assert tracker.touch("f", 1.5)
    assert tracker.next_due() == 2.5
    assert not tracker.touch("unknown", 1.5)


def test_a_forgotten_file_does_not_settle() -> None:
    tracker = SettleTracker(1.0)
    probe(tracker, "gone", 5, 0.0)
    tracker.forget("gone")
    assert tracker.due(10.0) == []
    assert tracker.next_due() is None
    assert tracker.settled() == []


def test_a_file_observed_again_after_being_forgotten_starts_afresh() -> None:
    tracker = SettleTracker(1.0)
    probe(tracker, "x", 1, 0.0)
    tracker.forget("x")
    probe(tracker, "x", 2, 5.0)
    assert tracker.due(5.5) == []
    assert tracker.due(6.0) == ["x"]


def test_due_names_each_waiting_path_once_however_often_it_was_touched() -> None:
    tracker = SettleTracker(1.0)
    probe(tracker, "busy", 1, 0.0)
    for step in range(1, 100):
        tracker.touch("busy", step / 100)
    assert tracker.due(1.5) == []
    assert tracker.due(2.0) == ["busy"]
    assert tracker.due(3.0) == []
    assert len(tracker._heap) <= 1


def test_files_settle_in_the_order_their_clocks_ran_out() -> None:
    tracker = SettleTracker(1.0)
    for index, name in enumerate(["c", "a", "b"]):
        probe(tracker, name, 1, float(index))
    due = tracker.due(10.0)
    assert due == ["c", "a", "b"]
    for path in due:
        tracker.observe(path, 1, 1, 7, 10.0)
    assert [s.path for s in tracker.settled()] == ["c", "a", "b"]


def test_a_probe_before_the_deadline_keeps_the_path_waiting() -> None:
    tracker = SettleTracker(2.0)
    probe(tracker, "f", 1, 0.0)
    assert tracker.due(2.0) == ["f"]
    assert probe(tracker, "f", 1, 1.0) == []
    assert tracker.next_due() == 2.0
    assert probe(tracker, "f", 1, 2.0) == [Settled("f", Version(1, 1, 7))]


def test_a_folder_settles_like_a_file_and_says_it_is_one() -> None:
    tracker = SettleTracker(1.0)
    tracker.observe("d", 100, 9, 3, 0.0, isdir=True)
    tracker.observe("d", 100, 9, 3, 1.0, isdir=True)
    assert tracker.settled() == [Settled("d", Version(100, 9, 3), isdir=True)]


def test_zero_stabilize_settles_on_the_second_probe() -> None:
    tracker = SettleTracker(0.0)
    assert probe(tracker, "f", 1, 0.0) == []
    assert tracker.due(0.0) == ["f"]
    assert probe(tracker, "f", 1, 0.0) == [Settled("f", Version(1, 1, 7))]


def test_a_negative_quiet_period_is_refused() -> None:
    with pytest.raises(ValueError, match="stabilize_s"):
        SettleTracker(-1.0)
