import numpy as np
import pytest
import torch

from dh_maml.baseline import LinearFeatureBaseline
from dh_maml.episodes import EpisodeBatch, concat_tasks, discounted_returns, gae, masked_mean, normalize


def two_episodes():
    """One task, [1, T=3, E=2]: episode 0 lasts 3 steps, episode 1 lasts 2 (its third step is padding)."""
    rewards = torch.tensor([[[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]]])
    mask = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]])
    return rewards, mask


def test_discounted_returns_by_hand():
    rewards, mask = two_episodes()
    r = discounted_returns(rewards, mask, 0.5)
    expected = torch.tensor([[[1 + 0.5 * 0 + 0.25 * 3, 2 + 0.5 * 1], [0 + 0.5 * 3, 1.0], [3.0, 0.0]]])
    torch.testing.assert_close(r, expected)


def test_gae_by_hand():
    rewards, mask = two_episodes()
    values = torch.tensor([[[0.5, 1.0], [1.0, 2.0], [2.0, 9.0]]])  # 9.0 is padding, must be ignored
    g, lam = 0.9, 0.5
    d0 = [1 + g * 1.0 - 0.5, 0 + g * 2.0 - 1.0, 3 + 0 - 2.0]
    d1 = [2 + g * 2.0 - 1.0, 1 + 0 - 2.0]
    a0 = [d0[0] + g * lam * (d0[1] + g * lam * d0[2]), d0[1] + g * lam * d0[2], d0[2]]
    a1 = [d1[0] + g * lam * d1[1], d1[1], 0.0]
    torch.testing.assert_close(gae(rewards, values, mask, g, lam), torch.tensor([a0, a1]).T[None])
    # lambda = 1 with zero values is the discounted return
    torch.testing.assert_close(gae(rewards, torch.zeros(1, 3, 2), mask, g, 1.0), discounted_returns(rewards, mask, g))


def test_recursions_keep_tasks_apart():
    rewards, mask = two_episodes()
    other = torch.full_like(rewards, 7.0)
    both = discounted_returns(torch.cat([rewards, other]), torch.cat([mask, torch.ones_like(mask)]), 0.5)
    torch.testing.assert_close(both[:1], discounted_returns(rewards, mask, 0.5))


def test_masked_mean_and_normalize_ignore_padding():
    _, mask = two_episodes()
    x = torch.tensor([[[1.0, 4.0], [2.0, 6.0], [3.0, 100.0]]])
    assert masked_mean(x, mask).tolist() == pytest.approx([(2.0 + 5.0) / 2])
    n = normalize(x, mask)
    # episode 0 (1, 2, 3) and episode 1 (4, 6) count equally, each split over its own steps
    mean = ((1 + 2 + 3) / 3 + (4 + 6) / 2) / 2
    var = (sum((v - mean) ** 2 for v in (1, 2, 3)) / 3 + sum((v - mean) ** 2 for v in (4, 6)) / 2) / 2
    expected = (torch.tensor([[[1.0, 4.0], [2.0, 6.0], [3.0, mean]]]) - mean) / var**0.5
    torch.testing.assert_close(n, expected, atol=1e-5, rtol=1e-5)
    assert masked_mean(n, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert masked_mean(n**2, mask).item() == pytest.approx(1.0, abs=1e-5)
    # each task is normalised on its own
    two = normalize(torch.cat([x, 10 * x + 5]), torch.cat([mask, mask]))
    torch.testing.assert_close(two[1], n[0], atol=1e-5, rtol=1e-5)


def test_batch_task_selection_concat_trim_and_returns():
    rewards, mask = two_episodes()
    obs = torch.arange(12, dtype=torch.float32).view(1, 3, 2, 2)
    batch = EpisodeBatch(obs, torch.zeros(1, 3, 2, 1), rewards, mask)
    assert batch.lengths.tolist() == [[3, 2]] and batch.num_steps == 5
    torch.testing.assert_close(batch.episode_returns(), torch.tensor([[4.0, 3.0]]))
    short = EpisodeBatch(obs[:, :2], torch.zeros(1, 2, 2, 1), rewards[:, :2] + 1, torch.ones(1, 2, 2))
    both = concat_tasks([batch, short])
    assert both.observations.shape == (2, 3, 2, 2) and both.num_tasks == 2
    assert both.mask[1, 2].sum() == 0  # time padded with masked steps
    torch.testing.assert_close(both.task_returns(), torch.tensor([3.5, 4.0]))
    alone = both.task(1)
    assert alone.observations.shape == (1, 2, 2, 2) and alone.observations.is_contiguous()  # trimmed
    torch.testing.assert_close(alone.rewards, short.rewards)


def test_linear_baseline_recovers_a_linear_target():
    rng = np.random.default_rng(0)
    t_steps, b, d = 30, 8, 3
    obs = torch.tensor(rng.normal(size=(2, t_steps, b, d)), dtype=torch.float32)
    mask = torch.ones(2, t_steps, b)
    mask[:, 20:, :3] = 0.0
    feats = LinearFeatureBaseline.features(obs, mask)
    assert feats.shape[-1] == 2 * d + 4
    w = torch.tensor(rng.normal(size=(2, 1, 1, feats.shape[-1])), dtype=torch.float32)  # one target per task
    target = (feats * w).sum(-1) * mask
    target_noisy = target + 99.0 * (1 - mask)  # garbage on padding must not matter
    values = LinearFeatureBaseline(reg=1e-8).fit_predict(obs, mask, target_noisy)
    torch.testing.assert_close(values, target, atol=1e-3, rtol=1e-3)
    assert (values[:, 20:, :3] == 0).all()


def test_baseline_features_match_reference_layout():
    obs = torch.tensor([[[[2.0]], [[3.0]]]])
    feats = LinearFeatureBaseline.features(obs, torch.ones(1, 2, 1))
    torch.testing.assert_close(feats[0, 1, 0], torch.tensor([3.0, 9.0, 0.01, 1e-4, 1e-6, 1.0]))
