"""The robustness report: a folder with ``report.md`` and a self-contained ``report.html``.

:func:`write_report` takes the tables (:class:`ReportTable`, e.g. from
:meth:`advrobust.evaluate.GridResult.cells`), the figures (:mod:`advrobust.plots`), the
configuration, the per-band sky noise and the attack strengths, and the wall time of each stage.
Photo-z p.d.f.s under attack, in the terms of LSST DESC's RAIL: :mod:`advrobust.report.pdf_under_attack`.
"""
from advrobust.report.cells import Num, Spread
from advrobust.report.pdf_under_attack import PdfUnderAttack, pdf_figures, pdf_tables, pdf_vs_point
from advrobust.report.write import ReportTable, environment_info, format_cell, write_report

__all__ = ["Num", "Spread", "ReportTable", "write_report", "environment_info", "format_cell", "PdfUnderAttack", "pdf_tables",
           "pdf_figures", "pdf_vs_point"]
