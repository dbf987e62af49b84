"""Run every benchmark (or one: ``--name``) and write bench/results/<name>.json."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from bench.common import write_result

SKIP = {"common", "table", "soak"}


def available() -> list[str]:
    """Benchmark module names in run order (pipeline-level ones last)."""
    names = [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name not in SKIP]
    last = ["pipeline", "latency", "memory"]
    return sorted(n for n in names if n not in last) + [n for n in last if n in names]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--name", action="append", help="benchmark to run (repeatable); all when omitted")
    p.add_argument("--quick", action="store_true", help="small parameters for a smoke run")
    args = p.parse_args(argv)
    from hft.config import get_settings

    settings = get_settings()
    failed = []
    for name in args.name or available():
        print(f"== bench {name}", flush=True)
        try:
            module = importlib.import_module(f"bench.{name}")
            parameters, results = module.run(settings, args.quick)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        print(f"   -> {write_result(name, parameters, results)}", flush=True)
    from bench import table

    table.main()
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
