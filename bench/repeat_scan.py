"""Repeated events: a small Envoy log repeated N times scans with the findings of one copy.

    python3 bench/repeat_scan.py                 # 49 sample events x 6,000 = 294,000 events
    python3 bench/repeat_scan.py --copies 600

Scans sample-logs/envoy-acme-gateway-access.jsonl once and repeated --copies times (in-memory
cases, `tokentrail scan --format json`), each in its own process, and prints both times and
peak RSS, the exit codes and whether the finding ids are the same. Before issue 12 the
6,000-copy scan ran out of memory in TT017 (a self-join on the proof jti) and printed no
finding. A benchmark: it asserts nothing (tests/test_scan_memory.py is the test, at 2,000).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample-logs" / "envoy-acme-gateway-access.jsonl"


def _scan(path: Path, out: Path) -> tuple[float, float, int]:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tokentrail", "scan", str(path), "--format",
                             "json", "-o", str(out), "--fail-on", "none", "-q"], cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    return time.perf_counter() - t, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=6000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        rep = t / "repeated.jsonl"
        text = SAMPLE.read_bytes()
        with open(rep, "wb") as fh:  # copy by copy: the parent stays small (see bench/README)
            for _ in range(args.copies):
                fh.write(text)
        s1, r1, c1 = _scan(SAMPLE, t / "once.json")
        sn, rn, cn = _scan(rep, t / "many.json")
        ids = [{f["id"]: f["count"] for f in json.loads(p.read_text())["findings"]}
               if p.exists() else {} for p in (t / "once.json", t / "many.json")]
    print(f"once: {s1:.1f} s, {r1:.0f} MiB, exit {c1}; x{args.copies:,}: {sn:.1f} s, "
          f"{rn:.0f} MiB, exit {cn}; same finding ids: {set(ids[0]) == set(ids[1])} "
          f"({len(ids[0])} / {len(ids[1])})")
    for fid in sorted(ids[0]):
        print(f"  {fid}: count {ids[0][fid]} -> {ids[1].get(fid)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
