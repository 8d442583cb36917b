"""The scan on Spark: lineage, classification and the rules over a Parquet lake.

Flow (`scan_lake`):

1. a SparkSession (`local[*]` by default, or a cluster's master URL);
2. the lake's `events`, `sources` and `rejects` registered as temporary views over its Parquet
   files (Hive partitions discovered, the case's column order and types restored);
3. the policy installed in a scratch DuckDB (Policy.install, as the DuckDB engine does) and its
   `policy_*` tables copied to Spark as views;
4. the DuckDB engine's own `build_lineage` and `classify` run against `SparkConnection`, which
   takes each statement they execute, transpiles it (portable/: macros inlined, sqlglot) and
   runs it on Spark: a query returns rows to the Python code around it, `CREATE TABLE ... AS`
   becomes a persisted DataFrame registered under that name, `UPDATE` / `DELETE` rebuild the
   view from a SELECT. A step added to lineage.py runs here unchanged;
5. every rule's query, transpiled, on Spark; its hits collected;
6. the hits, and just the rows they refer to (their tokens, (token, holder) pairs, evidence
   events, sources), staged in an in-memory DuckDB, where the DuckDB engine's own
   `run_rules` builds the findings: same ids (a hash of rule, token key and holder id), same
   details, same order.

pyspark is an optional extra (`pip install 'tokentrail[spark]'`) and needs Java 17+.

`session` starts Spark (and says how to install it when it is missing), `connection` is the
DuckDB-shaped connection that runs transpiled statements on Spark, `scan` is the flow above.
"""

from .connection import SparkConnection, SparkCursor, duck_type, python_value, spark_type
from .scan import (
                      SparkScan,
                      build_findings,
                      case_summary,
                      payload_json,
                      read_lake_manifest,
                      register_lake,
                      register_policy,
                      scan_lake,
)
from .session import (
                      DEFAULT_MASTER,
                      INSTALL_HINT,
                      SparkQueryError,
                      SparkUnavailable,
                      build_session,
                      java_runtime,
                      spark_available,
)

__all__ = [
    "DEFAULT_MASTER", "INSTALL_HINT", "SparkConnection", "SparkCursor", "SparkQueryError", "SparkScan",
    "SparkUnavailable", "build_findings", "build_session", "case_summary", "duck_type", "java_runtime",
    "payload_json", "python_value", "read_lake_manifest", "register_lake", "register_policy",
    "scan_lake", "spark_available", "spark_type",
]
