"""Resolution rules (docs/semantics.md, "Outcomes and resolution") as pure functions."""

from __future__ import annotations

from collections.abc import Sequence

from cryoflow.graph.model import Node, Outcome, RunOn

_SEVERITY = (Outcome.ERROR, Outcome.TIMEOUT, Outcome.CANCEL, Outcome.SUCCESS)


def combine(outcomes: Sequence[Outcome]) -> Outcome:
    """error > timeout > cancel > success > skipped (all skipped)."""
    for outcome in _SEVERITY:
        if outcome in outcomes:
            return outcome
    return Outcome.SKIPPED


def resolution(
    node: Node, parents: Sequence[tuple[str, Outcome | None]]
) -> tuple[Outcome, str | None] | None:
    """Decide whether ``node`` resolves now, given ``(parent, outcome or None)`` pairs.

    Returns ``(combined outcome, resolving parent)``, or None while it must wait.
    With ``resolveOnAny`` the first parent with an outcome other than ``skipped``
    resolves the node; otherwise every parent must have an outcome.
    """
    if node.resolve_on_any:
        for name, outcome in parents:
            if outcome is not None and outcome is not Outcome.SKIPPED:
                return outcome, name
    if any(outcome is None for _, outcome in parents):
        return None
    combined = combine([o for _, o in parents if o is not None])
    by = next((name for name, o in parents if o is combined), None)
    return combined, by


def runs_on(node: Node, combined: Outcome, timeout_taken: bool) -> bool:
    """Does ``runOn`` match the combined outcome? ``timeout_taken``: a sibling takes timeouts."""
    match node.run_on:
        case RunOn.ALWAYS:
            return True
        case RunOn.NEVER:
            return False
        case RunOn.SUCCESS:
            return combined is Outcome.SUCCESS
        case RunOn.TIMEOUT:
            return combined is Outcome.TIMEOUT
        case RunOn.ERROR:
            return combined is Outcome.ERROR or (
                combined is Outcome.TIMEOUT and not timeout_taken
            )
    return False


FAILURES = frozenset({Outcome.ERROR, Outcome.TIMEOUT, Outcome.CANCEL})
"""Outcomes that fail a pebble unless something handles them."""
