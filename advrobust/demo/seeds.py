"""The demo's numbers over several training seeds: merging per-seed tables and facts into
:class:`~advrobust.report.Spread` values, and the rule by which a finding claims an effect.

Rule (:func:`difference`): a difference ``a - b`` of two measured quantities is claimed only when it is
larger than twice its uncertainty ``u = sqrt(std_a^2 + std_b^2 + se_a^2 + se_b^2)``: the spread across
seeds (the luck of one training) and the binomial error of the test sample together. With one seed
the spread across trainings is not measured, and :attr:`Difference.one_model` says so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Mapping, Sequence

from advrobust.report import Num, ReportTable, Spread

__all__ = ["Difference", "difference", "combine_facts", "combine_tables", "EFFECT_SIGMAS"]

#: a difference is an effect when it exceeds this many standard deviations of the difference
EFFECT_SIGMAS = 2.0


@dataclass(frozen=True)
class Difference:
    """``a - b`` with its uncertainty.

    Attributes:
        value: ``mean(a) - mean(b)``.
        uncertainty: ``sqrt(std_a^2 + std_b^2 + se_a^2 + se_b^2)`` (spread across seeds and test-sample error).
        one_model: both rest on one trained model each (no spread across seeds measured).
    """

    value: float
    uncertainty: float
    one_model: bool

    @property
    def claimed(self) -> bool:
        """The difference is larger than :data:`EFFECT_SIGMAS` times its uncertainty (False if undefined)."""
        return math.isfinite(self.value) and abs(self.value) > EFFECT_SIGMAS * self.uncertainty

    def caveat(self) -> str:
        """``""``, or a clause saying that the spread across trainings was not measured."""
        return " (one trained model each: the spread across trainings is not measured)" if self.one_model else ""


def difference(a: Spread, b: Spread) -> Difference:
    """The :class:`Difference` ``a - b`` of two quantities measured over the same seeds."""
    u = math.sqrt(a.std ** 2 + b.std ** 2 + a.sample_error ** 2 + b.sample_error ** 2)
    return Difference(a.mean - b.mean, u, a.seeds < 2 and b.seeds < 2)


def combine_facts(per_seed: Sequence[Mapping[str, float]], fmt: Mapping[str, str] = None,
                  n_objects: Mapping[str, int] = None) -> Dict[str, Spread]:
    """``{name: Spread}`` of facts measured once per seed (a fact missing in a seed counts as NaN there).

    Args:
        per_seed: one ``{name: value}`` per seed.
        fmt: ``{name: format}`` (default ``".3g"``; a :class:`Num` value brings its own).
        n_objects: ``{name: test objects}`` for facts that are fractions of objects.
    """
    fmt, n_objects = dict(fmt or {}), dict(n_objects or {})
    names = list(dict.fromkeys(k for facts in per_seed for k in facts))
    out = {}
    for name in names:
        values = [facts.get(name, float("nan")) for facts in per_seed]
        own = next((v.fmt for v in values if isinstance(v, Num)), None)
        out[name] = Spread.of(values, fmt.get(name, own or ".3g"), n_objects.get(name, 0))
    return out


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
    return ReportTable(f"{table.title} (one trained model: the first seed)", rows=table.rows, columns=table.columns,
                       paper=table.paper, paper_source=table.paper_source, percent=table.percent, note=table.note)


def _cell(values: list, percent: bool):
    """One merged cell from its value in every seed."""
    first = values[0]
    if first is None or isinstance(first, str):
        texts = list(dict.fromkeys("-" if v is None else str(v) for v in values))
        return first if len(texts) == 1 else " | ".join(texts)
    if isinstance(first, Mapping):
        return {k: _cell([v.get(k) if isinstance(v, Mapping) else None for v in values], percent) for k in first}
    fmt = first.fmt if isinstance(first, Num) else (".2%" if percent else ".4g")
    return Spread.of([float("nan") if v is None else v for v in values], fmt)
