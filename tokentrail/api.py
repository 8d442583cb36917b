"""A notebook-friendly view of a case: DataFrames for findings, tokens, holders and events.

    import tokentrail
    case = tokentrail.open_case("case.duckdb")
    case.findings().query("severity == 'critical'")
    case.trace("8e1d5c0a-31f4-4c52-9d0e-5b5f7c6e2a11")
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from tokentrail.case.store import Case
from tokentrail.provenance.policy import Policy, resolve_policy
from tokentrail.provenance.trace import resolve, trace
from tokentrail.rules.findings import Finding

from .analyse import analyse
from .errors import CaseError


class OpenCase:
    """Analysis is run once, lazily, the first time derived data is asked for."""

    def __init__(self, path: str, *, policy: Policy | str | None = None) -> None:
        if str(path) != ":memory:" and not os.path.exists(path):
            raise CaseError(f"no such case: {path}")
        self.case = Case(path)
        self._policy = policy if isinstance(policy, Policy) else resolve_policy(policy)
        self._findings: list[Finding] | None = None

    def close(self) -> None:
        self.case.close()

    def __enter__(self) -> OpenCase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _analysed(self) -> list[Finding]:
        if self._findings is None:
            self._findings = analyse(self.case.con, policy=self._policy).findings
        return self._findings

    def _df(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        return self.case.con.execute(sql, params or []).df()

    def findings(self) -> pd.DataFrame:
        self._analysed()
        return self._df("SELECT * FROM findings ORDER BY severity, rule, token_key")

    def tokens(self) -> pd.DataFrame:
        self._analysed()
        return self._df("SELECT * FROM tokens ORDER BY first_seen, token_key")

    def holders(self) -> pd.DataFrame:
        self._analysed()
        return self._df("SELECT * FROM token_holders ORDER BY token_key, first_seen")

    def events(self, token: str | None = None, holder: str | None = None,
               kind: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Events, optionally of one token (any id form), one holder or one kind."""
        where, params = [], []
        if token is not None:
            self._analysed()
            where.append("token_key = ?")
            params.append(resolve(self.case.con, token))
        if holder is not None:
            where.append("holder_id = ?")
            params.append(holder)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM v_timeline" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY ts, event_id" + (f" LIMIT {int(limit)}" if limit else "")
        return self._df(sql, params)

    def trace(self, token: str) -> dict[str, Any]:
        self._analysed()
        return trace(self.case.con, resolve(self.case.con, token))


def open_case(path: str, *, policy: Policy | str | None = None) -> OpenCase:
    """Open an existing case (CaseError "no such case" when there is none; nothing is created).
    Opening the same file again in one process (a notebook re-running a cell) works: both
    objects share DuckDB's open database."""
    return OpenCase(path, policy=policy)
