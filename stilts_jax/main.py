"""The product's entry point: `python -m stilts_jax.main --config=configs/<recipe>.py [--config.key=value ...]`.

    python -m stilts_jax.main --config=configs/demo.py                       # the offline demo
    python -m stilts_jax.main --config=configs/stilts.py:intermediate=anli+siqa,target=xcopa
    python -m stilts_jax.main --config=configs/squad_to_tydiqa.py --config.dry_run=true   # what a run would do

--verbosity=error|warning|info|debug sets how much the libraries (JAX, Orbax, datasets) log (default warning).
"""

from __future__ import annotations

import sys

from stilts_jax.config.loader import parse_config_args
from stilts_jax.core.errors import StiltsError, run_tool
from stilts_jax.core.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        from stilts_jax.config.help import help_text

        print(help_text(__doc__ or ""), end="")
        return 0
    verbosity = "warning"
    for arg in list(args):
        if arg.startswith("--verbosity="):
            verbosity = arg.split("=", 1)[1]
            args = [a for a in args if a != arg]
    try:
        configure_logging(verbosity)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    def body() -> None:
        config, rest = parse_config_args(args)
        if rest:
            raise StiltsError(f"unknown arguments {rest}; use --config=FILE and --config.key=value")
        from stilts_jax.pipeline import run

        run(config)

    return run_tool(body)


if __name__ == "__main__":
    sys.exit(main())
