"""The safe expression language of ``runIf`` and ``restrictions``.

An expression is read by a small tokenizer and a recursive-descent parser into a tree
of frozen dataclasses, and evaluated by an interpreter that knows only references,
literals, lists, comparisons, ``and``/``or``/``not`` and parentheses. Nothing the user
writes, and no value a reference returns, is ever run as code.

Comparison rules, shared by expressions and restrictions:

- ``bool`` is its own type: ``true == 1`` is false. Ints and floats compare as numbers.
- A bool meeting the string ``'True'`` or ``'False'`` compares as that string.
- ``==``/``!=`` between different types give false/true; ordering (``< <= > >=``)
  works between two numbers or two strings and raises :class:`ExprError` otherwise.
- ``in`` looks into a list (by ``==``), a string (substring) or an object (keys);
  ``x in null`` is false.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryoflow.errors import ExprError

REF_KINDS = frozenset({"output", "option", "config", "stat"})
"""The kinds a reference may have, written ``kind:name``."""

ORDERING = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
"""Comparison operators, longest first so that ``<=`` is not read as ``<``."""

_NUMBER = re.compile(r"-?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?")
_CONSTANTS: Mapping[str, Any] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "null": None,
    "None": None,
}
_KEYWORDS = frozenset({"and", "or", "not", "in"})
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


@dataclass(frozen=True)
class Ref:
    """A reference to a value known only when the expression is evaluated."""

    kind: str  #: "output" | "option" | "config" | "stat"
    name: str  #: "Name.key", "parent.key", "x", "a.b" or "Name.p"

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class _Literal:
    value: Any


@dataclass(frozen=True)
class _List:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    operand: _Node


@dataclass(frozen=True)
class _BoolOp:
    op: str  # "and" | "or"
    operands: tuple[_Node, ...]


@dataclass(frozen=True)
class _Compare:
    operands: tuple[_Node, ...]
    ops: tuple[str, ...]


_Node = Ref | _Literal | _List | _Not | _BoolOp | _Compare


@dataclass(frozen=True)
class Expr:
    """A parsed ``runIf`` expression; build it with :func:`parse_expr` only."""

    text: str
    refs: frozenset[Ref]
    _root: _Node = field(repr=False)

    def evaluate(self, lookup: Callable[[Ref], Any]) -> bool:
        """Return whether the expression holds.

        ``lookup`` gives each reference's value, or None when there is none. Raises
        :class:`ExprError` when two values cannot be compared.
        """
        return truthy(_Interpreter(lookup, f"runIf {_quote(self.text)}").value(self._root))


def truthy(value: Any) -> bool:
    """False for None, False, 0, 0.0, "", [], {}, "false" and "False"; true otherwise."""
    if isinstance(value, str):
        return value not in ("", "false", "False")
    return bool(value)


def parse_expr(
    text: str, *, max_length: int = 2000, max_depth: int = 32, max_nodes: int = 256
) -> Expr:
    """Parse a ``runIf`` expression, or raise :class:`ExprError` naming the column."""
    if not isinstance(text, str):
        raise ExprError(f'runIf {text!r}: write the condition as a string, e.g. "option:x > 3"')
    where = f"runIf {_quote(text)}"
    if len(text) > max_length:
        raise ExprError(
            f"{where}: the expression is {len(text)} characters long; "
            f"shorten it to at most {max_length}"
        )
    parser = _Parser(_tokenize(text, where), where, max_depth, max_nodes)
    root = parser.parse()
    return Expr(text, frozenset(parser.refs), root)


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _describe(value: Any) -> str:
    if value is None:
        return "null (no value)"
    try:
        shown = repr(value)
    except ValueError:  # an int with more digits than Python prints
        shown = "a huge number"
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{shown} ({type(value).__name__})"


@dataclass(frozen=True)
class _Token:
    kind: str  # "value", "ref", "op", "word", one of "()[],", or "end"
    text: str
    col: int
    value: Any = None

    def shown(self) -> str:
        return "the end of the text" if self.kind == "end" else repr(self.text)


_TOKEN = re.compile(
    rf"""(?P<space>\s+)
    |(?P<number>{_NUMBER.pattern})
    |(?P<ref>(?P<kind>[A-Za-z_][A-Za-z0-9_]*):
        (?P<name>[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z0-9_\-]+)*)?)
    |(?P<word>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op><=|>=|==|!=|<|>)
    |(?P<punct>[()\[\],])
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""",
    re.VERBOSE | re.DOTALL,
)


def _tokenize(text: str, where: str) -> list[_Token]:
    """Split ``text`` into tokens, each with its 1-based column, ending with "end"."""
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExprError(f"{where}: {_unknown_character(text[pos], pos + 1)}")
        pos = match.end()
        if match.lastgroup != "space":
            tokens.append(_token(match, where))
    return [*tokens, _Token("end", "", len(text) + 1)]


def _unknown_character(char: str, col: int) -> str:
    if char in "'\"":
        return f"the string starting at column {col} is not closed; add a {char} at its end"
    return f"unknown character {char!r} at column {col}; remove it or put the text in quotes"


def _token(match: re.Match[str], where: str) -> _Token:
    kind, text, col = match.lastgroup or "", match.group(), match.start() + 1
    if kind == "number":
        if (number := _read_number(text)) is None:
            raise ExprError(f"{where}: the number at column {col} has too many digits")
        return _Token("value", text, col, number)
    if kind == "string":
        value = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group()), text[1:-1])
        return _Token("value", text, col, value)
    if kind == "ref":
        return _Token("ref", text, col, _reference(match["kind"], match["name"], col, where))
    if kind == "word" and text in _CONSTANTS:
        return _Token("value", text, col, _CONSTANTS[text])
    if kind == "word" and text not in _KEYWORDS:
        raise ExprError(
            f"{where}: unknown word {text!r} at column {col}; write a reference "
            f"such as option:{text}, or put text in quotes"
        )
    return _Token(text if kind == "punct" else kind, text, col)


def _reference(kind: str, name: str | None, col: int, where: str) -> Ref:
    if kind not in REF_KINDS:
        raise ExprError(
            f"{where}: unknown reference kind {kind!r} at column {col}; "
            "use output:, option:, config: or stat:"
        )
    if name is None:
        raise ExprError(f"{where}: expected a name after '{kind}:' at column {col + len(kind) + 1}")
    if kind in ("output", "stat") and "." not in name:
        raise ExprError(
            f"{where}: write the reference at column {col} as {kind}:Name.key, "
            "with the node name before a dot"
        )
    return Ref(kind, name)


class _Parser:
    """Recursive descent over the tokens; ``or`` < ``and`` < ``not`` < comparisons."""

    def __init__(self, tokens: list[_Token], where: str, max_depth: int, max_nodes: int) -> None:
        self.tokens = tokens
        self.where = where
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.pos = 0
        self.depth = 0
        self.nodes = 0
        self.refs: set[Ref] = set()

    def parse(self) -> _Node:
        root = self._or()
        token = self._peek()
        if token.kind == ")":
            raise self._fail(f"unmatched ')' at column {token.col}; remove it or add a '('")
        if token.kind != "end":
            raise self._expected("an operator, 'and', 'or' or the end of the text", token)
        return root

    def _peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def _take(self) -> _Token:
        token = self._peek()
        self.pos += 1
        return token

    def _is_word(self, word: str, ahead: int = 0) -> bool:
        token = self._peek(ahead)
        return token.kind == "word" and token.text == word

    def _fail(self, message: str) -> ExprError:
        return ExprError(f"{self.where}: {message}")

    def _expected(self, what: str, token: _Token) -> ExprError:
        return self._fail(f"expected {what} at column {token.col}, found {token.shown()}")

    def _count(self, node: _Node) -> _Node:
        self.nodes += 1
        if self.nodes > self.max_nodes:
            raise self._fail(
                f"the expression has more than {self.max_nodes} parts "
                f"(at column {self._peek().col}); split or shorten it"
            )
        return node

    def _enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            raise self._fail(
                f"the expression nests deeper than {self.max_depth} levels "
                f"at column {token.col}; simplify it"
            )

    def _or(self) -> _Node:
        return self._bool_op("or", self._and)

    def _and(self) -> _Node:
        return self._bool_op("and", self._not)

    def _bool_op(self, word: str, operand: Callable[[], _Node]) -> _Node:
        operands = [operand()]
        while self._is_word(word):
            self._take()
            operands.append(operand())
        return operands[0] if len(operands) == 1 else self._count(_BoolOp(word, tuple(operands)))

    def _not(self) -> _Node:
        if not self._is_word("not"):
            return self._comparison()
        self._enter(self._take())
        operand = self._not()
        self.depth -= 1
        return self._count(_Not(operand))

    def _comparison(self) -> _Node:
        operands, ops = [self._operand()], []
        while (op := self._comparison_op()) is not None:
            ops.append(op)
            operands.append(self._operand())
        if not ops:
            return operands[0]
        return self._count(_Compare(tuple(operands), tuple(ops)))

    def _comparison_op(self) -> str | None:
        token = self._peek()
        if token.kind == "op" or self._is_word("in"):
            self._take()
            return token.text
        if self._is_word("not") and self._is_word("in", 1):
            self.pos += 2
            return "not in"
        return None

    def _operand(self) -> _Node:
        token = self._take()
        if token.kind == "ref":
            self.refs.add(token.value)
            return self._count(token.value)
        if token.kind == "value":
            return self._count(_Literal(token.value))
        if token.kind in ("(", "["):
            self._enter(token)
            inner = self._or() if token.kind == "(" else self._list()
            self._close(")" if token.kind == "(" else "]", token)
            self.depth -= 1
            return inner
        raise self._expected("a value", token)

    def _list(self) -> _Node:
        items: list[_Node] = []
        while self._peek().kind != "]":
            items.append(self._operand())
            if self._peek().kind != ",":
                break
            self._take()
        return self._count(_List(tuple(items)))

    def _close(self, closer: str, opener: _Token) -> None:
        token = self._take()
        if token.kind != closer:
            raise self._expected(
                f"'{closer}' to close the '{opener.text}' at column {opener.col}", token
            )


class _Interpreter:
    """Evaluates a tree against a lookup; comparisons follow the module's rules."""

    def __init__(self, lookup: Callable[[Ref], Any], where: str) -> None:
        self.lookup = lookup
        self.where = where

    def value(self, node: _Node) -> Any:
        match node:
            case Ref():
                return self.lookup(node)
            case _Literal(value):
                return value
            case _List(items):
                return [self.value(item) for item in items]
            case _Not(operand):
                return not truthy(self.value(operand))
            case _BoolOp("and", operands):
                return all(truthy(self.value(each)) for each in operands)
            case _BoolOp(_, operands):
                return any(truthy(self.value(each)) for each in operands)
            case _Compare(operands, ops):
                return self._chain(operands, ops)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def _chain(self, operands: Sequence[_Node], ops: Sequence[str]) -> bool:
        left = self.value(operands[0])
        for op, node in zip(ops, operands[1:]):
            right = self.value(node)
            if not compare(op, left, right, self.where):
                return False
            left = right
        return True


def compare(op: str, left: Any, right: Any, where: str) -> bool:
    """Apply one comparison operator under the module's rules.

    ``where`` starts any :class:`ExprError` message, e.g. ``"runIf 'option:x < 3'"``.
    """
    if op in ("==", "!="):
        return _equal(left, right) == (op == "==")
    if op in ("in", "not in"):
        return _contains(right, left, where) == (op == "in")
    left, right = _bool_as_text(left, right)
    if _is_number(left) and _is_number(right) or isinstance(left, str) and isinstance(right, str):
        return bool(ORDERING[op](left, right))
    raise ExprError(
        f"{where}: cannot compare {_describe(left)} with {_describe(right)}; "
        "compare numbers with numbers and strings with strings"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _bool_as_text(left: Any, right: Any) -> tuple[Any, Any]:
    if isinstance(left, bool) and right in ("True", "False"):
        return str(left), right
    if isinstance(right, bool) and left in ("True", "False"):
        return left, str(right)
    return left, right


def _kind(value: Any) -> str:
    if _is_number(value):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _equal(left: Any, right: Any) -> bool:
    left, right = _bool_as_text(left, right)
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "list":
        return len(left) == len(right) and all(map(_equal, left, right))
    if kind == "object":
        return left.keys() == right.keys() and all(_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _contains(container: Any, item: Any, where: str) -> bool:
    if container is None:
        return False
    if isinstance(container, list | tuple):
        return any(_equal(item, each) for each in container)
    if isinstance(container, Mapping):
        return any(_equal(item, key) for key in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    raise ExprError(
        f"{where}: cannot look for {_describe(item)} in {_describe(container)}; "
        "put a list, a string or an object on the right of 'in'"
    )


@dataclass(frozen=True)
class Restriction:
    """A condition on a status value; a node's jobs wait while it does not hold."""

    channel: str  #: the key before its last ':', e.g. "NodeController.seer3"
    param: str  #: the key after its last ':', e.g. "geocode.pending"
    op: str  #: one of < <= > >= == !=
    value: Any  #: a number when the condition's value parses as one, else the string
    text: str  #: the original ``"key": "condition"``, for messages

    def holds(self, current: Any) -> bool:
        """Whether the latest status value ``current`` satisfies the condition.

        None (no status value yet) never holds, so the job waits. A string status value
        that reads as a number is compared as that number when ``value`` is a number.
        Raises :class:`ExprError` when the two values cannot be ordered.
        """
        if current is None:
            return False
        if _is_number(self.value) and isinstance(current, str):
            number = _read_number(current.strip())
            current = current if number is None else number
        return compare(self.op, current, self.value, f"restriction {self.text}")


def parse_restriction(key: str, condition: str) -> Restriction:
    """Parse ``"channel:param": "<op><value>"``, e.g. ``"<3"``, ``"==idle"``, ``"!= busy"``."""
    if not isinstance(key, str) or not isinstance(condition, str):
        raise ExprError(
            f"restriction {key!r}: {condition!r}: write the key and the "
            'condition as strings, e.g. "Node.seer3:pending": "<3"'
        )
    text = f"{json.dumps(key)}: {json.dumps(condition)}"
    where = f"restriction {text if len(text) <= 120 else text[:117] + '...'}"
    channel, colon, param = key.rpartition(":")
    if not colon or not channel.strip() or not param.strip():
        raise ExprError(f"{where}: write the key as 'channel:param', e.g. 'Node.seer3:pending'")
    stripped = condition.strip()
    op = next((each for each in OPERATORS if stripped.startswith(each)), None)
    if op is None:
        raise ExprError(
            f'{where}: start the condition with one of < <= > >= == !=, e.g. "<3" or "==idle"'
        )
    raw = stripped[len(op) :].strip()
    if not raw or raw[0] in "<>=!":
        raise ExprError(f'{where}: write one operator and then a value, e.g. "{op}3"')
    return Restriction(channel.strip(), param.strip(), op, _restriction_value(raw, where), text)


MAX_NUMBER_CHARS = 40
MAX_NAME_CHARS = 100
MAX_QUOTED_CHARS = 200
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_VALUE_RULE = ("write a number (e.g. 3, -0.5, 1e9), a name (letters, digits, _ . -) or a "
               "quoted string")


def _restriction_value(raw: str, where: str) -> Any:
    """A restriction's value: a finite number, a name or a quoted string, within limits."""
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return _limited(raw[1:-1], MAX_QUOTED_CHARS, "a quoted string", where)
    if _NUMBER.fullmatch(raw):
        _limited(raw, MAX_NUMBER_CHARS, "a number", where)
        number = _read_number(raw)
        if number is None or number in (float("inf"), float("-inf")):
            raise ExprError(f"{where}: {raw!r} is too large a number; {_VALUE_RULE}")
        return number
    if _NAME.fullmatch(raw):
        return _limited(raw, MAX_NAME_CHARS, "a name", where)
    shown = raw if len(raw) <= 40 else raw[:37] + "..."
    raise ExprError(f"{where}: {shown!r} is neither a number nor a name; {_VALUE_RULE}")


def _limited(value: str, limit: int, what: str, where: str) -> str:
    if len(value) > limit:
        raise ExprError(f"{where}: write {what} of at most {limit} characters, not one of "
                        f"{len(value)}")
    return value


def _read_number(text: str) -> int | float | None:
    """The number ``text`` spells in the expression syntax, or None if it spells none."""
    if not _NUMBER.fullmatch(text):
        return None
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:  # more digits than Python converts
        return None
