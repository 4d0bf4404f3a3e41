"""PPO's minibatch gradient for an ``ActorCritic`` of the package's MLPs, by hand.

Why: MLSH's sub-policies take 10 epochs of 15 minibatches of a few dozen
samples each per round, every one an Adam step, and the masters as many on
the observers. At that size autograd's graph building and generic backward
nodes cost several times the arithmetic: on MovementBandits they made the
agent's sub-policy update longer than the round's sampling. The body's
gradient is the kept-pass backward of ``policies.mlp_products``; the heads'
derivatives are closed forms. ``ppo.autograd_gradients`` (autograd on
``ActorCritic.evaluate``) is the reference, used for any other network; the
tests hold the two together.

The clipped surrogate's derivative in a sample's log-probability is -r A / M
where the unclipped term r A is the minimum (at a tie, autograd splits the
gradient between the equal terms and the clamp passes its half inside the
range, which sums to the same), and 0 where the clipped term is smaller.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from dh_maml.policies import GaussianMLPPolicy
from dh_maml.policies.mlp_products import Layer, MLPPass, fast_path_unsupported

if TYPE_CHECKING:
    from dh_maml.mlsh.policies import ActorCritic
    from dh_maml.mlsh.ppo import LossWeights, Samples

_ACTIVATION_MODULES = {nn.Tanh: "tanh", nn.ReLU: "relu"}


def _is_mlp(seq: nn.Module, activation: str) -> bool:
    """Linear layers with ``activation`` between them and nothing else, as ``mlp_layers`` builds them."""
    if not isinstance(seq, nn.Sequential) or len(seq) % 2 == 0:
        return False
    for k, module in enumerate(seq):
        if k % 2 == 0 and type(module) is not nn.Linear:
            return False
        if k % 2 == 1 and _ACTIVATION_MODULES.get(type(module)) != activation:
            return False
    return True


def unsupported(model: ActorCritic) -> str | None:
    """Why the hand-written gradient cannot take ``model`` apart, or None when it can."""
    reason = fast_path_unsupported(model.actor)
    if reason is not None:
        return reason
    activation = model.actor.activation
    if not _is_mlp(model.actor.network, activation) or not _is_mlp(model.critic, activation):
        return f"the actor's body or the critic is not an MLP of Linear layers with {activation} between them"
    return None


def _layers(seq: nn.Sequential) -> list[Layer]:
    return [(m.weight, m.bias) for m in seq if isinstance(m, nn.Linear)]


def _gaussian_head(policy: GaussianMLPPolicy, mean: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Log-probabilities [M] and their derivatives in the mean [M, D] and in the clamped log_std [M, D]. (The
    entropy, sum(log_std) + const, is the same for every sample: its derivative in log_std is 1 per entry.)"""
    log_std = policy.log_std.clamp(min=policy.min_log_std)
    inv_std = torch.exp(-log_std)
    z = (actions - mean) * inv_std
    log_probs = (-0.5 * z * z - log_std).sum(-1) - 0.5 * math.log(2 * math.pi) * mean.shape[-1]
    return log_probs, z * inv_std, z * z - 1.0


def _categorical_head(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Log-probabilities [M], entropies [M], the probabilities and log-probabilities of every action [M, A]."""
    log_all = torch.log_softmax(logits, -1)
    probs = torch.exp(log_all)
    entropy = -(probs * log_all).sum(-1)
    return log_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1), entropy, probs, log_all


@torch.no_grad()
def set_gradients(model: ActorCritic, part: Samples, clip: float, weights: LossWeights) -> None:
    """Every parameter's ``grad`` := the gradient of PPO's loss on ``part`` (``ppo.PPOLoss.total``)."""
    actor, m = model.actor, len(part)
    actor_layers, critic_layers = _layers(actor.network), _layers(model.critic)
    obs = model.inputs(part.obs)
    actor_pass = MLPPass.run(actor_layers, obs, actor.activation, order=1)
    critic_pass = MLPPass.run(critic_layers, obs, actor.activation, order=1)
    out = actor_pass.out
    if isinstance(actor, GaussianMLPPolicy):
        log_probs, d_mean, d_log_std = _gaussian_head(actor, out, part.actions)
    else:
        log_probs, entropy, probs, log_all = _categorical_head(out, part.actions)
    ratio = torch.exp(log_probs - part.old_log_probs)
    unclipped = ratio * part.advantages
    clipped = ratio.clamp(1.0 - clip, 1.0 + clip) * part.advantages
    d_log_probs = torch.where(unclipped <= clipped, unclipped, 0.0).mul_(-1.0 / m)  # [M]

    if isinstance(actor, GaussianMLPPolicy):
        d_out = d_mean.mul_(d_log_probs.unsqueeze(-1))
        d_head = (d_log_probs.unsqueeze(-1) * d_log_std).sum(0) - weights.entropy
        actor.log_std.grad = d_head * (actor.log_std >= actor.min_log_std)  # the clamp passes none below the floor
    else:
        onehot = torch.zeros_like(probs).scatter_(-1, part.actions.unsqueeze(-1), 1.0)
        d_out = (onehot - probs).mul_(d_log_probs.unsqueeze(-1))
        if weights.entropy:  # -c/M d(H)/d(logits), dH = -p (log p + H)
            d_out.add_(probs * (log_all + entropy.unsqueeze(-1)), alpha=weights.entropy / m)
    values = critic_pass.out
    d_values = (values - part.returns.unsqueeze(-1)).mul_(2.0 * weights.value / m)

    for layers, pass_, d in ((actor_layers, actor_pass, d_out), (critic_layers, critic_pass, d_values)):
        grads, _ = pass_.backward(d)
        for (weight, bias), (d_weight, d_bias) in zip(layers, grads, strict=True):
            weight.grad, bias.grad = d_weight.contiguous(), d_bias  # fused Adam misreads a transposed grad
