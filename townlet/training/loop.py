"""``Trainer``: the training loop, top to bottom.

Per episode: reset the world and the registry's per-episode fields; step every agent together until all
are done (act, step, reward against the registry's baseline, record, learn); snapshot the registry; decay
epsilon; let the curriculum advance (which pushes a new baseline into the registry).
"""

import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from townlet.config import TownletConfig
from townlet.curriculum.stages import Curriculum, StageChange, depletion_rates
from townlet.devices import resolve_device
from townlet.environment.grid import VectorizedGridEnv
from townlet.population.runtime_registry import RegistrySnapshot
from townlet.population.vectorized import VectorizedPopulation
from townlet.telemetry.frames import FramePublisher
from townlet.telemetry.recording import EpisodeRecording, recording_from_frames
from townlet.training.recorder import RecordingPlan, StepRecorder, recorded_agents
from townlet.training.threads import use_threads


@dataclass(frozen=True, slots=True)
class EpisodeReport:
    """What one finished episode looked like, in Python values (the registry snapshot included)."""

    episode: int
    steps: int
    snapshot: RegistrySnapshot
    stage_change: StageChange | None
    duration_s: float
    recording: EpisodeRecording | None = None

    @property
    def mean_survival(self) -> float:
        return statistics.fmean(self.snapshot.survival_steps)

    @property
    def mean_baseline(self) -> float:
        return statistics.fmean(self.snapshot.baseline_survival_steps)

    @property
    def epsilon(self) -> float:
        return self.snapshot.epsilon[0]

    @property
    def stage(self) -> int:
        return self.snapshot.curriculum_stage[0]


class Trainer:
    """Owns one training run's environment, population (with its registry) and curriculum."""

    def __init__(self, config: TownletConfig, device: torch.device | None = None, *, stage: int = 1) -> None:
        self.config = config
        self.device = device if device is not None else resolve_device(config.training.device)
        self.threads = use_threads(config.training.threads)
        seed = config.training.seed
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        n = config.training.agents
        self.env = VectorizedGridEnv(
            n,
            grid_size=config.environment.grid_size,
            max_steps=config.environment.max_steps,
            device=self.device,
            generator=self.generator,
        )
        self.population = VectorizedPopulation(
            n,
            self.env.obs_dim,
            self.env.num_actions,
            config.population,
            self.device,
            self.generator,
            vital_columns=self.env.vital_obs_columns,
            grid_size=self.env.grid_size,
        )
        self.registry = self.population.runtime_registry
        self.curriculum = Curriculum(config.curriculum, config.environment.max_steps, stage=stage)
        self.curriculum.apply(self.env, self.registry)
        #: Which episodes are recorded; a session sets its last planned episode and, on resume, the stage before.
        self.recording_plan = RecordingPlan(config.recording, previous_stage=None if stage == 1 else stage)
        self.recorded_agents = recorded_agents(config.recording, n)
        #: The live grid (``train --live``): set by the session when it serves a stream.
        self.frames: FramePublisher | None = None

    def run_episode(self, episode: int) -> EpisodeReport:
        """Play one episode for every agent, learning as it goes (and recording its steps when planned)."""
        started = time.perf_counter()
        stage = self.curriculum.stage
        reasons = self.recording_plan.reasons(episode, stage)
        recorder = None
        obs = self.env.reset()
        if reasons:
            recorder = StepRecorder(self.env, self.recorded_agents, self.config.recording.q_values)
            recorder.start()
        self.registry.begin_episode()
        steps = 0
        while not self.env.all_done:
            actions = self.population.select_actions(obs)
            step = self.env.step(actions)
            rewards = self.population.rewards_for(step)
            self.registry.record_step(step.step_counts, rewards, step.dones, step.death_cause, self.env.meters)
            self.registry.record_actions(actions, step.alive_before, step.affordance_used)
            if recorder is not None:
                recorder.step(actions, self.population.last_explored, self.population.last_q, step, rewards)
            self.population.observe(obs, actions, rewards, step)
            obs = step.observations
            steps += 1
            if self.frames is not None:
                self.frames.offer(self.env, episode, steps, stage)
        snapshot = self.registry.snapshot()
        recording = None
        if recorder is not None:
            recording = recording_from_frames(
                recorder.finish(),
                agents=self.recorded_agents,
                episode=episode,
                reasons=reasons,
                grid_size=self.env.grid_size,
                max_steps=self.env.max_steps,
                stage=stage,
                active_meters=self.curriculum.current.active_meters,
                depletion=depletion_rates(self.curriculum.current),
                q_values=self.config.recording.q_values,
            )
        self.population.end_episode()
        self.recording_plan.previous_stage = stage
        change = self.curriculum.end_episode(statistics.fmean(snapshot.survival_steps), self.env, self.registry)
        if change is not None:
            self.population.begin_stage()
        return EpisodeReport(episode, steps, snapshot, change, time.perf_counter() - started, recording)

    def run(
        self, episodes: int, *, first_episode: int = 1, stop: Callable[[], bool] = lambda: False
    ) -> Iterator[EpisodeReport]:
        """Yield a report per episode; ``stop()`` is checked after each one (Ctrl-C stops cleanly there)."""
        for episode in range(first_episode, first_episode + episodes):
            yield self.run_episode(episode)
            if stop():
                return

    def state_dict(self) -> dict[str, Any]:
        """Everything the next episode depends on: the learner (with the registry), the curriculum, and every
        random number generator training draws from (the trainer's generator, and torch's global ones)."""
        return {
            "population": self.population.state_dict(),
            "curriculum": self.curriculum.state_dict(),
            "rng": {
                "generator": self.generator.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            },
        }

    def load_state_dict(self, state: dict[str, Any], *, same_device_type: bool = True) -> None:
        """Continue exactly where ``state_dict()`` was taken; on another device type the random streams cannot
        move (their states are device-specific), so they keep this trainer's seed instead."""
        self.curriculum.load_state_dict(state["curriculum"], self.env, self.registry)
        self.population.load_state_dict(state["population"])  # after the curriculum: the registry as stored
        if not same_device_type:
            return
        rng = state["rng"]
        self.generator.set_state(rng["generator"])
        torch.set_rng_state(rng["torch"])
        if rng["cuda"]:
            torch.cuda.set_rng_state_all(rng["cuda"])

    def evaluate(self, episodes: int, *, epsilon: float) -> float:
        """Mean survival over ``episodes`` played at a fixed epsilon without learning (1.0 = random policy)."""
        saved = self.population.epsilon
        self.population.epsilon = epsilon
        survivals: list[float] = []
        try:
            for _ in range(episodes):
                obs = self.env.reset()
                while not self.env.all_done:
                    obs = self.env.step(self.population.select_actions(obs)).observations
                survivals.extend(self.env.step_counts.tolist())
        finally:
            self.population.epsilon = saved
        return statistics.fmean(survivals)
