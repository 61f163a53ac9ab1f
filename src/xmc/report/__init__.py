"""Evaluation reports: one self-contained HTML page comparing prediction files (``xmc report``).

:mod:`xmc.report.data` computes every figure's numbers with :mod:`xmc.metrics`;
:mod:`xmc.report.figures` draws them with matplotlib (Agg, SVG / PNG);
:mod:`xmc.report.render` fills the HTML template. matplotlib and jinja2 come with the
``report`` extra (``pip install 'xmc[report]'``).
"""

from .data import Run, report_data

__all__ = ["Run", "report_data"]
