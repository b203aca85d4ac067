"""A timed measurement over the rounds of a benchmark run, shared by every figure."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

__all__ = ["NOISE_FLOOR_SECONDS", "NOISY_SPREAD", "Measurement"]

NOISY_SPREAD = 1.25
"""A measurement whose slowest round is this much slower than its fastest is flagged as noisy..."""

NOISE_FLOOR_SECONDS = 0.25
"""...unless its slowest and fastest rounds are closer than this (scheduler jitter on a short
measurement, which moves no ratio much)."""


@dataclass(frozen=True)
class Measurement:
    """The timings of one measured action over the rounds of a run.

    Attributes:
        label: What was measured, as shown in the report.
        samples: Wall-clock seconds, one per round.
    """

    label: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        """The median of the samples, in seconds."""
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """The slowest sample divided by the fastest: 1.0 for a perfectly steady measurement."""
        return max(self.samples) / min(self.samples)

    @property
    def is_noisy(self) -> bool:
        """Whether the rounds disagree too much to trust the median (see :data:`NOISY_SPREAD`)."""
        return (
            self.spread > NOISY_SPREAD
            and max(self.samples) - min(self.samples) > NOISE_FLOOR_SECONDS
        )

    def ratio_to(self, baseline: Measurement) -> float:
        """This measurement's median divided by ``baseline``'s."""
        return self.median / baseline.median

    def round_ratios(self, baseline: Measurement) -> tuple[float, ...]:
        """Each round's sample divided by ``baseline``'s sample of the same round."""
        return tuple(
            mine / theirs for mine, theirs in zip(self.samples, baseline.samples, strict=True)
        )
