"""The Pareto dashboard: one self-contained HTML page (plotly) per search, or several runs overlaid."""

from nas_attn.dashboard.page import build_page
from nas_attn.dashboard.rundata import RunData, load_run

__all__ = ["RunData", "build_page", "load_run"]
