"""tokentrail's SQL on other engines: DuckDB SQL transpiled to Spark, Trino, BigQuery, Snowflake.

The lineage, classification and rule SQL is written in DuckDB's dialect, with the
DuckDB-only parts behind named macros (`tt_*`, sqlmacros.py and netmatch.py). To run it
elsewhere, each statement is:

1. **recorded** exactly as the DuckDB engine runs it: `build_lineage` and `classify` are called
   on an empty in-memory case through a connection that records every statement (so a step
   added to lineage.py is picked up without a change here), and each rule's SQL is taken as is;
   `SELECT * EXCLUDE (...)` is expanded to explicit columns there, with DuckDB naming them;
2. **parsed** with sqlglot (DuckDB dialect);
3. **inlined**: every call of a `tt_*` macro is replaced by the macro's body with its arguments
   substituted, repeatedly, so nothing DuckDB-only is left behind; the macro definitions are
   read at run time from sqlmacros.MACROS, netmatch.ALL_NET_MACROS and analyse.SETTING_MACRO;
4. **rewritten** where a DuckDB construct has no sqlglot translation (a small table of
   hand-written transforms below: list comprehensions, ordered list aggregates on Spark,
   `to_seconds`, `regexp_full_match`, `list_bool_and`, `UPDATE ... FROM`);
5. **transpiled** with sqlglot and parsed back in the target dialect. A statement that cannot be
   translated raises `Untranslatable` with the reason; `export` names it instead of printing it.

Nothing here imports click or rich; the Spark engine (scale/spark/) runs what this produces.

The package follows those steps: `pipeline` records the statements, `macros` parses and
inlines, `rewrites` holds the hand-written transforms, `transpile` produces the target SQL,
`bundle` assembles whole exports.
"""

from .bundle import Export, export, translate
from .macros import DIALECTS, MACRO_PREFIX, Untranslatable, inline_macros, macro_names
from .pipeline import (
    Step,
    Translation,
    is_temp,
    pipeline,
    policy_steps,
    statement_kind,
    statements,
    table_name,
)
from .rewrites import _generic, _post_order
from .transpile import delete_as_select, transpile, update_as_select

__all__ = [
    "DIALECTS", "MACRO_PREFIX", "Export", "Step", "Translation", "Untranslatable", "_generic",
    "_post_order", "delete_as_select", "export", "inline_macros", "is_temp", "macro_names",
    "pipeline", "policy_steps", "statement_kind", "statements", "table_name", "translate",
    "transpile", "update_as_select",
]
