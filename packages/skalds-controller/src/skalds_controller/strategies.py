"""How the dispatcher picks one node among those that can take a task.

A strategy only chooses: which nodes are eligible (online, node mode, runs the
className, free workers and resources) is decided before, in
:mod:`skalds_controller.placement`. Strategies keep their own small state (the
round-robin position, the random generator) per instance, never in the class.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Sequence
from typing import Protocol

from skalds_controller.settings import DispatchStrategy

__all__ = [
    "Candidate",
    "LeastTasks",
    "RandomChoice",
    "RoundRobin",
    "Strategy",
    "make_strategy",
]


class Candidate(Protocol):
    """What a strategy may look at: a node's id and how many tasks it has now."""

    @property
    def node_id(self) -> str: ...

    @property
    def load(self) -> int: ...


class Strategy(abc.ABC):
    """Chooses one node among eligible candidates."""

    name: DispatchStrategy

    @abc.abstractmethod
    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        """Return one of ``candidates`` (never empty: the dispatcher checks first)."""


class LeastTasks(Strategy):
    """The node with the fewest active tasks; ties go to the smallest id (stable)."""

    name = DispatchStrategy.LEAST_TASKS

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        return min(candidates, key=lambda c: (c.load, c.node_id))


class RoundRobin(Strategy):
    """Nodes in id order, one after the other, skipping those not eligible this time.

    The position is the last node id chosen (not an index), so nodes joining or
    leaving do not make the rotation jump back or skip a node.
    """

    name = DispatchStrategy.ROUND_ROBIN

    def __init__(self) -> None:
        self._last: str | None = None

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        ordered = sorted(candidates, key=lambda c: c.node_id)
        chosen = ordered[0]
        if self._last is not None:
            chosen = next((c for c in ordered if c.node_id > self._last), ordered[0])
        self._last = chosen.node_id
        return chosen


class RandomChoice(Strategy):
    """Any eligible node with equal chance (``rng`` makes it reproducible in tests)."""

    name = DispatchStrategy.RANDOM

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Candidate]) -> Candidate:
        return self._rng.choice(list(candidates))


def make_strategy(name: DispatchStrategy | str, rng: random.Random | None = None) -> Strategy:
    """Return a fresh strategy for ``name`` (a :class:`DispatchStrategy` value).

    Raises:
        ValueError: ``name`` is not one of the strategies.
    """
    kind = DispatchStrategy(name)
    if kind is DispatchStrategy.ROUND_ROBIN:
        return RoundRobin()
    if kind is DispatchStrategy.RANDOM:
        return RandomChoice(rng)
    return LeastTasks()
