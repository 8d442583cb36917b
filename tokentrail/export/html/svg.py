"""The one shape every chart hands the template: numbers computed in Python, labels placed by
the template (so no log value is ever concatenated into SVG)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Chart:
    """Geometry for the template: every number is computed here, every label placed there."""
    width: int
    height: int
    items: list[dict[str, Any]] = field(default_factory=list)


def fmt(x: float) -> str:
    return f"{x:.1f}"
