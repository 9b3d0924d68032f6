"""The robustness report: a folder with ``report.md`` and a self-contained ``report.html``.

:func:`write_report` takes the tables (:class:`ReportTable`, e.g. from
:meth:`advrobust.evaluate.GridResult.cells`), the figures (:mod:`advrobust.plots`), the
configuration, the per-band sky noise and the attack strengths, and the wall time of each stage.
"""
from advrobust.report.write import ReportTable, environment_info, format_cell, write_report

__all__ = ["ReportTable", "write_report", "environment_info", "format_cell"]
