"""A connection with DuckDB's shape (`execute`, `fetchone`, `fetchall`) that runs each
statement on Spark after transpiling it, so the DuckDB engine's lineage and classification code
runs there unchanged; types and values converted on the way."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tokentrail.errors import UsageError
from tokentrail.scale.portable import (
    Untranslatable,
    delete_as_select,
    statement_kind,
    statements,
    table_name,
    transpile,
    update_as_select,
)

from .session import SparkQueryError, _why

# Types and values between DuckDB, Spark and Python


def spark_type(duck_type: str) -> str:
    """A DuckDB column type as a Spark SQL type."""
    t = duck_type.strip().upper()
    if t.endswith("[]"):
        return f"ARRAY<{spark_type(t[:-2])}>"
    base = {"VARCHAR": "STRING", "JSON": "STRING", "TEXT": "STRING", "BIGINT": "BIGINT",
            "INTEGER": "INT", "SMALLINT": "SMALLINT", "DOUBLE": "DOUBLE", "FLOAT": "FLOAT",
            "BOOLEAN": "BOOLEAN", "DATE": "DATE", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
            "TIMESTAMPTZ": "TIMESTAMP", "TIMESTAMP": "TIMESTAMP_NTZ", "INTERVAL": "INTERVAL DAY TO SECOND"}
    if t in base:
        return base[t]
    if t.startswith("DECIMAL"):
        return t
    raise UsageError(f"column type {duck_type} has no Spark mapping")


def duck_type(spark_data_type: Any) -> str:
    """A Spark DataType as a DuckDB column type."""
    from pyspark.sql import types as T

    t = spark_data_type
    if isinstance(t, T.ArrayType):
        return duck_type(t.elementType) + "[]"
    simple = [(T.StringType, "VARCHAR"), (T.LongType, "BIGINT"), (T.IntegerType, "INTEGER"),
              (T.ShortType, "SMALLINT"), (T.ByteType, "TINYINT"), (T.DoubleType, "DOUBLE"),
              (T.FloatType, "DOUBLE"), (T.DecimalType, "DOUBLE"), (T.BooleanType, "BOOLEAN"),
              (T.TimestampType, "TIMESTAMPTZ"), (T.DateType, "DATE"),
              (T.DayTimeIntervalType, "INTERVAL"), (T.NullType, "VARCHAR")]
    for cls, name in simple:
        if isinstance(t, cls):
            return name
    if hasattr(T, "TimestampNTZType") and isinstance(t, T.TimestampNTZType):
        return "TIMESTAMP"
    return "VARCHAR"


def python_value(value: Any) -> Any:
    """A value collected from Spark, as the DuckDB engine would have returned it: timestamps
    aware in UTC (PySpark gives naive local time; astimezone reads a naive value as local),
    decimals as floats, structs as dicts."""
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [python_value(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "asDict"):
        return tuple(python_value(v) for v in value)
    if hasattr(value, "asDict"):  # a struct (Row)
        return {k: python_value(v) for k, v in value.asDict().items()}
    return value


class SparkCursor:
    """What DuckDB's `execute()` returns, for the Python code around the pipeline's SQL."""

    def __init__(self, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(c, None, None, None, None, None, None) for c in columns]
        self._rows = rows
        self._at = 0

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._at >= len(self._rows):
            return None
        self._at += 1
        return self._rows[self._at - 1]

    def fetchall(self) -> list[tuple[Any, ...]]:
        rows, self._at = self._rows[self._at:], len(self._rows)
        return rows


@dataclass
class StepTiming:
    kind: str
    target: str | None
    seconds: float


class SparkConnection:
    """Runs DuckDB-dialect statements on Spark (see the module docstring, step 4).

    Tables are temporary views; a created or rebuilt table is persisted (memory and disk) and
    materialised at once, because later statements replace what it was computed from."""

    def __init__(self, spark: Any, on_step: Callable[[str], None] | None = None) -> None:
        self.spark = spark
        self.cached: dict[str, Any] = {}
        self.views: set[str] = set()
        self._schema: dict[str, dict[str, str]] | None = None
        self.timings: list[StepTiming] = []
        self.on_step = on_step

    # the DuckDB connection API the pipeline uses
    def execute(self, sql: str, parameters: Any = None) -> SparkCursor:
        if parameters:
            raise Untranslatable("a statement with parameters cannot run on Spark: "
                                 + sql.strip().splitlines()[0][:80])
        cursor = SparkCursor([], [])
        for tree in statements(sql):
            cursor = self._run(tree)
        return cursor

    sql = execute

    def _sql(self, query: Any) -> Any:
        try:
            text = transpile(query, "spark", schema=self.schema())
        except Untranslatable as exc:
            raise SparkQueryError(f"cannot run on Spark: {exc.reason}") from None
        try:
            return self.spark.sql(text)
        except Exception as exc:
            raise SparkQueryError(f"Spark refused a statement: {_why(exc)}") from None

    def schema(self) -> dict[str, dict[str, str]]:
        """Every registered view's columns and (DuckDB) types."""
        if self._schema is None:
            self._schema = {
                name: {f.name: duck_type(f.dataType) for f in self.spark.table(name).schema.fields}
                for name in sorted(self.views)}
        return self._schema

    def exists(self, name: str) -> bool:
        return bool(self.spark.catalog.tableExists(name))

    def _run(self, tree: Any) -> SparkCursor:
        kind = statement_kind(tree)
        start = time.perf_counter()
        target = None if kind in ("read", "other") else table_name(tree)
        if self.on_step and kind != "read":
            self.on_step(f"{kind} {target}")
        if kind == "read":
            df = self._sql(tree)
            rows = [tuple(python_value(v) for v in row) for row in df.collect()]
            return SparkCursor(df.columns, rows)
        if kind in ("table", "create") and tree.args.get("exists") and self.exists(target or ""):
            return SparkCursor([], [])
        if kind == "table":
            self.register(target or "", self._sql(tree.expression))
        elif kind == "create":
            cols = [(c.name, c.args["kind"].sql("duckdb")) for c in tree.this.expressions
                    if c.args.get("kind") is not None]
            self.register(target or "", self.empty(cols))
        elif kind == "update":
            columns = self.spark.table(target).columns
            self.register(target or "", self._sql(update_as_select(tree, columns)))
        elif kind == "delete":
            self.register(target or "", self._sql(delete_as_select(tree)))
        elif kind == "drop":
            old = self.cached.pop(target or "", None)
            self.spark.catalog.dropTempView(target)
            self.views.discard(target or "")
            self._schema = None
            if old is not None:
                old.unpersist()
        else:
            raise SparkQueryError(f"cannot run on Spark: {tree.sql('duckdb')[:80]}")
        self.timings.append(StepTiming(kind, target, time.perf_counter() - start))
        return SparkCursor([], [])

    def empty(self, columns: Iterable[tuple[str, str]]) -> Any:
        schema = ", ".join(f"`{c}` {spark_type(t)}" for c, t in columns)
        return self.spark.createDataFrame([], schema)

    def register(self, name: str, df: Any, *, persist: bool = True) -> Any:
        """`df` as the view `name`. persist: computed now and kept (memory, then disk) with its
        lineage cut (a local checkpoint), so later statements neither recompute it nor carry
        its whole plan: the classification's plan alone is large enough to exhaust the
        driver's memory when every rule re-analyses it."""
        if persist:
            try:
                df = df.localCheckpoint(eager=True)
            except Exception as exc:
                raise SparkQueryError(f"Spark failed building {name}: {_why(exc)}") from None
        old = self.cached.pop(name, None)
        df.createOrReplaceTempView(name)
        self.views.add(name)
        self._schema = None
        if persist:
            self.cached[name] = df
        if old is not None:
            old.unpersist()
        return df

    def release(self) -> None:
        """Unpersist and drop everything this connection registered."""
        for df in self.cached.values():
            df.unpersist()
        for name in self.views:
            self.spark.catalog.dropTempView(name)
        self.cached.clear()
        self.views.clear()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the Spark engine does not provide DuckDB's connection.{name}()")
