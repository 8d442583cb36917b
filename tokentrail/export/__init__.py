"""Exports of a scan: SARIF 2.1.0, OCSF Detection Findings, and a directory of CSV files.

Plain library code (no click, no rich): each function takes findings (and, for CSV, the case
connection) and returns data or writes files; the CLI decides where output goes.
"""

from .csvdir import CSV_FILES, write_csv_dir
from .ocsf import ocsf_findings
from .sarif import sarif_log

__all__ = ["CSV_FILES", "ocsf_findings", "sarif_log", "write_csv_dir"]
