"""One test per rule of docs/semantics.md, run through the pure engine."""

from __future__ import annotations

from enginekit import Driver, fail, graph, node

from cryoflow.engine.records import (
    JobLost,
    NodeStatus,
    PebbleAdded,
    PebbleCancelled,
    PebbleOutcome,
    PebbleRetried,
)
from cryoflow.graph.model import Outcome, WorkerClass

# ------------------------------------------------------------------- section 3: pebbles


def test_input_item_becomes_the_input_nodes_output() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"x": {"output": "In.name"}})))
    d.add({"name": "scene1"})
    d.run()
    assert d.ran[0].args == {"x": "scene1"}
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_pebbles_are_independent() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"x": {"output": "parent.n"}})),
               {"A": lambda j: (Outcome.ERROR, "bad") if j.args["x"] == 1 else
                (Outcome.SUCCESS, {})})
    d.add({"n": 1}, pebble_id=1)
    d.add({"n": 2}, pebble_id=2)
    d.run()
    assert d.done[1].outcome is PebbleOutcome.FAILED
    assert d.done[2].outcome is PebbleOutcome.COMPLETED


# ------------------------------------------------------------------- section 4: resolution


def test_node_waits_for_all_parents_by_default() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("In",)),
                     node("C", ("A", "B"))))
    d.add()
    d.step()
    assert [j.node for j in d.queue] == ["B"]
    d.run()
    assert d.ran_nodes() == ["A", "B", "C"]


def test_resolve_on_any_runs_after_the_first_parent_and_only_once() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("In",)),
                     node("C", ("A", "B"), resolve_on_any=True)))
    d.add()
    d.run()
    assert d.ran_nodes().count("C") == 1
    assert d.ran_nodes().index("C") == 2
    assert d.state("C").resolved_by == "A"


def test_resolve_on_any_ignores_skipped_parents() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), run_on="never"), node("B", ("In",)),
                     node("C", ("A", "B"), resolve_on_any=True)))
    d.add()
    d.run()
    assert d.state("C").resolved_by == "B"


def test_combined_outcome_is_error_before_timeout_before_success() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("In",)),
                     node("C", ("A", "B"), run_on="always")),
               {"A": lambda j: (Outcome.TIMEOUT, "slow"), "B": fail()})
    d.add()
    d.run()
    assert d.state("C").combined is Outcome.ERROR


def test_all_skipped_parents_skip_the_node_and_its_subtree() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), run_on="never"), node("B", ("A",)),
                     node("C", ("B",))))
    d.add()
    d.run()
    assert d.ran_nodes() == []
    assert d.state("C").outcome is Outcome.SKIPPED
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_run_on_success_is_skipped_after_an_error() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("A",), run_on="success")),
               {"A": fail()})
    d.add()
    d.run()
    assert d.state("B").outcome is Outcome.SKIPPED


def test_run_on_error_runs_only_after_an_error() -> None:
    g = graph(node("In"), node("A", ("In",)), node("H", ("A",), run_on="error"))
    ok = Driver(g)
    ok.add()
    ok.run()
    bad = Driver(g, {"A": fail()})
    bad.add()
    bad.run()
    assert "H" not in ok.ran_nodes() and "H" in bad.ran_nodes()


def test_run_on_error_handles_a_timeout_when_no_sibling_takes_timeouts() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("H", ("A",), run_on="error")),
               {"A": lambda j: (Outcome.TIMEOUT, "timeout after 2s")})
    d.add()
    d.run()
    assert "H" in d.ran_nodes()
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_run_on_error_leaves_a_timeout_to_a_sibling_with_run_on_timeout() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("H", ("A",), run_on="error"),
                     node("T", ("A",), run_on="timeout")),
               {"A": lambda j: (Outcome.TIMEOUT, "timeout after 2s")})
    d.add()
    d.run()
    assert d.ran_nodes() == ["A", "T"]


def test_run_on_always_runs_after_any_outcome_and_never_never_runs() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("A",), run_on="always"),
                     node("N", ("A",), run_on="never")), {"A": fail()})
    d.add()
    d.run()
    assert "B" in d.ran_nodes() and "N" not in d.ran_nodes()


def test_run_if_false_skips_the_node() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), run_if="option:force"),
                     node("B", ("In",), run_if="option:count > 10")),
               options={"force": False, "count": 11})
    d.add()
    d.run()
    assert d.ran_nodes() == ["B"]
    assert d.state("A").outcome is Outcome.SKIPPED


def test_run_if_reads_outputs_of_named_nodes() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)),
                     node("B", ("A",), run_if="output:In.kind == 'sar'")))
    d.add({"kind": "optical"})
    d.run()
    assert d.ran_nodes() == ["A"]


def test_run_if_evaluation_error_fails_the_node_with_the_message() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), run_if="option:x < 3")),
               options={"x": "abc"})
    d.add()
    d.run()
    state = d.state("A")
    assert state.outcome is Outcome.ERROR and "cannot compare" in state.error


def test_multi_parent_node_under_a_skipped_branch_runs_with_the_others() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), run_on="never"), node("B", ("In",)),
                     node("C", ("A", "B"), run_on="success")))
    d.add()
    d.run()
    assert "C" in d.ran_nodes()
    assert d.state("C").combined is Outcome.SUCCESS


# ------------------------------------------------------------------- section 5: arguments


def test_literal_option_and_config_arguments_resolve() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), config_root="Proc.Wind", args={
        "lit": 7, "opt": {"option": "the-level"}, "conf": {"config": "block"},
        "wide": {"config": "top"}})),
        options={"the_level": 3}, config={"Proc": {"Wind": {"block": 64}}, "top": "t"})
    d.add()
    d.run()
    assert d.ran[0].args == {"lit": 7, "opt": 3, "conf": 64, "wide": "t"}


def test_output_of_parent_prefers_the_resolving_parent_then_downstream_order() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("In",)),
                     node("C", ("A", "B"), resolve_on_any=True,
                          args={"who": {"output": "parent.by"}})))
    d.add()
    d.run()
    job = next(j for j in d.ran if j.node == "C")
    assert job.args["who"] == "A"


def test_output_of_a_named_node_reads_any_finished_node() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"v": 1}), node("B", ("A",)),
                     node("C", ("B",), args={"x": {"output": "A.v"}})))
    d.add()
    d.run()
    assert d.ran[-1].args == {"x": 1}


def test_parent_error_is_the_failed_parents_message() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)),
                     node("H", ("A",), run_on="error", args={"msg": {"output": "parent.error"}})),
               {"A": fail("disk on fire")})
    d.add()
    d.run()
    assert d.ran[-1].args == {"msg": "disk on fire"}


def test_stat_of_parent_returns_one_statistic() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)),
                     node("B", ("A",), args={"host": {"stat": "parent.node"},
                                             "tries": {"stat": "A.attempts"}})))
    d.add()
    d.run()
    assert d.ran[-1].args == {"host": "hostA", "tries": 1}


def test_missing_output_uses_the_default() -> None:
    d = Driver(graph(node("In"), node("A", ("In",),
                                      args={"x": {"output": "parent.nope", "default": 5}})))
    d.add()
    d.run()
    assert d.ran[0].args == {"x": 5}


def test_missing_output_without_default_fails_the_job_with_a_clear_message() -> None:
    d = Driver(graph(node("In"), node("Wind", ("In",),
                                      args={"src": {"output": "parent.fullpath"}})))
    d.add({"other": 1})
    d.run()
    state = d.state("Wind")
    assert state.outcome is Outcome.ERROR
    assert state.error == "argument 'src' of node 'Wind': output 'parent.fullpath' is missing"


def test_output_of_a_failed_node_without_default_is_null() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)),
                     node("H", ("A",), run_on="error", args={"p": {"output": "parent.path"}})),
               {"A": fail()})
    d.add()
    d.run()
    assert d.ran[-1].args == {"p": None}


def test_an_argument_with_only_a_default_is_the_default() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"x": {"default": [1, 2]}})))
    d.add()
    d.run()
    assert d.ran[0].args == {"x": [1, 2]}


def test_typed_arguments_carry_their_flags_for_the_worker() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={
        "src": {"output": "parent.path", "type": "file", "unzip": True},
        "tmp": {"type": "tempdir", "id": "scratch", "default": "/scratch"}})))
    d.add({"path": "/data/x.zip"})
    d.run()
    files = d.ran[0].files
    assert files["src"] == {"type": "file", "unzip": True}
    assert files["tmp"] == {"type": "tempdir", "id": "scratch", "base": "/scratch"}


# ------------------------------------------------------------------- section 9: scheduling


def test_priority_worker_class_gpu_timeout_and_ccnode_reach_the_job() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), priority=80, worker_class=WorkerClass.ADMIN,
                                      timeout_s=2.0),
                     node("G", ("A",), gpu=True, ccnode=_stat_node())))
    d.add()
    d.run()
    a, g = d.ran
    assert (a.priority, a.worker_class, a.timeout_s) == (80, WorkerClass.ADMIN, 2.0)
    assert (g.worker_class, g.ccnode) == (WorkerClass.GPU, "hostA")


def _stat_node():  # type: ignore[no-untyped-def]
    from cryoflow.graph.model import ArgSource, ArgSpec

    return ArgSpec(ArgSource.STAT, ref="parent.node")


def test_retries_rerun_an_error_with_exponential_delay() -> None:
    calls = iter([(Outcome.ERROR, "flaky"), (Outcome.ERROR, "flaky"), (Outcome.SUCCESS, {})])
    d = Driver(graph(node("In"), node("A", ("In",), retries=2, retry_delay_s=1.0)),
               {"A": lambda j: next(calls)})
    d.add()
    d.run()
    assert [j.attempt for j in d.ran] == [1, 2, 3]
    assert [j.not_before - d.now for j in d.ran[1:]] == [1.0, 2.0]
    assert d.state("A").outcome is Outcome.SUCCESS


def test_retries_give_up_with_the_last_error() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), retries=1)), {"A": fail("nope")})
    d.add()
    d.run()
    assert len(d.ran) == 2 and d.state("A").error == "nope"


def test_a_lost_worker_does_not_count_against_retries_up_to_the_poison_limit() -> None:
    d = Driver(graph(node("In"), node("A", ("In",))), poison_limit=3)
    d.add()
    d.lose()
    d.lose()
    d.run()
    assert d.state("A").outcome is Outcome.SUCCESS and d.state("A").lost == 2
    poisoned = Driver(graph(node("In"), node("A", ("In",))), poison_limit=2)
    poisoned.add()
    poisoned.lose()
    poisoned.lose()
    assert "worker lost 2 times" in poisoned.state("A").error


def test_jobs_lost_because_the_head_stopped_run_again_without_nearing_the_poison_limit() -> None:
    d = Driver(graph(node("In"), node("A", ("In",))), poison_limit=2)
    d.add()
    for _ in range(4):
        job = d.queue.pop(0)
        d._take(d.engine.handle(JobLost(job.id, "the head restarted", charged=False), d.now))
    d.lose()
    d.run()
    state = d.state("A")
    assert state.outcome is Outcome.SUCCESS and state.lost == 5
    assert d.ran[-1].attempt == 6


def test_a_stale_attempt_report_is_ignored() -> None:
    d = Driver(graph(node("In"), node("A", ("In",))))
    d.add()
    first = d.lose()
    from cryoflow.engine.records import JobFinished

    assert d.engine.handle(JobFinished(first.id, Outcome.SUCCESS, {}), d.now) == []


def test_deferred_node_is_queued_when_everything_else_is_done() -> None:
    d = Driver(graph(node("In"), node("Clean", ("In",), deferred=True), node("A", ("In",)),
                     node("B", ("A",))))
    d.add()
    assert [j.node for j in d.queue] == ["A"]
    assert d.state("Clean").status is NodeStatus.DEFERRED
    d.run()
    assert d.ran_nodes() == ["A", "B", "Clean"]


def test_global_handler_runs_once_per_failing_node_with_it_as_parent() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("In",)),
                     node("Oops", is_global=True, run_on="error",
                          args={"msg": {"output": "parent.error"}})),
               {"A": fail("a broke"), "B": fail("b broke")})
    d.add()
    d.run()
    handled = sorted(j.args["msg"] for j in d.ran if j.node.startswith("Oops@"))
    assert handled == ["a broke", "b broke"]
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_global_handler_also_runs_for_failures_inside_branches() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": [1, 2]}),
                     node("M", ("S",), merge=True),
                     node("Oops", is_global=True, run_on="error")),
               {"S": lambda j: (Outcome.ERROR, "x") if j.args["xs"] == 2 else
                (Outcome.SUCCESS, {})})
    d.add()
    d.run()
    assert [j.branch for j in d.ran if j.node == "Oops@S"] == [(1,)]


# ------------------------------------------------------------------- section 10: split/merge


def test_split_runs_one_job_per_item_and_merge_orders_outputs_by_index() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs",
                                      args={"xs": {"output": "In.items"}}),
                     node("B", ("S",), args={"x": {"output": "parent.xs"}}),
                     node("M", ("B",), merge=True, args={"x": {"output": "parent.x"}}),
                     node("After", ("M",), args={"all": {"output": "M.x"}})))
    d.add({"items": ["in1", "in2", "in3"]})
    order = [2, 0, 1]
    while d.queue:
        if len(d.queue) == 3 and d.queue[0].node == "S":
            jobs = list(d.queue)
            d.queue[:] = [jobs[i] for i in order]
        d.step()
    assert d.ran[-1].args == {"all": ["in1", "in2", "in3"]}
    assert d.state("S").output["xs"] == ["in1", "in2", "in3"]


def test_split_node_can_be_its_own_merge() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", merge=True,
                                      args={"xs": [3, 4]}),
                     node("After", ("S",), args={"v": {"output": "S.xs"}})))
    d.add()
    d.run()
    assert d.ran[-1].args == {"v": [3, 4]}


def test_an_empty_split_list_skips_the_branch_and_runs_after_the_merge() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": []},
                                      outputs={"xs": ""}),
                     node("B", ("S",)), node("M", ("B",), merge=True),
                     node("After", ("M",), run_on="success")))
    d.add()
    d.run()
    assert d.ran_nodes() == ["After"]
    assert d.state("S").output == {"xs": []}
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_a_failing_branch_lets_the_others_finish_and_the_merge_is_an_error() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": [1, 2, 3]}),
                     node("M", ("S",), merge=True, run_on="success"),
                     node("After", ("M",), run_on="success"),
                     node("Handler", ("M",), run_on="error")),
               {"S": lambda j: (Outcome.ERROR, "bad") if j.args["xs"] == 2 else
                (Outcome.SUCCESS, {"v": j.args["xs"]})})
    d.add()
    d.run()
    assert [j.branch for j in d.ran if j.node == "M"] == [(0,), (2,)]
    assert d.state("M").outcome is Outcome.ERROR
    assert d.state("S").output["v"] == [1, None, 3]
    assert "Handler" in d.ran_nodes() and "After" not in d.ran_nodes()
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_nested_splits_join_inside_out() -> None:
    d = Driver(graph(node("In"), node("S1", ("In",), split_on="xs", args={"xs": [[1, 2], [3]]}),
                     node("S2", ("S1",), split_on="ys", args={"ys": {"output": "parent.xs"}}),
                     node("M2", ("S2",), merge=True, args={"y": {"output": "parent.ys"}}),
                     node("M1", ("M2",), merge=True, args={"y": {"output": "parent.y"}}),
                     node("End", ("M1",), args={"all": {"output": "M1.y"}})))
    d.add()
    d.run()
    assert d.ran[-1].args == {"all": [[1, 2], [3]]}


def test_a_split_argument_that_is_not_a_list_fails_the_node() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": "abc"})))
    d.add()
    d.run()
    assert "expected a list" in d.state("S").error


def test_a_split_without_merge_runs_downstream_per_branch() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": [1, 2]}),
                     node("B", ("S",))))
    d.add()
    d.run()
    assert sorted(j.branch for j in d.ran if j.node == "B") == [(0,), (1,)]
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


# ------------------------------------------------------------------- section 12: completion


def test_an_unhandled_error_fails_the_pebble_and_names_the_node() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("A",), run_on="success")),
               {"A": fail()})
    d.add()
    d.run()
    assert d.done[1].outcome is PebbleOutcome.FAILED
    assert d.done[1].failed_nodes == ("A",)


def test_an_error_handled_by_a_run_on_error_child_completes_the_pebble() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("H", ("A",), run_on="error")),
               {"A": fail()})
    d.add()
    d.run()
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_a_cancelled_pebble_cancels_its_jobs_and_fails() -> None:
    d = Driver(graph(node("In"), node("A", ("In",)), node("B", ("A",))))
    d.add()
    actions = d.engine.handle(PebbleCancelled(1, "user asked"), d.now)
    d._take(actions)
    assert any(type(a).__name__ == "CancelJob" for a in actions)
    assert d.done[1].outcome is PebbleOutcome.FAILED
    assert d.state("A").outcome is Outcome.CANCEL


def test_restored_pebble_continues_where_it_was() -> None:
    g = graph(node("In"), node("A", ("In",)), node("B", ("A",)))
    d = Driver(g)
    d.add()
    d.step()
    states = {(a.node, a.branch): a.state for a in d.actions if hasattr(a, "state")}
    fresh = Driver(g)
    fresh.engine.restore(1, "In", {}, states)
    pending = d.queue[0]
    from cryoflow.engine.records import JobFinished

    fresh._take(fresh.engine.handle(JobFinished(pending.id, Outcome.SUCCESS, {}), 0.0))
    assert fresh.done[1].outcome is PebbleOutcome.COMPLETED


def test_a_graph_without_input_nodes_starts_its_roots_from_entry() -> None:
    d = Driver(graph(node("a", is_input=False), node("b", ("a",)), node("c", ("a",))))
    d._take(d.engine.handle(PebbleAdded(1, "entry", {"x": 1}), d.now))
    d.run()
    assert d.ran_nodes() == ["a", "b", "c"]
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def _flaky(node_name: str, bad: object) -> dict[str, object]:
    """A behaviour that fails for the given arg value on its first call only."""
    calls: set[object] = set()

    def run(job):  # type: ignore[no-untyped-def]
        value = job.args.get("xs", job.args.get("x"))
        if value == bad and value not in calls:
            calls.add(value)
            return Outcome.ERROR, "first try fails"
        return Outcome.SUCCESS, {"v": value}

    return {node_name: run}


def _retry(d: Driver, pebble_id: int = 1) -> None:
    states = {(a.node, a.branch): a.state for a in d.actions if hasattr(a, "state")}
    removed = {(a.node, a.branch) for a in d.actions if type(a).__name__ == "NodeRemoved"}
    for key in removed:
        states.pop(key, None)
    d.engine.restore(pebble_id, "In", {}, states)
    del d.done[pebble_id]
    d._take(d.engine.handle(PebbleRetried(pebble_id), d.now))


def test_a_retried_pebble_reruns_its_failed_node_and_what_follows() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"x": 1}),
                     node("B", ("A",), run_on="success")), _flaky("A", 1))
    d.add()
    d.run()
    assert d.done[1].outcome is PebbleOutcome.FAILED
    _retry(d)
    d.run()
    assert d.ran_nodes() == ["A", "A", "B"]
    assert d.ran[1].attempt == 2
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_a_retried_split_reruns_only_the_failed_branch_and_joins_again() -> None:
    d = Driver(graph(node("In"), node("S", ("In",), split_on="xs", args={"xs": [1, 2, 3]}),
                     node("M", ("S",), merge=True, run_on="success"),
                     node("After", ("M",), run_on="success", args={"all": {"output": "S.v"}})),
               _flaky("S", 2))
    d.add()
    d.run()
    assert d.done[1].outcome is PebbleOutcome.FAILED
    _retry(d)
    d.run()
    assert [j.branch for j in d.ran if j.node == "S"] == [(0,), (1,), (2,), (1,)]
    assert d.ran[-1].args == {"all": [1, 2, 3]}
    assert d.done[1].outcome is PebbleOutcome.COMPLETED


def test_a_file_from_a_parents_output_names_the_host_that_produced_it() -> None:
    d = Driver(graph(node("In"), node("A", ("In",), args={"dst": "/scratch/out.bin"}),
                     node("B", ("A",), args={"src": {"output": "parent.dst", "type": "file",
                                                     "proto": "ssh"}})))
    d.add()
    d.run()
    assert d.ran[-1].files["src"] == {"type": "file", "proto": "ssh", "host": "hostA"}
