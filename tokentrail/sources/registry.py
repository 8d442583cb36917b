"""The built-in formats, loaded from the TOML files beside this module."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from ..errors import UsageError
from .mapping import Mapping, load_mapping

FORMATS_DIR = Path(__file__).parent / "formats"


@cache
def builtin_mappings() -> tuple[Mapping, ...]:
    return tuple(load_mapping(p, builtin=True) for p in sorted(FORMATS_DIR.glob("*.toml")))


def get_mapping(name: str) -> Mapping:
    for m in builtin_mappings():
        if m.name == name:
            return m
    names = ", ".join(m.name for m in builtin_mappings())
    raise UsageError(f"unknown format {name!r}; built-in formats: {names} "
                     "(or load your own with --mapping FILE)")


def formats_markdown() -> str:
    """The README's formats table, generated so it cannot drift from the mappings."""
    lines = ["| format | token id | holder evidence | issuance | cannot show |",
             "|---|---|---|---|---|"]
    for m in builtin_mappings():
        cells = [f"`{m.name}`"] + [m.provides.get(k, "").replace("|", "\\|")
                                   for k in ("token_id", "holder", "issuance", "limits")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
