"""The product's entry point: `python -m stilts_jax.main --config=configs/<recipe>.py [--config.key=value ...]`.

    python -m stilts_jax.main --config=configs/demo.py                       # the offline demo
    python -m stilts_jax.main --config=configs/stilts.py:intermediate=anli+siqa,target=xcopa
    python -m stilts_jax.main --config=configs/squad_to_tydiqa.py --config.dry_run=true   # what a run would do
"""

from __future__ import annotations

import logging
import sys

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import StiltsError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        from stilts_jax.config.help import help_text

        print(help_text(__doc__ or ""), end="")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # Orbax logs a warning for every periodic checkpoint saved without dev metrics; they are expected.
    logging.getLogger("absl").setLevel(logging.ERROR)
    try:
        config, rest = parse_config_args(args)
        if rest:
            raise StiltsError(f"unknown arguments {rest}; use --config=FILE and --config.key=value")
        from stilts_jax.pipeline import run

        run(config)
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
