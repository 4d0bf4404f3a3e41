"""Linear feature baseline: masked ridge regression of returns on [s, s^2, t/100, (t/100)^2, (t/100)^3, 1]."""

from __future__ import annotations

import torch
from torch import Tensor

from dh_maml.episodes import TIME, EpisodeBatch, discounted_returns, gae, normalize


class LinearFeatureBaseline:
    """Fitted afresh, per task, on each batch it predicts for; holds no state between batches."""

    def __init__(self, reg: float = 1e-5, max_tries: int = 5):
        self.reg = reg
        self.max_tries = max_tries

    @staticmethod
    def features(obs: Tensor, mask: Tensor) -> Tensor:
        """[N, T, E, F] features of [N, T, E, obs_dim] observations; zero on padding."""
        ones = mask.unsqueeze(-1)
        time = torch.arange(obs.shape[TIME], dtype=obs.dtype, device=obs.device).view(1, -1, 1, 1) * ones / 100.0
        obs = obs.reshape(*mask.shape, -1)
        return torch.cat([obs, obs**2, time, time**2, time**3, ones], dim=-1) * ones

    def fit_predict(self, obs: Tensor, mask: Tensor, targets: Tensor) -> Tensor:
        """Values [N, T, E] of each task's own ridge fit of ``targets`` on the masked features."""
        feats = self.features(obs, mask)
        x = feats.reshape(feats.shape[0], -1, feats.shape[-1]).double()
        y = (targets * mask).reshape(x.shape[0], -1, 1).double()
        xtx, xty = x.mT @ x, x.mT @ y
        eye = torch.eye(xtx.shape[-1], dtype=xtx.dtype, device=xtx.device)
        reg = self.reg
        for _ in range(self.max_tries):
            weights = torch.linalg.solve(xtx + reg * eye, xty)
            if torch.isfinite(weights).all():
                break
            reg *= 10.0
        else:
            weights = torch.zeros_like(xty)
        values = (x @ weights).reshape(mask.shape)
        return values.to(targets.dtype) * mask


def advantages(
    batch: EpisodeBatch, baseline: LinearFeatureBaseline, gamma: float, lam: float, normalize_advantages: bool
) -> Tensor:
    """GAE against the baseline fitted on each task's discounted returns."""
    returns = discounted_returns(batch.rewards, batch.mask, gamma)
    values = baseline.fit_predict(batch.observations, batch.mask, returns)
    adv = gae(batch.rewards, values, batch.mask, gamma, lam)
    return normalize(adv, batch.mask) if normalize_advantages else adv
