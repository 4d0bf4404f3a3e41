"""trpo.products: observers — the TRPO step's terms computed by the observers that sampled them: the same
step as on the agent, a holder lost during the step has its tasks computed on the agent, and with real
processes an observer that dies in the middle of the step leaves the run to finish with the same step."""

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from conftest import ROOT, metrics

from dh_maml.in_process import OneHolder
from dh_maml.maml import ALGORITHM
from dh_maml.maml.rollouts import MAMLRollouts
from dh_maml.maml.trainer import MetaTrainer, held_by_observers
from dh_maml.spec import load_spec
from dh_maml.trpo import flat

SMALL = ["maml.meta_batch_size=6", "maml.fast_batch_size=4", "experiment.learner_threads=1"]


class LosingHolder(OneHolder):
    """Every job held in this process, until call ``lose_at``: from then on job 0's holder is gone."""

    def __init__(self, rollouts, jobs, lose_at):
        super().__init__(rollouts, jobs)
        self.calls, self.lose_at = 0, lose_at

    def call(self, entry, args_of):
        self.calls += 1
        replies = super().call(entry, args_of)
        if self.calls < self.lose_at:
            return replies
        if self.calls == self.lose_at:
            self.jobs = self.jobs[1:]
            return [(job, None) if i == 0 else (job, r) for i, (job, r) in enumerate(replies)]
        return replies


def one_step(products, lose_at=None):
    """One iteration of three groups, sampled here; the step's terms held by the rollouts or built here."""
    spec = load_spec(None, [*SMALL, f"trpo.products={products}"])
    trainer, rollouts = MetaTrainer(spec), MAMLRollouts(spec)
    plan = trainer.plan(3)
    weights = trainer.cpu_weights()
    for job in plan.jobs:
        trainer.consume(plan, job, trainer.entry(rollouts, *trainer.call_args(plan, job, weights)))
    holders = OneHolder(rollouts, plan.jobs) if lose_at is None else LosingHolder(rollouts, plan.jobs, lose_at)
    stats = trainer.update(plan, holders)
    rollouts.close()
    return stats, flat(trainer.learner.params()), holders


def test_held_terms_take_the_agents_step_and_survive_a_holder_lost_mid_step():
    agent, agent_params, _ = one_step("agent")
    held, held_params, _ = one_step("observers")
    assert agent.trpo.accepted and agent.trpo.ls_steps == held.trpo.ls_steps
    for a, b in [(agent.trpo.loss_before, held.trpo.loss_before), (agent.inner_loss, held.inner_loss)]:
        assert a == pytest.approx(b, rel=1e-6)
    assert (held_params - agent_params).norm() <= 1e-5 * agent_params.norm()
    # job 0's holder answers the start and two products, then is gone: its group is built here
    lost, lost_params, holders = one_step("observers", lose_at=4)
    assert holders.calls > 4 and len(holders.jobs) == 2
    assert lost.trpo.ls_steps == held.trpo.ls_steps
    assert (lost_params - held_params).norm() <= 1e-5 * held_params.norm()


class DyingRollouts(MAMLRollouts):
    """MAML's observer service, except that the first observer asked for its terms a third time during
    the second iteration's step exits at once (a crash in the middle of conjugate gradient)."""

    calls = 0

    def _terms(self, version, task_ids):
        if version == 1:
            DyingRollouts.calls += 1
            if DyingRollouts.calls == 3:
                try:
                    os.close(os.open(Path(os.environ["DYING_TOKEN"]), os.O_CREAT | os.O_EXCL))
                    os._exit(1)
                except FileExistsError:
                    pass
        return super()._terms(version, task_ids)


DYING = dataclasses.replace(ALGORITHM, name="maml-dying", rollouts=DyingRollouts)


def test_an_observer_dying_during_the_trpo_step_leaves_the_same_step(tmp_path, launcher, monkeypatch):
    monkeypatch.setenv("DH_MAML_ALGORITHMS", "maml-dying=test_held_terms:DYING")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("DYING_TOKEN", str(tmp_path / "died"))
    common = [*(a for s in SMALL for a in ("--set", s)), "--set", "trpo.products=observers", "--observers", 2]
    runs = {}
    for algorithm in ("maml-trpo", "maml-dying"):
        run = tmp_path / algorithm
        spec = ["--spec", ROOT / "specs/navigation-2d.yaml", "--set", f"experiment.algorithm={algorithm}"]
        code, out, err = launcher("train", *spec, "--iterations", 3, "--run-dir", run, *common).wait()
        assert code == 0, out + err
        runs[algorithm] = (metrics(run), err)
    (whole, _), (survived, err) = runs["maml-trpo"], runs["maml-dying"]
    assert (tmp_path / "died").exists() and "dropped observer" in err, err
    assert [r["observers/alive"] for r in survived] == [2, 1, 1]
    assert whole[0]["step/norm"] == survived[0]["step/norm"]
    for key in ("loss/surrogate_before", "loss/surrogate_after", "kl/after", "step/norm", "returns/post"):
        assert survived[1][key] == pytest.approx(whole[1][key], rel=1e-4), key


def test_auto_products_take_the_step_on_a_cuda_learner_and_on_the_observers_otherwise():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert held_by_observers("auto", cpu) and not held_by_observers("auto", cuda)
    assert held_by_observers("observers", cuda) and not held_by_observers("agent", cpu)
    assert load_spec(None, []).trpo.products == "auto" and MetaTrainer(load_spec(None, SMALL)).held
