"""Run every benchmark in one go and print their side-by-side tables.

Run: python bench/run.py [core tokens sqlalchemy http timing peers sessions profile]
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SUITES = ("core", "tokens", "sqlalchemy", "http", "timing", "peers", "sessions", "profile")


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = sorted(set(chosen) - set(SUITES))
    if unknown:
        print(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
        return 2
    for name in chosen:
        print(f"\n=== bench_{name} ===", flush=True)
        module = importlib.import_module(f"bench.bench_{name}")
        if hasattr(module, "main"):
            module.main()
        else:
            for key, value in module.run().items():
                print(f"  {key:<40} {value:>14,.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
