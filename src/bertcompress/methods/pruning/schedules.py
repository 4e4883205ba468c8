"""Sparsity schedules for gradual pruning: Zhu & Gupta's cubic ramp (2017), with warm-up and cool-down.

    s_t = s_f + (s_i - s_f) · (1 - (t - t0) / (n·Δt))³   for t0 <= t <= t0 + n·Δt

Sparsity rises fast early, while many redundant weights remain, and slowly near the end."""
from __future__ import annotations

from dataclasses import dataclass

from bertcompress.core.errors import BertCompressError
from bertcompress.methods.pruning.masks import check_sparsity


@dataclass(frozen=True)
class CubicSchedule:
    final_sparsity: float
    begin_step: int  # t0: masks start changing after this optimizer step
    end_step: int  # t0 + n·Δt: the final sparsity is reached here and then held
    initial_sparsity: float = 0.0
    frequency: int = 1  # Δt: optimizer steps between mask updates

    def __post_init__(self) -> None:
        check_sparsity(self.final_sparsity, "sparsity")
        check_sparsity(self.initial_sparsity, "initial_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise BertCompressError(f"initial_sparsity: must be <= sparsity ({self.final_sparsity}); "
                                    f"got {self.initial_sparsity}")
        if self.frequency < 1:
            raise BertCompressError(f"prune_every: must be >= 1 step (got {self.frequency})")
        if self.end_step <= self.begin_step:
            raise BertCompressError(f"schedule: pruning would end (step {self.end_step}) before it starts "
                                    f"(step {self.begin_step}); shorten warmup/cooldown or train longer")

    def sparsity_at(self, step: int) -> float:
        if step <= self.begin_step:
            return self.initial_sparsity
        if step >= self.end_step:
            return self.final_sparsity
        remaining = 1 - (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * remaining**3

    def updates_at(self, step: int) -> bool:
        """Masks change every Δt steps inside the ramp, and always at its last step."""
        inside = self.begin_step < step <= self.end_step
        return inside and ((step - self.begin_step) % self.frequency == 0 or step == self.end_step)


def steps_of(amount: float, total_steps: int, field: str) -> int:
    """A length given in steps (>= 1, whole) or as a fraction of training (< 1)."""
    if amount < 0:
        raise BertCompressError(f"{field}: must be >= 0 (steps, or a fraction of training below 1); got {amount}")
    if amount < 1:
        return round(amount * total_steps)
    if amount != int(amount):
        raise BertCompressError(f"{field}: {amount} is neither a fraction below 1 nor a whole number of steps")
    return int(amount)


def cubic_schedule(total_steps: int, final_sparsity: float, warmup: float = 0.0, cooldown: float = 0.0,
                   initial_sparsity: float = 0.0, frequency: int = 1) -> CubicSchedule:
    """The ramp inside `total_steps`: it starts after the warm-up and ends where the cool-down begins."""
    begin = steps_of(warmup, total_steps, "warmup")
    end = total_steps - steps_of(cooldown, total_steps, "cooldown")
    return CubicSchedule(final_sparsity, begin, end, initial_sparsity, frequency)
