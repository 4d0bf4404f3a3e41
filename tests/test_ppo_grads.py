"""The hand-written PPO gradient against autograd's on the same loss, and the update falling back to autograd."""

import dataclasses

import gymnasium as gym
import pytest
import torch
from torch import nn

from dh_maml.mlsh import ppo_grads
from dh_maml.mlsh.policies import ActorCritic
from dh_maml.mlsh.ppo import LossWeights, Samples, adam, autograd_gradients, ppo_update
from dh_maml.spec import PolicySpec

OBS = gym.spaces.Box(-1.0, 1.0, shape=(5,))
SPACES = {"gaussian": gym.spaces.Box(-1.0, 1.0, shape=(3,)), "categorical": gym.spaces.Discrete(4)}
WEIGHTS = {
    "plain": LossWeights(),
    "a2c": LossWeights(value=0.5, entropy=0.01, max_grad_norm=0.5),
    "strong-entropy": LossWeights(value=2.0, entropy=0.7),
}


def _model(kind: str, nonlinearity: str, min_std: float = 1e-6, normalize_obs: bool = False) -> ActorCritic:
    torch.manual_seed(0)
    spec = PolicySpec(hidden_sizes=[16, 8], nonlinearity=nonlinearity, min_std=min_std)
    model = ActorCritic(OBS, SPACES[kind], spec, normalize_obs).double()
    with torch.no_grad():
        for p in model.parameters():  # biases away from zero, so every term of the backward counts
            p.add_(0.1 * torch.randn_like(p))
    # statistics far from the identity: shifted, scaled, and one dimension's floor and clip in play
    model.fold(torch.randn(64, 5, dtype=torch.float64) * torch.tensor([3.0, 0.2, 1.0, 0.01, 0.3]) + 1.5)
    return model


def _samples(model: ActorCritic, kind: str, m: int = 48) -> Samples:
    """Old log-probabilities shifted from the current ones by up to ±0.6, so ratios fall below, inside and
    above the clip range, with advantages of both signs."""
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(m, 5, generator=gen, dtype=torch.float64)
    if kind == "gaussian":
        actions = torch.randn(m, 3, generator=gen, dtype=torch.float64)
    else:
        actions = torch.randint(4, (m,), generator=gen)
    with torch.no_grad():
        log_probs, _, _ = model.evaluate(obs, actions)
    shift = 1.2 * torch.rand(m, generator=gen, dtype=torch.float64) - 0.6
    advantages = torch.randn(m, generator=gen, dtype=torch.float64)
    return Samples(obs, actions, log_probs + shift, advantages, torch.randn(m, generator=gen, dtype=torch.float64))


def _grads(model: ActorCritic) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("normalize_obs", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("weights", WEIGHTS.values(), ids=WEIGHTS.keys())
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("kind", SPACES)
def test_hand_written_gradient_equals_autograds(kind, nonlinearity, weights, normalize_obs):
    model = _model(kind, nonlinearity, normalize_obs=normalize_obs)
    assert ppo_grads.unsupported(model) is None
    part = _samples(model, kind)
    with torch.no_grad():
        log_probs, _, _ = model.evaluate(part.obs, part.actions)
    ratio = torch.exp(log_probs - part.old_log_probs)
    assert (ratio < 0.8).any() and (ratio > 1.2).any() and ((ratio - 1).abs() < 0.2).any()
    autograd_gradients(model, part, 0.2, weights)
    expected = _grads(model)
    ppo_grads.set_gradients(model, part, 0.2, weights)
    for name_param, got, want in zip(model.named_parameters(), _grads(model), expected, strict=True):
        assert got.shape == want.shape, name_param[0]
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12, msg=name_param[0])
        assert want.abs().sum() > 0, name_param[0]  # every parameter's gradient is exercised
        assert got.is_contiguous(), name_param[0]  # torch's fused CPU Adam steps wrongly on strided grads


def test_a_log_std_at_its_floor_gets_no_gradient_from_either_path():
    model = _model("gaussian", "tanh", min_std=0.5)
    with torch.no_grad():
        model.actor.log_std.copy_(torch.tensor([0.0, -1.0, 0.3]))  # the second below log 0.5
    part = _samples(model, "gaussian")
    autograd_gradients(model, part, 0.2, WEIGHTS["strong-entropy"])
    expected = model.actor.log_std.grad.clone()
    ppo_grads.set_gradients(model, part, 0.2, WEIGHTS["strong-entropy"])
    assert expected[1] == 0 and model.actor.log_std.grad[1] == 0
    torch.testing.assert_close(model.actor.log_std.grad, expected, rtol=1e-10, atol=1e-12)


def test_whole_updates_agree_in_single_precision():
    """Ten epochs of minibatch Adam steps, as MLSH's sub-policies take them, from the same start."""
    start = _model("gaussian", "tanh")
    part = _samples(start, "gaussian", m=200)
    part = Samples(*(getattr(part, f.name).float() for f in dataclasses.fields(part)))
    models = [_model("gaussian", "tanh").float() for _ in range(2)]
    for model, path in zip(models, ["fast", "autograd"]):
        if path == "autograd":
            model.critic.append(nn.Identity())  # not an MLP ppo_grads knows: the update falls back to autograd
            assert "not an MLP" in ppo_grads.unsupported(model)
        ppo_update(model, adam(model.parameters(), 1e-3), part, 0.2, 10, 16, torch.Generator().manual_seed(3))
    moved = [(a - b).abs().max() for a, b in zip(models[0].parameters(), start.float().parameters())]
    assert min(moved) > 1e-4  # the updates did move every parameter
    for a, b in zip(models[0].parameters(), models[1].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
