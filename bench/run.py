"""Run every benchmark in one go and print their side-by-side tables.

Run: python bench/run.py [core tokens sqlalchemy http timing peers sessions profile flows
     delivery]
     [--option ...]   (options go to the one suite named: ``flows --quick``)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SUITES = (
    "core",
    "tokens",
    "sqlalchemy",
    "http",
    "timing",
    "peers",
    "sessions",
    "profile",
    "flows",
    "delivery",
)


def main(argv: list[str]) -> int:
    # Everything from the first option on goes to the suite: ``flows --baseline abc123``.
    first = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
    chosen, options = argv[:first] or list(SUITES), argv[first:]
    if options and len(chosen) != 1:
        print(f"options ({' '.join(options)}) need exactly one suite named")
        return 2
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
        return 2
    for name in chosen:
        print(f"\n=== bench_{name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        if hasattr(module, "main"):
            module.main(options) if options else module.main()
        else:
            for key, value in module.run().items():
                print(f"  {key:<40} {value:>14,.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
