"""ReplayBuffer: storage, ring order, autoreset semantics (checked against CartPole's own dynamics), checkpoints."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from lightning_alphagrad.rl import ReplayBuffer, final_observations


def _add_row(buffer: ReplayBuffer, value: float, terminated: bool = False, truncated: bool = False) -> int:
    """A single-env transition: obs ``value``, next obs ``value + 0.5``, action ``value``, reward ``-value``."""
    obs = torch.full((1, 2), value)
    return buffer.add(
        obs, obs + 0.5, torch.full((1, 1), value), torch.tensor([-value]),
        torch.tensor([terminated]), torch.tensor([truncated]),
    )  # fmt: skip


def test_ring_keeps_the_newest_rows_in_place() -> None:
    buffer = ReplayBuffer(5, (2,), (1,))
    for value in range(7):
        _add_row(buffer, float(value), terminated=value == 3)
    # Rows 0..6 went to slots 0,1,2,3,4,0,1: slots hold 5, 6, 2, 3, 4 and the next write goes to slot 2.
    assert len(buffer) == 5 and buffer.pos == 2
    assert buffer.obs[:, 0].tolist() == [5.0, 6.0, 2.0, 3.0, 4.0]
    assert buffer.next_obs[:, 1].tolist() == [5.5, 6.5, 2.5, 3.5, 4.5]
    assert buffer.rewards.tolist() == [-5.0, -6.0, -2.0, -3.0, -4.0]
    assert buffer.terminations.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]


def test_multi_env_rows_wrap_around_the_end() -> None:
    buffer = ReplayBuffer(5, (1,), (), num_envs=3, action_dtype=torch.int64)
    for step in range(2):
        obs = torch.tensor([[10.0 * step], [10.0 * step + 1], [10.0 * step + 2]])
        no = torch.zeros(3, dtype=torch.bool)
        buffer.add(obs, obs, torch.tensor([step, step, step]), torch.zeros(3), no, no)
    # Six rows into five slots: 0, 1, 2, 10, 11 then 12 overwrites slot 0.
    assert buffer.obs[:, 0].tolist() == [12.0, 1.0, 2.0, 10.0, 11.0]
    assert buffer.actions.tolist() == [1, 0, 0, 1, 1] and buffer.pos == 1


def test_same_step_mode_stores_every_row_and_truncation_is_not_terminal() -> None:
    buffer = ReplayBuffer(10, (2,), (1,), autoreset_mode="same_step")
    stored = [_add_row(buffer, 0.0), _add_row(buffer, 1.0, truncated=True), _add_row(buffer, 2.0, terminated=True)]
    stored.append(_add_row(buffer, 3.0))
    assert stored == [1, 1, 1, 1]
    assert buffer.terminations[:4].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_next_step_mode_drops_the_row_after_each_episode_end() -> None:
    buffer = ReplayBuffer(10, (2,), (1,), autoreset_mode="next_step")
    stored = [
        _add_row(buffer, 0.0),
        _add_row(buffer, 1.0, truncated=True),  # ends an episode: stored, bootstraps
        _add_row(buffer, 2.0),  # autoreset step (final obs -> reset obs): dropped
        _add_row(buffer, 3.0, terminated=True),
        _add_row(buffer, 4.0),  # dropped
        _add_row(buffer, 5.0),
    ]
    assert stored == [1, 1, 0, 1, 0, 1]
    assert buffer.obs[: len(buffer), 0].tolist() == [0.0, 1.0, 3.0, 5.0]
    assert buffer.terminations[: len(buffer)].tolist() == [0.0, 0.0, 1.0, 0.0]
    buffer.add(torch.zeros(1, 2), torch.zeros(1, 2), torch.zeros(1, 1), torch.zeros(1),
               torch.tensor([True]), torch.tensor([False]))  # fmt: skip
    buffer.mark_reset()  # envs reset by hand: the next row is a real transition
    assert _add_row(buffer, 7.0) == 1


def _cartpole_successor(env: gym.Env, obs: np.ndarray, action: int) -> np.ndarray:
    """CartPole-v1's next state from ``obs`` under ``action``, by its own dynamics (independent of any buffer)."""
    env.state, env.steps_beyond_terminated = obs.astype(np.float64), None
    next_obs, *_ = env.step(int(action))
    return next_obs


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_every_stored_transition_follows_the_dynamics(mode: str) -> None:
    """With real vector envs in either autoreset mode, no stored next_obs is a reset observation."""
    autoreset = AutoresetMode.SAME_STEP if mode == "same_step" else AutoresetMode.NEXT_STEP
    envs = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": autoreset})
    buffer = ReplayBuffer(1000, (4,), (), num_envs=2, action_dtype=torch.int64, autoreset_mode=mode)
    obs, _ = envs.reset(seed=[0, 1])
    envs.action_space.seed(0)
    episode_ends = 0
    for _ in range(300):
        actions = envs.action_space.sample()
        next_obs, rewards, terminated, truncated, infos = envs.step(actions)
        real_next = final_observations(next_obs, terminated, truncated, infos) if mode == "same_step" else next_obs
        buffer.add(obs, real_next, actions, rewards, terminated, truncated)
        episode_ends += int(np.logical_or(terminated, truncated).sum())
        obs = next_obs
    envs.close()
    assert episode_ends >= 10
    expected_rows = 600 if mode == "same_step" else 600 - episode_ends  # up to the ends of the last step
    assert abs(len(buffer) - expected_rows) <= 2
    simulator = gym.make("CartPole-v1").unwrapped
    simulator.reset(seed=0)
    for i in range(len(buffer)):
        successor = _cartpole_successor(simulator, buffer.obs[i].numpy(), int(buffer.actions[i]))
        np.testing.assert_allclose(buffer.next_obs[i].numpy(), successor, rtol=1e-5, atol=1e-6)
        # CartPole terminates exactly when the successor leaves the allowed region.
        out = abs(successor[0]) > 2.4 or abs(successor[2]) > 12 * 2 * np.pi / 360
        assert buffer.terminations[i].item() == float(out)


def test_sampling_is_seeded_and_uniform_over_the_filled_part() -> None:
    buffers = [ReplayBuffer(100, (2,), (1,), seed=3) for _ in range(2)]
    for buffer in buffers:
        for value in range(40):
            _add_row(buffer, float(value))
    first, second = buffers[0].sample(4000), buffers[1].sample(4000)
    assert torch.equal(first.obs, second.obs)
    counts = torch.bincount(first.obs[:, 0].long(), minlength=40)
    assert counts.numel() == 40 and counts.min() > 50  # every filled row drawn, nothing beyond them
    torch.testing.assert_close(first.next_obs - first.obs, torch.full_like(first.obs, 0.5))
    torch.testing.assert_close(first.rewards, -first.actions[:, 0])


def test_state_dict_round_trip() -> None:
    buffer = ReplayBuffer(6, (2,), (1,), seed=1)
    for value in range(8):
        _add_row(buffer, float(value), terminated=value % 3 == 0)
    restored = ReplayBuffer(6, (2,), (1,), seed=99)
    restored.load_state_dict(buffer.state_dict(include_storage=True))
    assert (restored.pos, restored.size) == (buffer.pos, buffer.size)
    for name in ("obs", "next_obs", "actions", "rewards", "terminations"):
        assert torch.equal(getattr(restored, name), getattr(buffer, name))
    assert torch.equal(restored.sample(16).obs, buffer.sample(16).obs)  # the generator state travels too
    empty = ReplayBuffer(6, (2,), (1,))
    empty.load_state_dict(buffer.state_dict())
    assert len(empty) == 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"capacity": 0}, "capacity"), ({"num_envs": 0}, "num_envs"), ({"autoreset_mode": "never"}, "autoreset_mode")],
)
def test_bad_constructor_arguments(kwargs: dict, name: str) -> None:
    arguments = {"capacity": 4, "obs_shape": (2,), "action_shape": (1,), **kwargs}
    with pytest.raises(ValueError, match=name):
        ReplayBuffer(**arguments)


def test_bad_add_and_sample() -> None:
    buffer = ReplayBuffer(4, (2,), (1,), num_envs=2)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    with pytest.raises(ValueError, match="terminations"):
        buffer.add(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 1), torch.zeros(2),
                   torch.zeros(3, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))  # fmt: skip
    buffer.add(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2, 1), torch.zeros(2),
               torch.zeros(2, dtype=torch.bool), torch.zeros(2, dtype=torch.bool))  # fmt: skip
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(0)
