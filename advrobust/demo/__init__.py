"""``advrobust demo``: the main job on its embedded default data.

Simulates a small photo-z survey and a small morphology survey, trains the baselines and the
defended models, attacks them, and writes a report (``report.md``, ``report.html``, ``figures/``)
in which every number was measured in that run; values from the papers appear only in columns
labelled with the paper. :func:`run_demo` is the whole job; :mod:`advrobust.demo.config` has the
presets (``quick``, ``default``, ``paper``).
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Optional, Union

import numpy as np
import torch

from advrobust.checks import check_device
from advrobust.data import PHOTOZ_BANDS
from advrobust.demo import seeds
from advrobust.demo.config import PARTS, PRESETS, DemoConfig
from advrobust.demo.defenses import defenses_findings, defenses_headline, fact_objects, run_defenses
from advrobust.demo.morphology import run_morphology, simulate_survey
from advrobust.demo.photoz import run_photoz
from advrobust.demo.stage import StageResult
from advrobust.report import write_report

__all__ = ["run_demo", "DemoResult", "PRESETS", "DemoConfig", "PARTS"]


class DemoResult(dict):
    """``{"report": paths from write_report, "headline": [(what, measured)], "findings": [sentences], "facts": {...},
    "timings": {stage: s}, "seconds": total}``."""


def run_demo(config: Union[str, DemoConfig] = "default", *, out: Union[str, os.PathLike] = "advrobust-demo",
             seed: int = 0, device: Union[str, torch.device] = "cpu", progress: bool = True,
             parts: Optional[tuple] = None) -> DemoResult:
    """Run the demo and write its report into ``out``.

    Args:
        config: a preset name (``"quick"``, ``"default"``, ``"paper"``) or a :class:`DemoConfig`.
        out: the report folder (created; an earlier report there is replaced file by file, atomically);
            the trained models go to ``out/models/`` (safetensors, :func:`advrobust.models.load`).
        seed: seeds the simulation, the weights, the sample order and every attack.
        device: ``"cpu"`` or ``"cuda"`` (simulation runs on the CPU).
        progress: progress bars of the training loops.
        parts: a subset of :data:`PARTS` (``"photoz"``, ``"morphology"``, ``"defenses"``; default all).
            The morphology survey is simulated once for the morphology and the defenses parts, and the
            defenses part reuses the morphology part's baseline and noisy models when both run.

    Returns:
        :class:`DemoResult`.

    Raises:
        ValueError: unknown preset or part; ``cuda`` without a visible GPU.
    """
    cfg = PRESETS[config] if isinstance(config, str) and config in PRESETS else config
    if not isinstance(cfg, DemoConfig):
        raise ValueError(f"run_demo: config must be one of {', '.join(PRESETS)} or a DemoConfig, got {config!r}")
    parts = tuple(parts or PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"run_demo: parts must be among {', '.join(map(repr, PARTS))}, got {parts!r}")
    device = check_device("run_demo: device", device)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    models_dir = os.path.join(os.fspath(out), "models")
    os.makedirs(models_dir, exist_ok=True)
    stages = {}
    if "photoz" in parts:
        stages["photoz"] = run_photoz(cfg.photoz, seed=seed, device=device, progress=progress, models_dir=models_dir)
    if "morphology" in parts or "defenses" in parts:
        survey_stage = StageResult()  # its timing goes into the report with the parts'
        stages["survey"] = survey_stage
        survey = simulate_survey(survey_stage, cfg.morphology, seed, device)
    if "morphology" in parts:
        stages["morphology"] = run_morphology(cfg.morphology, seed=seed, device=device, progress=progress,
                                              models_dir=models_dir, survey=survey)
    if "defenses" in parts:
        morphology = stages.get("morphology")
        reuse = None if morphology is None else {"basic": morphology.models["baseline"],
                                                 "noisy": morphology.models["noisy"]}
        defenses = run_defenses(cfg.defenses, survey, seed=seed, device=device, progress=progress,
                                models_dir=models_dir, reuse=reuse)
        facts = seeds.combine_facts([defenses.facts], n_objects=fact_objects(defenses.facts))
        defenses.findings += defenses_findings(cfg.defenses, facts)
        defenses.headline += defenses_headline(cfg.defenses, facts)
        stages["defenses"] = defenses
    merged = _merged(stages.values())
    seconds = time.perf_counter() - start
    photoz = stages.get("photoz")
    config_json = {"preset": cfg.name, "seed": seed, "device": str(device), "parts": list(parts),
                   **json.loads(json.dumps(cfg.as_dict()))}
    paths = write_report(
        out, tables=merged.tables, figures=merged.figures, config=config_json,
        sky_sigma=None if photoz is None else photoz.sky_sigma, bands=None if photoz is None else PHOTOZ_BANDS,
        eps=merged.eps or None, timings=merged.timings,
        title=f"advrobust demo ({cfg.name} preset, seed {seed})", findings=merged.findings)
    return DemoResult(report=paths, headline=merged.headline, findings=merged.findings, facts=merged.facts,
                      timings=merged.timings, seconds=seconds)


def _merged(stages) -> StageResult:
    """The parts' tables, figures, headline lines, findings, facts, timings and strengths, in order."""
    merged = StageResult()
    for stage in stages:
        merged.tables += stage.tables
        merged.figures.update(stage.figures)
        merged.headline += stage.headline
        merged.findings += stage.findings
        merged.facts.update(stage.facts)
        merged.timings.update(stage.timings)
        merged.eps.update(stage.eps)
    return merged


def headline_table(result: DemoResult) -> str:
    """The ``headline`` of a :func:`run_demo` result as aligned plain-text lines (what, measured value)."""
    width = max(len(what) for what, _ in result["headline"])
    return "\n".join(f"  {what:<{width}}  {value}" for what, value in result["headline"])
