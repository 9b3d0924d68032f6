"""What each part of the demo hands to the report: tables, figures, headline lines, stage timings."""
from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import torch

from advrobust.report import Num, ReportTable


@dataclass
class StageResult:
    """One part of the demo (photo-z or morphology).

    Attributes:
        tables: report tables, in order.
        figures: ``{caption: matplotlib Figure}``.
        headline: ``(what, measured)`` lines of the table printed at the end.
        findings: sentences written from the measured numbers (the report's "Findings").
        facts: the measured numbers the tests and the summary read, by name.
        timings: ``{stage: wall seconds}``.
        eps: ``{attack: eps per band in image units}`` for the report's strength table.
        sky_sigma: per-band sky sigma in image units of the part whose strengths ``eps`` gives, or None.
        models: trained models by role, for a later part of the same seed to reuse (e.g. the morphology
            part's ``{"basic": baseline, "noisy": noisy training}``).
    """

    tables: List[ReportTable] = field(default_factory=list)
    figures: Dict[str, object] = field(default_factory=dict)
    headline: List[Tuple[str, str]] = field(default_factory=list)
    findings: List[str] = field(default_factory=list)
    facts: Dict[str, float] = field(default_factory=dict)
    sky_sigma: Optional[List[float]] = None
    timings: Dict[str, float] = field(default_factory=dict)
    eps: Dict[str, object] = field(default_factory=dict)
    models: Dict[str, torch.nn.Module] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time the block as ``stage`` and say on stderr when it starts and how long it took."""
        print(f"[advrobust demo] {stage} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        yield
        self.timings[stage] = time.perf_counter() - start
        print(f"[advrobust demo] {stage}: {self.timings[stage]:.1f} s", file=sys.stderr, flush=True)


#: standard error of a MAD-based sigma on n values, in units of sigma / sqrt(n): sqrt(1.36), the asymptotic
#: value for normal errors (the MAD's efficiency there is 37%; 1.16 in a simulation of 4,000 samples of 1,000)
SIGMA_MAD_ERROR = 1.166


def sigma_eta(cell: dict, n_objects: int) -> dict:
    """A photo-z metrics dict as a report cell ``{"sigma_mad": Num, "eta": Num}``, shown as
    ``"0.0170 / 1.0%"`` (:func:`advrobust.report.format_cell`), with the test-sample errors of both
    over ``n_objects`` galaxies (eta binomial, sigma_MAD by :data:`SIGMA_MAD_ERROR`)."""
    s = float(cell["sigma_mad"])
    return {"sigma_mad": Num(s, ".4f", error=SIGMA_MAD_ERROR * s / math.sqrt(max(n_objects, 1))),
            "eta": Num(cell["eta"], ".1%", n_objects=n_objects)}


def ratio(new: float, old: float) -> str:
    """``new / old`` as ``"3.1x"`` (``"-"`` when ``old`` is 0)."""
    return f"{new / old:.1f}x" if old else "-"


def sky_label(eps: float) -> str:
    """An attack strength in sky sigmas as a label, e.g. ``"0.1 sky sigma"``."""
    return f"{eps:g} sky sigma"
