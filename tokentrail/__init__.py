"""tokentrail: follow bearer tokens across logs and tell delegation from forwarding and theft.

The library never prints and never imports click or rich; `tokentrail.cli` is the thin layer
that does.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .case import Case  # noqa: E402

__all__ = ["Case", "__version__"]
