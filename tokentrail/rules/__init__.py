"""Detection rules: TOML metadata plus SQL over the case. Built-in rules and user rules
(`--rules DIR`) load and run the same way."""

from .model import Rule, load_rule, load_rules
from .runner import run_rules

__all__ = ["Rule", "load_rule", "load_rules", "run_rules"]
