"""Running observation statistics: the fold against statistics computed at once, the sub-policies' use of
them, and an MLSH run that normalises carrying them from update to sampling and through a checkpoint."""

import copy

import gymnasium as gym
import pytest
import torch
from conftest import ROOT

from dh_maml.mlsh.policies import ActorCritic
from dh_maml.mlsh.ppo import Samples, adam, ppo_update
from dh_maml.mlsh.updates import learn
from dh_maml.policies.normalizer import CLIP, MIN_VAR, RunningNormalizer
from dh_maml.spec import MLSHSpec, PolicySpec, load_spec


def test_folded_batches_give_the_statistics_of_all_of_them_at_once():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randn(n, 4, generator=gen) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 7.0 for n in (1, 5, 300, 2)]
    norm = RunningNormalizer(4)
    for batch in batches:
        norm.fold(batch)
    every = torch.cat(batches).double()
    assert norm.count.item() == len(every)
    torch.testing.assert_close(norm.mean, every.mean(0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(norm.var, every.var(0, unbiased=False), rtol=1e-10, atol=1e-12)
    norm.fold(torch.zeros(0, 4))  # an empty batch changes nothing
    assert norm.count.item() == len(every)


def test_observations_are_standardised_with_a_floor_on_the_spread_and_clipped():
    norm = RunningNormalizer(3)
    obs = torch.tensor([[0.5, -7.0, 2.0]])
    torch.testing.assert_close(norm(obs), torch.tensor([[0.5, -CLIP, 2.0]]))  # before any fold: only the clip
    norm.fold(torch.tensor([[1.0, 0.0, 10.0], [3.0, 0.001, 30.0]]))  # means 2, 0.0005, 20; variances 1, tiny, 100
    seen = norm(torch.tensor([[3.0, 0.0015, 0.0]]))
    expected = torch.tensor([[1.0, 0.001 / MIN_VAR**0.5, -2.0]])
    torch.testing.assert_close(seen, expected)
    assert seen.dtype == torch.float32  # the statistics are float64, what the networks see is not


def _actor_critic(normalize_obs: bool) -> ActorCritic:
    torch.manual_seed(0)
    space = gym.spaces.Box(-1.0, 1.0, shape=(3,))
    return ActorCritic(space, gym.spaces.Box(-1.0, 1.0, shape=(2,)), PolicySpec(hidden_sizes=[8]), normalize_obs)


def test_a_normalising_actor_critic_is_the_plain_one_on_standardised_observations():
    normalizing, plain = _actor_critic(True), _actor_critic(False)
    obs = torch.randn(6, 3) * 4.0 + 2.0
    normalizing.fold(obs)
    seen = normalizing.normalizer(obs)
    actions = torch.randn(6, 2)
    for got, want in zip(normalizing.evaluate(obs, actions), plain.evaluate(seen, actions), strict=True):
        torch.testing.assert_close(got, want)
    assert not torch.allclose(normalizing.value(obs), plain.value(obs))


def test_an_update_learns_under_the_statistics_its_samples_were_drawn_with_then_folds_them():
    """``learn`` = PPO's update, then the fold: folding first would change every ratio of the update."""
    model = _actor_critic(True)
    model.fold(torch.randn(20, 3))
    obs = torch.randn(40, 3) * 3.0 + 1.0
    with torch.no_grad():
        acted = model.act(obs)
    samples = Samples(obs, acted.actions, acted.log_probs, torch.randn(40), torch.randn(40))
    spec = MLSHSpec(epochs=2)
    models = {order: copy.deepcopy(model) for order in ("learn", "update, fold", "fold, update")}
    for order, m in models.items():
        optimizer, generator = adam(m.parameters(), 1e-2), torch.Generator().manual_seed(3)
        if order == "learn":
            learn(spec, m, optimizer, samples, 10, generator)
            continue
        if order == "fold, update":
            m.fold(obs)
        ppo_update(m, optimizer, samples, spec.clip, spec.epochs, 10, generator)
        if order == "update, fold":
            m.fold(obs)
    state = {order: m.state_dict() for order, m in models.items()}
    assert state["learn"]["normalizer.count"].item() == 60
    for key, value in state["learn"].items():
        torch.testing.assert_close(value, state["update, fold"][key], rtol=0, atol=0, msg=key)
    assert not torch.equal(state["learn"]["actor.mean.0.weight"], state["fold, update"]["actor.mean.0.weight"])


@pytest.fixture
def normalizing_spec():
    overrides = ["mlsh.slots=4", "mlsh.warmup=1", "mlsh.joint=1", "mlsh.episodes=4", "mlsh.epochs=2"]
    overrides += ["policy.hidden_sizes=[16]", "mlsh.normalize_obs=true"]
    return load_spec(ROOT / "specs/mlsh-movement-bandits.yaml", overrides)


def test_an_mlsh_run_samples_with_the_statistics_it_learned_and_resumes_with_them(normalizing_spec):
    from dh_maml.in_process import InProcess

    def normalizers(subpolicies):
        return [copy.deepcopy(sub.normalizer.state_dict()) for sub in subpolicies]

    run = InProcess(normalizing_spec)
    records, learned = [], [0, 0]
    for _ in range(3):
        records.append(run.iterate())
        learned = [n + records[-1][f"mlsh/samples_sub{k}"] for k, n in enumerate(learned)]
        if len(records) == 1:
            after_first, state = normalizers(run.trainer.subpolicies), copy.deepcopy(run.trainer.state_dict())
        if len(records) == 2:  # the second round sampled with what the first round's update left
            for sampled, left in zip(normalizers(run.rollouts.subpolicies), after_first, strict=True):
                for key in left:
                    torch.testing.assert_close(sampled[key], left[key], rtol=0, atol=0)
    assert [sub.normalizer.count.item() for sub in run.trainer.subpolicies] == learned
    assert all(sub.normalizer.count > 0 and sub.normalizer.mean.abs().sum() > 0 for sub in run.trainer.subpolicies)
    run.close()
    resumed = InProcess(normalizing_spec)
    resumed.trainer.load_state_dict(state)
    again = [resumed.iterate() for _ in range(2)]
    resumed.close()
    for a, b in zip(records[1:], again, strict=True):
        assert a["returns/mean"] == b["returns/mean"] and a["mlsh/samples_sub0"] == b["mlsh/samples_sub0"]
