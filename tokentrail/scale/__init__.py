"""Running a case beyond one DuckDB file: the Parquet lake, portable SQL and the Spark engine.

The same SQL the DuckDB engine runs is transpiled (portable/) so other engines build findings
with the same Python code, and finding ids stay identical across engines.
"""

ENGINES = ("duckdb", "spark")
