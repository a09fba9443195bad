"""``python -m notes``: the same as the ``notes`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
