"""``advrobust demo``: the main job on its embedded default data.

Simulates a small photo-z survey and a small morphology survey, trains the baselines and the
defended models, attacks them, and writes a report (``report.md``, ``report.html``, ``figures/``)
in which every number was measured in that run; values from the papers appear only in columns
labelled with the paper. :func:`run_demo` is the whole job; :mod:`advrobust.demo.config` has the
presets (``quick``, ``default``, ``paper``). Each model is trained once per training seed and every
number is reported as mean ± spread over them (:mod:`advrobust.demo.seeds`); the report records
what reproduces it exactly (seed, training seeds, torch's CPU thread count, device, versions).
"""
from __future__ import annotations

import json
import os
import random
import time
from typing import Mapping, Optional, Union

import numpy as np
import torch

from advrobust.checks import check_device
from advrobust.data import PHOTOZ_BANDS
from advrobust.demo import defenses, morphology, photoz
from advrobust.demo.config import PARTS, PRESETS, DemoConfig
from advrobust.demo.seeds import combine_stages, facts_table
from advrobust.demo.stage import StageResult
from advrobust.report import write_report

__all__ = ["run_demo", "DemoResult", "PRESETS", "DemoConfig", "PARTS"]

class DemoResult(dict):
    """``{"report": paths from write_report, "headline": [(what, measured)], "findings": [sentences], "facts": {...},
    "timings": {stage: s}, "seconds": total}``; ``facts`` are ``{name: Spread}``."""


def run_demo(config: Union[str, DemoConfig] = "default", *, out: Union[str, os.PathLike] = "advrobust-demo",
             seed: int = 0, seeds: Union[int, Mapping[str, int], None] = None,
             device: Union[str, torch.device] = "cpu",
             progress: bool = True, parts: Optional[tuple] = None) -> DemoResult:
    """Run the demo and write its report into ``out``.

    Each part simulates its data once (from ``seed``), then trains and measures its models once per
    training seed ``seed, seed + 1, ...`` (the part's ``seeds`` in the preset, or ``seeds``); every table
    number and fact is the mean ± standard deviation over them (:mod:`advrobust.demo.seeds`), an appendix
    gives the per-seed values, and the findings claim an effect only where it exceeds the spread across
    seeds and the test-sample error together. The expensive one-model stages (figures, certification)
    run on the first seed's models only and say so.

    Args:
        config: a preset name (``"quick"``, ``"default"``, ``"paper"``) or a :class:`DemoConfig`.
        out: the report folder (created; an earlier report there is replaced file by file, atomically);
            the trained models go to ``out/models/`` (safetensors, :func:`advrobust.models.load`): the first
            seed's under the plain names, a later seed's with ``_seed<s>`` before the suffix.
        seed: seeds the simulation and the first training seed (the weights, the sample order and every attack).
        seeds: training seeds of every part (an int), or of some parts (``{"defenses": 3}``: the others keep
            the preset's); default: each part's ``seeds`` in the preset.
        device: ``"cpu"`` or ``"cuda"`` (simulation runs on the CPU).
        progress: progress bars of the training loops.
        parts: ``("photoz", "morphology", "defenses")`` or a subset (default all); the defenses part reuses
            the morphology part's survey and, seed by seed, its basic and noisy models when both run.

    Returns:
        :class:`DemoResult`; its ``facts`` are :class:`~advrobust.report.Spread` values (one value per seed).

    Raises:
        ValueError: unknown preset or part (in ``parts`` or ``seeds``), a count of seeds < 1; ``cuda`` without
            a visible GPU.
    """
    cfg = PRESETS[config] if isinstance(config, str) and config in PRESETS else config
    if not isinstance(cfg, DemoConfig):
        raise ValueError(f"run_demo: config must be one of {', '.join(PRESETS)} or a DemoConfig, got {config!r}")
    parts = tuple(parts or PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"run_demo: parts must be among {', '.join(map(repr, PARTS))}, got {parts!r}")
    parts = tuple(p for p in PARTS if p in parts)  # the report's order, whatever order they were named in
    counts = _training_seed_counts(cfg, parts, seeds)
    device = check_device("run_demo: device", device)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    start = time.perf_counter()
    models_dir = os.path.join(os.fspath(out), "models")
    os.makedirs(models_dir, exist_ok=True)
    # per part: simulate(timing) -> data (once), run(data, training seed, index) -> StageResult (per seed),
    # findings and headline on the combined facts; a later part may reuse an earlier part's data
    # (surveys[part]) and its models of the same seed (per_seed[part][i].models)
    surveys, per_seed = {}, {}
    recipes = {
        "photoz": (lambda timing: photoz.simulate_survey(timing, cfg.photoz, seed, device),
                   lambda data, s, i: photoz.run_photoz(cfg.photoz, data, seed=s, device=device, progress=progress,
                                                        models_dir=models_dir, first=i == 0),
                   photoz.photoz_findings, photoz.photoz_headline),
        "morphology": (lambda timing: morphology.simulate_survey(timing, cfg.morphology, seed, device),
                       lambda data, s, i: morphology.run_morphology(
                           cfg.morphology, data, seed=s, device=device, progress=progress, models_dir=models_dir,
                           first=i == 0),
                       morphology.morphology_findings, morphology.morphology_headline),
        # the morphology survey, and the morphology part's basic and noisy models of the same seed when it ran
        "defenses": (lambda timing: surveys.get("morphology") or morphology.simulate_survey(
                         timing, cfg.morphology, seed, device),
                     lambda data, s, i: defenses.run_defenses(
                         cfg.defenses, data, seed=s, device=device, progress=progress, models_dir=models_dir,
                         reuse=per_seed["morphology"][i].models if i < len(per_seed.get("morphology", ())) else None,
                         first=i == 0),
                     defenses.defenses_findings, defenses.defenses_headline),
    }
    stages = {}
    for part in parts:
        simulate, run, findings, headline = recipes[part]
        timing = StageResult()
        data = surveys[part] = simulate(timing)
        train_seeds = list(range(seed, seed + counts[part]))
        per_seed[part] = [run(data, s, i) for i, s in enumerate(train_seeds)]
        stage = combine_stages(per_seed[part], train_seeds)
        stage.findings = findings(getattr(cfg, part), stage.facts) + stage.findings
        stage.headline = headline(getattr(cfg, part), stage.facts) + stage.headline
        stage.timings = {**timing.timings, **stage.timings}
        if counts[part] > 1:
            stage.tables.append(facts_table(part, stage.facts, train_seeds))
        stages[part] = stage
    merged = _merged(stages.values())
    one_model = [p for p in parts if counts[p] == 1]
    if one_model:
        merged.findings.append(
            f"The numbers of the {' and '.join(one_model)} part{'s' if len(one_model) > 1 else ''} rest on one trained "
            "model per method (one training seed): the spread across trainings is not measured there, and another "
            "seed or thread count trains different models (--seeds PART=N measures it); the errors quoted cover the "
            "test sample only.")
    seconds = time.perf_counter() - start
    first_photoz = stages.get("photoz")
    config_json = {"preset": cfg.name, "seed": seed, "training seeds": {p: list(range(seed, seed + counts[p]))
                                                                          for p in parts},
                   "torch threads": torch.get_num_threads(), "device": str(device), "parts": list(parts),
                   **json.loads(json.dumps(cfg.as_dict()))}
    paths = write_report(
        out, tables=merged.tables, figures=merged.figures, config=config_json,
        sky_sigma=None if first_photoz is None else first_photoz.sky_sigma,
        bands=None if first_photoz is None else PHOTOZ_BANDS, eps=merged.eps or None, timings=merged.timings,
        title=f"advrobust demo ({cfg.name} preset, seed {seed}, {_seed_counts_text(counts)})", findings=merged.findings)
    return DemoResult(report=paths, headline=merged.headline, findings=merged.findings, facts=merged.facts,
                      timings=merged.timings, seconds=seconds)


def _training_seed_counts(cfg: DemoConfig, parts: tuple, seeds) -> dict:
    """``{part: number of training seeds}`` of the parts that run: ``seeds`` (an int) for every part, or
    ``seeds[part]`` (a mapping) where given, else the preset's."""
    if seeds is None or isinstance(seeds, Mapping):
        given = dict(seeds or {})
        unknown = [p for p in given if p not in PARTS]
        if unknown:
            raise ValueError(f"run_demo: seeds names unknown part(s) {', '.join(map(repr, unknown))}; the parts are "
                             f"{', '.join(map(repr, PARTS))}")
    else:
        given = dict.fromkeys(parts, seeds)
    for part, n in given.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"run_demo: seeds must be whole numbers >= 1, got {n!r}"
                             + (f" for {part!r}" if isinstance(seeds, Mapping) else ""))
    return {p: given.get(p, getattr(cfg, p).seeds) for p in parts}


def _seed_counts_text(counts: dict) -> str:
    """``"1 training seed"`` or ``"photoz 1, morphology 3 training seeds"``."""
    if len(set(counts.values())) == 1:
        n = next(iter(counts.values()))
        return f"{n} training seed{'s' if n > 1 else ''}"
    return ", ".join(f"{p} {n}" for p, n in counts.items()) + " training seeds"


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
