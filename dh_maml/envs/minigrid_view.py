"""The agent's egocentric MiniGrid view, gathered from an encoding of the whole grid kept between steps.

MiniGrid builds each observation by copying the view into a new ``Grid``, rotating
it cell by cell once to four times, propagating visibility over it and encoding
it, all in Python objects: about 1 ms per step, 85 % of an MLSH round on
DoorKey. Here the whole grid is encoded once (with which cells block the view)
after a reset, and the cell in front of the agent again after the actions that
change it (pick up, drop, toggle); a step's view is then one numpy gather through offsets computed once per
direction, and the visibility of a pattern of blocking cells is computed once
and remembered (a room shows few patterns). ``MiniGridEnv.gen_obs`` stays the
reference: ``tests/test_envs.py`` holds the two equal at every step of random
episodes on every MiniGrid env the families use. Valid for envs whose cells
change only by those actions, as MiniGrid's static rooms do (not, e.g., its
moving obstacles).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import DIR_TO_VEC, OBJECT_TO_IDX
from minigrid.core.world_object import Wall
from minigrid.minigrid_env import MiniGridEnv

EMPTY = (OBJECT_TO_IDX["empty"], 0, 0)
OUTSIDE = Wall().encode()  # MiniGrid's ``Grid.slice`` puts walls where the view leaves the grid
CHANGES_CELLS = frozenset(int(a) for a in (Actions.pickup, Actions.drop, Actions.toggle))


@functools.cache
def view_offsets(size: int, direction: int) -> tuple[np.ndarray, np.ndarray]:
    """[vx, vy]: the grid offset (x, y) from the agent of each cell in view when it faces ``direction``; the
    agent at (size // 2, size - 1), facing -vy, its right +vx."""
    fx, fy = (int(c) for c in DIR_TO_VEC[direction])
    vx, vy = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    ahead, right = size - 1 - vy, vx - size // 2
    return fx * ahead - fy * right, fy * ahead + fx * right


def visible(blocked: np.ndarray, agent: tuple[int, int]) -> np.ndarray:
    """MiniGrid's ``Grid.process_vis``: the cells seen from ``agent`` (bottom middle of the view), light
    spreading up and sideways row by row and stopped by the ``blocked`` cells; [x, y]."""
    size = len(blocked)
    mask = np.zeros((size, size), dtype=bool)
    mask[agent] = True
    for j in reversed(range(size)):
        for i in range(size - 1):
            if mask[i, j] and not blocked[i, j]:
                mask[i + 1, j] = True
                if j > 0:
                    mask[i + 1, j - 1] = mask[i, j - 1] = True
        for i in reversed(range(1, size)):
            if mask[i, j] and not blocked[i, j]:
                mask[i - 1, j] = True
                if j > 0:
                    mask[i - 1, j - 1] = mask[i, j - 1] = True
    return mask


@functools.lru_cache(maxsize=65536)
def _hidden(blocked: bytes, size: int) -> np.ndarray:
    """The cells not seen for a pattern of blocking cells (read-only: every caller shares it)."""
    pattern = np.frombuffer(blocked, dtype=bool).reshape(size, size)
    hidden = ~visible(pattern, (size // 2, size - 1))
    hidden.flags.writeable = False
    return hidden


def _cell_code(obj: Any) -> tuple[tuple[int, int, int], bool]:
    """A cell's encoding and whether it blocks the view."""
    return (EMPTY, False) if obj is None else (obj.encode(), not obj.see_behind())


def grid_encoding(env: MiniGridEnv, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole grid's encoding [x, y, 3] and which cells block the view [x, y], with ``margin`` cells of
    wall around it so that any view is in bounds."""
    width, height = env.grid.width, env.grid.height
    codes = np.empty((width + 2 * margin, height + 2 * margin, 3), dtype=np.uint8)
    codes[:] = OUTSIDE
    blocked = np.ones(codes.shape[:2], dtype=bool)
    codes[margin : margin + width, margin : margin + height] = EMPTY
    blocked[margin : margin + width, margin : margin + height] = False
    placed = [(k, obj) for k, obj in enumerate(env.grid.grid) if obj is not None]
    if placed:
        cells = np.array([k for k, _ in placed])
        x, y = margin + cells % width, margin + cells // width
        codes[x, y] = [obj.encode() for _, obj in placed]
        blocked[x, y] = [not obj.see_behind() for _, obj in placed]
    return codes, blocked


def update_cell(env: MiniGridEnv, codes: np.ndarray, blocked: np.ndarray, pos: tuple[int, int]) -> None:
    """Re-encode the grid cell at ``pos`` in ``grid_encoding``'s arrays."""
    margin = (codes.shape[0] - env.grid.width) // 2
    x, y = margin + int(pos[0]), margin + int(pos[1])
    codes[x, y], blocked[x, y] = _cell_code(env.grid.get(int(pos[0]), int(pos[1])))


def egocentric_view(env: MiniGridEnv, codes: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """``env.gen_obs()["image"]``: the [view, view, 3] encoding of what the agent sees, facing up, from the
    grid's ``grid_encoding`` with a margin of at least the view's size."""
    size = env.agent_view_size
    margin = (codes.shape[0] - env.grid.width) // 2
    dx, dy = view_offsets(size, env.agent_dir)
    x, y = dx + (margin + int(env.agent_pos[0])), dy + (margin + int(env.agent_pos[1]))
    image = codes[x, y]
    if not env.see_through_walls:
        image[_hidden(blocked[x, y].tobytes(), size)] = 0
    image[size // 2, size - 1] = env.carrying.encode() if env.carrying else EMPTY
    return image


class FastView:
    """Mixin for a ``MiniGridEnv`` subclass: observations from ``egocentric_view``, on a grid encoding built
    after a reset and kept up to date after the actions that change a cell (only ever the one in front of
    the agent, which they do not move)."""

    _grid_codes: tuple[np.ndarray, np.ndarray] | None = None
    _changed: tuple[int, int] | None = None  # the cell a pick up, drop or toggle may have changed

    def reset(self: Any, *args: Any, **kwargs: Any) -> tuple[Any, dict]:
        self._grid_codes = None
        return super().reset(*args, **kwargs)  # type: ignore[misc]

    def step(self: Any, action: Any) -> tuple[Any, float, bool, bool, dict]:
        if int(action) in CHANGES_CELLS and self._grid_codes is not None:
            self._changed = tuple(self.front_pos)  # read by gen_obs at the end of this step
        return super().step(action)  # type: ignore[misc]

    def gen_obs(self: Any) -> dict[str, Any]:
        if self._grid_codes is None:
            self._grid_codes = grid_encoding(self, self.agent_view_size)
        elif self._changed is not None:
            update_cell(self, *self._grid_codes, self._changed)
        self._changed = None
        return {"image": egocentric_view(self, *self._grid_codes), "direction": self.agent_dir, "mission": self.mission}
