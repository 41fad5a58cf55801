"""The source papers' parameter / FLOP figures beside ours: the same as ``nas-attn paper-tables``.

    python scripts/paper_tables.py [--format text|markdown|json] [--paper ULSAM]

``docs/paper-tables.md`` holds the markdown output (a test checks that it is current).
"""

from __future__ import annotations

import sys

from nas_attn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["paper-tables", *sys.argv[1:]]))
