"""Property tests: the expression, restriction and flow parsers fail only with their errors."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cryoflow.errors import ExprError, GraphError
from cryoflow.graph.expr import Expr, Ref, parse_expr, parse_restriction
from cryoflow.graph.flow import FlowPlan, parse_flow


def fast(examples: int) -> settings:
    """Hypothesis settings that keep the whole file within a few seconds."""
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


REFS = [
    Ref("option", "x"),
    Ref("option", "dry-run"),
    Ref("output", "A.key"),
    Ref("output", "parent.key"),
    Ref("config", "a.b"),
    Ref("stat", "A.runtime"),
]

INTERESTING = [
    *[None, True, False, 0, 1, -1, 3, 10, 2.5, -0.0, float("nan"), float("inf"), 10**30],
    *["", "a", "abc", "True", "False", "false", "10", "0", " x", "\\", "'"],
    *[[], [1], [1, "a"], [True, None], [[1], {"k": []}], {}, {"k": 1}, {"a": [1, {"b": None}]}],
]
json_values = st.sampled_from(INTERESTING) | st.integers() | st.floats() | st.text(max_size=6)
lookup_tables = st.tuples(*[json_values] * len(REFS)).map(lambda values: dict(zip(REFS, values)))


def quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


finite = st.floats(allow_nan=False, allow_infinity=False)
literals = st.one_of(
    st.integers().map(str),
    finite.map(repr),
    st.text(max_size=10).map(quote),
    st.sampled_from(["true", "false", "True", "False", "null", "None", '"dq"']),
)
atoms = st.one_of(
    st.sampled_from([str(ref) for ref in REFS]),
    literals,
    st.lists(literals, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
)
symbols = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
gaps = st.sampled_from(["", " ", "  "])


def comparisons(operand: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    symbolic = st.tuples(operand, gaps, symbols, gaps, operand).map("".join)
    worded = st.tuples(operand, st.sampled_from(["in", "not in"]), operand).map(" ".join)
    return symbolic | worded


def compound(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operand = atoms | inner.map(lambda text: f"({text})")
    return st.one_of(
        inner.map(lambda text: f"not {text}"),
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
        comparisons(operand),
        inner.map(lambda text: f"({text})"),
    )


expressions = st.recursive(atoms | comparisons(atoms), compound, max_leaves=8)

EXPR_TOKENS = [
    *(str(ref) for ref in REFS),
    *["foo:x", "output:", "output:A", "(", ")", "[", "]", ",", "not", "and", "or", "in"],
    *["==", "!=", "<", "<=", ">", ">=", "=", "!", "1", "-2.5", "1e3", ".5", "'s'", '"t"'],
    *["'", '"', "\\", "true", "None", "-", ".", ":", "#", "word", "\n"],
]
token_soup = st.lists(st.tuples(st.sampled_from(EXPR_TOKENS), gaps), max_size=14).map(
    lambda pairs: "".join(token + gap for token, gap in pairs)
)


def evaluate_safely(expr: Expr, table: Mapping[Ref, Any]) -> None:
    try:
        assert isinstance(expr.evaluate(table.get), bool)
    except ExprError:
        pass


def evaluate_restriction(holds: Callable[[Any], bool], current: Any) -> None:
    try:
        assert isinstance(holds(current), bool)
    except ExprError:
        pass


def parse_or_none(text: str) -> Expr | None:
    try:
        return parse_expr(text)
    except ExprError:
        return None


@fast(800)
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_an_expression_error(text: str) -> None:
    parse_or_none(text)


@fast(400)
@given(token_soup, lookup_tables)
def test_token_soup_parses_and_evaluates_or_raises_an_expression_error(
    text: str, table: Mapping[Ref, Any]
) -> None:
    expr = parse_or_none(text)
    if expr is not None:
        evaluate_safely(expr, table)


@fast(300)
@given(expressions, lookup_tables)
def test_grammar_built_expressions_parse_and_evaluate_to_a_bool_or_an_error(
    text: str, table: Mapping[Ref, Any]
) -> None:
    expr = parse_expr(text, max_length=100_000, max_depth=1000, max_nodes=100_000)
    assert expr.refs <= set(REFS)
    evaluate_safely(expr, table)


@fast(200)
@given(st.text(max_size=20))
def test_quoted_strings_read_back_as_the_same_text(text: str) -> None:
    assert parse_expr(f"option:x == {quote(text)}").evaluate(lambda ref: text)


@fast(400)
@given(st.text(max_size=30), st.text(max_size=30), json_values)
def test_restrictions_parse_and_hold_or_raise_an_expression_error(
    key: str, condition: str, current: Any
) -> None:
    try:
        restriction = parse_restriction(key, condition)
    except ExprError:
        return
    evaluate_restriction(restriction.holds, current)


@fast(400)
@given(
    st.sampled_from(["", " "]),
    st.sampled_from(["<", "<=", ">", ">=", "==", "!=", "=", ""]),
    st.one_of(st.integers().map(str), finite.map(repr), st.text(max_size=8)),
    json_values,
)
def test_restriction_conditions_built_from_operators_hold_or_raise_an_expression_error(
    gap: str, op: str, value: str, current: Any
) -> None:
    try:
        restriction = parse_restriction("Chan.node:param", f"{gap}{op}{gap}{value}")
    except ExprError:
        return
    evaluate_restriction(restriction.holds, current)


def check_plan(plan: FlowPlan) -> None:
    """Names are unique, deps point backwards, and the grouping reads back the same."""
    assert len(set(plan.names)) == len(plan.names)
    assert list(plan.deps) == list(plan.names)
    position = {name: index for index, name in enumerate(plan.names)}
    for name, waits in plan.deps.items():
        assert all(position[wait] < position[name] for wait in waits)
    assert parse_flow(plan.grouping) == plan


def parse_flow_or_none(text: str) -> FlowPlan | None:
    try:
        return parse_flow(text)
    except GraphError:
        return None


@fast(800)
@given(st.text(max_size=40))
def test_arbitrary_text_parses_as_a_flow_or_raises_a_graph_error(text: str) -> None:
    plan = parse_flow_or_none(text)
    if plan is not None:
        check_plan(plan)


FLOW_TOKENS = ["a", "b", "c", "d", "e", "f", "g", ";", "||", "|", "(", ")", " ", "&", "1"]


@fast(500)
@given(st.lists(st.sampled_from(FLOW_TOKENS), max_size=16).map("".join))
def test_flow_token_soup_parses_or_raises_a_graph_error(text: str) -> None:
    plan = parse_flow_or_none(text)
    if plan is not None:
        check_plan(plan)


flow_shapes = st.recursive(
    st.just("@"),
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(" ; ".join),
        st.lists(inner, min_size=2, max_size=3).map(" || ".join),
        inner.map(lambda text: f"({text})"),
    ),
    max_leaves=8,
)


def number_names(shape: str) -> str:
    """Give every "@" placeholder of a flow shape its own name: n0, n1, ..."""
    counter = itertools.count()
    return re.sub("@", lambda _: f"n{next(counter)}", shape)


@fast(300)
@given(flow_shapes.map(number_names))
def test_grammar_built_flows_parse_and_read_back_from_their_grouping(text: str) -> None:
    check_plan(parse_flow(text))
