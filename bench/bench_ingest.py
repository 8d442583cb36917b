"""Ingest benchmark: tokentrail vs a raw DuckDB read_json on the same Envoy gateway log.

    python3 bench/bench_ingest.py                  # 2,000,000 events, about 2.1 GB
    python3 bench/bench_ingest.py --events 1000000 # about 1 GB
    python3 bench/bench_ingest.py --events 200000  # a quick run

Generates (once, then reuses) a realistic Envoy JSON Lines gateway log in bench/data/
(git-ignored), then times, each in its own fresh subprocess and into a fresh file-backed
database:

  tokentrail  `python3 -m tokentrail ingest FILE --db CASE --quiet` (or the library call when
              the CLI is not available)
  baseline    DuckDB `CREATE TABLE t AS SELECT * FROM read_json(FILE,
              format='newline_delimited')`

and prints events, file size, both times, their ratio (target <= 1.5), tokentrail's peak RSS
(target <= 1024 MiB) and events/s. Both times are wall-clock times of the whole child
process (interpreter start, imports, and for tokentrail the file hash and sniffing too).
Peak RSS is each child's own ru_maxrss, read with os.wait4 (the per-child form of
getrusage(RUSAGE_CHILDREN)): RUSAGE_CHILDREN alone reports the largest of all children,
including the data generator.

This script never imports duckdb or tokentrail itself: the parent stays small, so nothing of
its memory is attributed to the measured children. A benchmark, not a test: it asserts
nothing and is not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DATA = HERE / "data"
DEFAULT_EVENTS = 2_000_000
RATIO_TARGET = 1.5
RSS_TARGET_MIB = 1024  # DESIGN.md's budget; the case's memory_limit now comes from the machine

# ---------------------------------------------------------------------------------------
# The generator: DuckDB builds every line as text and writes it with the CSV writer with
# quoting off (all values are plain ASCII without quotes or backslashes). Per-token and
# per-workload strings (claims, JWT, fingerprints, SPIFFE IDs) are computed once in small
# tables and joined to the N rows; every other value is a deterministic function of the row
# number (hash() with a salt). One thread keeps the join's output in row order, so the same
# N always gives the same file, in time order.
#
# Realism: T = N/16 tokens, each used in the 15 minutes after its issue time (so each is seen
# about 16 times), mostly by the workload it was issued to (3 replicas behind one SPIFFE ID,
# each with its own certificate); 10 % of tokens are shared with other workloads; 4 % belong
# to partners outside the mesh (no mTLS peer, X-Forwarded-For set); 20 % are delegated
# (RFC 8693 act claims), 10 % DPoP-bound (cnf.jkt, dpop_jkt and a fresh proof jti per
# request); 12 % of responses are errors, and 401s carry no verified claims; 3 % of lines
# log the raw Authorization JWT; a Lua filter adds token_fp on a quarter of them; health
# checks without a token; some "-" values where Envoy prints them.

B64URL = "rtrim(replace(replace(to_base64({x}), '+', '-'), '/', '_'), '=')"
HEX16 = "lpad(lower(to_hex({x})), 16, '0')"  # a UBIGINT as 16 lowercase hex digits

TOKENS_SQL = r"""
CREATE TEMP TABLE bench_tokens AS
WITH a AS (
  SELECT t, CAST(hash(t, 'owner') % {W} AS INTEGER) AS owner,
         CAST(hash(t, 'kind') % 100 AS INTEGER) AS tk, md5(CAST(t AS VARCHAR) || 'jti') AS jh,
         {START} + (t * 86400) // {T} AS iat
  FROM range({T}) r(t)
), b AS (
  SELECT *,
         CASE WHEN tk BETWEEN 4 AND 23 THEN 'act' WHEN tk BETWEEN 24 AND 33 THEN 'dpop'
              ELSE 'plain' END AS flavour,
         (['code-api', 'research-api', 'files-api', 'tasks-api', 'billing-api', 'search-api',
           'partner-api', 'artifacts', 'users-api', 'inventory-api'])[1 + owner % 10] AS api,
         (['agents', 'tools', 'apps', 'payments', 'data', 'ci'])[1 + owner % 6] AS ns,
         substr(jh, 1, 8) || '-' || substr(jh, 9, 4) || '-4' || substr(jh, 14, 3) || '-a'
           || substr(jh, 18, 3) || '-' || substr(jh, 21, 12) AS jti,
         'svc-' || owner AS azp,
         (['openid profile', 'repo:read repo:write', 'files:read', 'docs:read search',
           'orders:read orders:write', 'billing:read', 'tasks:write',
           'artifacts:write'])[1 + CAST(hash(t, 'sc') % 8 AS INTEGER)] AS scope
  FROM a
), c AS (
  SELECT *,
         CASE WHEN flavour = 'dpop' THEN {B64:unhex(sha256('jkt' || owner))} END AS jkt,
         'spiffe://acme.example/ns/' || ns || '/sa/svc-' || owner AS owner_spiffe
  FROM b
), d AS (
  SELECT *,
         CASE flavour
           WHEN 'act' THEN
             '{"act":{"act":{"sub":"spiffe://acme.example/ns/agents/sa/orchestrator"},"sub":"'
             || owner_spiffe || '"},"aud":["' || api || '","mcp-files"],"azp":"orchestrator",'
             || '"exp":' || (iat + 1800) || ',"iat":' || iat
             || ',"iss":"https://sso.acme.example/realms/acme","jti":"' || jti
             || '","scope":"' || scope || '","sub":"user-' || (t % 5000) || '"}'
           WHEN 'dpop' THEN
             '{"aud":"' || api || '","azp":"' || azp || '","cnf":{"jkt":"' || jkt
             || '"},"exp":' || (iat + 900) || ',"iat":' || iat
             || ',"iss":"https://sso.acme.example/realms/acme","jti":"' || jti
             || '","scope":"' || scope || '","sub":"service-account-' || azp
             || '","typ":"DPoP"}'
           ELSE
             '{"aud":"' || api || '","azp":"' || azp || '","exp":' || (iat + 3600)
             || ',"iat":' || iat || ',"iss":"https://sso.acme.example/realms/acme","jti":"'
             || jti || '","scope":"' || scope || '","sub":"user-' || (t % 5000) || '"}'
         END AS claims
  FROM c
)
SELECT t, owner, tk, flavour, api, claims,
       '"' || jkt || '"' AS jkt_q,
       '"' || {B64:unhex(sha256(jti || 'raw'))} || '"' AS token_fp_q,
       '"Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImJlbmNoIiwidHlwIjoiSldUIn0.'
         || {B64:encode(claims)} || '.' || {B64:unhex(sha256(jti) || md5(jti))} || '"'
         AS authorization_q,
       '"' || api || '.acme.example"' AS authority_q,
       '"outbound|8080||' || api || '.apps.svc.cluster.local"' AS cluster_q,
       '203.0.113.' || (t % 250 + 1) AS ext_ip
FROM d ORDER BY t
"""

HOLDERS_SQL = r"""
CREATE TEMP TABLE bench_holders AS
SELECT w * 3 + pod AS hk,
       '"' || sha256(spiffe || '#' || pod) || '"' AS fp_q,
       '"' || spiffe || '"' AS san_q,
       '10.' || (40 + w // 250) || '.' || (w % 250) || '.' || (10 + pod) AS ip
FROM (SELECT w, pod, 'spiffe://acme.example/ns/'
             || (['agents', 'tools', 'apps', 'payments', 'data', 'ci'])[1 + w % 6]
             || '/sa/svc-' || w AS spiffe
      FROM range({W}) a(w), range(3) b(pod))
ORDER BY hk
"""

LINES_SQL = r"""
COPY (
WITH base AS (
  SELECT i,
         {START}::BIGINT * 1000000 + (i * 86400000000) // {N}
           + CAST(hash(i, 'us') % 1000 AS BIGINT) AS ts_us,
         greatest(0, (i * {T}) // {N} - CAST(hash(i, 'tok') % {LIVE} AS BIGINT)) AS t,
         CAST(hash(i, 'who') % 1000 AS INTEGER) AS who,
         CAST(hash(i, 'st') % 1000 AS INTEGER) AS st,
         CAST(hash(i, 'm') % 100 AS INTEGER) AS m,
         CAST(hash(i, 'auth') % 1000 AS INTEGER) AS au,
         CAST(hash(i, 'pod') % 3 AS INTEGER) AS pod
  FROM range({N}) r(i)
), j AS (
  SELECT base.*, tok.* EXCLUDE (t),
         CASE WHEN who < 10 THEN 'none' WHEN tk < 4 THEN 'external'
              WHEN tk < 14 AND who < 300 THEN 'other' ELSE 'owner' END AS hkind,
         CASE WHEN tk BETWEEN 4 AND 13 AND who BETWEEN 10 AND 299
              THEN CAST(hash(base.t, 'oth', who % 3) % {W} AS INTEGER)
              ELSE owner END AS hw,
         CASE WHEN st < 880 THEN 200 WHEN st < 920 THEN 201 WHEN st < 935 THEN 204
              WHEN st < 955 THEN 401 WHEN st < 975 THEN 403 WHEN st < 990 THEN 404
              WHEN st < 995 THEN 500 ELSE 503 END AS code
  FROM base JOIN bench_tokens tok ON tok.t = base.t
), k AS (
  SELECT j.*, h.fp_q, h.san_q, h.ip,
         hkind IN ('owner', 'other') AS mesh,
         flavour = 'dpop' AND hkind <> 'none' AND code <> 401 AS dpop,
         {HEX:hash(i, 'r1')} || {HEX:hash(i, 'r2')} AS rid
  FROM j JOIN bench_holders h ON h.hk = j.hw * 3 + j.pod
)
SELECT concat(
  '{"authority":', authority_q,
  ',"authorization":', CASE WHEN hkind <> 'none' AND au < 30 THEN authorization_q
                           ELSE 'null' END,
  ',"downstream_peer_fingerprint_256":', CASE WHEN mesh THEN fp_q ELSE 'null' END,
  ',"downstream_peer_uri_san":', CASE WHEN mesh THEN san_q ELSE 'null' END,
  ',"downstream_remote_address":"', CASE WHEN mesh THEN ip WHEN hkind = 'external' THEN ext_ip
                                         ELSE '10.20.0.' || (5 + i % 3) END,
  ':', 32768 + hash(i, 'port') % 28000,
  '","dpop_jkt":', CASE WHEN dpop THEN jkt_q ELSE 'null' END,
  ',"dpop_proof_jti":', CASE WHEN dpop THEN '"' || {HEX:hash(i, 'p1')} || {HEX:hash(i, 'p2')}
                                            || '"' ELSE 'null' END,
  ',"jwt_payload":', CASE WHEN hkind <> 'none' AND code <> 401 THEN claims ELSE 'null' END,
  ',"method":"', (['GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'GET', 'POST', 'POST', 'PUT',
                   'PATCH', 'DELETE'])[1 + m % 12],
  '","path":"', CASE WHEN hkind = 'none' THEN '/healthz/ready'
    ELSE '/v1/' || (['repos', 'documents', 'objects', 'tasks', 'invoices', 'search', 'orders',
                     'artifacts', 'users', 'items'])[1 + owner % 10]
         || CASE WHEN m < 40 THEN '/' || (hash(i, 'id') % 100000)
                 WHEN m < 55 THEN '?limit=50&page=' || (hash(i, 'pg') % 20)
                 WHEN m < 70 THEN '/' || (hash(i, 'id') % 100000) || '/history'
                 ELSE '' END END,
  '","protocol":"', CASE WHEN mesh THEN 'HTTP/2' ELSE 'HTTP/1.1' END,
  '","request_id":"', substr(rid, 1, 8), '-', substr(rid, 9, 4), '-4', substr(rid, 14, 3),
  '-b', substr(rid, 18, 3), '-', substr(rid, 21, 12),
  '","response_code":', code,
  ',"response_flags":"', CASE code WHEN 503 THEN 'UF' ELSE '-' END,
  '","route_name":"', CASE WHEN m % 25 = 0 THEN '-' ELSE api END,
  '","start_time":"', strftime(make_timestamp(ts_us), '%Y-%m-%dT%H:%M:%S.%gZ'),
  '","token_fp":', CASE WHEN hkind <> 'none' AND au < 250 THEN token_fp_q ELSE 'null' END,
  ',"traceparent":"00-', {HEX:hash(t, i // 4, 'a')}, {HEX:hash(t, i // 4, 'b')}, '-',
  {HEX:hash(i, 's')}, '-01"',
  ',"upstream_cluster":', cluster_q,
  ',"upstream_host":"', CASE WHEN code IN (401, 403) THEN '-'
                             ELSE '10.60.' || (owner % 250) || '.' || (hash(i, 'up') % 3 + 10)
                                  || ':8080' END,
  '","user_agent":', CASE WHEN hkind = 'none' THEN '"ELB-HealthChecker/2.0"'
                          WHEN hash(i, 'ua') % 100 = 0 THEN '"-"'
                          ELSE ({UAS})[1 + CAST((hw + CASE WHEN hkind = 'external' THEN 7
                                                           ELSE 0 END) % 12 AS INTEGER)] END,
  ',"x_forwarded_for":', CASE WHEN hkind = 'external' THEN '"' || ext_ip || '"'
                              WHEN hkind = 'none' THEN '"-"' ELSE 'null' END,
  '}') AS line
FROM k
) TO '{OUT}' (FORMAT csv, HEADER false, QUOTE '', ESCAPE '', DELIMITER '\x01')
"""

USER_AGENTS = (
    "acme-coder/1.4.2 python-httpx/0.27.2", "acme-researcher/1.1.0 aiohttp/3.10.5",
    "mcp-files/0.9.1 undici/6.19.8", "acme-orchestrator/2.3.0 python-httpx/0.27.2",
    "Go-http-client/2.0", "okhttp/4.12.0", "curl/8.9.1", "grpc-java-netty/1.66.0",
    "python-requests/2.32.3",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 "
    "Safari/537.36",
    "aws-sdk-go-v2/1.32.2", "globex-sync/3.4.1 okhttp/4.12.0",
)
START_EPOCH = 1793577600  # 2026-11-02T00:00:00Z
WORKLOADS = 400


def _fill(sql: str, values: dict[str, object]) -> str:
    """Substitute {NAME}, {B64:expr} and {HEX:expr} (str.format would trip on JSON braces)."""
    for key, value in values.items():
        sql = sql.replace("{" + key + "}", str(value))
    for tag, template in (("{B64:", B64URL), ("{HEX:", HEX16)):
        while tag in sql:
            start = sql.index(tag)
            depth, pos = 0, start + len(tag)
            while True:  # find the placeholder's closing brace
                ch = sql[pos]
                if ch == "(":
                    depth += 1
                elif ch == ")":
                    depth -= 1
                elif ch == "}" and depth == 0:
                    break
                pos += 1
            sql = sql[:start] + template.format(x=sql[start + len(tag):pos]) + sql[pos + 1:]
    return sql


def generate(events: int, out: Path) -> None:
    """Runs in a child process (see main): write the file to out, atomically."""
    import duckdb

    tokens = max(100, events // 16)
    values: dict[str, object] = {
        "N": events, "T": tokens, "LIVE": max(1, tokens * 900 // 86400), "W": WORKLOADS,
        "START": START_EPOCH,
        "UAS": "[" + ", ".join("'\"" + ua + "\"'" for ua in USER_AGENTS) + "]",
    }
    tmp = out.with_name(out.name + ".partial")
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET threads = 1")  # keeps the joins' output in row order (deterministic)
    con.execute("SET preserve_insertion_order = true")
    con.execute(_fill(TOKENS_SQL, values))
    con.execute(_fill(HOLDERS_SQL, values))
    con.execute(_fill(LINES_SQL, {**values, "OUT": str(tmp).replace("'", "''")}))
    con.close()
    os.replace(tmp, out)


# ---------------------------------------------------------------------------------------
# measuring children


@dataclass
class Run:
    seconds: float
    maxrss_mib: float
    returncode: int
    stdout: str
    stderr: str


def _rss_mib(ru_maxrss: int) -> float:
    # Linux reports KiB, macOS bytes.
    return ru_maxrss / (1024 * 1024) if platform.system() == "Darwin" else ru_maxrss / 1024


def run_child(argv: list[str], env: dict[str, str] | None = None) -> Run:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=REPO, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(seconds, _rss_mib(usage.ru_maxrss), proc.returncode,
                   out.read().decode(errors="replace"), err.read().decode(errors="replace"))


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"]
                                     if env.get("PYTHONPATH") else "")
    env.pop("TOKENTRAIL_DB", None)
    return env


def tokentrail_command(data: Path, db: Path) -> tuple[list[str], str]:
    probe = subprocess.run([sys.executable, "-m", "tokentrail", "ingest", "--help"],
                           capture_output=True, text=True, cwd=REPO, env=child_env())
    if probe.returncode == 0 and "--quiet" in probe.stdout and "--db" in probe.stdout:
        return ([sys.executable, "-m", "tokentrail", "ingest", str(data), "--db", str(db),
                 "--quiet"], "cli")
    code = ("import sys\n"
            "from tokentrail import Case\n"
            "from tokentrail.case.ingest import ingest\n"
            "c = Case(sys.argv[2])\n"
            "r = ingest(c, [sys.argv[1]])\n"
            "c.close() if hasattr(c, 'close') else None\n"
            "sys.exit(0 if r.events else 3)\n")
    return [sys.executable, "-c", code, str(data), str(db)], "library"


BASELINE_CODE = """
import sys, duckdb
con = duckdb.connect(sys.argv[2])
con.execute("SET enable_progress_bar = false")
path = sys.argv[1].replace("'", "''")
con.execute(f"CREATE TABLE t AS SELECT * FROM read_json('{path}', format='newline_delimited')")
print(con.execute('SELECT count(*) FROM t').fetchone()[0])
con.close()
"""

LIMIT_CODE = """
from tokentrail.case.store import Case
with Case() as c:
    print(c.con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
"""

COUNT_CODE = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SET enable_progress_bar = false")
row = con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM rejects)")
print(*row.fetchone())
"""


def fail(what: str, run: Run) -> None:
    sys.stderr.write(f"{what} failed (exit {run.returncode}):\n{run.stderr[-4000:]}\n")
    sys.exit(1)


# ---------------------------------------------------------------------------------------


def write_json(path: str, payload: dict[str, object]) -> None:
    import json

    Path(path).write_text(json.dumps(payload, indent=2) + "\n")


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=DEFAULT_EVENTS,
                    help=f"events in the generated log (default {DEFAULT_EVENTS:,})")
    ap.add_argument("--regenerate", action="store_true",
                    help="write the data file again even if it exists")
    ap.add_argument("--keep", action="store_true",
                    help="keep the case and baseline databases (printed paths)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write the measurements as JSON to FILE (bench/run_all.py reads it)")
    ap.add_argument("--scan", action="store_true",
                    help="also time `tokentrail scan` (every rule) over the ingested case")
    ap.add_argument("--generate-only", metavar="FILE", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.events < 1:
        ap.error("--events must be at least 1")

    if args.generate_only:
        generate(args.events, Path(args.generate_only))
        return 0

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"envoy-gateway-{args.events}.jsonl"
    env = child_env()
    if args.regenerate or not data.exists():
        print(f"generating {args.events:,} events -> {data.relative_to(REPO)} ...",
              file=sys.stderr, flush=True)
        gen = run_child([sys.executable, str(Path(__file__).resolve()), "--events",
                         str(args.events), "--generate-only", str(data)], env)
        if gen.returncode != 0:
            fail("generating the data", gen)
        print(f"generated in {gen.seconds:.1f} s", file=sys.stderr, flush=True)
    else:
        print(f"reusing {data.relative_to(REPO)}", file=sys.stderr, flush=True)
    size = data.stat().st_size

    work = Path(tempfile.mkdtemp(prefix="run-", dir=DATA))
    try:
        case_db = work / "case.duckdb"
        base_db = work / "baseline.duckdb"
        argv_tt, mode = tokentrail_command(data, case_db)
        print(f"tokentrail ingest ({mode}) ...", file=sys.stderr, flush=True)
        tt = run_child(argv_tt, env)
        if tt.returncode != 0:
            fail("tokentrail ingest", tt)
        counted = run_child([sys.executable, "-c", COUNT_CODE, str(case_db)], env)
        if counted.returncode != 0:
            fail("counting the case", counted)
        tt_events, tt_rejects = (int(x) for x in counted.stdout.split()[-2:])
        scan: Run | None = None
        if args.scan:
            print("tokentrail scan ...", file=sys.stderr, flush=True)
            scan = run_child([sys.executable, "-m", "tokentrail", "scan", "--db", str(case_db),
                              "--format", "json", "-o", str(work / "findings.json"),
                              "--fail-on", "none", "-q"], env)
            if scan.returncode != 0:
                fail("tokentrail scan", scan)
        limit = run_child([sys.executable, "-c", LIMIT_CODE], env).stdout.strip()
        print("baseline read_json ...", file=sys.stderr, flush=True)
        base = run_child([sys.executable, "-c", BASELINE_CODE, str(data), str(base_db)], env)
        if base.returncode != 0:
            fail("baseline", base)
        base_rows = int(base.stdout.split()[-1])
        # getrusage(RUSAGE_CHILDREN) is the largest of all children, kept for reference.
        all_children = _rss_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        case_size = case_db.stat().st_size
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    ratio = tt.seconds / base.seconds if base.seconds else float("inf")
    rows = [
        ("events", f"{args.events:,}", ""),
        ("file size", human_bytes(size), ""),
        ("tokentrail ingest", f"{tt.seconds:.2f} s", f"{mode}; {tt_events:,} events, "
                                                      f"{tt_rejects:,} rejects"),
        ("baseline read_json", f"{base.seconds:.2f} s", f"{base_rows:,} rows"),
        ("ratio tokentrail/baseline", f"{ratio:.2f}",
         f"target <= {RATIO_TARGET} {'ok' if ratio <= RATIO_TARGET else 'MISSED'}"),
        ("tokentrail peak RSS", f"{tt.maxrss_mib:.0f} MiB",
         f"memory_limit {limit}; DESIGN.md's {RSS_TARGET_MIB} MiB "
         f"{'ok' if tt.maxrss_mib <= RSS_TARGET_MIB else 'exceeded'}"),
        ("baseline peak RSS", f"{base.maxrss_mib:.0f} MiB", ""),
        *([("tokentrail scan (every rule)", f"{scan.seconds:.2f} s",
            f"scan/ingest {scan.seconds / tt.seconds:.2f}, target <= 1.0"),
           ("tokentrail scan peak RSS", f"{scan.maxrss_mib:.0f} MiB", "")] if scan else []),
        ("tokentrail events/s", f"{tt_events / tt.seconds:,.0f}", ""),
        ("baseline rows/s", f"{base_rows / base.seconds:,.0f}", ""),
        ("case size on disk", human_bytes(case_size), ""),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'metric':<{w0}}  {'value':>{w1}}  note")
    print(f"{'-' * w0}  {'-' * w1}  ----")
    for name, value, note in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {note}".rstrip())
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"largest child RSS (RUSAGE_CHILDREN) {all_children:.0f} MiB")
    if args.json:
        write_json(args.json, {
            "events": tt_events, "rejects": tt_rejects, "bytes": size,
            "tokentrail_s": tt.seconds, "tokentrail_rss_mib": tt.maxrss_mib,
            "baseline_s": base.seconds, "baseline_rss_mib": base.maxrss_mib, "ratio": ratio,
            "memory_limit": limit,
            **({"scan_s": scan.seconds, "scan_rss_mib": scan.maxrss_mib} if scan else {})})
    return 0


if __name__ == "__main__":
    sys.exit(main())
