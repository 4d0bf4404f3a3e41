"""The TRPO step's terms where the groups were sampled (``trpo.products: observers``).

Each observer builds the terms of the groups it sampled right after sampling them and keeps them for the
step (``MAMLRollouts.sample(..., hold=True)``); the step then asks every holder for its sums side by side
(one message each way per holder and call) and adds them in task order. The learner's tail then shrinks
as observers are added, on one host or many, instead of staying on the agent's cores.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from dh_maml.algorithms import Holders
from dh_maml.maml.inner import TaskGroup
from dh_maml.maml.learner import MAMLTRPO, GroupObjective, LocalTerms, Sums
from dh_maml.maml.rollouts import MAMLRollouts

Key = tuple[int, ...]  # a group's task ids


class HeldTerms:
    """``learner.Terms`` of groups held by the observers that sampled them.

    A group whose holder fails or is lost during the step is built here, from
    the copy the agent received with the group, and computed here from then
    on: the step goes on with the same terms (up to rounding) and nothing is
    sampled again.
    """

    def __init__(
        self,
        version: int,
        groups: list[TaskGroup],
        holders: Holders,
        learner: MAMLTRPO,
        objective: Callable[[TaskGroup], GroupObjective],
        device: torch.device,
    ):
        self.version, self.holders, self.learner, self.objective = version, holders, learner, objective
        self.groups: dict[Key, TaskGroup] = {tuple(g.task_ids): g for g in groups}
        self.device = device
        self.local: dict[Key, LocalTerms] = {}

    def _ask(self, entry: Callable[..., Any], extra: tuple, here: Callable[[LocalTerms], Any]) -> Any:
        """Every group's reply, from its holder or from here, added in task order."""
        parts: dict[Key, Any] = {}
        for shard, reply in self.holders.call(entry, lambda shard: (self.version, shard.ids, *extra)):
            if reply is not None:
                parts[tuple(shard.ids)] = reply
        for key in self.groups.keys() - parts.keys():
            if key not in self.local:
                self.local[key] = self.learner.terms([self.objective(self.groups[key])])
            parts[key] = here(self.local[key])
        return functools.reduce(operator.add, (parts[key].to(self.device) for key in sorted(parts)))

    def start(self) -> Sums:
        return self._ask(MAMLRollouts.held_start, (), LocalTerms.start)

    def product(self, v: Tensor) -> Tensor:
        return self._ask(MAMLRollouts.held_product, (v.detach().cpu(),), lambda t: t.product(v))

    def score(self, vector: Tensor) -> Tensor:
        return self._ask(MAMLRollouts.held_score, (vector.detach().cpu(),), lambda t: t.score(vector))
