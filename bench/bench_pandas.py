"""Forwarding detection: tokentrail against a straightforward pandas script, same input.

    python3 bench/bench_pandas.py --events 1000000   # the bench_scan data set (~1.2 GB)
    python3 bench/bench_pandas.py --events 200000    # a quick run

The question a responder would otherwise answer with a notebook: "which tokens were presented
by a workload they were not issued to?" Both sides read the bench_scan data set (an
Envoy/Istio mesh log and the identity provider's issuance log, generated once by
bench_scan.py into bench/data/scan-N/) from scratch, each in its own subprocess:

  tokentrail  `python3 -m tokentrail scan ENVOY IDP --format json -o OUT --fail-on none -q`
              (an in-memory case: ingest, lineage, classification, all 17 rules, findings)
  pandas      PANDAS_CODE below: pd.read_json(lines=True), json_normalize the JWT claims,
              holder = SPIFFE service account or caller IP, drop gateway hops (a request id
              already seen), flag (token, holder) pairs whose holder is neither the token's
              client (azp, or the IdP's client_id), nor the address it was issued to, nor an
              actor in its `act` chain (tokens of unknown client are not flagged).

The pandas script does less than tokentrail (no skew, expiry, revocation, DPoP, replay or
policy, no evidence lines, no rejects, and it trusts every line), so the comparison flatters
pandas. Prints both wall times, their ratio, both peak RSS values and what each flagged.
A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import REPO, child_env, fail, human_bytes, run_child, write_json  # noqa: E402
from bench_scan import DATA, data_dir, data_files  # noqa: E402

PANDAS_CODE = r"""
import json, sys
import pandas as pd

envoy, idp = sys.argv[1], sys.argv[2]
gw = pd.read_json(envoy, lines=True, dtype=False)
issued = pd.read_json(idp, lines=True, dtype=False)

claims = pd.json_normalize([p if isinstance(p, dict) else {} for p in gw["jwt_payload"]])
gw["token"] = claims["jti"].where(claims["jti"].notna(), gw["token_fp"])
gw = gw[gw["token"].notna()]
claims = claims.loc[gw.index]

san = gw["downstream_peer_uri_san"].fillna("")
ip = gw["downstream_remote_address"].fillna("").str.rsplit(":", n=1).str[0]
gw["holder"] = san.str.rsplit("/", n=1).str[-1].where(san != "", "ip:" + ip)

# the token's client: its azp claim, else the identity provider's issuance record
client = issued[issued["kind"].isin(["issue", "exchange", "refresh"])]
client = client.drop_duplicates("token_id").set_index("token_id")
gw["client"] = claims["azp"].where(claims["azp"].notna(), gw["token"].map(client["client_id"]))
gw["issued_to"] = "ip:" + gw["token"].map(client["src_ip"]).fillna("")

# actors named by the act chain (act.sub, act.act.sub, ...)
act_cols = [c for c in claims.columns if c.startswith("act.") and c.endswith(".sub") or c == "act.sub"]
gw["actors"] = claims[act_cols].apply(lambda r: {v for v in r if isinstance(v, str)}, axis=1) \
    if act_cols else [set()] * len(gw)

# a gateway hop re-logs a request: keep the first presenter of each request id
gw = gw.sort_values("start_time", kind="stable").drop_duplicates(["request_id", "token"])

pairs = gw.groupby(["token", "holder"], sort=False).agg(
    client=("client", "first"), issued_to=("issued_to", "first"),
    actors=("actors", lambda s: set().union(*s)),
    uses=("path", "size"), first=("start_time", "min"))
flagged = pairs[[isinstance(c, str) and h not in (c, i) and h not in a
                 for (t, h), c, i, a in zip(pairs.index, pairs["client"], pairs["issued_to"],
                                             pairs["actors"])]]
print(json.dumps({"events": int(len(gw)), "pairs": int(len(pairs)),
                  "flagged_pairs": int(len(flagged)),
                  "flagged_tokens": int(flagged.index.get_level_values(0).nunique())}))
"""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000,
                    help="about this many events (the bench_scan data set; default 1,000,000)")
    ap.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    args = ap.parse_args(argv)
    env = child_env()
    files = data_files(args.events)
    if not all(f.exists() for f in files):
        print(f"generating about {args.events:,} events -> "
              f"{data_dir(args.events).relative_to(REPO)}/ ...", file=sys.stderr, flush=True)
        DATA.mkdir(parents=True, exist_ok=True)
        gen = run_child([sys.executable, str(Path(__file__).resolve().parent / "bench_scan.py"),
                         "--events", str(args.events), "--generate-only",
                         str(data_dir(args.events))], env)
        if gen.returncode != 0:
            fail("generating the data", gen)
    size = sum(f.stat().st_size for f in files)

    work = Path(tempfile.mkdtemp(prefix="pandas-run-", dir=DATA))
    try:
        out = work / "findings.json"
        print("tokentrail scan (in-memory case) ...", file=sys.stderr, flush=True)
        tt = run_child([sys.executable, "-m", "tokentrail", "scan", *map(str, files),
                        "--format", "json", "-o", str(out), "--fail-on", "none", "-q"], env)
        if tt.returncode != 0:
            fail("tokentrail scan", tt)
        findings = json.loads(out.read_bytes()).get("findings", [])
        print("pandas ...", file=sys.stderr, flush=True)
        pd_run = run_child([sys.executable, "-c", PANDAS_CODE, *map(str, files)], env)
        if pd_run.returncode != 0:
            fail("pandas", pd_run)
        flagged = json.loads(pd_run.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ratio = tt.seconds / pd_run.seconds
    rows = [
        ("input", human_bytes(size), f"{len(files)} files, about {args.events:,} events"),
        ("tokentrail scan", f"{tt.seconds:.2f} s",
         f"peak RSS {tt.maxrss_mib:.0f} MiB; {len(findings):,} findings"),
        ("pandas script", f"{pd_run.seconds:.2f} s",
         f"peak RSS {pd_run.maxrss_mib:.0f} MiB; {flagged['flagged_pairs']:,} flagged pairs "
         f"of {flagged['pairs']:,} ({flagged['flagged_tokens']:,} tokens)"),
        ("ratio tokentrail/pandas", f"{ratio:.2f}", "below 1: tokentrail is faster"),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    for name, value, note in rows:
        print(f"{name:<{w0}}  {value:>{w1}}  {note}")
    if args.json:
        write_json(args.json, {
            "bytes": size, "tokentrail_s": tt.seconds, "tokentrail_rss_mib": tt.maxrss_mib,
            "findings": len(findings), "pandas_s": pd_run.seconds,
            "pandas_rss_mib": pd_run.maxrss_mib, "ratio": ratio, **flagged})
    return 0


if __name__ == "__main__":
    sys.exit(main())
