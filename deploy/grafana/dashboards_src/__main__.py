"""``python -m deploy.grafana.dashboards_src [--check] [--out DIR]``: regenerate the dashboards."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deploy.grafana.dashboards_src.build import DASHBOARDS_DIR, stale, write_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.grafana.dashboards_src", description=__doc__
    )
    parser.add_argument("--out", type=Path, default=DASHBOARDS_DIR, help="output folder")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        names = stale(args.out)
        for name in names:
            sys.stderr.write(
                f"stale: {args.out / name} (run python -m deploy.grafana.dashboards_src)\n"
            )
        return 1 if names else 0
    for path in write_all(args.out):
        sys.stdout.write(f"wrote {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
