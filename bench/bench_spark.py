"""Scale-out benchmark: the scan on DuckDB against the same scan on Spark (local mode).

    python3 bench/bench_spark.py --events 1000000            # ~1.1 GB of logs
    python3 bench/bench_spark.py --events 10000000           # slow: ~11 GB, tens of minutes
    python3 bench/bench_spark.py --events 100000 --spark-master 'local[2]'

Reuses bench_scan.py's data set (bench/data/scan-N/, generated once: an Envoy mesh log and
the identity provider's side, with every rule's incidents). Then, each in its own process:

  ingest       `tokentrail ingest ... --db CASE`
  duckdb scan  `tokentrail scan --db CASE --format json` (the DuckDB engine on the case file)
  export       `tokentrail export --parquet LAKE --db CASE --no-analyse`
  duckdb lake  `tokentrail scan --lake LAKE --format json` (DuckDB, working copy of the lake)
  spark scan   `tokentrail scan --engine spark --lake LAKE --spark-master MASTER --format json`

and prints one table: wall time and peak RSS of each, and whether the Spark findings have
exactly the DuckDB finding ids. Times include interpreter (and JVM) start-up: what a user
waits for. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import child_env, fail, human_bytes, run_child, write_json  # noqa: E402
from bench_scan import DATA, data_dir, data_files, print_table  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def finding_ids(path: Path) -> list[str]:
    return [f["id"] for f in json.loads(path.read_bytes())["findings"]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000,
                    help="about this many events (default 1,000,000)")
    ap.add_argument("--spark-master", default="local[*]", help="Spark master (default local[*])")
    ap.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE",
                    help="extra Spark settings (repeatable); default spark.driver.memory=6g")
    ap.add_argument("--skip-lake-duckdb", action="store_true",
                    help="skip the DuckDB scan over the lake (working copy)")
    ap.add_argument("--keep", action="store_true", help="keep the case, lake and outputs")
    ap.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    args = ap.parse_args(argv)

    files = data_files(args.events)
    env = child_env()
    if not all(f.exists() for f in files):
        print(f"generating about {args.events:,} events -> {data_dir(args.events)} ...", file=sys.stderr)
        gen = run_child([sys.executable, str(HERE / "bench_scan.py"), "--events", str(args.events),
                         "--generate-only", str(data_dir(args.events))], env)
        if gen.returncode != 0:
            fail("generating the data", gen)
    size = sum(f.stat().st_size for f in files)
    conf = args.spark_conf or ["spark.driver.memory=6g"]
    work = Path(tempfile.mkdtemp(prefix="spark-run-", dir=DATA))
    cli = [sys.executable, "-m", "tokentrail"]
    runs = {}
    try:
        case, lake = work / "case.duckdb", work / "lake"
        steps: list[tuple[str, list[str]]] = [
            ("ingest", [*cli, "ingest", *map(str, files), "--db", str(case), "--quiet"]),
            ("duckdb scan (case file)", [*cli, "scan", "--db", str(case), "--format", "json", "-o",
                                         str(work / "duckdb.json"), "--fail-on", "none", "-q"]),
            ("export --parquet", [*cli, "export", "--parquet", str(lake), "--db", str(case),
                                  "--no-analyse", "-q"]),
        ]
        if not args.skip_lake_duckdb:
            steps.append(("duckdb scan (lake)", [*cli, "scan", "--lake", str(lake), "--format", "json",
                                                 "-o", str(work / "duckdb-lake.json"), "--fail-on",
                                                 "none", "-q"]))
        steps.append((f"spark scan ({args.spark_master})",
                      [*cli, "scan", "--engine", "spark", "--lake", str(lake), "--spark-master",
                       args.spark_master, *[x for c in conf for x in ("--spark-conf", c)],
                       "--format", "json", "-o", str(work / "spark.json"), "--fail-on", "none", "-q"]))
        for name, argv_ in steps:
            print(f"{name} ...", file=sys.stderr, flush=True)
            runs[name] = run_child(argv_, env)
            if runs[name].returncode != 0:
                fail(name, runs[name])
            print(f"  {runs[name].seconds:.1f} s", file=sys.stderr, flush=True)
        duck_ids = finding_ids(work / "duckdb.json")
        spark_ids = finding_ids(work / "spark.json")
        events = json.loads((work / "duckdb.json").read_bytes())["case"]["events"]
        lake_bytes = sum(p.stat().st_size for p in lake.rglob("*.parquet"))
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    same = duck_ids == spark_ids
    rows = [("events", f"{events:,}",
             f"{human_bytes(size)} of logs; lake {human_bytes(lake_bytes)} Parquet")]
    rows += [(name, f"{run.seconds:.1f} s",
              f"peak RSS {run.maxrss_mib:.0f} MiB" + (" (Python only; the JVM is apart)"
                                                       if name.startswith("spark") else ""))
             for name, run in runs.items()]
    rows.append(("findings", f"{len(duck_ids):,}",
                 "Spark ids identical to DuckDB's" if same else "Spark ids DIFFER from DuckDB's"))
    print_table(rows)
    print(f"\n{os.cpu_count()} CPUs, Python {platform.python_version()}, Spark master {args.spark_master}, "
          f"{' '.join(conf)}")
    if args.json:
        write_json(args.json, {"events": events, "bytes": size, "lake_bytes": lake_bytes,
                               "identical_ids": same, "findings": len(duck_ids),
                               **{name: {"seconds": r.seconds, "rss_mib": r.maxrss_mib}
                                  for name, r in runs.items()}})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
