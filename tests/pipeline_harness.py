"""The pipeline as the main command runs it, plus what `run` returned, for the multi-process tests.

    python -m tests.pipeline_harness --summary-dir DIR --config=... [--config.key=value ...]

Each process writes the summary its own `Pipeline.run()` returned to DIR/summary-<process index>.json, so a test
can check that every process of a multi-process run ends with the same results.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--summary-dir", type=Path, required=True)
    args, config_args = parser.parse_known_args(argv)
    import jax

    from stilts_jax.config.loader import parse_config_args
    from stilts_jax.pipeline import run

    config, rest = parse_config_args(config_args)
    if rest:
        raise SystemExit(f"unknown arguments {rest}")
    summary = run(config)
    args.summary_dir.mkdir(parents=True, exist_ok=True)
    path = args.summary_dir / f"summary-{jax.process_index()}.json"
    path.write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
