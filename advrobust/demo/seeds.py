"""The demo's numbers over several training seeds: merging per-seed tables, facts and stage results
into :class:`~advrobust.report.Spread` values, and the rule by which a finding claims an effect.

Rule (:func:`difference`): a difference ``a - b`` of two measured quantities is claimed only when it is
larger than twice its uncertainty ``u = sqrt(std_a^2 + std_b^2 + se_a^2 + se_b^2)``: the spread across
seeds (the luck of one training) and the test-sample error (binomial for fractions) together. With one
seed the spread across trainings is not measured, and :meth:`Difference.caveat` says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence

from advrobust.demo.stage import StageResult
from advrobust.report import Num, ReportTable, Spread

__all__ = ["Difference", "difference", "combine_facts", "combine_tables", "combine_stages", "facts_table",
           "EFFECT_SIGMAS", "ONE_MODEL"]

#: a difference is an effect when it exceeds this many standard deviations of the difference
EFFECT_SIGMAS = 2.0
#: what a table, finding or headline line computed on the first seed's models only says
ONE_MODEL = "one trained model"


@dataclass(frozen=True)
class Difference:
    """``a - b`` with its uncertainty.

    Attributes:
        value: ``mean(a) - mean(b)``.
        uncertainty: ``sqrt(std_a^2 + std_b^2 + se_a^2 + se_b^2)`` (spread across seeds and test-sample error).
        one_model: both rest on one trained model each (no spread across seeds measured).
        fmt: the format of ``value`` and ``uncertainty`` (``a``'s).
    """

    value: float
    uncertainty: float
    one_model: bool
    fmt: str = ".3g"

    @property
    def claimed(self) -> bool:
        """The difference is larger than :data:`EFFECT_SIGMAS` times its uncertainty (False if undefined)."""
        return math.isfinite(self.value) and abs(self.value) > EFFECT_SIGMAS * self.uncertainty

    def caveat(self) -> str:
        """``""``, or a clause saying that the spread across trainings was not measured."""
        return "; one trained model each: the spread across trainings is not measured" if self.one_model else ""

    def word(self, larger: str, smaller: str, unclear: str) -> str:
        """By the rule, with no numbers: ``larger`` when the difference is claimed and positive, ``smaller``
        when claimed and negative, else ``unclear``."""
        if not self.claimed:
            return unclear
        return larger if self.value > 0 else smaller

    def verdict(self, larger: str, smaller: str, unclear: str) -> str:
        """A clause by the rule: ``larger`` when the difference is claimed and positive, ``smaller`` when
        claimed and negative, else ``unclear`` (e.g. ``"the run cannot tell whether ..."``), followed by the
        difference and its uncertainty in parentheses."""
        if not math.isfinite(self.value):
            return f"{unclear} (not measured in every model)"
        numbers = f"difference {self.value:{self.fmt}}, uncertainty {self.uncertainty:{self.fmt}}"
        if self.claimed:
            return f"{self.word(larger, smaller, unclear)} ({numbers}{self.caveat()})"
        return (f"{unclear} ({numbers}: within {EFFECT_SIGMAS:g}x the uncertainty from the spread across seeds and "
                f"the test sample{self.caveat()})")


def difference(a: Spread, b: Spread) -> Difference:
    """The :class:`Difference` ``a - b`` of two quantities measured over the same seeds."""
    u = math.sqrt(a.std ** 2 + b.std ** 2 + a.sample_error ** 2 + b.sample_error ** 2)
    return Difference(a.mean - b.mean, u, a.seeds < 2 and b.seeds < 2, a.fmt)


def combine_facts(per_seed: Sequence[Mapping[str, float]], fmt: Optional[Mapping[str, str]] = None,
                  n_objects: Optional[Mapping[str, int]] = None) -> Dict[str, Spread]:
    """``{name: Spread}`` of facts measured once per seed (a fact missing in a seed counts as NaN there);
    a :class:`Num` fact brings its format, ``n_objects`` and ``error`` (:meth:`Spread.of_nums`).

    Args:
        per_seed: one ``{name: value}`` per seed.
        fmt: ``{name: format}`` for plain float facts (default ``".3g"``).
        n_objects: ``{name: test objects}`` for plain float facts that are fractions of objects.
    """
    fmt, n_objects = dict(fmt or {}), dict(n_objects or {})
    names = list(dict.fromkeys(k for facts in per_seed for k in facts))
    return {name: Spread.of_nums([facts.get(name, float("nan")) for facts in per_seed], fmt.get(name, ""),
                                 n_objects.get(name, 0)) for name in names}


def combine_tables(per_seed: Sequence[Sequence[ReportTable]]) -> list:
    """Merge the tables each seed produced, cell by cell: numbers become :class:`Spread` values
    (a :class:`Num` keeps its format, a plain float an accuracy's ``%`` in a percent table), a photo-z
    dict a dict of them; text must be the same in every seed (it is a label), else the cells are
    joined with ``" | "``. A table only the first seed made is kept as it is, its title marked.

    Args:
        per_seed: the tables of each seed, the same titles in the same order (the first seed may have more).

    Returns:
        the merged tables, in the first seed's order.
    """
    if len(per_seed) == 1:
        return list(per_seed[0])
    by_title = [{t.title: t for t in tables} for tables in per_seed]
    merged = []
    for table in per_seed[0]:
        twins = [tables.get(table.title) for tables in by_title]
        if any(t is None for t in twins[1:]):
            merged.append(_first_seed_only(table))
            continue
        rows = {label: {col: _cell([t.rows.get(label, {}).get(col) for t in twins], table.percent)
                        for col in cells} for label, cells in table.rows.items()}
        merged.append(ReportTable(table.title, rows=rows, columns=table.columns, paper=table.paper,
                                  paper_source=table.paper_source, percent=table.percent,
                                  note=(table.note + f" Mean ± standard deviation over {len(twins)} training "
                                        "seeds.").strip()))
    return merged


def _first_seed_only(table: ReportTable) -> ReportTable:
    return ReportTable(f"{table.title} ({ONE_MODEL}: the first seed)", rows=table.rows, columns=table.columns,
                       paper=table.paper, paper_source=table.paper_source, percent=table.percent, note=table.note)


def _cell(values: list, percent: bool):
    """One merged cell from its value in every seed."""
    first = values[0]
    if first is None or isinstance(first, str):
        texts = list(dict.fromkeys("-" if v is None else str(v) for v in values))
        return first if len(texts) == 1 else " | ".join(texts)
    if isinstance(first, Mapping):
        return {k: _cell([v.get(k) if isinstance(v, Mapping) else None for v in values], percent) for k in first}
    fmt = "" if isinstance(first, Num) else (".2%" if percent else ".4g")
    return Spread.of_nums([float("nan") if v is None else v for v in values], fmt)


def combine_stages(per_seed: Sequence[StageResult], seeds: Sequence[int]) -> StageResult:
    """One part's :class:`StageResult` of every training seed merged: tables by :func:`combine_tables`,
    facts by :func:`combine_facts` (``facts`` then holds :class:`Spread` values), the stage timings of
    every seed (a later seed's stages named ``"... [seed s]"``); figures, strengths, sky sigma, models,
    headline lines and findings from the first seed (the one-model stages run there only; with several
    seeds their findings and headline lines say so). The part's findings and headline on the merged
    facts are the caller's to add.

    Args:
        per_seed: the part's result for each seed, in seed order.
        seeds: the training seeds, as many as ``per_seed``.
    """
    if len(per_seed) != len(seeds) or not per_seed:
        raise ValueError(f"combine_stages: {len(per_seed)} results for {len(seeds)} seeds")
    first = per_seed[0]
    several = len(seeds) > 1
    mark = f" ({ONE_MODEL}: seed {seeds[0]})" if several else ""
    merged = StageResult(tables=combine_tables([r.tables for r in per_seed]), figures=dict(first.figures),
                         headline=[(f"{what}{mark}", value) for what, value in first.headline],
                         findings=[f"{f[:-1] if f.endswith('.') else f}{mark}." for f in first.findings],
                         facts=combine_facts([r.facts for r in per_seed]), sky_sigma=first.sky_sigma,
                         eps=dict(first.eps), models=dict(first.models))
    for seed, result in zip(seeds, per_seed):
        merged.timings.update({(k if seed == seeds[0] else f"{k} [seed {seed}]"): v for k, v in result.timings.items()})
    return merged


def facts_table(part: str, facts: Mapping[str, Spread], seeds: Sequence[int]) -> ReportTable:
    """The appendix table of one part: every fact's value in each training seed and their mean ± std."""
    rows = {name: {**{f"seed {s}": Num(v, spread.fmt) for s, v in zip(seeds, spread.values)},
                   "mean ± std": spread} for name, spread in facts.items()}
    return ReportTable(
        f"Appendix: {part} per training seed", rows=rows, percent=False,
        note=(f"Every measured fact of the {part} part, one column per training seed (the simulated data are the "
              "same in every seed; the seed sets the initial weights, the sample order and the attacks' random "
              "draws). '-': not measured in that seed (stages run on the first seed's models only, or a statistic "
              "of no successes)."))
