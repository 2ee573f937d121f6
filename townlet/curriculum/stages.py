"""``Curriculum``: owns the current stage, decides advancement, and pushes the stage's baseline into the registry."""

from collections import deque
from dataclasses import dataclass
from typing import Any

from townlet.config import CurriculumConfig, StageConfig
from townlet.environment.grid import VectorizedGridEnv
from townlet.environment.world import BASE_DEPLETION, INITIAL_METERS, METERS, VITAL_METERS
from townlet.population.runtime_registry import AgentRuntimeRegistry


def depletion_rates(stage: StageConfig) -> list[float]:
    """Per-step loss of each meter (in ``METERS`` order) at this stage; inactive meters do not deplete."""
    return [BASE_DEPLETION[m] * stage.multiplier if m in stage.active_meters else 0.0 for m in METERS]


def baseline_survival_steps(stage: StageConfig) -> float:
    """Steps an agent that does nothing survives at this stage: ``initial / rate`` of its fastest vital meter.

    E.g. energy starts at 1.0 and loses 0.010 x multiplier per step, so at multiplier 1.0 the baseline is 100.
    """
    rates = dict(zip(METERS, depletion_rates(stage), strict=True))
    lifetimes = [INITIAL_METERS[m] / rates[m] for m in VITAL_METERS if rates[m] > 0]
    if not lifetimes:
        raise ValueError(f"stage {stage} depletes no vital meter, so an idle agent never dies: activate one")
    return min(lifetimes)


@dataclass(frozen=True, slots=True)
class StageChange:
    """A curriculum event: the population moved from one stage to another after an episode."""

    from_stage: int
    to_stage: int
    reason: str
    mean_survival: float


class Curriculum:
    """Owns the population's current stage (1-based) and the window of recent mean survivals.

    All agents share the stage, so they share the baseline. The baseline is computed only when the stage
    changes (and once at start) and pushed into the registry with a single ``set_baselines`` call.
    """

    def __init__(self, config: CurriculumConfig, max_steps: int, stage: int = 1) -> None:
        if not 1 <= stage <= len(config.stages):
            raise ValueError(f"stage {stage} does not exist: stages are 1..{len(config.stages)}")
        self.config = config
        self.max_steps = max_steps
        self.stage = stage
        self._recent: deque[float] = deque(maxlen=config.window)

    @property
    def current(self) -> StageConfig:
        return self.config.stages[self.stage - 1]

    def apply(self, env: VectorizedGridEnv, registry: AgentRuntimeRegistry) -> None:
        """Push the current stage into the world (depletion) and the registry (stage, baseline)."""
        env.set_depletion(depletion_rates(self.current))
        registry.set_curriculum_stage(self.stage)
        registry.set_baselines(baseline_survival_steps(self.current))

    def state_dict(self) -> dict[str, Any]:
        """The stage and the window of recent mean survivals (a checkpoint)."""
        return {"stage": self.stage, "recent": list(self._recent)}

    def load_state_dict(self, state: dict[str, Any], env: VectorizedGridEnv, registry: AgentRuntimeRegistry) -> None:
        """Continue from ``state_dict()``: its stage pushed into the world and the registry, its window."""
        stage = int(state["stage"])
        if not 1 <= stage <= len(self.config.stages):
            raise ValueError(f"checkpoint stage {stage} does not exist: stages are 1..{len(self.config.stages)}")
        self.stage = stage
        self._recent.clear()
        self._recent.extend(float(value) for value in state["recent"])
        self.apply(env, registry)

    def end_episode(
        self, mean_survival: float, env: VectorizedGridEnv, registry: AgentRuntimeRegistry
    ) -> StageChange | None:
        """Record an episode's mean survival; advance (and re-apply) when the window clears the threshold."""
        self._recent.append(mean_survival)
        if self.stage == len(self.config.stages) or len(self._recent) < self.config.window:
            return None
        window_mean = sum(self._recent) / len(self._recent)
        target = self.config.advance_threshold * self.max_steps
        if window_mean < target:
            return None
        change = StageChange(
            from_stage=self.stage,
            to_stage=self.stage + 1,
            reason=f"mean survival {window_mean:.1f} >= {target:.1f} over {self.config.window} episodes",
            mean_survival=window_mean,
        )
        self.stage += 1
        self._recent.clear()
        self.apply(env, registry)
        return change
