"""MLSH (Frans et al. 2017): masters choosing among shared sub-policies every N steps (``policies``,
``sampling``), their PPO/A2C updates (``updates``, ``ppo``), the learner's task slots (``trainer``), the
observer side (``rollouts``) and the adaptation test (``adaptation``)."""

from dh_maml.algorithms import Algorithm, PlotKeys
from dh_maml.mlsh.adaptation import adaptation_test
from dh_maml.mlsh.rollouts import MLSHRollouts
from dh_maml.mlsh.shared import load_baselines, oracle_spec, shared_policy_spec
from dh_maml.mlsh.trainer import MLSHTrainer

ALGORITHM = Algorithm(
    name="mlsh",
    trainer=MLSHTrainer,
    rollouts=MLSHRollouts,
    evaluate=adaptation_test,
    evaluation_name="adaptation",
    baselines={"shared-policy": shared_policy_spec, "oracle": oracle_spec},
    load_baselines=load_baselines,
    headline=(("return", "returns/mean"), ("adapted", "returns/last")),
    plots=PlotKeys(
        curves=(
            ("returns/mean", "every slot", "returns/std"),
            ("returns/first", "a task's first iteration", None),
            ("returns/last", "a task's last iteration", None),
        ),
        ylabel="mean episode return",
        time_parts=(
            ("time/learner_wait", "waiting for observers"),
            ("time/consume", "taking results in"),
            ("time/update", "sub-policy update"),
        ),
    ),
)
