"""Engines other than DuckDB that run tokentrail's scan (lineage, classification, rules).

Each takes the same SQL (tokentrail/portable.py transpiles it) and builds findings with the
same Python code as the DuckDB engine, so finding ids are identical.
"""

ENGINES = ("duckdb", "spark")
