"""Shared RL plumbing, checked against independent reasoning: seeding, autoreset, statistics, evaluation, feeding."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from lightning_alphagrad.rl import (
    EpisodeStatistics,
    EpisodeTracker,
    LeanSyncVectorEnv,
    RewardScaler,
    RunningMeanStd,
    StepIndexDataset,
    check_spaces,
    env_seeds,
    evaluate_policy,
    final_observations,
    make_vector_env,
    probe_spaces,
    step_index_loader,
)


def test_env_seeds_follow_formula_and_are_unique_over_ranks() -> None:
    assert env_seeds(7, 0, 3) == [7, 8, 9]
    assert env_seeds(7, 2, 3) == [13, 14, 15]
    all_seeds = [s for rank in range(4) for s in env_seeds(5, rank, 3)]
    assert len(set(all_seeds)) == 12


def test_vector_env_matches_independent_single_envs_across_autoreset() -> None:
    """Sub-env i behaves as one env reset with seed s_i, then reset without seed whenever an episode ends."""
    num_envs, seeds = 2, env_seeds(3, 1, 2)
    envs = make_vector_env("CartPole-v1", num_envs)
    singles = [gym.make("CartPole-v1") for _ in range(num_envs)]
    obs, _ = envs.reset(seed=seeds)
    single_obs = [env.reset(seed=s)[0] for env, s in zip(singles, seeds, strict=True)]
    np.testing.assert_array_equal(obs, np.stack(single_obs))
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(300):
        actions = rng.integers(0, 2, size=num_envs)
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        real_next = final_observations(next_obs, terminated, truncated, infos)
        for i, env in enumerate(singles):
            o, r, te, tr, _ = env.step(int(actions[i]))
            assert (rewards[i], terminated[i], truncated[i]) == (r, te, tr)
            np.testing.assert_array_equal(real_next[i], o)  # the transition's true next observation
            if te or tr:
                ends += 1
                o, _ = env.reset()
                assert not np.array_equal(next_obs[i], real_next[i])
            np.testing.assert_array_equal(next_obs[i], o)  # what the agent acts on next
    assert ends >= 10  # random CartPole episodes last ~20 steps: many resets were checked
    envs.close()


def test_final_observations_returns_input_when_nothing_ended() -> None:
    obs = np.zeros((2, 3))
    out = final_observations(obs, np.array([False, False]), np.array([False, False]), {})
    assert out is obs


def test_bad_env_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="env_id"):
        probe_spaces("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="num_envs"):
        make_vector_env("CartPole-v1", 0)
    with pytest.raises(ValueError, match="vectorization"):
        make_vector_env("CartPole-v1", 1, vectorization="threads")  # type: ignore[arg-type]
    box = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(ValueError, match="observation space"):
        check_spaces(spaces.Dict({"a": box}), box)
    with pytest.raises(ValueError, match="action space"):
        check_spaces(box, spaces.MultiDiscrete([2, 3]))
    with pytest.raises(ValueError, match="action space"):
        check_spaces(box, spaces.Box(-np.inf, np.inf, (2,)))
    with pytest.raises(ValueError, match="action space"):
        check_spaces(box, spaces.Discrete(3), action_spaces=(spaces.Box,))
    check_spaces(*probe_spaces("CartPole-v1"))
    check_spaces(*probe_spaces("Pendulum-v1"))


def _reference_stats(data: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of ``data`` plus the prior (mean 0, variance 1, weight epsilon), from the raw moments."""
    n = data.shape[0]
    total = n + epsilon
    mean = data.sum(axis=0) / total
    second_moment = ((data**2).sum(axis=0) + epsilon * 1.0) / total
    return mean, second_moment - mean**2


def test_running_mean_std_matches_moments_of_all_data_and_syncs_ranks() -> None:
    rng = np.random.default_rng(1)
    epsilon = 1e-2  # a visible prior, so the reference must account for it
    data_a = [rng.normal(3.0, 2.0, size=(n, 4)) for n in (1, 5, 17)]
    data_b = [rng.normal(-1.0, 0.5, size=(n, 4)) for n in (2, 9)]
    rank_a, rank_b = RunningMeanStd((4,), epsilon=epsilon), RunningMeanStd((4,), epsilon=epsilon)
    for batch in data_a:
        rank_a.update(batch)
    for batch in data_b:
        rank_b.update(batch)
    mean, var = _reference_stats(np.concatenate(data_a), epsilon)
    np.testing.assert_allclose(rank_a.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(rank_a.var, var, rtol=1e-10)

    packets: list[torch.Tensor] = []
    for rank in (rank_a, rank_b):
        copy.deepcopy(rank).sync(lambda t: packets.append(t) or t.unsqueeze(0))
    rank_a.sync(lambda t: torch.stack([t, packets[1]]))
    rank_b.sync(lambda t: torch.stack([packets[0], t]))
    mean, var = _reference_stats(np.concatenate(data_a + data_b), epsilon)
    for rank in (rank_a, rank_b):
        np.testing.assert_allclose(rank.mean, mean, rtol=1e-10)
        np.testing.assert_allclose(rank.var, var, rtol=1e-10)
        assert rank.count == pytest.approx(sum(len(b) for b in data_a + data_b) + epsilon)
    # After a sync only new data is pending: a second sync with one rank's new batch adds just that batch.
    extra = rng.normal(size=(3, 4))
    rank_a.update(extra)
    rank_a.sync(lambda t: t.unsqueeze(0))
    mean, var = _reference_stats(np.concatenate(data_a + data_b + [extra]), epsilon)
    np.testing.assert_allclose(rank_a.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(rank_a.var, var, rtol=1e-10)


def test_running_mean_std_normalizes_clips_and_round_trips_through_state_dict() -> None:
    rms = RunningMeanStd((2,), clip=1.5)
    rms.update(np.array([[0.0, 10.0], [2.0, 30.0]]))
    x = np.array([[1.0, 100.0]])
    expected = np.clip((x - rms.mean) / np.sqrt(rms.var + 1e-8), -1.5, 1.5)
    np.testing.assert_allclose(rms.normalize(x), expected, rtol=1e-6)
    assert rms.normalize(x).dtype == np.float32
    restored = RunningMeanStd((2,), clip=1.5)
    restored.load_state_dict(rms.state_dict())
    np.testing.assert_array_equal(restored.mean, rms.mean)
    np.testing.assert_array_equal(restored.var, rms.var)
    assert restored.count == rms.count
    assert list(dict(rms.named_buffers())) == []  # nothing for DDP's buffer broadcast to overwrite


def test_reward_scaler_divides_by_std_of_discounted_return() -> None:
    gamma, rewards = 0.9, np.array([1.0, 2.0, -1.0, 3.0, 0.5])
    terminated = np.array([False, False, True, False, False])
    scaler = RewardScaler(num_envs=1, gamma=gamma, clip=None)
    returns, g = [], 0.0
    for r, te in zip(rewards, terminated, strict=True):
        scaled = scaler.scale(np.array([r]), np.array([te], dtype=np.float64))
        g = g * gamma * (1.0 - te) + r
        returns.append(g)
        _, var = _reference_stats(np.array(returns)[:, None], 1e-8)
        assert scaled[0] == pytest.approx(r / np.sqrt(var[0] + 1e-8), rel=1e-5)
    clipped = RewardScaler(num_envs=1, clip=0.1).scale(np.array([100.0]), np.array([0.0]))
    assert clipped[0] == pytest.approx(0.1)


def test_episode_tracker_and_statistics() -> None:
    tracker, stats = EpisodeTracker(2), EpisodeStatistics()
    steps = [([1.0, 2.0], [False, False]), ([1.0, 2.0], [True, False]), ([5.0, 2.0], [False, True])]
    finished = []
    for rewards, dones in steps:
        returns, lengths = tracker.step(np.array(rewards), np.array(dones))
        finished.extend(zip(returns.tolist(), lengths.tolist(), strict=True))
        stats.update(returns, lengths)
    assert finished == [(2.0, 2), (6.0, 3)]
    computed = stats.compute()
    assert computed["charts/episodic_return"].item() == pytest.approx(4.0)
    assert computed["charts/episodic_length"].item() == pytest.approx(2.5)
    assert stats.compute() == {}  # reset after compute; no episodes -> nothing to log


def test_evaluate_policy_takes_quota_per_sub_env() -> None:
    """3 episodes on 2 sub-envs: 2 from env 0 (seeded, then reset), 1 from env 1, as independent envs give."""

    def policy(obs: np.ndarray) -> np.ndarray:
        return (obs[:, 2] > 0).astype(np.int64)  # lean right when the pole leans right

    seeds = [11, 12]
    envs = make_vector_env("CartPole-v1", 2)
    returns = evaluate_policy(policy, envs, num_episodes=3, seeds=seeds)
    envs.close()

    def episode(env: gym.Env, seed: int | None) -> float:
        obs, _ = env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            obs, r, te, tr, _ = env.step(int(policy(obs[None])[0]))
            total, done = total + r, te or tr
        return total

    env0, env1 = gym.make("CartPole-v1"), gym.make("CartPole-v1")
    expected = [episode(env0, 11), episode(env0, None), episode(env1, 12)]
    assert sorted(returns.tolist()) == sorted(expected)
    with pytest.raises(ValueError, match="num_episodes"):
        evaluate_policy(policy, make_vector_env("CartPole-v1", 1), num_episodes=0, seeds=[0])


def test_step_index_loader_has_fixed_length() -> None:
    assert list(step_index_loader(3, 7)) == [3, 4, 5, 6]
    assert len(StepIndexDataset(2, 2)) == 0
    with pytest.raises(ValueError, match="start"):
        StepIndexDataset(5, 4)


def assert_same_infos(expected: object, actual: object) -> None:
    """Nested info dicts of gymnasium vector envs: same keys, equal arrays (object arrays element by element)."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and expected.keys() == actual.keys()
        for key in expected:
            assert_same_infos(expected[key], actual[key])
    elif isinstance(expected, np.ndarray) and expected.dtype == object:
        assert actual.dtype == object and len(expected) == len(actual)
        for e, a in zip(expected, actual, strict=True):
            assert_same_infos(e, a)
    else:
        np.testing.assert_array_equal(expected, actual)
        assert np.asarray(expected).dtype == np.asarray(actual).dtype


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v4"])
@pytest.mark.parametrize("copy", [True, False])
def test_lean_sync_vector_env_returns_what_gymnasiums_returns(env_id: str, copy: bool) -> None:
    """Observations, rewards, flags and infos (MuJoCo's per-step infos, final_obs/final_info) across many resets."""
    env_fns = [lambda: gym.make(env_id, max_episode_steps=25) for _ in range(3)]
    reference = gym.vector.SyncVectorEnv(env_fns, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    lean = make_vector_env(env_id, 3, env_kwargs={"max_episode_steps": 25}, copy=copy)
    assert isinstance(lean, LeanSyncVectorEnv)
    try:
        np.testing.assert_array_equal(reference.reset(seed=[4, 5, 6])[0], lean.reset(seed=[4, 5, 6])[0])
        reference.action_space.seed(0)
        ends = 0
        for _ in range(120):
            actions = reference.action_space.sample()
            expected, actual = reference.step(actions), lean.step(actions)
            for e, a in zip(expected[:4], actual[:4], strict=True):
                np.testing.assert_array_equal(e, a)
                assert e.dtype == a.dtype
            assert_same_infos(expected[4], actual[4])
            ends += int(expected[2].sum() + expected[3].sum())
        assert ends >= 10
    finally:
        reference.close()
        lean.close()


def test_async_vector_env_matches_sync() -> None:
    seeds = env_seeds(0, 0, 2)
    sync_envs, async_envs = make_vector_env("CartPole-v1", 2), make_vector_env("CartPole-v1", 2, "async")
    try:
        np.testing.assert_array_equal(sync_envs.reset(seed=seeds)[0], async_envs.reset(seed=seeds)[0])
        rng = np.random.default_rng(1)
        for _ in range(60):
            actions = rng.integers(0, 2, size=2)
            sync_step, async_step = sync_envs.step(actions), async_envs.step(actions)
            for sync_part, async_part in zip(sync_step[:4], async_step[:4], strict=True):
                np.testing.assert_array_equal(sync_part, async_part)
            sync_final = final_observations(sync_step[0], *sync_step[2:])
            np.testing.assert_array_equal(sync_final, final_observations(async_step[0], *async_step[2:]))
    finally:
        sync_envs.close()
        async_envs.close()
