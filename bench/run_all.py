"""Every benchmark, one command, one table.

    python3 bench/run_all.py                      # 1,000,000 events each (about 15 minutes
                                                  # on 2 CPUs, most of it generating data once)
    python3 bench/run_all.py --events 200000      # a quick run

Runs, one after the other (each measures its own children; see their docstrings):

  bench_ingest.py  tokentrail ingest       vs  raw DuckDB read_json CTAS of the same file,
                   then tokentrail scan of that case vs its ingest (--scan)
  bench_scan.py    tokentrail scan         vs  tokentrail ingest of the same case
  bench_pandas.py  tokentrail scan (all)   vs  a straightforward pandas forwarding detection

and prints a Markdown table of times, ratios and peak RSS (the README quotes it). Data files
are generated once into bench/data/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _run(script: str, events: int, out: Path, *extra: str) -> dict[str, object]:
    print(f"== {script} --events {events:,}", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, str(HERE / script), "--events", str(events),
                           "--json", str(out), *extra], stdout=sys.stderr)
    if proc.returncode != 0:
        sys.exit(f"{script} failed (exit {proc.returncode})")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000,
                    help="events per benchmark (default 1,000,000)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        ing = _run("bench_ingest.py", args.events, t / "ingest.json", "--scan")
        scan = _run("bench_scan.py", args.events, t / "scan.json", "--no-split")
        pdx = _run("bench_pandas.py", args.events, t / "pandas.json")

    def mib(v: object) -> str:
        return f"{float(v):.0f} MiB"  # type: ignore[arg-type]

    def sec(v: object) -> str:
        return f"{float(v):.1f} s"  # type: ignore[arg-type]

    rows = [
        ("ingest (Envoy log)", f"{int(ing['events']):,} events, {int(ing['bytes']) / 2**30:.2f} GiB",
         sec(ing["tokentrail_s"]), "DuckDB `read_json` into a table", sec(ing["baseline_s"]),
         f"{float(ing['ratio']):.2f}", mib(ing["tokentrail_rss_mib"]),
         mib(ing["baseline_rss_mib"])),
        ("scan of that ingested Envoy case (every rule)", f"{int(ing['events']):,} events",
         sec(ing["scan_s"]), "its tokentrail ingest", sec(ing["tokentrail_s"]),
         f"{float(ing['scan_s']) / float(ing['tokentrail_s']):.2f}", mib(ing["scan_rss_mib"]),
         mib(ing["tokentrail_rss_mib"])),
        ("scan (lineage, classify, 17 rules)", f"{int(scan['events']):,} events",
         sec(scan["scan_s"]), "tokentrail ingest of the same case", sec(scan["ingest_s"]),
         f"{float(scan['ratio']):.2f}", mib(scan["scan_rss_mib"]),
         mib(scan["ingest_rss_mib"])),
        ("forwarding detection, files to findings", f"{int(pdx['bytes']) / 2**30:.2f} GiB",
         sec(pdx["tokentrail_s"]), "pandas script (read, normalise, group)",
         sec(pdx["pandas_s"]), f"{float(pdx['ratio']):.2f}", mib(pdx["tokentrail_rss_mib"]),
         mib(pdx["pandas_rss_mib"])),
    ]
    head = ("benchmark", "input", "tokentrail", "against", "its time", "ratio",
            "tokentrail peak RSS", "its peak RSS")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\ningest: {int(ing['events']) / float(ing['tokentrail_s']):,.0f} events/s "
          f"(raw read_json {int(ing['events']) / float(ing['baseline_s']):,.0f} rows/s); "
          f"case memory_limit {ing['memory_limit']}")
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}; ratio = tokentrail / "
          "the other; scan findings: " + str(scan["findings"]) + f"; pandas flagged "
          f"{pdx['flagged_pairs']} (token, holder) pairs, tokentrail reported "
          f"{pdx['findings']} findings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
