"""Meta-World's observations and v2 rewards, per class, over all sub-envs of one task at once.

Each kernel is a port of one Meta-World class's ``_get_pos_objects`` / ``_get_quat_objects`` and
``compute_reward`` / ``evaluate_state`` to arrays with a leading sub-env axis, keeping Meta-World's
operations and their order so that results agree to rounding (tested step for step against
Meta-World's own environments in ``tests/test_metaworld.py``). Constants that Meta-World's reset
computes (initial object and hand positions, the target) are read from its environment after reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import mujoco
import numpy as np

ROBOT_BODIES = ("hand", "rightclaw", "leftclaw", "leftpad", "rightpad")
TCP_SITES = ("rightEndEffector", "leftEndEffector")
VALUE_AT_MARGIN = 0.1  # Meta-World's default for every sigmoid it uses


LONG_TAIL_SCALE = np.sqrt(1 / VALUE_AT_MARGIN - 1)
GAUSSIAN_SCALE = np.sqrt(-2 * np.log(VALUE_AT_MARGIN))


def tolerance(x: np.ndarray, bounds: tuple[Any, Any], margin: Any, sigmoid: str = "long_tail") -> np.ndarray:
    """``reward_utils.tolerance(x, bounds, margin, sigmoid)`` for arrays of ``x``, bounds and ``margin``
    (the long-tail and gaussian sigmoids, the two Meta-World's rewards use).

    Outside the bounds the distance to the nearer one is the larger of ``lower - x`` and ``x - upper``
    (the other is negative); inside both are <= 0, so the distance clipped at 0 gives each sigmoid
    exactly 1 there, as Meta-World's separate in-bounds case does, with fewer array operations.
    """
    lower, upper = bounds
    scalar = isinstance(margin, (int, float))
    if scalar and margin == 0:
        return ((lower <= x) & (x <= upper)).astype(np.float64)
    zero = None if scalar else margin == 0
    distance = np.maximum(np.maximum(lower - x, x - upper), 0.0)
    d = distance / (margin if zero is None else np.where(zero, 1.0, margin))
    if sigmoid == "long_tail":
        value = 1 / (np.square(d * LONG_TAIL_SCALE) + 1)
    else:
        value = np.exp(-0.5 * np.square(d * GAUSSIAN_SCALE))
    if zero is None or not zero.any():
        return value
    return np.where(zero, (distance == 0).astype(np.float64), value)


def rect_prism_tolerance(curr: np.ndarray, zero: np.ndarray, one: np.ndarray) -> np.ndarray:
    """``reward_utils.rect_prism_tolerance``: inside the box from ``zero`` to ``one``, the product of the
    relative coordinates; 1 outside."""
    low, high = np.minimum(zero, one), np.maximum(zero, one)
    inside = np.all((low <= curr) & (curr <= high), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        scales = (curr - zero) / (one - zero)
    return np.where(inside, scales[:, 0] * scales[:, 1] * scales[:, 2], 1.0)


def hamacher_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    product = a * b
    denominator = a + b - product
    return np.divide(product, denominator, out=np.zeros_like(product), where=denominator > 0)


def matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """``scipy.spatial.transform.Rotation.from_matrix(matrix).as_quat()`` for orthonormal ``[k, 3, 3]``
    matrices (MuJoCo's are): scipy's case split on the largest of the diagonal and the trace, with its
    arithmetic in its order, without its per-call checks, which cost more than the rest of a step's
    observation."""
    m = matrix.reshape(-1, 9)
    k = len(m)
    decision = np.empty((k, 4))  # the diagonal and the trace
    diagonal = decision[:, :3]
    diagonal[:] = m[:, ::4]
    trace = np.add(np.add(diagonal[:, 0], diagonal[:, 1], out=decision[:, 3]), diagonal[:, 2], out=decision[:, 3])
    terms = np.empty((k, 10))  # 1 - trace + 2 m_ii (3), m_ji + m_ij (3), m_kj - m_jk (3), 1 + trace
    np.add((1 - trace)[:, None], 2 * diagonal, out=terms[:, :3])
    np.add(m[:, SUM_LEFT], m[:, SUM_RIGHT], out=terms[:, 3:6])
    np.subtract(m[:, DIFF_LEFT], m[:, DIFF_RIGHT], out=terms[:, 6:9])
    np.add(trace, 1, out=terms[:, 9])
    quat = terms[np.arange(k)[:, None], QUAT_CASES[decision.argmax(axis=1)]]
    return quat / norm(quat)[:, None]


# matrix_to_quat's terms, by flat index of the 3x3 matrix: s10, s20, s21 and t21, t02, t10
SUM_LEFT, SUM_RIGHT = np.array([3, 6, 7]), np.array([1, 2, 5])
DIFF_LEFT, DIFF_RIGHT = np.array([7, 2, 3]), np.array([5, 6, 1])
QUAT_CASES = np.array([[0, 3, 4, 6], [3, 1, 5, 7], [4, 5, 2, 8], [6, 7, 8, 9]])  # each case's terms, x y z w


def funnel(radius: np.ndarray, threshold: Any, scale: float, height: float) -> np.ndarray:
    """Meta-World's funnel floor around a point: 0 within ``threshold`` of it, ``scale * log(radius -
    threshold) + height`` beyond (the log taken only where it is defined)."""
    outside = radius > threshold
    return np.where(outside, scale * np.log(np.where(outside, radius - threshold, 1.0)) + height, 0.0)


def above_floor(z: np.ndarray, floor: np.ndarray, margin: Any) -> np.ndarray:
    """1 with the hand at or above the floor; below it, the long-tail tolerance of how far (1 cm pays fully)."""
    return np.where(z >= floor, 1.0, tolerance(np.maximum(floor - z, 0.0), (0.0, 0.01), margin))


def clip(x: Any, low: Any, high: Any) -> np.ndarray:
    """``np.clip`` for bounds with ``low <= high``: the same values, without its Python-level argument handling
    (it costs more than the clipping on a step's few dozen rows)."""
    return np.minimum(np.maximum(x, low), high)


def norm(x: np.ndarray) -> np.ndarray:
    """``np.linalg.norm(x, axis=-1)``, the same reduction without its argument handling."""
    return np.sqrt(np.add.reduce(x * x, axis=-1))


# What a kernel reads from MjData: the field, the kind of object its rows belong to
FIELDS = {
    "xpos": mujoco.mjtObj.mjOBJ_BODY,  # body positions (Meta-World's get_body_com)
    "xquat": mujoco.mjtObj.mjOBJ_BODY,
    "xmat": mujoco.mjtObj.mjOBJ_BODY,
    "site_xpos": mujoco.mjtObj.mjOBJ_SITE,
    "site_xmat": mujoco.mjtObj.mjOBJ_SITE,
    "geom_xpos": mujoco.mjtObj.mjOBJ_GEOM,
    "geom_xmat": mujoco.mjtObj.mjOBJ_GEOM,
    "qpos": mujoco.mjtObj.mjOBJ_JOINT,  # a hinge or slide joint's position
}
ROBOT_READS = (
    *(("xpos", body) for body in ("hand", "rightclaw", "leftclaw", "leftpad", "rightpad")),
    *(("site_xpos", site) for site in TCP_SITES),
)


@dataclass
class Reads:
    """Rows of MjData fields to copy after each step: ``index[field]`` into the field, ``names[field]``;
    ``touch``: the geoms (left pad, right pad, object) whose contact a kernel reads, if it does."""

    index: dict[str, np.ndarray]
    names: dict[str, tuple[str, ...]]
    touch: tuple[int, int, int] | None = None

    def columns(self, data: mujoco.MjData) -> dict[str, list[int | slice]]:
        """Where each read row lands in a sub-env's row of values (``flat_index`` order): a column for a
        scalar field's row, a slice of columns for a vector's."""
        out: dict[str, list[int | slice]] = {}
        start = 0
        for field, rows in self.index.items():
            width = getattr(data, field)[0].size
            out[field] = [
                start + r * width if width == 1 else slice(start + r * width, start + (r + 1) * width)
                for r in range(len(rows))
            ]
            start += len(rows) * width
        return out

    def flat_index(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray]:
        """(a float64 view over ``data``'s memory from the first read field to the last, the offsets of every
        read value in it): one ``take`` then copies all of a step's reads.

        MuJoCo allocates an MjData's fixed-size arrays in one buffer, so the fields lie at fixed
        distances from each other (each array's address is checked to be float64-aligned there).
        """
        arrays = {field: getattr(data, field) for field in self.index}
        first = min(arrays.values(), key=lambda a: a.ctypes.data)
        offsets = []
        for field, rows in self.index.items():
            array = arrays[field]
            gap = array.ctypes.data - first.ctypes.data
            if gap % 8 or not (array.dtype == np.float64 and array.flags.c_contiguous):
                raise RuntimeError(f"MjData.{field} does not lie on a float64 grid with the other read fields")
            width = array[0].size
            offsets.append(gap // 8 + (rows[:, None] * width + np.arange(width)).reshape(-1))
        index = np.concatenate(offsets)
        span = np.lib.stride_tricks.as_strided(first.reshape(-1), shape=(int(index.max()) + 1,), strides=(8,))
        return span, index


def pads_touch(data: mujoco.MjData, geoms: tuple[int, int, int]) -> bool:
    """``SawyerXYZEnv.touching_object``: the contacts of each pad with the object push with positive force
    in sum (a contact without a constraint row reads the last force, as Meta-World's indexing does)."""
    left, right, obj = geoms
    pairs = data.contact.geom
    force = data.efc_force[data.contact.efc_address]
    on_obj = (pairs == obj).any(axis=1)
    return bool(force[on_obj & (pairs == left).any(axis=1)].sum() > 0) and bool(
        force[on_obj & (pairs == right).any(axis=1)].sum() > 0
    )


@dataclass
class Readings:
    """A step's copies of the read rows, ``values[field][name]`` with a leading sub-env axis; ``touching``
    per sub-env where the kernel reads contacts."""

    values: dict[str, dict[str, np.ndarray]]
    touching: np.ndarray | None = None

    @classmethod
    def of(
        cls,
        reads: Reads,
        columns: dict[str, list[int | slice]],
        values: np.ndarray,
        touching: np.ndarray | None = None,
    ) -> Readings:
        """Views of ``values`` [k, columns] (``Reads.flat_index`` order) by field and name."""
        return cls(
            {
                field: {name: values[:, column] for name, column in zip(names, columns[field])}
                for field, names in reads.names.items()
            },
            touching,
        )

    def body(self, name: str) -> np.ndarray:
        return self.values["xpos"][name]

    def site(self, name: str) -> np.ndarray:
        return self.values["site_xpos"][name]

    def geom(self, name: str) -> np.ndarray:
        return self.values["geom_xpos"][name]

    def joint(self, name: str) -> np.ndarray:
        return self.values["qpos"][name]

    def body_quat(self, name: str) -> np.ndarray:
        return self.values["xquat"][name]

    def geom_quat(self, name: str) -> np.ndarray:
        """The quaternion (x, y, z, w) of a geom's orientation, as Meta-World observes it (scipy's)."""
        return matrix_to_quat(self.values["geom_xmat"][name].reshape(-1, 3, 3))

    def body_matrix_quat(self, name: str) -> np.ndarray:
        """A body's orientation as Meta-World observes it where it converts the body's matrix (scipy's)."""
        return matrix_to_quat(self.values["xmat"][name].reshape(-1, 3, 3))

    def site_quat(self, name: str) -> np.ndarray:
        return matrix_to_quat(self.values["site_xmat"][name].reshape(-1, 3, 3))

    @property
    def tcp(self) -> np.ndarray:
        """Meta-World's ``tcp_center``: midway between the two fingertips."""
        return (self.site("rightEndEffector") + self.site("leftEndEffector")) / 2.0


class Kernel:
    """One class's observed objects and reward; subclasses name what they read and which constants."""

    reads: ClassVar[tuple[tuple[str, str], ...]] = ()  # (field, name) pairs beside the robot's
    constant_names: ClassVar[tuple[str, ...]] = ()  # attributes of Meta-World's env after reset
    touch_geom: ClassVar[str | None] = None  # the object whose contact with both pads the kernel reads
    episode_names: ClassVar[tuple[str, ...]] = ()  # values fixed at an episode's first step (episode_values)

    def ids(self, model: mujoco.MjModel) -> Reads:
        names: dict[str, tuple[str, ...]] = {}
        for field, name in dict.fromkeys((*ROBOT_READS, *self.all_reads())):
            names[field] = (*names.get(field, ()), name)
        index = {}
        for field, rows in names.items():
            ids = np.array([mujoco.mj_name2id(model, FIELDS[field], name) for name in rows], dtype=np.int64)
            index[field] = model.jnt_qposadr[ids] if field == "qpos" else ids
        touch = None
        if self.touch_geom is not None:
            geom = mujoco.mjtObj.mjOBJ_GEOM
            touch = tuple(
                mujoco.mj_name2id(model, geom, name) for name in ("leftpad_geom", "rightpad_geom", self.touch_geom)
            )
        return Reads(index, names, touch)

    def all_reads(self) -> tuple[tuple[str, str], ...]:
        return self.reads

    def constants(self, env: Any) -> dict[str, Any]:
        return {name: np.array(getattr(env, name), dtype=np.float64) for name in self.constant_names}

    def objects(self, r: Readings) -> np.ndarray:
        """Observed object positions and quaternions, object by object, [k, 7 * objects]."""
        raise NotImplementedError

    def episode_values(self, r: Readings, obs: np.ndarray, c: dict[str, Any]) -> dict[str, np.ndarray]:
        """The values named by ``episode_names`` as they would be fixed at this step."""
        raise NotImplementedError

    def reward(
        self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(reward, success) per sub-env."""
        raise NotImplementedError


def gripper_caging(
    r: Readings,
    actions: np.ndarray,
    obj: np.ndarray,
    c: dict[str, Any],
    *,
    obj_radius: float,
    pad_success_thresh: float,
    object_reach_radius: float,
    xz_thresh: float,
    desired_gripper_effort: float = 1.0,
    high_density: bool = False,
    medium_density: bool = False,
) -> np.ndarray:
    """``SawyerXYZEnv._gripper_caging_reward``: the pads around the object (y), the fingertips at it (x, z)."""
    pad_y_lr = np.stack((r.body("leftpad")[:, 1], r.body("rightpad")[:, 1]), axis=-1)
    pad_to_obj_lr = np.abs(pad_y_lr - obj[:, 1:2])
    pad_to_objinit_lr = np.abs(pad_y_lr - c["obj_init_pos"][:, 1:2])
    caging_lr_margin = np.abs(pad_to_objinit_lr - pad_success_thresh)
    caging_lr = tolerance(pad_to_obj_lr, (obj_radius, pad_success_thresh), caging_lr_margin)
    caging_y = hamacher_product(caging_lr[:, 0], caging_lr[:, 1])
    tcp, xz = r.tcp, [0, 2]
    caging_xz_margin = norm(c["obj_init_pos"][:, xz] - c["init_tcp"][:, xz]) - xz_thresh
    caging_xz = tolerance(norm(tcp[:, xz] - obj[:, xz]), (0, xz_thresh), caging_xz_margin)
    gripper_closed = np.minimum(np.maximum(0, actions[:, -1]), desired_gripper_effort) / desired_gripper_effort
    caging = hamacher_product(caging_y, caging_xz)
    gripping = np.where(caging > 0.97, gripper_closed, 0.0)
    caging_and_gripping = hamacher_product(caging, gripping)
    if high_density:
        caging_and_gripping = (caging_and_gripping + caging) / 2
    if medium_density:
        tcp_to_obj = norm(obj - tcp)
        tcp_to_obj_init = norm(c["obj_init_pos"] - c["init_tcp"])
        reach_margin = np.abs(tcp_to_obj_init - object_reach_radius)
        reach = tolerance(tcp_to_obj, (0, object_reach_radius), reach_margin)
        caging_and_gripping = (caging_and_gripping + reach) / 2
    return caging_and_gripping


class ObjectBody(Kernel):
    """Classes observing one object: the position of body ``obj`` and the orientation of geom ``objGeom``."""

    reads = (("xpos", "obj"), ("geom_xmat", "objGeom"))

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("obj"), r.geom_quat("objGeom")), axis=-1)


class Reach(ObjectBody):
    """reach-v3: the fingertips to the goal."""

    constant_names = ("_target_pos", "hand_init_pos")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        target = c["_target_pos"]
        tcp_to_target = norm(r.tcp - target)
        in_place_margin = norm(c["hand_init_pos"] - target)
        in_place = tolerance(tcp_to_target, (0, 0.05), in_place_margin)
        return 10 * in_place, tcp_to_target <= 0.05


class Push(ObjectBody):
    """push-v3: the puck to the goal on the table."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["_target_pos"]
        tcp_to_obj = norm(obj - r.tcp)
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(c["obj_init_pos"] - target)
        in_place = tolerance(target_to_obj, (0, 0.05), target_to_obj_init)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        reward = 2 * object_grasped
        reward = np.where((tcp_to_obj < 0.02) & (tcp_opened > 0), reward + (1.0 + reward + 5.0 * in_place), reward)
        reward = np.where(target_to_obj < 0.05, 10.0, reward)
        return reward, target_to_obj <= 0.05


class PickPlace(ObjectBody):
    """pick-place-v3: grasp the puck and carry it to a goal in the air."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    @staticmethod
    def _caging(r: Readings, actions: np.ndarray, obj: np.ndarray, c: dict[str, Any]) -> np.ndarray:
        """``SawyerPickPlaceEnvV3._gripper_caging_reward``, which differs from the base class's.

        Meta-World's ``init_left_pad`` / ``init_right_pad`` are views of the live body positions
        (``get_body_com`` returns one), so its caging margins use the pads' current positions: kept.
        """
        pad_success_margin, x_z_success_margin, obj_radius = 0.05, 0.005, 0.015
        tcp, left_pad, right_pad = r.tcp, r.body("leftpad"), r.body("rightpad")
        delta_object_y_left_pad = left_pad[:, 1] - obj[:, 1]
        delta_object_y_right_pad = obj[:, 1] - right_pad[:, 1]
        right_caging_margin = np.abs(np.abs(obj[:, 1] - right_pad[:, 1]) - pad_success_margin)
        left_caging_margin = np.abs(np.abs(obj[:, 1] - left_pad[:, 1]) - pad_success_margin)
        bounds = (obj_radius, pad_success_margin)
        right_caging = tolerance(delta_object_y_right_pad, bounds, right_caging_margin)
        left_caging = tolerance(delta_object_y_left_pad, bounds, left_caging_margin)
        y_caging = hamacher_product(left_caging, right_caging)
        without_y = np.array([1.0, 0.0, 1.0])
        tcp_obj_norm_x_z = norm(tcp * without_y - obj * without_y)
        tcp_obj_x_z_margin = norm(c["obj_init_pos"] * without_y - c["init_tcp"] * without_y) - x_z_success_margin
        x_z_caging = tolerance(tcp_obj_norm_x_z, (0, x_z_success_margin), tcp_obj_x_z_margin)
        gripper_closed = np.minimum(np.maximum(0, actions[:, -1]), 1)
        caging = hamacher_product(y_caging, x_z_caging)
        gripping = np.where(caging > 0.97, gripper_closed, 0.0)
        caging_and_gripping = hamacher_product(caging, gripping)
        return (caging_and_gripping + caging) / 2

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["_target_pos"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - r.tcp)
        in_place_margin = norm(c["obj_init_pos"] - target)
        in_place = tolerance(obj_to_target, (0, 0.05), in_place_margin)
        object_grasped = self._caging(r, actions, obj, c)
        reward = hamacher_product(object_grasped, in_place)
        lifted = (tcp_to_obj < 0.02) & (tcp_opened > 0) & (obj[:, 2] - 0.01 > c["obj_init_pos"][:, 2])
        reward = np.where(lifted, reward + (1.0 + 5.0 * in_place), reward)
        reward = np.where(obj_to_target < 0.05, 10.0, reward)
        return reward, obj_to_target <= 0.07


def zero_y(x: np.ndarray) -> np.ndarray:
    """A point's x and z, its y set to 0 (Meta-World's ``p + [0, -p[1], 0]``)."""
    return x * np.array([1.0, 0.0, 1.0])


def lifted(
    obj: np.ndarray, tcp_to_obj: np.ndarray, tcp_opened: np.ndarray, c: dict[str, Any], reach: float
) -> np.ndarray:
    """The grasp bonus's condition shared by the pick-and-carry classes: fingertips at the object, gripper
    open and the object lifted 1 cm above its start."""
    return (tcp_to_obj < reach) & (tcp_opened > 0) & (obj[:, 2] - 0.01 > c["obj_init_pos"][:, 2])


def sweep_caging(
    r: Readings, obj: np.ndarray, c: dict[str, Any], obj_radius: Any, grip_margin: float, x_z_margin: float
) -> np.ndarray:
    """The sweep classes' ``_gripper_caging_reward`` (they override the base class's): caging, and gripping
    once caged."""
    pad_success_margin = 0.05
    tcp, left_pad, right_pad = r.tcp, r.body("leftpad"), r.body("rightpad")
    delta_object_y_left_pad = left_pad[:, 1] - obj[:, 1]
    delta_object_y_right_pad = obj[:, 1] - right_pad[:, 1]
    right_caging_margin = np.abs(np.abs(obj[:, 1] - right_pad[:, 1]) - pad_success_margin)
    left_caging_margin = np.abs(np.abs(obj[:, 1] - left_pad[:, 1]) - pad_success_margin)
    right_caging = tolerance(delta_object_y_right_pad, (obj_radius, pad_success_margin), right_caging_margin)
    left_caging = tolerance(delta_object_y_left_pad, (obj_radius, pad_success_margin), left_caging_margin)
    right_gripping = tolerance(delta_object_y_right_pad, (obj_radius, grip_margin), right_caging_margin)
    left_gripping = tolerance(delta_object_y_left_pad, (obj_radius, grip_margin), left_caging_margin)
    y_caging = hamacher_product(right_caging, left_caging)
    y_gripping = hamacher_product(right_gripping, left_gripping)
    tcp_obj_norm_x_z = norm(zero_y(tcp) - zero_y(obj))
    tcp_obj_x_z_margin = norm(zero_y(c["obj_init_pos"]) - zero_y(c["init_tcp"])) - x_z_margin
    x_z_caging = tolerance(tcp_obj_norm_x_z, (0, x_z_margin), tcp_obj_x_z_margin)
    caging = hamacher_product(y_caging, x_z_caging)
    gripping = np.where(caging > 0.95, y_gripping, 0.0)
    return (caging + gripping) / 2


class Door(Kernel):
    """The door classes observe the handle geom."""

    reads = (("geom_xpos", "handle"), ("geom_xmat", "handle"), ("qpos", "doorjoint"))

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.geom("handle"), r.geom_quat("handle")), axis=-1)


class DoorOpen(Door):
    """door-open-v3: swing the door open by its handle."""

    constant_names = ("_target_pos",)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        theta = r.joint("doorjoint")
        reward_grab = ((clip(actions[:, 3], -1, 1) + 1.0) / 2.0).astype(np.float64)
        hand, door = obs[:, :3], obs[:, 4:7] + np.array([-0.05, 0, 0])
        threshold = 0.12
        radius = norm(hand[:, :2] - door[:, :2])
        floor = funnel(radius, threshold, 0.04, 0.4)
        in_place = tolerance(norm(hand - door - np.array([0.05, 0.03, -0.01])), (0, threshold / 2.0), 0.5)
        ready_to_open = hamacher_product(above_floor(hand[:, 2], floor, floor / 2.0), in_place)
        door_angle = -theta
        opened = 0.2 * (theta < -np.pi / 90.0) + 0.8 * tolerance(
            np.pi / 2.0 + np.pi / 6 - door_angle, (0, 0.5), np.pi / 3.0
        )
        reward = 0 + 2.0 * hamacher_product(ready_to_open, reward_grab) + 8.0 * opened
        success = np.abs(obs[:, 4] - c["_target_pos"][:, 0]) <= 0.08
        return np.where(success, 10.0, reward), success


class DoorClose(Door):
    """door-close-v3: push the open door shut."""

    constant_names = ("_target_pos", "obj_init_pos", "hand_init_pos")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target = obs[:, 4:7], c["_target_pos"]
        tcp_to_target = norm(r.tcp - target)
        obj_to_target = norm(obj - target)
        in_place = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target), "gaussian")
        hand_margin = norm(c["hand_init_pos"] - obj) + 0.1
        hand_in_place = tolerance(tcp_to_target, (0, 0.25 * 0.05), hand_margin, "gaussian")
        reward = 3 * hand_in_place + 6 * in_place
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.08


class DrawerClose(Kernel):
    """drawer-close-v3: push the drawer shut."""

    reads = (("xpos", "drawer_link"),)
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("drawer_link") + np.array([0.0, -0.16, 0.05]), np.zeros((len(r.tcp), 4))), -1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(c["obj_init_pos"] - target)
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target_to_obj_init - radius))
        handle_reach_radius = 0.005
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(c["obj_init_pos"] - c["init_tcp"])
        reach = tolerance(
            tcp_to_obj, (0, handle_reach_radius), np.abs(tcp_to_obj_init - handle_reach_radius), "gaussian"
        )
        reach = hamacher_product(reach, np.minimum(np.maximum(0, actions[:, -1]), 1))
        reward = hamacher_product(reach, in_place)
        success = target_to_obj <= radius + 0.015
        return np.where(success, 1.0, reward) * 10, success


class DrawerOpen(Kernel):
    """drawer-open-v3: pull the drawer out by its handle."""

    reads = (("xpos", "drawer_link"), ("xquat", "drawer_link"))
    constant_names = ("_target_pos", "maxDist", "init_tcp")

    def objects(self, r: Readings) -> np.ndarray:
        position = r.body("drawer_link") + np.array([0.0, -0.16, 0.0])
        return np.concatenate((position, r.body_quat("drawer_link")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        gripper, handle, target, max_dist = obs[:, :3], obs[:, 4:7], c["_target_pos"], c["maxDist"]
        handle_error = norm(handle - target)
        reward_for_opening = tolerance(handle_error, (0, 0.02), max_dist)
        handle_pos_init = target + np.stack((np.zeros_like(max_dist), max_dist, np.zeros_like(max_dist)), axis=-1)
        scale = np.array([3.0, 3.0, 1.0])
        gripper_error = (handle - gripper) * scale
        gripper_error_init = (handle_pos_init - c["init_tcp"]) * scale
        reward_for_caging = tolerance(norm(gripper_error), (0, 0.01), norm(gripper_error_init))
        return (reward_for_caging + reward_for_opening) * 5.0, handle_error <= 0.03


class Sweep(Kernel):
    """sweep-v3: sweep the puck off the table's edge."""

    reads = (("xpos", "obj"), ("xquat", "obj"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "OBJ_RADIUS")
    grip_margin, x_z_margin = 0.01, 0.005

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("obj"), r.body_quat("obj")), axis=-1)

    def _target(self, obj: np.ndarray, c: dict[str, Any]) -> np.ndarray:
        return c["_target_pos"]

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj = obs[:, 4:7]
        target = self._target(obj, c)
        obj_to_target = norm(obj - target)
        in_place = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target))
        radius = c["OBJ_RADIUS"]
        object_grasped = sweep_caging(r, obj, c, radius, radius + self.grip_margin, self.x_z_margin)
        reward = (2 * object_grasped) + (6 * hamacher_product(object_grasped, in_place))
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.05


class SweepInto(Sweep):
    """sweep-into-v3: sweep the puck into the hole; its target is level with the puck."""

    reads = (("xpos", "obj"), ("geom_xmat", "objGeom"))
    grip_margin, x_z_margin = 0.005, 0.01

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("obj"), r.geom_quat("objGeom")), axis=-1)

    def _target(self, obj: np.ndarray, c: dict[str, Any]) -> np.ndarray:
        return np.stack((c["_target_pos"][:, 0], c["_target_pos"][:, 1], obj[:, 2]), axis=-1)


class Basketball(Kernel):
    """basketball-v3: pick the ball up and drop it through the hoop."""

    reads = (("xpos", "bsktball"), ("xquat", "bsktball"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("bsktball"), r.body_quat("bsktball")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, radius = obs[:, 4:7], c["TARGET_RADIUS"]
        target = c["_target_pos"].copy()
        target[:, 2] = 0.3
        scale = np.array([1.0, 1.0, 2.0])
        target_to_obj = norm((obj - target) * scale)
        in_place = tolerance(target_to_obj, (0, radius), norm((c["obj_init_pos"] - target) * scale))
        tcp_opened, tcp_to_obj = obs[:, 3], norm(obj - r.tcp)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.025,
            pad_success_thresh=0.06,
            xz_thresh=0.005,
            high_density=True,
        )
        grasped = lifted(obj, tcp_to_obj, tcp_opened, c, 0.035)
        object_grasped = np.where(grasped, 1.0, object_grasped)
        reward = hamacher_product(object_grasped, in_place)
        reward = np.where(grasped, reward + (1.0 + 5.0 * in_place), reward)
        success = target_to_obj < radius
        return np.where(success, 10.0, reward), target_to_obj <= radius


class ShelfPlace(ObjectBody):
    """shelf-place-v3: put the block on the shelf; the space under and in front of the shelf pays less."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["_target_pos"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - r.tcp)
        in_place = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target))
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            obj_radius=0.02,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=False,
        )
        reward = hamacher_product(object_grasped, in_place)
        low = (0.0 < obj[:, 2]) & (obj[:, 2] < 0.24)
        beside = (target[:, 0] - 0.15 < obj[:, 0]) & (obj[:, 0] < target[:, 0] + 0.15)
        front = (target[:, 1] - 3 * 0.05 < obj[:, 1]) & (obj[:, 1] < target[:, 1])
        z_scaling = (0.24 - obj[:, 2]) / 0.24
        y_scaling = (obj[:, 1] - (target[:, 1] - 3 * 0.05)) / (3 * 0.05)
        bound_loss = hamacher_product(y_scaling, z_scaling)
        in_place = np.where(low & beside & front, clip(in_place - bound_loss, 0.0, 1.0), in_place)
        in_place = np.where(low & beside & (obj[:, 1] > target[:, 1]), 0.0, in_place)
        reward = np.where(lifted(obj, tcp_to_obj, tcp_opened, c, 0.025), reward + (1.0 + 5.0 * in_place), reward)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class PegInsertSide(Kernel):
    """peg-insert-side-v3: grasp the peg and insert it sideways into the box's hole."""

    corners = tuple(
        f"{corner}_collision_box_{i}" for i in (1, 2) for corner in ("bottom_right_corner", "top_left_corner")
    )
    reads = (
        ("site_xpos", "pegGrasp"),
        ("site_xmat", "pegGrasp"),
        ("site_xpos", "pegHead"),
        *(("site_xpos", corner) for corner in corners),
    )
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "peg_head_pos_init", "TARGET_RADIUS")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site("pegGrasp"), r.site_quat("pegGrasp")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, obj_head, tcp_opened, target = obs[:, 4:7], r.site("pegHead"), obs[:, 3], c["_target_pos"]
        tcp_to_obj = norm(obj - r.tcp)
        scale = np.array([1.0, 2.0, 2.0])
        obj_to_target = norm((obj_head - target) * scale)
        in_place_margin = norm((c["peg_head_pos_init"] - target) * scale)
        in_place = tolerance(obj_to_target, (0, c["TARGET_RADIUS"]), in_place_margin)
        box_1 = rect_prism_tolerance(
            obj_head, r.site("bottom_right_corner_collision_box_1"), r.site("top_left_corner_collision_box_1")
        )
        box_2 = rect_prism_tolerance(
            obj_head, r.site("bottom_right_corner_collision_box_2"), r.site("top_left_corner_collision_box_2")
        )
        in_place = hamacher_product(in_place, hamacher_product(box_2, box_1))
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.0075,
            pad_success_thresh=0.03,
            xz_thresh=0.005,
            high_density=True,
        )
        grasped = lifted(obj, tcp_to_obj, tcp_opened, c, 0.08)
        object_grasped = np.where(grasped, 1.0, object_grasped)
        reward = hamacher_product(object_grasped, in_place)
        reward = np.where(grasped, reward + (1.0 + 5 * in_place), reward)
        return np.where(obj_to_target <= 0.07, 10.0, reward), obj_to_target <= 0.07


class LeverPull(Kernel):
    """lever-pull-v3: lift the lever to vertical."""

    reads = (("site_xpos", "leverStart"), ("geom_xmat", "objGeom"), ("qpos", "LeverAxis"))
    constant_names = ("_target_pos", "init_tcp", "_lever_pos_init")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site("leverStart"), r.geom_quat("objGeom")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        gripper, lever, target = obs[:, :3], obs[:, 4:7], c["_target_pos"]
        scale = np.array([4.0, 1.0, 4.0])
        offset = np.array([0.0, 0.055, 0.07])
        shoulder_to_lever = (gripper + offset - lever) * scale
        shoulder_to_lever_init = (c["init_tcp"] + offset - c["_lever_pos_init"]) * scale
        ready_to_lift = tolerance(norm(shoulder_to_lever), (0, 0.02), norm(shoulder_to_lever_init))
        lever_error = np.abs(-r.joint("LeverAxis") - np.pi / 2.0)
        obj_to_target = norm(lever - target)
        in_place = tolerance(obj_to_target, (0, 0.04), norm(c["_lever_pos_init"] - target))
        return 10.0 * hamacher_product(ready_to_lift, in_place), lever_error <= np.pi / 24


class GeomObject(Kernel):
    """Classes observing one geom's position and orientation (``geom`` names it)."""

    geom: ClassVar[str] = "objGeom"

    def all_reads(self) -> tuple[tuple[str, str], ...]:
        return (("geom_xpos", self.geom), ("geom_xmat", self.geom), *self.reads)

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.geom(self.geom), r.geom_quat(self.geom)), axis=-1)


def wall_terms(
    r: Readings, obs: np.ndarray, c: dict[str, Any], midpoint: np.ndarray, scaling: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The wall classes' shared terms: (tcp_to_obj, obj_to_target, in_place_part1, in_place_part2), the
    object's way to a midpoint past the wall (scaled), then to the goal."""
    obj, target = obs[:, 4:7], c["_target_pos"]
    tcp_to_obj = norm(obj - r.tcp)
    obj_to_midpoint = norm((obj - midpoint) * scaling)
    obj_to_midpoint_init = norm((c["obj_init_pos"] - midpoint) * scaling)
    obj_to_target = norm(obj - target)
    in_place_part1 = tolerance(obj_to_midpoint, (0, 0.05), obj_to_midpoint_init)
    in_place_part2 = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target))
    return tcp_to_obj, obj_to_target, in_place_part1, in_place_part2


class PushWall(GeomObject):
    """push-wall-v3: push the puck around the wall: first to a midpoint beside it, then to the goal."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened = obs[:, 4:7], obs[:, 3]
        midpoint = np.stack((np.full(len(obj), -0.05), np.full(len(obj), 0.77), obj[:, 2]), axis=-1)
        terms = wall_terms(r, obs, c, midpoint, np.array([3.0, 1.0, 1.0]))
        tcp_to_obj, obj_to_target, in_place_part1, in_place_part2 = terms
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        near = (tcp_to_obj < 0.02) & (tcp_opened > 0)
        past_wall = 2 * object_grasped + 1.0 + 4.0 + 3.0 * in_place_part2
        reward = np.where(
            near,
            np.where(obj[:, 1] > 0.75, past_wall, 2.0 * object_grasped + 1.0 + 4.0 * in_place_part1),
            2 * object_grasped,
        )
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class PickPlaceWall(GeomObject):
    """pick-place-wall-v3: carry the puck over the wall: first to a midpoint above it, then to the goal."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["_target_pos"]
        midpoint = np.stack((target[:, 0], np.full(len(obj), 0.77), np.full(len(obj), 0.25)), axis=-1)
        terms = wall_terms(r, obs, c, midpoint, np.array([1.0, 1.0, 3.0]))
        tcp_to_obj, obj_to_target, in_place_part1, in_place_part2 = terms
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.005,
            high_density=False,
        )
        grasped = hamacher_product(object_grasped, in_place_part1)
        lifting = (tcp_to_obj < 0.02) & (tcp_opened > 0) & (obj[:, 2] - 0.015 > c["obj_init_pos"][:, 2])
        past_wall = grasped + 1.0 + 4.0 + 3.0 * in_place_part2
        reward = np.where(lifting, np.where(obj[:, 1] > 0.75, past_wall, grasped + 1.0 + 4.0 * in_place_part1), grasped)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class Button(Kernel):
    """The button classes: the button body's position (shifted to its face) and orientation; ``axis`` is
    the direction it is pressed along."""

    reads = (("xpos", "button"), ("xquat", "button"))
    constant_names = ("_target_pos", "init_tcp", "_obj_to_target_init")
    face: ClassVar[tuple[float, float, float]]
    axis: ClassVar[int]
    success_within: ClassVar[float]

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("button") + np.array(self.face), r.body_quat("button")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj = obs[:, 4:7]
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(obj - c["init_tcp"])
        obj_to_target = np.abs(c["_target_pos"][:, self.axis] - obj[:, self.axis])
        pressed = tolerance(obj_to_target, (0, 0.005), c["_obj_to_target_init"])
        return self._reward(obs, tcp_to_obj, tcp_to_obj_init, pressed), obj_to_target <= self.success_within

    def _reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, tcp_to_obj_init: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError


class ButtonPressTopdown(Button):
    """button-press-topdown-v3: press the button down from above."""

    face, axis, success_within = (0.0, 0.0, 0.193), 2, 0.024
    near_within, tcp_closed_floor = 0.01, False

    def _reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, tcp_to_obj_init: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        near_button = tolerance(tcp_to_obj, (0, self.near_within), tcp_to_obj_init)
        tcp_closed = np.maximum(obs[:, 3], 0.0) if self.tcp_closed_floor else 1 - obs[:, 3]
        reward = 5 * hamacher_product(tcp_closed, near_button)
        return np.where(tcp_to_obj <= 0.03, reward + 5 * pressed, reward)


class ButtonPressTopdownWall(ButtonPressTopdown):
    """button-press-topdown-wall-v3: the same behind a wall, its gripper term the opening itself."""

    tcp_closed_floor = True


class ButtonPress(Button):
    """button-press-v3: press the button in from the front."""

    face, axis, success_within = (0.0, -0.193, 0.0), 1, 0.02

    def _reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, tcp_to_obj_init: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        near_button = tolerance(tcp_to_obj, (0, 0.05), tcp_to_obj_init)
        reward = 2 * hamacher_product(np.maximum(obs[:, 3], 0.0), near_button)
        return np.where(tcp_to_obj <= 0.05, reward + 8 * pressed, reward)


class ButtonPressWall(Button):
    """button-press-wall-v3: press the button in from the front, past a wall."""

    face, axis, success_within = (0.0, -0.193, 0.0), 1, 0.03

    def _reward(
        self, obs: np.ndarray, tcp_to_obj: np.ndarray, tcp_to_obj_init: np.ndarray, pressed: np.ndarray
    ) -> np.ndarray:
        near_button = tolerance(tcp_to_obj, (0, 0.01), tcp_to_obj_init)
        far = 2 * hamacher_product((1 - obs[:, 3]) / 2.0, near_button)
        close = 2 + 2 * (1 + obs[:, 3]) + 4 * pressed**2
        return np.where(tcp_to_obj > 0.07, far, close)


class PlateSlide(GeomObject):
    """plate-slide-v3: slide the puck into the goal."""

    geom = "puck"
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")
    margin_less: ClassVar[float] = 0.0  # the variants subtract the target radius from both margins

    def _terms(self, r: Readings, obs: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, tcp = obs[:, 4:7], c["_target_pos"], r.tcp
        obj_to_target = norm(obj - target)
        in_place = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target) - self.margin_less)
        tcp_to_obj = norm(tcp - obj)
        margin = norm(c["init_tcp"] - c["obj_init_pos"]) - self.margin_less
        return obj_to_target, in_place, tcp_to_obj, tolerance(tcp_to_obj, (0, 0.05), margin)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj_to_target, in_place, _, object_grasped = self._terms(r, obs, c)
        reward = 8 * hamacher_product(object_grasped, in_place)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class PlateSlideVariant(PlateSlide):
    """plate-slide-side / -back / -back-side-v3: reward for the hand low at the puck, then for the puck in place."""

    margin_less = 0.05

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj_to_target, in_place, tcp_to_obj, object_grasped = self._terms(r, obs, c)
        low_at_puck = (r.tcp[:, 2] <= 0.03) & (tcp_to_obj < 0.07)
        reward = np.where(low_at_puck, 2.0 + (7.0 * in_place), 1.5 * object_grasped)
        return np.where(obj_to_target < 0.05, 10.0, reward), obj_to_target <= 0.07


class SiteObject(Kernel):
    """Classes observing one site's position (``site``), with no orientation (zeros)."""

    site: ClassVar[str]

    def all_reads(self) -> tuple[tuple[str, str], ...]:
        return (("site_xpos", self.site), *self.reads)

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site(self.site), np.zeros((len(r.tcp), 4))), axis=-1)


class HandlePress(SiteObject):
    """handle-press(-side)-v3: press the handle down."""

    site = "handleStart"
    constant_names = ("_target_pos", "_handle_init_pos", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = r.site(self.site), c["_target_pos"], c["TARGET_RADIUS"]
        target_to_obj = np.abs(obj[:, 2] - target[:, 2])
        target_to_obj_init = np.abs(c["_handle_init_pos"][:, 2] - target[:, 2])
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target_to_obj_init - radius))
        handle_radius = 0.02
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(c["_handle_init_pos"] - c["init_tcp"])
        reach = tolerance(tcp_to_obj, (0, handle_radius), np.abs(tcp_to_obj_init - handle_radius))
        success = target_to_obj <= radius
        return np.where(success, 1.0, hamacher_product(reach, in_place)) * 10, success


class HandlePull(SiteObject):
    """handle-pull-v3: pull the handle up."""

    site = "handleRight"
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        target_to_obj = np.abs(target[:, 2] - obj[:, 2])
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target[:, 2] - c["obj_init_pos"][:, 2]))
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            pad_success_thresh=0.05,
            obj_radius=0.022,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        tcp_to_obj = norm(obj - r.tcp)
        # Meta-World compares the handle's y with its initial z here; kept
        raised = (tcp_to_obj < 0.035) & (obs[:, 3] > 0) & (obj[:, 1] - 0.01 > c["obj_init_pos"][:, 2])
        reward = np.where(raised, reward + (1.0 + 5.0 * in_place), reward)
        return np.where(target_to_obj < radius, 10.0, reward), target_to_obj <= radius


class HandlePullSide(SiteObject):
    """handle-pull-side-v3: pull the handle up from the side."""

    site = "handleCenter"
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        scale = np.array([1.0, 1.0, 1.0])
        target_to_obj = norm((obj - target) * scale)
        in_place = tolerance(target_to_obj, (0, radius), norm((c["obj_init_pos"] - target) * scale))
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            pad_success_thresh=0.06,
            obj_radius=0.032,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        tcp_to_obj = norm(obj - r.tcp)
        reward = np.where(lifted(obj, tcp_to_obj, obs[:, 3], c, 0.035), reward + (1.0 + 5.0 * in_place), reward)
        return np.where(target_to_obj < radius, 10.0, reward), target_to_obj <= 0.08


class Faucet(SiteObject):
    """faucet-open / faucet-close-v3: turn the faucet's handle (``site``, observed 1 cm lower) to the goal."""

    reads = (("xquat", "faucetBase"),)
    handle_offset: ClassVar[tuple[float, float, float]]  # from the observed point to where the reward measures
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "_target_radius")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site(self.site) + np.array([0.0, 0.0, -0.01]), r.body_quat("faucetBase")), -1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7] + np.array(self.handle_offset), c["_target_pos"], c["_target_radius"]
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(c["obj_init_pos"] - target)
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target_to_obj_init - radius))
        faucet_reach_radius = 0.01
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(c["obj_init_pos"] - c["init_tcp"])
        reach = tolerance(
            tcp_to_obj, (0, faucet_reach_radius), np.abs(tcp_to_obj_init - faucet_reach_radius), "gaussian"
        )
        reward = (2 * reach + 3 * in_place) * 2
        return np.where(target_to_obj <= radius, 10.0, reward), target_to_obj <= 0.07


class FaucetOpen(Faucet):
    site, handle_offset = "handleStartOpen", (-0.04, 0.0, 0.03)


class FaucetClose(Faucet):
    site, handle_offset = "handleStartClose", (0.0, 0.0, 0.0)


class CoffeeButton(SiteObject):
    """coffee-button-v3: press the coffee machine's button; its orientation is observed as the identity."""

    site = "buttonStart"
    constant_names = ("_target_pos", "init_tcp", "max_dist")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site(self.site), np.tile([1.0, 0.0, 0.0, 0.0], (len(r.tcp), 1))), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj = obs[:, 4:7]
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(obj - c["init_tcp"])
        obj_to_target = np.abs(c["_target_pos"][:, 1] - obj[:, 1])
        near_button = tolerance(tcp_to_obj, (0, 0.05), tcp_to_obj_init)
        button_pressed = tolerance(obj_to_target, (0, 0.005), c["max_dist"])
        reward = 2 * hamacher_product(np.maximum(obs[:, 3], 0.0), near_button)
        return np.where(tcp_to_obj <= 0.05, reward + 8 * button_pressed, reward), obj_to_target <= 0.02


class Mug(Kernel):
    """coffee-pull / coffee-push-v3: move the mug to the goal."""

    reads = (("xpos", "obj"), ("geom_xmat", "mug"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("obj"), r.geom_quat("mug")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target = obs[:, 4:7], c["_target_pos"]
        scale = np.array([2.0, 2.0, 1.0])
        target_to_obj = norm((obj - target) * scale)
        in_place = tolerance(target_to_obj, (0, 0.05), norm((c["obj_init_pos"] - target) * scale))
        tcp_to_obj = norm(obj - r.tcp)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.04,
            obj_radius=0.02,
            pad_success_thresh=0.05,
            xz_thresh=0.05,
            desired_gripper_effort=0.7,
            medium_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        reward = np.where((tcp_to_obj < 0.04) & (obs[:, 3] > 0), reward + (1.0 + 5.0 * in_place), reward)
        return np.where(target_to_obj < 0.05, 10.0, reward), norm(obj - target) <= 0.07


class DialTurn(Kernel):
    """dial-turn-v3: turn the dial by pushing a point on its rim to the goal."""

    reads = (("xpos", "dial"), ("xquat", "dial"), ("qpos", "knob_Joint_1"))
    constant_names = ("_target_pos", "dial_push_position", "init_tcp", "TARGET_RADIUS")

    def objects(self, r: Readings) -> np.ndarray:
        angle = r.joint("knob_Joint_1")
        offset = np.stack((np.sin(angle), -np.cos(angle), np.zeros_like(angle)), axis=-1) * 0.05
        return np.concatenate((r.body("dial") + offset, r.body_quat("dial")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        dial_push_position = obj + np.array([0.05, 0.02, 0.09])
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(c["dial_push_position"] - target)
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target_to_obj_init - radius))
        dial_reach_radius = 0.005
        tcp_to_obj = norm(dial_push_position - r.tcp)
        tcp_to_obj_init = norm(c["dial_push_position"] - c["init_tcp"])
        reach = tolerance(tcp_to_obj, (0, dial_reach_radius), np.abs(tcp_to_obj_init - dial_reach_radius), "gaussian")
        reach = hamacher_product(reach, np.minimum(np.maximum(0, actions[:, -1]), 1))
        return 10 * hamacher_product(reach, in_place), target_to_obj <= radius


class DoorLock(SiteObject):
    """door-lock-v3: push the lock's lever down."""

    site = "lockStartLock"
    reads = (("xquat", "door_link"),)
    constant_names = ("_target_pos", "_lock_length")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site(self.site), r.body_quat("door_link")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, left_pad = obs[:, 4:7], r.body("leftpad")
        scale = np.array([0.25, 1.0, 0.5])
        tcp_to_obj = norm((obj - left_pad) * scale)
        # Meta-World's init_left_pad is a view of the live pad position: the margin equals the distance
        tcp_to_obj_init = norm((obj - left_pad) * scale)
        obj_to_target = np.abs(c["_target_pos"][:, 2] - obj[:, 2])
        near_lock = tolerance(tcp_to_obj, (0, 0.01), tcp_to_obj_init)
        lock_pressed = tolerance(obj_to_target, (0, 0.005), c["_lock_length"])
        reward = 2 * hamacher_product(np.maximum(obs[:, 3], 0.0), near_lock) + 8 * lock_pressed
        return reward, obj_to_target <= 0.02


class DoorUnlock(DoorLock):
    """door-unlock-v3: push the lock's lever sideways."""

    site = "lockStartUnlock"
    constant_names = ("_target_pos", "_lock_length", "init_tcp", "obj_init_pos")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        gripper, lock = obs[:, :3], obs[:, 4:7]
        offset = np.array([0.0, 0.055, 0.07])
        scale = np.array([0.25, 1.0, 0.5])
        shoulder_to_lock = (gripper + offset - lock) * scale
        shoulder_to_lock_init = (c["init_tcp"] + offset - c["obj_init_pos"]) * scale
        ready_to_push = tolerance(norm(shoulder_to_lock), (0, 0.02), norm(shoulder_to_lock_init))
        obj_to_target = np.abs(c["_target_pos"][:, 0] - lock[:, 0])
        pushed = tolerance(obj_to_target, (0, 0.005), c["_lock_length"])
        return 2 * ready_to_push + 8 * pushed, obj_to_target <= 0.02


class BodyObject(Kernel):
    """Classes observing one body's position and quaternion (``body``)."""

    body_name: ClassVar[str] = "obj"

    def all_reads(self) -> tuple[tuple[str, str], ...]:
        return (("xpos", self.body_name), ("xquat", self.body_name), *self.reads)

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body(self.body_name), r.body_quat(self.body_name)), axis=-1)


class PickOutOfHole(BodyObject):
    """pick-out-of-hole-v3: lift the peg out of its hole, keeping the hand above the table's rim."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, gripper, target = obs[:, 4:7], r.tcp, c["_target_pos"]
        obj_to_target = norm(obj - target)
        tcp_to_obj = norm(obj - gripper)
        threshold = 0.03
        radius = norm(gripper[:, :2] - c["obj_init_pos"][:, :2])
        floor = funnel(radius, threshold, 0.015, 0.15)
        above = above_floor(gripper[:, 2], floor, 0.02)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.03,
            desired_gripper_effort=0.1,
            high_density=True,
        )
        in_place = tolerance(obj_to_target, (0, 0.02), norm(c["obj_init_pos"] - target))
        reward = hamacher_product(object_grasped, in_place)
        grasp_success = (tcp_to_obj < 0.04) & (obj[:, 2] - 0.02 > c["obj_init_pos"][:, 2]) & ~(obs[:, 3] < 0.33)
        reward = np.where(grasp_success, reward + (1.0 + 5.0 * hamacher_product(in_place, above)), reward)
        return np.where(obj_to_target < c["TARGET_RADIUS"], 10.0, reward), obj_to_target <= 0.07


def orientation_score(quat: np.ndarray, ideal: tuple[float, ...], scale: float) -> np.ndarray:
    """Meta-World's ``_reward_quat``: 1 at the ideal quaternion, falling linearly with the distance to it."""
    return np.maximum(1.0 - norm(quat - np.array(ideal)) / scale, 0.0)


def along_handle(obj: np.ndarray, hand: np.ndarray, half_length: float) -> np.ndarray:
    """The object's position with its x moved to the hand's wherever the hand is within half a handle of it
    (how the hammer and wrench classes fit their handles to the caging term's sphere)."""
    threshed = obj.copy()
    near = np.abs(obj[:, 0] - hand[:, 0]) < half_length
    threshed[near, 0] = hand[near, 0]
    return threshed


class BoxClose(BodyObject):
    """box-close-v3: lift the lid by its handle and put it on the box, upright; everything is paid on the
    observation (the lid 2 cm up is its handle), scaled by how upright the lid is."""

    body_name = "top_link"
    constant_names = ("_target_pos",)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        target = c["_target_pos"]
        grab = clip((clip(actions[:, 3], -1, 1) + 1.0) / 2.0, 0.0, 1.0).astype(np.float64)  # float32 as its
        upright = orientation_score(obs[:, 7:11], (0.707, 0, 0, 0.707), 0.2)
        hand, lid = obs[:, :3], obs[:, 4:7] + np.array([0.0, 0.0, 0.02])
        threshold = 0.02
        radius = norm(hand[:, :2] - lid[:, :2])
        floor = funnel(radius, threshold, 0.04, 0.4)
        in_place = tolerance(norm(hand - lid), (0, 0.02), 0.5)
        ready_to_lift = hamacher_product(above_floor(hand[:, 2], floor, floor / 2.0), in_place)
        placed = tolerance(norm((target - lid) * np.array([1.0, 1.0, 3.0])), (0, 0.05), 0.25)
        lifted = 0.2 * (lid[:, 2] > 0.04) + 0.8 * placed
        reward = 2.0 * hamacher_product(grab, ready_to_lift) + 8.0 * lifted
        success = norm(obs[:, 4:7] - target) < 0.08
        return np.where(success, 10.0, reward) * upright, success


class Hammer(Kernel):
    """hammer-v3: grasp the hammer and drive the nail in; observes the hammer's and the nail's bodies. The
    caging term takes the handle's x as the hand's wherever the hand is along the handle."""

    reads = (("xpos", "hammer"), ("xquat", "hammer"), ("xpos", "nail_link"), ("xquat", "nail_link"))
    reads += (("qpos", "NailSlideJoint"),)
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")
    handle_length = 0.14

    def objects(self, r: Readings) -> np.ndarray:
        parts = (r.body("hammer"), r.body_quat("hammer"), r.body("nail_link"), r.body_quat("nail_link"))
        return np.concatenate(parts, axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        hand, hammer = obs[:, :3], obs[:, 4:7]
        head = hammer + np.array([0.16, 0.06, 0.0])
        flat = orientation_score(obs[:, 7:11], (1.0, 0.0, 0.0, 0.0), 0.4)
        grab = gripper_caging(
            r,
            actions,
            along_handle(hammer, hand, self.handle_length / 2.0),
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.01,
            high_density=True,
        )
        in_place = 0.1 * (head[:, 2] > 0.02) + 0.9 * tolerance(norm(c["_target_pos"] - head), (0, 0.02), 0.2)
        reward = (2.0 * grab + 6.0 * in_place) * flat
        success = r.joint("NailSlideJoint") > 0.09
        return np.where(success & (reward > 5.0), 10.0, reward), success


class StickPull(Kernel):
    """stick-pull-v3: grasp the stick, hook it into the container's handle and pull the container to the
    goal; observes the stick (its body's matrix, converted as scipy does) and the insertion site."""

    reads = (("xpos", "stick"), ("xmat", "stick"), ("site_xpos", "insertion"), ("site_xpos", "stick_end"))
    constant_names = ("_target_pos", "obj_init_pos", "stick_init_pos", "init_tcp")

    def objects(self, r: Readings) -> np.ndarray:
        no_quat = np.zeros((len(r.body("stick")), 4))
        return np.concatenate((r.body("stick"), r.body_matrix_quat("stick"), r.site("insertion"), no_quat), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        radius, target, stick_init = 0.05, c["_target_pos"], c["stick_init_pos"]
        stick, handle, tcp_opened, end = obs[:, 4:7], obs[:, 11:14], obs[:, 3], r.site("stick_end")
        container = handle + np.array([0.05, 0.0, 0.0])
        container_init = c["obj_init_pos"] + np.array([0.05, 0.0, 0.0])
        tcp_to_stick = norm(stick - r.tcp)
        handle_to_target = norm(handle - target)
        yz = np.array([1.0, 1.0, 2.0])
        stick_in_place = tolerance(
            norm((stick - container) * yz), (0, radius), norm((stick_init - container_init) * yz)
        )
        stick_in_place_2 = tolerance(norm(stick - target), (0, radius), norm(stick_init - target))
        container_in_place = tolerance(norm(container - target), (0, radius), norm(c["obj_init_pos"] - target))
        object_grasped = gripper_caging(
            r,
            actions,
            stick,
            c,
            obj_radius=0.014,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=True,
        )
        grasped = (tcp_to_stick < 0.02) & (tcp_opened > 0) & (stick[:, 2] - 0.01 > stick_init[:, 2])
        object_grasped = np.where(grasped, 1.0, object_grasped)
        both = hamacher_product(object_grasped, stick_in_place)
        inserted = (
            (end[:, 0] >= handle[:, 0])
            & (np.abs(end[:, 1] - handle[:, 1]) <= 0.040)
            & (np.abs(end[:, 2] - handle[:, 2]) <= 0.060)
        )
        hooked = 1.0 + both + 5.0 + 2.0 * stick_in_place_2 + 1.0 * container_in_place
        reward = np.where(grasped, np.where(inserted, hooked, 1.0 + both + 5.0 * stick_in_place), both)
        reward = np.where(grasped & inserted & (handle_to_target <= 0.12), 10.0, reward)
        return reward, (handle_to_target <= 0.12) & inserted


class StickPush(StickPull):
    """stick-push-v3: grasp the stick and push the container to the goal with it. Success also needs both
    pads pressing on the stick (Meta-World's contact test), read after each step."""

    touch_geom = "objGeom"

    def objects(self, r: Readings) -> np.ndarray:
        no_quat = np.zeros((len(r.body("stick")), 4))
        insertion = r.site("insertion") + np.array([0.0, 0.09, 0.0])
        return np.concatenate((r.body("stick"), r.body_matrix_quat("stick"), insertion, no_quat), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        radius, target, stick_init = 0.12, c["_target_pos"], c["stick_init_pos"]
        stick, container, tcp_opened = obs[:, 4:7] + np.array([0.015, 0.0, 0.0]), obs[:, 11:14], obs[:, 3]
        tcp_to_stick = norm(stick - r.tcp)
        stick_in_place = tolerance(norm(stick - target), (0, radius), norm(stick_init - target) - radius)
        container_to_target = norm(container - target)
        container_margin = norm(c["obj_init_pos"] - target) - radius
        container_in_place = tolerance(container_to_target, (0, radius), container_margin)
        caged_on_stick = {**c, "obj_init_pos": stick_init}  # its caging term measures from the stick's start
        object_grasped = gripper_caging(
            r,
            actions,
            stick,
            caged_on_stick,
            obj_radius=0.04,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            high_density=True,
        )
        grasped = (tcp_to_stick < 0.02) & (tcp_opened > 0) & (stick[:, 2] - 0.01 > stick_init[:, 2])
        reward = np.where(grasped, 2.0 + 5.0 * stick_in_place + 3.0 * container_in_place, object_grasped)
        reward = np.where(grasped & (container_to_target <= radius), 10.0, reward)
        held = r.touching & (tcp_opened > 0) & (obs[:, 6] - 0.01 > stick_init[:, 2])
        return reward, held & (container_to_target <= 0.12)


class PegUnplugSide(Kernel):
    """peg-unplug-side-v3: grasp the plug and pull it out of the box sideways; observes the peg's end site
    and the plug body's orientation."""

    reads = (("site_xpos", "pegEnd"), ("xquat", "plug1"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site("pegEnd"), r.body_quat("plug1")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target = obs[:, 4:7], obs[:, 3], c["_target_pos"]
        tcp_to_obj = norm(obj - r.tcp)
        obj_to_target = norm(obj - target)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.025,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            desired_gripper_effort=0.8,
            high_density=True,
        )
        in_place = tolerance(obj_to_target, (0, 0.05), norm(c["obj_init_pos"] - target))
        pulled = (tcp_opened > 0.5) & (obj[:, 0] - c["obj_init_pos"][:, 0] > 0.015) & (tcp_to_obj < 0.035)
        reward = np.where(pulled, 1 + 2 * object_grasped + 5 * in_place, 2 * object_grasped)
        return np.where(obj_to_target <= 0.05, 10.0, reward), obj_to_target <= 0.07


class Wrench(Kernel):
    """The nut classes: the wrench's handle site and the nut's orientation are observed; the reward is
    paid at the nut's centre site, scaled by how level the wrench is."""

    reads = (("site_xpos", "RoundNut-8"), ("xquat", "RoundNut"), ("site_xpos", "RoundNut"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp")
    density: ClassVar[str] = "high"  # of the caging term

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.site("RoundNut-8"), r.body_quat("RoundNut")), axis=-1)

    def in_place(self, center: np.ndarray, target: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(in-place reward, success) of the nut's centre."""
        raise NotImplementedError

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        hand, wrench = obs[:, :3], obs[:, 4:7]
        level = orientation_score(obs[:, 7:11], (0.707, 0, 0, 0.707), 0.4)
        grab = gripper_caging(
            r,
            actions,
            along_handle(wrench, hand, 0.02 / 2.0),
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.02,
            xz_thresh=0.01,
            high_density=self.density == "high",
            medium_density=self.density == "medium",
        )
        in_place, success = self.in_place(r.site("RoundNut"), c["_target_pos"], obs)
        reward = (2.0 * grab + 6.0 * in_place) * level
        return np.where(success, 10.0, reward), success


class Assembly(Wrench):
    """assembly-v3: put the nut over the peg; below the peg's top it must come down centred."""

    density = "medium"

    def in_place(self, center: np.ndarray, target: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        error = target - center
        radius = norm(error[:, :2])
        success = (radius < 0.02) & (error[:, 2] > 0.0)
        threshold = np.where(success, 0.02, 0.01)
        error[:, 2] = funnel(radius, threshold, 0.02, 0.2) - center[:, 2]
        lifted = (center[:, 2] > 0.02) | (radius < threshold)
        placed = tolerance(norm(error * np.array([1.0, 1.0, 3.0])), (0, 0.02), 0.4)
        return 0.1 * lifted + 0.9 * placed, success


class Disassemble(Wrench):
    """disassemble-v3: lift the nut off the peg, above the goal height."""

    def in_place(self, center: np.ndarray, target: np.ndarray, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        placed = tolerance(norm(target + np.array([0.0, 0.0, 0.1]) - center), (0, 0.02), 0.2)
        return 0.1 * (center[:, 2] > 0.02) + 0.9 * placed, obs[:, 6] > target[:, 2]


class BinPicking(BodyObject):
    """bin-picking-v3: carry the puck from one bin to the other, the hand kept above both bins' rims. Its
    in-place margin is the distance at the episode's first step."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")
    episode_names = ("_target_to_obj_init",)

    def episode_values(self, r: Readings, obs: np.ndarray, c: dict[str, Any]) -> dict[str, np.ndarray]:
        return {"_target_to_obj_init": norm(obs[:, 4:7] - c["_target_pos"])}

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        hand, obj, target = obs[:, :3], obs[:, 4:7], c["_target_pos"]
        target_to_obj = norm(obj - target)
        in_place = tolerance(target_to_obj, (0, c["TARGET_RADIUS"]), c["_target_to_obj_init"])
        threshold = 0.03
        floors = [
            funnel(norm(hand[:, :2] - centre[:, :2]), threshold, 0.02, 0.2) for centre in (c["obj_init_pos"], target)
        ]
        above = above_floor(hand[:, 2], np.minimum(*floors), 0.05)
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            object_reach_radius=0.01,
            xz_thresh=0.01,
            desired_gripper_effort=0.7,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        near = norm(obj - hand) < 0.04
        grasped = near & (obj[:, 2] - 0.02 > c["obj_init_pos"][:, 2]) & ~(obs[:, 3] < 0.43)
        reward = np.where(grasped, reward + (1.0 + 5.0 * hamacher_product(above, in_place)), reward)
        return np.where(target_to_obj < c["TARGET_RADIUS"], 10.0, reward), target_to_obj <= 0.05


class PushBack(GeomObject):
    """push-back-v3: pull the puck back to the goal."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS", "OBJ_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, tcp_opened, target, radius = obs[:, 4:7], obs[:, 3], c["_target_pos"], c["TARGET_RADIUS"]
        tcp_to_obj = norm(obj - r.tcp)
        target_to_obj = norm(obj - target)
        target_to_obj_init = norm(c["obj_init_pos"] - target)
        in_place = tolerance(target_to_obj, (0, radius), target_to_obj_init)
        object_grasped = sweep_caging(r, obj, c, c["OBJ_RADIUS"], c["OBJ_RADIUS"] + 0.003, 0.01)
        reward = hamacher_product(object_grasped, in_place)
        pulling = (tcp_to_obj < 0.01) & (0 < tcp_opened) & (tcp_opened < 0.55)
        pulling &= target_to_obj_init - target_to_obj > 0.01
        reward = np.where(pulling, reward + (1.0 + 5.0 * in_place), reward)
        return np.where(target_to_obj < radius, 10.0, reward), target_to_obj <= 0.07


class HandInsert(BodyObject):
    """hand-insert-v3: push the block into the hole in the table."""

    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        target_to_obj = norm(obj - target)
        in_place = tolerance(target_to_obj, (0, radius), norm(c["obj_init_pos"] - target))
        object_grasped = gripper_caging(
            r,
            actions,
            obj,
            c,
            object_reach_radius=0.01,
            obj_radius=0.015,
            pad_success_thresh=0.05,
            xz_thresh=0.005,
            high_density=True,
        )
        reward = hamacher_product(object_grasped, in_place)
        tcp_to_obj = norm(obj - r.tcp)
        reward = np.where((tcp_to_obj < 0.02) & (obs[:, 3] > 0), reward + (1.0 + 7.0 * in_place), reward)
        return np.where(target_to_obj < radius, 10.0, reward), target_to_obj <= 0.05


class Soccer(Kernel):
    """soccer-v3: push the ball into the goal; shots that cross the goal line wide pay less."""

    reads = (("xpos", "soccer_ball"), ("xmat", "soccer_ball"))
    constant_names = ("_target_pos", "obj_init_pos", "init_tcp", "TARGET_RADIUS", "OBJ_RADIUS")

    def objects(self, r: Readings) -> np.ndarray:
        return np.concatenate((r.body("soccer_ball"), r.body_matrix_quat("soccer_ball")), axis=-1)

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = obs[:, 4:7], c["_target_pos"], c["TARGET_RADIUS"]
        x_scaling = np.array([3.0, 1.0, 1.0])
        target_to_obj = norm((obj - target) * x_scaling)
        # Meta-World measures the margin from the ball's current position to its start; kept
        in_place = tolerance(target_to_obj, (0, radius), norm((obj - c["obj_init_pos"]) * x_scaling))
        goal_line = target[:, 1] - 0.1
        wide = (obj[:, 1] > goal_line) & (np.abs(obj[:, 0] - target[:, 0]) > 0.10)
        penalised = clip(in_place - 2 * ((obj[:, 1] - goal_line) / (1 - goal_line)), 0.0, 1.0)
        in_place = np.where(wide, penalised, in_place)
        object_grasped = sweep_caging(r, obj, c, c["OBJ_RADIUS"], c["OBJ_RADIUS"] + 0.01, 0.005)
        reward = (3 * object_grasped) + (6.5 * in_place)
        return np.where(target_to_obj < radius, 10.0, reward), norm(obj - target) <= 0.07  # success: unscaled


class Window(SiteObject):
    """window-open / window-close-v3: slide the window by its handle (``site``) to the goal."""

    init_name: ClassVar[str]  # the handle's start as the in-place margin measures it
    reach_sigmoid: ClassVar[str]

    @property
    def constant_names(self) -> tuple[str, ...]:
        return ("_target_pos", self.init_name, "window_handle_pos_init", "init_tcp", "TARGET_RADIUS")

    def reward(self, r: Readings, obs: np.ndarray, actions: np.ndarray, c: dict[str, Any]) -> tuple:
        obj, target, radius = r.site(self.site), c["_target_pos"], c["TARGET_RADIUS"]
        target_to_obj = np.abs(obj[:, 0] - target[:, 0])
        target_to_obj_init = np.abs(c[self.init_name][:, 0] - target[:, 0])
        in_place = tolerance(target_to_obj, (0, radius), np.abs(target_to_obj_init - radius))
        handle_radius = 0.02
        tcp_to_obj = norm(obj - r.tcp)
        tcp_to_obj_init = norm(c["window_handle_pos_init"] - c["init_tcp"])
        margin = np.abs(tcp_to_obj_init - handle_radius)
        reach = tolerance(tcp_to_obj, (0, handle_radius), margin, self.reach_sigmoid)
        return 10 * hamacher_product(reach, in_place), target_to_obj <= radius


class WindowOpen(Window):
    site, init_name, reach_sigmoid = "handleOpenStart", "obj_init_pos", "long_tail"


class WindowClose(Window):
    site, init_name, reach_sigmoid = "handleCloseStart", "window_handle_pos_init", "gaussian"


KERNELS: dict[str, Kernel] = {
    "reach-v3": Reach(),
    "push-v3": Push(),
    "pick-place-v3": PickPlace(),
    "door-open-v3": DoorOpen(),
    "door-close-v3": DoorClose(),
    "drawer-close-v3": DrawerClose(),
    "drawer-open-v3": DrawerOpen(),
    "button-press-topdown-v3": ButtonPressTopdown(),
    "window-open-v3": WindowOpen(),
    "sweep-v3": Sweep(),
    "sweep-into-v3": SweepInto(),
    "basketball-v3": Basketball(),
    "shelf-place-v3": ShelfPlace(),
    "peg-insert-side-v3": PegInsertSide(),
    "lever-pull-v3": LeverPull(),
    "reach-wall-v3": Reach(),
    "push-wall-v3": PushWall(),
    "pick-place-wall-v3": PickPlaceWall(),
    "button-press-v3": ButtonPress(),
    "button-press-wall-v3": ButtonPressWall(),
    "button-press-topdown-wall-v3": ButtonPressTopdownWall(),
    "plate-slide-v3": PlateSlide(),
    "plate-slide-side-v3": PlateSlideVariant(),
    "plate-slide-back-v3": PlateSlideVariant(),
    "plate-slide-back-side-v3": PlateSlideVariant(),
    "window-close-v3": WindowClose(),
    "handle-press-v3": HandlePress(),
    "handle-press-side-v3": HandlePress(),
    "handle-pull-v3": HandlePull(),
    "handle-pull-side-v3": HandlePullSide(),
    "faucet-open-v3": FaucetOpen(),
    "faucet-close-v3": FaucetClose(),
    "coffee-button-v3": CoffeeButton(),
    "coffee-pull-v3": Mug(),
    "coffee-push-v3": Mug(),
    "dial-turn-v3": DialTurn(),
    "door-lock-v3": DoorLock(),
    "door-unlock-v3": DoorUnlock(),
    "pick-out-of-hole-v3": PickOutOfHole(),
    "push-back-v3": PushBack(),
    "hand-insert-v3": HandInsert(),
    "soccer-v3": Soccer(),
    "box-close-v3": BoxClose(),
    "hammer-v3": Hammer(),
    "stick-pull-v3": StickPull(),
    "stick-push-v3": StickPush(),
    "peg-unplug-side-v3": PegUnplugSide(),
    "assembly-v3": Assembly(),
    "disassemble-v3": Disassemble(),
    "bin-picking-v3": BinPicking(),
}
