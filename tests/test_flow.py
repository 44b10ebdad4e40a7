"""Flow strings: sequencing, parallel groups, grouping and errors."""

from __future__ import annotations

import pytest

from cryoflow.errors import GraphError
from cryoflow.graph.flow import parse_flow


def deps(text: str) -> dict[str, tuple[str, ...]]:
    return dict(parse_flow(text).deps)


def flow_error(text: str) -> str:
    with pytest.raises(GraphError) as caught:
        parse_flow(text)
    return str(caught.value)


def test_a_single_name_is_a_root() -> None:
    plan = parse_flow("a")
    assert (plan.names, dict(plan.deps), plan.grouping) == (("a",), {"a": ()}, "a")


def test_semicolon_runs_steps_one_after_the_other() -> None:
    assert deps("a; b") == {"a": (), "b": ("a",)}


def test_a_sequence_waits_only_for_the_step_before() -> None:
    assert deps("a; b; c") == {"a": (), "b": ("a",), "c": ("b",)}


def test_double_and_single_bar_run_steps_in_parallel() -> None:
    assert deps("a || b") == {"a": (), "b": ()}
    assert deps("a | b") == {"a": (), "b": ()}


def test_or_binds_tighter_than_sequence() -> None:
    plan = parse_flow("a; b || c")
    assert plan.grouping == "a ; (b || c)"
    assert dict(plan.deps) == {"a": (), "b": ("a",), "c": ("a",)}
    assert parse_flow("a || b; c").grouping == "(a || b) ; c"


def test_sequencing_groups_is_a_barrier() -> None:
    assert deps("(a || b); (c || d)") == {"a": (), "b": (), "c": ("a", "b"), "d": ("a", "b")}


def test_parentheses_group_a_sequence_inside_a_parallel_step() -> None:
    plan = parse_flow("a; ((b; c) || d); e")
    assert plan.grouping == "a ; ((b ; c) || d) ; e"
    assert dict(plan.deps) == {"a": (), "b": ("a",), "c": ("b",), "d": ("a",), "e": ("c", "d")}


def test_names_keep_their_order_of_first_appearance() -> None:
    assert parse_flow("(z || y); x").names == ("z", "y", "x")


def test_dependencies_are_ordered_by_appearance() -> None:
    assert deps("(b2 || a1 || c3); d")["d"] == ("b2", "a1", "c3")


def test_redundant_parentheses_disappear_from_the_grouping() -> None:
    assert parse_flow("((a)); (b; c)").grouping == "a ; b ; c"
    assert parse_flow("(a || b) || c").grouping == "a || b || c"


def test_whitespace_is_free() -> None:
    assert parse_flow("a;b||c") == parse_flow("  a ;\n\tb ||  c  ")


def test_names_may_hold_underscores_and_digits() -> None:
    assert parse_flow("_step1; Step_2").names == ("_step1", "Step_2")


def test_columns_point_at_each_name() -> None:
    assert dict(parse_flow("a; (bb || c)").columns) == {"a": 1, "bb": 5, "c": 11}


def test_one_trailing_semicolon_is_tolerated() -> None:
    assert parse_flow("a; b;") == parse_flow("a; b")


def test_deps_are_read_only() -> None:
    with pytest.raises(TypeError):
        parse_flow("a").deps["b"] = ()  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the flow is empty; write at least one name"),
        ("   ", "the flow is empty; write at least one name"),
        ("a & b", "unknown character '&' at column 3"),
        ("a-b", "unknown character '-' at column 2"),
        ("a; ; b", "empty step at column 4: expected a name or '(', found ';'"),
        ("a ||", "empty step at column 5: expected a name or '(', found the end of the text"),
        ("()", "empty step at column 2: expected a name or '(', found ')'"),
        ("; a", "empty step at column 1"),
        ("a;;", "empty step at column 3"),
        ("(a;)", "empty step at column 4"),
        ("(a; b", "the '(' at column 1 is not closed; add a ')'"),
        ("a; b)", "unmatched ')' at column 5; remove it or add a '('"),
        ("a b", "expected ';', '||' or the end of the text at column 3, found 'b'"),
        ("(a b)", "expected ';', '||' or ')' at column 4, found 'b'"),
        ("a; b || a", "the name 'a' is used twice, at columns 1 and 9"),
        ("(" * 70 + "a" + ")" * 70, "parentheses nest deeper than 64 at column 65"),
    ],
)
def test_errors_name_the_column_and_say_what_to_change(text: str, message: str) -> None:
    error = flow_error(text)
    assert error.startswith("flow ")
    assert message in error
