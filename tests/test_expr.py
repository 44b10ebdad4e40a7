"""The runIf expression language and scheduling restrictions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import cryoflow.graph.expr
from cryoflow.errors import ExprError
from cryoflow.graph.expr import Ref, parse_expr, parse_restriction, truthy


def run(text: str, **values: Any) -> bool:
    """Evaluate ``text`` with values keyed by ``kind:name`` written as ``kind__name``."""
    table = {f"{key.split('__', 1)[0]}:{key.split('__', 1)[1]}": v for key, v in values.items()}
    return parse_expr(text).evaluate(lambda ref: table.get(str(ref)))


def syntax_error(text: str, **limits: int) -> str:
    with pytest.raises(ExprError) as caught:
        parse_expr(text, **limits)
    return str(caught.value)


# references and literals


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("output:Name.key", Ref("output", "Name.key")),
        ("output:parent.key", Ref("output", "parent.key")),
        ("option:x", Ref("option", "x")),
        ("config:a.b.c", Ref("config", "a.b.c")),
        ("stat:Name.runtime", Ref("stat", "Name.runtime")),
        ("option:dry-run", Ref("option", "dry-run")),
        ("output:My_Node.out-file", Ref("output", "My_Node.out-file")),
    ],
)
def test_each_reference_kind_parses_into_a_ref(text: str, ref: Ref) -> None:
    assert parse_expr(text).refs == {ref}


def test_refs_lists_every_reference_once() -> None:
    expr = parse_expr("option:x > 1 and (option:x < 5 or output:A.done)")
    assert expr.refs == {Ref("option", "x"), Ref("output", "A.done")}


def test_the_lookup_receives_the_reference() -> None:
    seen: list[Ref] = []
    parse_expr("config:a.b").evaluate(lambda ref: seen.append(ref))
    assert seen == [Ref("config", "a.b")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("option:x == 3", 3),
        ("option:x == -3", -3),
        ("option:x == 2.5", 2.5),
        ("option:x == .5", 0.5),
        ("option:x == 1e3", 1000.0),
        ("option:x == 'single'", "single"),
        ('option:x == "double"', "double"),
        (r"option:x == 'it\'s'", "it's"),
        (r"option:x == 'a\nb\\c'", "a\nb\\c"),
        (r"option:x == 'C:\data'", "C:\\data"),
        ("option:x == true", True),
        ("option:x == True", True),
        ("option:x == false", False),
        ("option:x == False", False),
        ("option:x == null", None),
        ("option:x == None", None),
        ("option:x == [1, 'a', [true]]", [1, "a", [True]]),
    ],
)
def test_literals_have_their_python_values(text: str, expected: Any) -> None:
    assert run(text, option__x=expected)


def test_operators_may_touch_the_reference() -> None:
    assert run("option:time<10", option__time=3)
    assert run("output:A.x!='SomeString'", **{"output__A.x": "other"})
    assert not run("output:A.x!='SomeString'", **{"output__A.x": "SomeString"})


# comparisons


@pytest.mark.parametrize(
    ("op", "results"),
    [
        ("==", (False, True, False)),
        ("!=", (True, False, True)),
        ("<", (True, False, False)),
        ("<=", (True, True, False)),
        (">", (False, False, True)),
        (">=", (False, True, True)),
    ],
)
def test_each_comparison_operator_compares_numbers(op: str, results: tuple[bool, ...]) -> None:
    assert tuple(run(f"option:x {op} 5", option__x=x) for x in (4, 5, 6)) == results


def test_in_and_not_in_look_into_a_list_literal() -> None:
    assert run("option:x in [1, 'a']", option__x="a")
    assert not run("option:x in [1, 'a']", option__x=2)
    assert run("option:x not in [1, 'a']", option__x=2)


def test_in_looks_into_strings_objects_and_lists_from_references() -> None:
    assert run("'ell' in option:x", option__x="hello")
    assert run("'k' in output:A.d", **{"output__A.d": {"k": 1}})
    assert run("2 in output:A.l", **{"output__A.l": [1, 2]})


def test_in_a_missing_value_is_false() -> None:
    assert not run("'a' in option:x")
    assert run("'a' not in option:x")


def test_in_a_number_is_an_error() -> None:
    with pytest.raises(ExprError, match=r"cannot look for 'a' \(str\) in 3 \(int\)"):
        run("'a' in option:x", option__x=3)


def test_chained_comparisons_hold_when_every_link_holds() -> None:
    assert run("1 < option:x < 5", option__x=3)
    assert not run("1 < option:x < 5", option__x=5)
    assert not run("1 < option:x < 5", option__x=0)


def test_values_keep_their_types() -> None:
    assert run("option:count > 10", option__count=11)
    assert not run("option:count > 10", option__count=9)
    assert not run("option:count == 10", option__count="10")
    assert run("option:ratio < 1", option__ratio=0.5)


def test_a_bool_compares_with_the_strings_true_and_false() -> None:
    assert run("option:flag == 'True'", option__flag=True)
    assert run("'False' == option:flag", option__flag=False)
    assert run("option:flag != 'True'", option__flag=False)
    assert run("option:flag == True", option__flag="True")
    assert not run("option:flag == 'true'", option__flag=True)


def test_a_bool_is_not_a_number() -> None:
    assert not run("option:flag == 1", option__flag=True)


def test_equality_between_different_types_is_false() -> None:
    assert not run("option:x == 'a'", option__x=1)
    assert run("option:x != 'a'", option__x=1)
    assert not run("option:x == 0")
    assert run("option:x == [1, 2.0]", option__x=[1.0, 2])
    assert not run("option:x == [true]", option__x=[1])


def test_ordering_incompatible_types_is_an_error_that_names_both_values() -> None:
    with pytest.raises(ExprError) as caught:
        run("option:x < 3", option__x="abc")
    assert str(caught.value).startswith(
        "runIf 'option:x < 3': cannot compare 'abc' (str) with 3 (int)"
    )


def test_ordering_a_missing_value_is_an_error() -> None:
    with pytest.raises(ExprError, match=r"cannot compare null \(no value\) with 3 \(int\)"):
        run("option:x < 3")


def test_strings_order_alphabetically() -> None:
    assert run("option:x < 'b'", option__x="a")


# boolean logic


def test_a_reference_standing_alone_is_tested_for_truth() -> None:
    assert run("option:force", option__force=True)
    assert not run("option:force", option__force="false")
    assert not run("option:force")


@pytest.mark.parametrize("value", [None, False, 0, 0.0, "", [], {}, "false", "False"])
def test_truthy_is_false_for_empty_and_false_values(value: Any) -> None:
    assert not truthy(value)


@pytest.mark.parametrize("value", [True, 1, -1, 0.1, "0", "no", "true", [0], {"a": None}])
def test_truthy_is_true_for_other_values(value: Any) -> None:
    assert truthy(value)


def test_and_or_not_and_parentheses_combine_conditions() -> None:
    assert run("option:a and not option:b", option__a=1, option__b=0)
    assert run("option:a or option:b", option__b=1)
    assert not run("not (option:a or option:b)", option__b=1)


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    assert run("true or false and false")
    assert not run("not true and false or false")
    assert run("not false and true")


def test_not_in_a_standalone_position_negates() -> None:
    assert run("not not option:x", option__x=1)


def test_and_and_or_short_circuit() -> None:
    asked: list[Ref] = []

    def lookup(ref: Ref) -> Any:
        asked.append(ref)
        return ref.name == "yes"

    assert not parse_expr("option:no and option:boom < 1").evaluate(lookup)
    assert parse_expr("option:yes or option:boom < 1").evaluate(lookup)
    assert Ref("option", "boom") not in asked


def test_evaluate_returns_a_bool() -> None:
    assert parse_expr("option:x").evaluate(lambda ref: "value") is True


# limits and syntax errors


def test_text_longer_than_the_limit_is_refused() -> None:
    message = syntax_error("option:x == 1", max_length=5)
    assert "13 characters long; shorten it to at most 5" in message


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    message = syntax_error("((((option:x))))", max_depth=3)
    assert "nests deeper than 3 levels at column 4" in message
    assert parse_expr("(((option:x)))", max_depth=3)


def test_too_many_parts_are_refused() -> None:
    text = " or ".join(f"option:x{i}" for i in range(10))
    assert "more than 5 parts" in syntax_error(text, max_nodes=5)


def test_the_default_limits_stop_deep_nesting() -> None:
    assert "nests deeper than 32 levels" in syntax_error("not " * 40 + "true")
    assert "nests deeper than 32 levels" in syntax_error("(" * 40 + "1" + ")" * 40)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("option:x >", "expected a value at column 11, found the end of the text"),
        ("", "expected a value at column 1, found the end of the text"),
        ("option:x > )", "expected a value at column 12, found ')'"),
        ("(option:x", "expected ')' to close the '(' at column 1 at column 10"),
        ("option:x )", "unmatched ')' at column 10; remove it or add a '('"),
        (
            "option:x option:y",
            "expected an operator, 'and', 'or' or the end of the text at "
            "column 10, found 'option:y'",
        ),
        ("[1, 2", "expected ']' to close the '[' at column 1 at column 6"),
        ("option:x # 1", "unknown character '#' at column 10"),
        ("option:x == 'abc", "the string starting at column 13 is not closed"),
        ("maybe", "unknown word 'maybe' at column 1; write a reference such as option:maybe"),
        ("env:HOME", "unknown reference kind 'env' at column 1; use output:, option:"),
        ("option:", "expected a name after 'option:' at column 8"),
        ("output:A == 1", "write the reference at column 1 as output:Name.key"),
        ("option:x not 1", "at column 10, found 'not'"),
        ("option:x ==", "expected a value at column 12"),
    ],
)
def test_syntax_errors_name_the_column_and_what_was_expected(text: str, message: str) -> None:
    error = syntax_error(text)
    assert error.startswith(f"runIf {text!r}: ")
    assert message in error


def test_a_condition_that_is_not_text_is_an_error() -> None:
    with pytest.raises(ExprError, match="write the condition as a string"):
        parse_expr(3)  # type: ignore[arg-type]


def test_user_text_never_becomes_code() -> None:
    expr = parse_expr('option:x == \'__import__("os").system("false")\'')
    assert expr.evaluate(lambda ref: '__import__("os").system("false")')
    assert "unknown word '__import__' at column 1" in syntax_error("__import__('os')")


def test_the_module_has_no_dynamic_code_execution() -> None:
    source = Path(cryoflow.graph.expr.__file__).read_text()
    assert not re.search(r"\b(eval|exec)\(|(?<!re\.)\bcompile\(|import ast|from ast", source)


# restrictions


def test_restriction_key_splits_at_the_last_colon() -> None:
    restriction = parse_restriction("NodeController.seer3:geocode.pending", "<3")
    assert (restriction.channel, restriction.param) == ("NodeController.seer3", "geocode.pending")
    assert parse_restriction("a:b:c", "<3").channel == "a:b"


@pytest.mark.parametrize(
    ("condition", "op", "value"),
    [
        ("<3", "<", 3),
        ("<= 2.5", "<=", 2.5),
        (">536870912000", ">", 536870912000),
        (" >= -1", ">=", -1),
        ("==idle", "==", "idle"),
        ("!= busy", "!=", "busy"),
        ("=='3'", "==", "3"),
    ],
)
def test_restriction_condition_reads_operator_and_value(
    condition: str, op: str, value: Any
) -> None:
    restriction = parse_restriction("Chan:p", condition)
    assert (restriction.op, restriction.value) == (op, value)
    assert type(restriction.value) is type(value)
    assert restriction.text == f'"Chan:p": "{condition}"'


@pytest.mark.parametrize(
    ("condition", "holding", "failing"),
    [
        ("<3", 2, 3),
        ("<=3", 3, 4),
        (">3", 4, 3),
        (">=3", 3, 2),
        ("==idle", "idle", "busy"),
        ("!=busy", "idle", "busy"),
    ],
)
def test_restriction_holds_by_its_operator(condition: str, holding: Any, failing: Any) -> None:
    restriction = parse_restriction("Chan:p", condition)
    assert restriction.holds(holding)
    assert not restriction.holds(failing)


def test_restriction_waits_without_a_status_value() -> None:
    assert not parse_restriction("Chan:p", "<3").holds(None)
    assert not parse_restriction("Chan:p", "!=busy").holds(None)


def test_restriction_reads_a_numeric_status_string_as_a_number() -> None:
    assert parse_restriction("Chan:p", "<10").holds("9")
    assert not parse_restriction("Chan:p", "==9").holds(" x")


def test_restriction_ordering_a_word_is_an_error_that_says_what_to_change() -> None:
    with pytest.raises(ExprError) as caught:
        parse_restriction("Chan:p", "<3").holds("busy")
    assert str(caught.value).startswith(
        'restriction "Chan:p": "<3": cannot compare \'busy\' (str) with 3 (int)'
    )


@pytest.mark.parametrize(
    ("key", "condition", "message"),
    [
        ("nocolon", "<3", "write the key as 'channel:param'"),
        (":p", "<3", "write the key as 'channel:param'"),
        ("c:", "<3", "write the key as 'channel:param'"),
        ("c:p", "3", "start the condition with one of < <= > >= == !="),
        ("c:p", "=3", "start the condition with one of"),
        ("c:p", "<", 'write one operator and then a value, e.g. "<3"'),
        ("c:p", "== ", 'write one operator and then a value, e.g. "==3"'),
        ("c:p", "<>3", "write one operator and then a value"),
        ("c:p", "=<3", "start the condition with one of"),
    ],
)
def test_restriction_errors_say_what_to_change(key: str, condition: str, message: str) -> None:
    with pytest.raises(ExprError, match=re.escape(message)):
        parse_restriction(key, condition)
