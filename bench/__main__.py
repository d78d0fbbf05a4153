"""`make bench`: run every benchmark, print a table, write bench/results.json.

Each benchmark module exposes run() -> {name: {figure_with_unit: value}}.
A benchmark that can't run here (a missing tool) is reported and skipped; one
that fails is reported with its error, and the others still run.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback
from pathlib import Path

from bench import setup_django

MODULES = ["bench.bench_reconcile", "bench.bench_observe", "bench.bench_mirror", "bench.bench_api", "bench.bench_pages",
           "bench.bench_isolation", "bench.bench_tag_watch", "bench.bench_idle"]
RESULTS = Path(__file__).resolve().parent / "results.json"


def main(selected: list[str]) -> int:
    database = setup_django()
    results: dict = {}
    failed = False
    for name in MODULES:
        if selected and not any(s in name for s in selected):
            continue
        started = time.monotonic()
        try:
            module = importlib.import_module(name)
            figures = module.run()
        except Exception as exc:  # report and go on: one broken bench must not hide the others
            failed = True
            traceback.print_exc()
            print(f"{name}: FAILED: {exc}", file=sys.stderr)
            continue
        results.update(figures)
        print(f"{name}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    merged = json.loads(RESULTS.read_text()) if RESULTS.exists() and selected else {}
    merged.update(results)
    merged["_meta"] = {"database": database.split("://")[0], "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    RESULTS.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    width = max((len(k) for k in results), default=10)
    for name, figures in sorted(results.items()):
        print(f"{name:<{width}}  " + "  ".join(f"{k}={v}" for k, v in figures.items()))
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
