"""Flow strings: ``"a; (b || c); d"`` read into names and dependencies.

``;`` runs its sides one after the other, ``||`` (or a single ``|``) runs them at the
same time, and parentheses group. ``||`` binds tighter than ``;``, as ``|`` does in a
shell, so ``a; b || c`` is ``a ; (b || c)``. Sequencing is a barrier: in ``X ; Y`` every
node that starts ``Y`` waits for every node that ends ``X``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryoflow.errors import GraphError

MAX_DEPTH = 64
"""How deeply parentheses may nest in a flow string."""

_TOKEN = re.compile(r"(?P<space>\s+)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\|\||[|;()])")


@dataclass(frozen=True)
class FlowPlan:
    """What a flow string says: its nodes, what each waits for, and its grouping."""

    names: tuple[str, ...]
    """Every name, in order of first appearance."""
    deps: Mapping[str, tuple[str, ...]]
    """Every name -> the names it waits for, in order of appearance; roots map to ()."""
    grouping: str
    """The fully parenthesised form, e.g. ``"a ; (b || c)"``, for ``--explain``."""
    columns: Mapping[str, int] = field(default_factory=dict, compare=False)
    """Every name -> its 1-based column, so callers can point at an unknown name."""


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", ";", "||" (also for "|"), "(", ")" or "end"
    text: str
    col: int

    def shown(self) -> str:
        return "the end of the text" if self.kind == "end" else repr(self.text)


@dataclass(frozen=True)
class _Group:
    op: str  # ";" or "||"
    items: tuple[_Part, ...]


_Part = str | _Group


def parse_flow(text: str) -> FlowPlan:
    """Parse a flow string, or raise :class:`GraphError` that names the column.

    Errors: empty text, an unknown character, an empty operand (``a; ; b``, ``a ||``,
    ``()``), an unbalanced parenthesis, or a name used twice. One trailing ``;`` at the
    very end (``"a; b;"``) is tolerated.
    """
    parser = _Parser(text)
    root = parser.parse()
    deps: dict[str, list[str]] = {name: [] for name in parser.columns}
    _wire(root, deps)
    order = {name: index for index, name in enumerate(parser.columns)}
    return FlowPlan(
        names=tuple(parser.columns),
        deps=MappingProxyType(
            {name: tuple(sorted(set(waits), key=order.__getitem__)) for name, waits in deps.items()}
        ),
        grouping=_render(root, top=True),
        columns=MappingProxyType(dict(parser.columns)),
    )


def _wire(part: _Part, deps: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Add the edges inside ``part`` to ``deps``; return its start and end names."""
    if isinstance(part, str):
        return [part], [part]
    wired = [_wire(item, deps) for item in part.items]
    if part.op == "||":
        return [s for starts, _ in wired for s in starts], [e for _, ends in wired for e in ends]
    for (_, ends), (starts, _) in zip(wired, wired[1:]):
        for start in starts:
            deps[start].extend(ends)
    return wired[0][0], wired[-1][1]


def _render(part: _Part, *, top: bool = False) -> str:
    if isinstance(part, str):
        return part
    inner = f" {part.op} ".join(_render(item) for item in part.items)
    return inner if top else f"({inner})"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise GraphError(
                f"flow {_quote(text)}: unknown character {text[pos]!r} at column {pos + 1}; "
                "write names joined by ';', '||' and parentheses"
            )
        if match.lastgroup == "name":
            tokens.append(_Token("name", match.group(), pos + 1))
        elif match.lastgroup == "op":
            kind = "||" if match.group() == "|" else match.group()
            tokens.append(_Token(kind, match.group(), pos + 1))
        pos = match.end()
    return [*tokens, _Token("end", "", len(text) + 1)]


class _Parser:
    """Recursive descent: a sequence of parallel groups of names or parenthesised flows."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0
        self.columns: dict[str, int] = {}

    def parse(self) -> _Part:
        if self.tokens[0].kind == "end":
            raise self._fail("the flow is empty; write at least one name")
        root = self._sequence()
        token = self.tokens[self.pos]
        if token.kind == ")":
            raise self._fail(f"unmatched ')' at column {token.col}; remove it or add a '('")
        if token.kind != "end":
            raise self._fail(
                f"expected ';', '||' or the end of the text at column {token.col}, "
                f"found {token.shown()}"
            )
        return root

    def _fail(self, message: str) -> GraphError:
        return GraphError(f"flow {_quote(self.text)}: {message}")

    def _take(self) -> _Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def _sequence(self) -> _Part:
        items = [self._parallel()]
        while self.tokens[self.pos].kind == ";":
            self._take()
            if self.depth == 0 and self.tokens[self.pos].kind == "end":
                break  # one trailing ';' is tolerated
            items.append(self._parallel())
        return _join(";", items)

    def _parallel(self) -> _Part:
        items = [self._operand()]
        while self.tokens[self.pos].kind == "||":
            self._take()
            items.append(self._operand())
        return _join("||", items)

    def _operand(self) -> _Part:
        token = self._take()
        if token.kind == "name":
            return self._name(token)
        if token.kind != "(":
            raise self._fail(
                f"empty step at column {token.col}: expected a name or '(', found {token.shown()}"
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._fail(f"parentheses nest deeper than {MAX_DEPTH} at column {token.col}")
        inner = self._sequence()
        self._close(token)
        self.depth -= 1
        return inner

    def _close(self, opener: _Token) -> None:
        token = self._take()
        if token.kind == "end":
            raise self._fail(f"the '(' at column {opener.col} is not closed; add a ')'")
        if token.kind != ")":
            raise self._fail(
                f"expected ';', '||' or ')' at column {token.col}, found {token.shown()}"
            )

    def _name(self, token: _Token) -> str:
        first = self.columns.setdefault(token.text, token.col)
        if first != token.col:
            raise self._fail(
                f"the name {token.text!r} is used twice, at columns {first} and {token.col}; "
                "each step may appear once"
            )
        return token.text


def _join(op: str, items: list[_Part]) -> _Part:
    """One group of ``items`` joined by ``op``, flattening groups of the same ``op``."""
    flat: list[_Part] = []
    for item in items:
        if isinstance(item, _Group) and item.op == op:
            flat.extend(item.items)
        else:
            flat.append(item)
    return flat[0] if len(flat) == 1 else _Group(op, tuple(flat))


def _quote(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")
