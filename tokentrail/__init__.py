"""tokentrail: follow bearer tokens across logs and tell delegation from forwarding and theft.

The library never prints and never imports click or rich; `tokentrail.cli` is the thin layer
that does.
"""

from __future__ import annotations

__version__ = "0.1.0"

from tokentrail.case.store import Case  # noqa: E402


def open_case(path: str, **options: object) -> object:
    """A case for notebooks: DataFrames of findings, tokens, holders, events; trace(x).
    (Imported lazily: pandas is only loaded when asked for.)"""
    from .api import open_case as _open_case

    return _open_case(path, **options)  # type: ignore[arg-type]


__all__ = ["Case", "__version__", "open_case"]
