"""MAML with a TRPO outer step (Finn et al. 2017): the inner step (``inner``), the learner's exact
second-order terms (``task_terms`` on ``policies.mlp_products``, or the autograd ``reference``), the TRPO step
(``learner``), the observer side (``rollouts``) and the meta-test (``meta_test``)."""

from dh_maml.algorithms import Algorithm, PlotKeys
from dh_maml.maml.meta_test import meta_test
from dh_maml.maml.rollouts import MAMLRollouts
from dh_maml.maml.trainer import MetaTrainer

ALGORITHM = Algorithm(
    name="maml-trpo",
    trainer=MetaTrainer,
    rollouts=MAMLRollouts,
    evaluate=meta_test,
    evaluation_name="meta_test",
    headline=(("pre", "returns/pre"), ("post", "returns/post")),
    plots=PlotKeys(
        curves=(
            ("returns/pre", "before adaptation", "returns/pre_std"),
            ("returns/post", "after adaptation", "returns/post_std"),
        ),
        ylabel="mean return over the meta-batch",
        time_parts=(
            ("time/learner_wait", "waiting for observers"),
            ("time/graphs", "per-task terms"),
            ("time/trpo", "TRPO step"),
        ),
        success=(("success/pre", "meta-train, before adaptation"), ("success/post", "meta-train, after adaptation")),
        per_kind=(("returns/pre/", "before adaptation"), ("returns/post/", "after adaptation")),
    ),
)
