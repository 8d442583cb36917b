"""Sources: find input files, recognise their format, compile mappings to DuckDB SQL."""
