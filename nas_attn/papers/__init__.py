"""The source papers' tables beside ours (``nas-attn paper-tables``, ``docs/paper-tables.md``).

``figures`` holds the data (torch-free): every row of every table that prints params, FLOPs or accuracy, where
it is printed and the arch or module that expresses it; ``tables`` computes ours and formats the comparison.
"""

from nas_attn.papers.figures import BY_ID, FIGURES, NO_FIGURES, Figure, ModuleCase, Quantity

__all__ = ["BY_ID", "FIGURES", "NO_FIGURES", "Figure", "ModuleCase", "Quantity"]
