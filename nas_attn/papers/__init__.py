"""The source papers' parameter and FLOP figures beside ours (``nas-attn paper-tables``, ``docs/paper-tables.md``).

``figures`` holds the data (torch-free): every figure found, where it comes from and the arch or module that
expresses it; ``tables`` computes ours and formats the comparison.
"""

from nas_attn.papers.figures import FIGURES, UNAVAILABLE, Figure, ModuleCase, Quantity, Unavailable

__all__ = ["FIGURES", "UNAVAILABLE", "Figure", "ModuleCase", "Quantity", "Unavailable"]
