"""Writing the robustness report (Markdown and self-contained HTML).

Layout of ``out_dir``: ``report.md`` (figures linked as ``figures/<name>.png``, with the PDF
next to it), ``report.html`` (the same content, figures inlined as base64 PNG: no file or network
request when opened) and ``figures/``. Every file is written through
:func:`advrobust.atomic.atomic_path`.

Tables follow the papers (Campagne 2021 Tables 1-3; Ciprijanovic et al. 2022 Tables 2-5; the
robust-models report Table 1): rows are models and defenses, columns natural, FGSM, PGD-inf,
PGD-2, one-pixel, Y1 noise; cells an accuracy or a photo-z triple bias / sigma_MAD / eta. Values
quoted from a paper sit in their own columns, labelled with the paper.
"""
from __future__ import annotations

import base64
import html
import json
import os
import platform
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from matplotlib.figure import Figure

from advrobust.atomic import atomic_path
from advrobust.machine import cpu_model
from advrobust.report.cells import Num, Spread
from advrobust.plots.base import save_figure

__all__ = ["ReportTable", "write_report", "environment_info", "format_cell"]

Cell = Union[None, float, int, str, Num, Spread, Mapping[str, Union[float, Spread]]]


def format_cell(cell: Cell, *, percent: bool = True) -> str:
    """A cell as text: a number (an accuracy: ``percent`` shows it as %), a :class:`Num` in its own
    format, a :class:`Spread` as ``mean ± spread`` in its format, a photo-z dict as
    ``bias / sigma_MAD / eta`` (eta in %; its values numbers or :class:`Spread`), a dict of exactly
    ``sigma_mad`` and ``eta`` (:class:`Num` or :class:`Spread`) as ``sigma_MAD / eta`` in their own
    formats, a string as is, None as ``-``."""
    if cell is None:
        return "-"
    if isinstance(cell, (str, Num, Spread)):
        return str(cell)
    if isinstance(cell, Mapping):
        if set(cell) == {"sigma_mad", "eta"}:
            return f"{cell['sigma_mad']} / {cell['eta']}"
        if {"bias", "sigma_mad", "eta"} <= set(cell):
            return f"{cell['bias']:.2e} / {cell['sigma_mad']:.2e} / {cell['eta']:.1%}"
        return ", ".join(f"{k}={format_cell(v, percent=False)}" for k, v in cell.items())
    v = float(cell)
    if percent:
        return f"{100 * v:.2f}%"
    return f"{v:.4g}"


@dataclass
class ReportTable:
    """One table of the report.

    Attributes:
        title: caption, e.g. ``"Accuracy under attack (cf. robust-models report, Table 1)"``.
        rows: ``{row label (model or defense): {column: cell}}``; cells as :func:`format_cell` takes.
        columns: column order (default: every column of ``rows``, in first-seen order).
        paper: values quoted from a paper, ``{column: {row label: cell}}``; rendered as extra
            columns named ``"<column> [<paper_source>]"``.
        paper_source: the paper (and table) the quoted values come from; required with ``paper``.
        percent: numbers are fractions shown as % (accuracies); False shows them as they are.
        note: a sentence under the table (units, what the cells are).
    """

    title: str
    rows: Mapping[str, Mapping[str, Cell]]
    columns: Optional[Sequence[str]] = None
    paper: Mapping[str, Mapping[str, Cell]] = field(default_factory=dict)
    paper_source: str = ""
    percent: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if self.paper and not self.paper_source:
            raise ValueError(f"ReportTable {self.title!r}: paper values need paper_source (the paper and table)")

    def header_and_body(self) -> tuple:
        """``(header, body)``: the column labels and the rows of formatted cells (first cell: row label)."""
        cols = list(self.columns) if self.columns is not None else list(
            dict.fromkeys(c for r in self.rows.values() for c in r))
        labels = list(self.rows) + [r for col in self.paper.values() for r in col if r not in self.rows]
        labels = list(dict.fromkeys(labels))
        header = [""] + cols + [f"{c} [{self.paper_source}]" for c in self.paper]
        body = []
        for label in labels:
            ours = self.rows.get(label, {})
            body.append([label] + [format_cell(ours.get(c), percent=self.percent) for c in cols]
                        + [format_cell(self.paper[c].get(label), percent=self.percent) for c in self.paper])
        return header, body


def environment_info() -> Dict[str, str]:
    """What a run's numbers depend on besides its configuration and seeds: the versions of the package,
    torch, Python and NumPy, the platform, the device, the CPU and the instruction set torch's CPU kernels
    use, and torch's CPU thread count. Floating-point sums are ordered by the thread count and by the
    kernels' vector width: another thread count or another CPU generation trains different models."""
    import advrobust
    if torch.cuda.is_available():
        device = f"CUDA {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    else:
        device = f"CPU, {os.cpu_count()} logical cores"
    return {"advrobust": advrobust.__version__, "torch": torch.__version__, "python": sys.version.split()[0],
            "numpy": np.__version__, "platform": platform.platform(), "device": device, "CPU": cpu_model(),
            "torch CPU kernels": torch.backends.cpu.get_cpu_capability(),
            "torch CPU threads": str(torch.get_num_threads())}


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "figure"


def _eps_rows(eps: Mapping[str, Any], sky_sigma: Optional[np.ndarray], bands: Sequence[str]) -> tuple:
    header = ["attack", "eps [image units]"] + [f"eps / sigma_sky({b})" for b in bands]
    body = []
    for name, e in eps.items():
        e_arr = np.atleast_1d(np.asarray(e, dtype=np.float64))
        row = [name, ", ".join(f"{v:.4g}" for v in e_arr)]
        if sky_sigma is not None:
            per_band = e_arr if e_arr.size == sky_sigma.size else np.full(sky_sigma.size, e_arr[0])
            row += [f"{v:.3g}" for v in per_band / sky_sigma]
        body.append(row)
    return header, body


def _md(text) -> str:
    """Text for ``report.md``: HTML markup in model names, row labels and captions escaped (as in
    ``report.html``), so a name like ``<img src=x onerror=...>`` is shown, never rendered."""
    return html.escape(str(text), quote=False)


def _md_table(header, body) -> str:
    esc = (lambda s: _md(s).replace("|", "\\|"))
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def _html_table(header, body) -> str:
    h = "".join(f"<th>{html.escape(str(c))}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{rows}</tbody></table>"


_CSS = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
        "pre{background:#f4f4f4;padding:0.8em;overflow-x:auto}")


class _Document:
    """The report as Markdown lines and HTML fragments, built side by side."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.md = [f"# {_md(title)}", ""]
        self.html = [f"<h1>{html.escape(title)}</h1>"]

    def section(self, name: str) -> None:
        self.md.extend([f"## {_md(name)}", ""])
        self.html.append(f"<h2>{html.escape(name)}</h2>")

    def bullets(self, items: Sequence[str]) -> None:
        self.md.extend([f"- {_md(item)}" for item in items] + [""])
        self.html.append("<ul>" + "".join(f"<li>{html.escape(item)}</li>" for item in items) + "</ul>")

    def table(self, header, rows, caption: str = "", note: str = "") -> None:
        if caption:
            self.md.extend([f"**{_md(caption)}**", ""])
            self.html.append(f"<p><b>{html.escape(caption)}</b></p>")
        self.md.extend([_md_table(header, rows), ""])
        self.html.append(_html_table(header, rows))
        if note:
            self.md.extend([_md(note), ""])
            self.html.append(f"<p>{html.escape(note)}</p>")

    def figure(self, caption: str, stem: str) -> None:
        """The PNG ``stem + ".png"`` linked (Markdown, with the PDF when there is one) and inlined (HTML)."""
        rel = f"figures/{os.path.basename(stem)}"
        link = f" ([PDF]({rel}.pdf))" if os.path.isfile(stem + ".pdf") else ""
        alt = _md(caption).replace("[", "\\[").replace("]", "\\]")
        self.md.extend([f"![{alt}]({rel}.png)", "", f"*{_md(caption)}*{link}", ""])
        with open(stem + ".png", "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        self.html.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def code(self, text: str, language: str) -> None:
        fence = "`" * max(3, 1 + max((len(run) for run in re.findall("`+", text)), default=0))  # text cannot close it
        self.md.extend([f"{fence}{language}", text, fence, ""])
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def write(self, out_dir: str) -> tuple:
        """Write ``report.md`` and ``report.html`` (atomically); return their paths."""
        md_path, html_path = os.path.join(out_dir, "report.md"), os.path.join(out_dir, "report.html")
        with atomic_path(md_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(self.md))
        page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
                f"<style>{_CSS}</style></head><body>{''.join(self.html)}</body></html>")
        with atomic_path(html_path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
        return md_path, html_path


def _checked_sky(sky_sigma, bands: Optional[Sequence[str]]) -> tuple:
    """``(sky, bands)``: ``sky_sigma`` as a float64 (C,) array of positive values (or None) and one
    band name per value (default ``band 0..``)."""
    sky = None
    if sky_sigma is not None:
        sky = np.atleast_1d(np.asarray(torch.as_tensor(sky_sigma).double().cpu(), dtype=np.float64))
        if sky.ndim != 1 or not np.all(sky > 0):
            raise ValueError(f"write_report: sky_sigma must be a (C,) array of positive values, got {sky}")
    n_bands = sky.size if sky is not None else 0
    bands = list(bands) if bands is not None else [f"band {i}" for i in range(n_bands)]
    if sky is not None and len(bands) != n_bands:
        raise ValueError(f"write_report: {len(bands)} band names for {n_bands} sky_sigma values")
    return sky, bands


def _strengths(doc: _Document, eps: Mapping[str, Any], sky: Optional[np.ndarray], bands: Sequence[str],
               image_unit: str, sky_method: str = "") -> None:
    """The "Attack strengths" section: eps in image units and in sky sigmas of each band."""
    doc.section("Attack strengths")
    note = (f"eps in image units ({image_unit}) and as a multiple of each band's sky-noise sigma"
            + (": " + ", ".join(f"{b} {s:.3g}" for b, s in zip(bands, sky)) if sky is not None else
               " (no sky sigma given)") + "." + (f" {sky_method}." if sky_method and sky is not None else ""))
    doc.table(*_eps_rows(eps, sky, bands), note=note)


def _figure_files(caption: str, fig: Union[Figure, str, os.PathLike], fig_dir: str, name: str) -> tuple:
    """``(stem, written paths)``: a Figure saved as ``figures/<name>.png`` and ``.pdf``, or a PNG file copied."""
    stem = os.path.join(fig_dir, name)
    if isinstance(fig, Figure):
        return stem, save_figure(fig, stem)
    src = os.fspath(fig)
    if not src.lower().endswith(".png") or not os.path.isfile(src):
        raise ValueError(f"write_report: figure {caption!r} must be a Figure or a PNG file, got {src!r}")
    with open(src, "rb") as f, atomic_path(stem + ".png") as tmp, open(tmp, "wb") as g:
        g.write(f.read())
    return stem, [stem + ".png"]


def _figures(doc: _Document, figures: Mapping[str, Union[Figure, str, os.PathLike]], fig_dir: str) -> list:
    """The "Figures" section; returns the files written."""
    doc.section("Figures")
    written, names = [], set()
    for caption, fig in figures.items():
        name, k = _slug(caption), 1
        while name.lower() in names:  # captions with the same slug get their own files
            k += 1
            name = f"{_slug(caption)}_{k}"
        names.add(name.lower())
        stem, files = _figure_files(caption, fig, fig_dir, name)
        written += files
        doc.figure(caption, stem)
    return written


def write_report(out_dir: Union[str, os.PathLike], *, tables: Sequence[ReportTable] = (),
                 figures: Mapping[str, Union[Figure, str, os.PathLike]] = None,
                 config: Optional[Mapping[str, Any]] = None, sky_sigma=None,
                 bands: Optional[Sequence[str]] = None, eps: Optional[Mapping[str, Any]] = None,
                 timings: Optional[Mapping[str, float]] = None, image_unit: str = "nanomaggies",
                 title: str = "advrobust robustness report", findings: Sequence[str] = (),
                 sky_method: str = "") -> Dict[str, Any]:
    """Write ``report.md``, ``report.html`` and ``figures/`` into ``out_dir``.

    Args:
        out_dir: the report folder (created).
        tables: the result tables (:class:`ReportTable`).
        figures: ``{caption: Figure or path of a PNG}``; a Figure is saved as PNG and PDF.
        config: the run's configuration (JSON-serialisable; shown as JSON).
        sky_sigma: ``(C,)`` sky-noise sigma per band, in image units (from the survey's sky model).
        bands: band names (default ``band 0..``), one per ``sky_sigma`` value.
        eps: ``{attack: eps}`` attack strengths in image units (a number or one per band); stated
            in image units and as multiples of each band's sky sigma.
        timings: ``{stage: wall seconds}``.
        image_unit: the images' unit (named in the eps table); the default is that of the simulated
            surveys: a caller with other data passes theirs (e.g. ``"image units"``).
        title: the report's heading.
        findings: sentences stating what the run measured (a bulleted "Findings" section first);
            write them from the measured numbers, never by hand.
        sky_method: one line saying how ``sky_sigma`` was measured (e.g.
            :data:`advrobust.data.sky.SKY_METHOD`), stated under the strengths.

    Returns:
        ``{"markdown": path, "html": path, "figures": [png and pdf paths]}``.

    Raises:
        ValueError: sky_sigma not a positive 1-D array, bands of the wrong length, a figure path
            that is not a PNG file.
    """
    out_dir = os.fspath(out_dir)
    fig_dir = os.path.join(out_dir, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    sky, bands = _checked_sky(sky_sigma, bands)
    doc = _Document(title)
    if findings:
        doc.section("Findings (measured in this run)")
        doc.bullets(findings)
    if tables:
        doc.section("Results")
        for t in tables:
            header, rows = t.header_and_body()
            doc.table(header, rows, t.title, t.note)
    if eps:
        _strengths(doc, eps, sky, bands, image_unit, sky_method)
    written = _figures(doc, figures, fig_dir) if figures else []
    doc.section("Configuration")
    doc.code(json.dumps(dict(config or {}), indent=2, sort_keys=True, default=str), "json")
    doc.section("Environment")
    doc.table(["", "version"], [[k, v] for k, v in environment_info().items()])
    if timings:
        doc.section("Wall time")
        doc.table(["stage", "seconds"], [[k, f"{float(v):.2f}"] for k, v in timings.items()]
                  + [["total", f"{sum(float(v) for v in timings.values()):.2f}"]])
    md_path, html_path = doc.write(out_dir)
    return {"markdown": md_path, "html": html_path, "figures": written}
