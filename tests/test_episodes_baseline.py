import numpy as np
import pytest
import torch

from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.episodes import EpisodeBatch, discounted_returns, gae, masked_mean, normalize


def two_episodes():
    # episode 0 lasts 3 steps, episode 1 lasts 2 (its third step is padding)
    rewards = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    return rewards, mask


def test_discounted_returns_by_hand():
    rewards, mask = two_episodes()
    r = discounted_returns(rewards, mask, 0.5)
    expected = torch.tensor([[1 + 0.5 * 0 + 0.25 * 3, 2 + 0.5 * 1], [0 + 0.5 * 3, 1.0], [3.0, 0.0]])
    torch.testing.assert_close(r, expected)


def test_gae_by_hand():
    rewards, mask = two_episodes()
    values = torch.tensor([[0.5, 1.0], [1.0, 2.0], [2.0, 9.0]])  # 9.0 is padding, must be ignored
    g, lam = 0.9, 0.5
    d0 = [1 + g * 1.0 - 0.5, 0 + g * 2.0 - 1.0, 3 + 0 - 2.0]
    d1 = [2 + g * 2.0 - 1.0, 1 + 0 - 2.0]
    a0 = [d0[0] + g * lam * (d0[1] + g * lam * d0[2]), d0[1] + g * lam * d0[2], d0[2]]
    a1 = [d1[0] + g * lam * d1[1], d1[1], 0.0]
    torch.testing.assert_close(gae(rewards, values, mask, g, lam), torch.tensor([a0, a1]).T)
    # lambda = 1 with zero values is the discounted return
    torch.testing.assert_close(gae(rewards, torch.zeros(3, 2), mask, g, 1.0), discounted_returns(rewards, mask, g))


def test_masked_mean_and_normalize_ignore_padding():
    _, mask = two_episodes()
    x = torch.tensor([[1.0, 4.0], [2.0, 6.0], [3.0, 100.0]])
    assert masked_mean(x, mask).item() == pytest.approx((2.0 + 5.0) / 2)
    n = normalize(x, mask)
    vals = n[mask.bool()]
    assert vals.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert vals.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    assert n[2, 1] == 0.0


def test_batch_split_trim_and_returns():
    rewards, mask = two_episodes()
    obs = torch.arange(12, dtype=torch.float32).view(3, 2, 2)
    batch = EpisodeBatch(obs, torch.zeros(3, 2, 1), rewards, mask)
    assert batch.lengths.tolist() == [3, 2] and batch.num_steps == 5
    torch.testing.assert_close(batch.episode_returns(), torch.tensor([4.0, 3.0]))
    first, second = batch.split(2)
    assert first.observations.shape == (3, 1, 2) and second.observations.shape == (2, 1, 2)  # trimmed
    torch.testing.assert_close(second.rewards[:, 0], torch.tensor([2.0, 1.0]))


def test_linear_baseline_recovers_a_linear_target():
    rng = np.random.default_rng(0)
    t_steps, b, d = 30, 8, 3
    obs = torch.tensor(rng.normal(size=(t_steps, b, d)), dtype=torch.float32)
    mask = torch.ones(t_steps, b)
    mask[20:, :3] = 0.0
    feats = LinearFeatureBaseline.features(obs, mask)
    assert feats.shape[-1] == 2 * d + 4
    w = torch.tensor(rng.normal(size=feats.shape[-1]), dtype=torch.float32)
    target = (feats @ w) * mask
    target_noisy = target + 99.0 * (1 - mask)  # garbage on padding must not matter
    values = LinearFeatureBaseline(reg=1e-8).fit_predict(obs, mask, target_noisy)
    torch.testing.assert_close(values, target, atol=1e-3, rtol=1e-3)
    assert (values[20:, :3] == 0).all()


def test_baseline_features_match_reference_layout():
    obs = torch.tensor([[[2.0]], [[3.0]]])
    feats = LinearFeatureBaseline.features(obs, torch.ones(2, 1))
    torch.testing.assert_close(feats[1, 0], torch.tensor([3.0, 9.0, 0.01, 1e-4, 1e-6, 1.0]))
