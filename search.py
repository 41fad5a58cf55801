#!/usr/bin/env python
"""Entry point: ``python search.py --space mobilenetv2_ulsam`` (see ``--help``)."""

import sys

from nas_attn.search import main

if __name__ == "__main__":
    sys.exit(main())
