"""Sweeps of intermediate x target x seed runs: run them, print their commands, or build the result table.

    python launch/sweep.py run      --sweep configs/sweeps/demo.py [--retries 1] [--steps N] [--override KEY=VALUE]
    python launch/sweep.py commands --sweep configs/sweeps/demo.py [--hosts h1,h2 | --hosts-file FILE] [--remote-dir DIR]
    python launch/sweep.py report   --sweep configs/sweeps/demo.py

run       every run, one after another, as `python -m stilts_jax.main ...` subprocesses; finished runs are skipped,
          failed ones retried; logs in <workdir>/sweep.log, state in <root>/sweep_state.json; then the report.
commands  the exact command of every run, one per line, runs nothing; with hosts, round-robin and wrapped in ssh.
report    <root>/results.md, results.tex, results.csv and heatmap.png from the runs' results.json files.

The sweep file format is described in stilts_jax/experiments/sweep.py; configs/sweeps/demo.py is an example.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from etils import epath

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.paths import as_path
from stilts_jax.experiments.aggregate import aggregate
from stilts_jax.experiments.report import write_report
from stilts_jax.experiments.runner import environment_for_runs, load_state, run_sweep, summary_line
from stilts_jax.experiments.sweep import (
    Run,
    Sweep,
    assign_hosts,
    expand,
    load_sweep,
    read_hosts,
    shell_command,
    ssh_command,
)


def _common(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument("--sweep", default=default, help="the sweep file (configs/sweeps/<name>.py)")
    parser.add_argument("--root", default=default, help="folder of the runs' workdirs (default: the sweep's root)")
    parser.add_argument(
        "--steps",
        type=int,
        default=default,
        help="cap every training phase at N steps (intermediate.train.max_steps and "
        "target.train.max_steps), e.g. for a quick check",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=default,
        metavar="KEY=VALUE",
        help="a config override for every run (e.g. target.train.epochs=1); repeatable",
    )
    parser.add_argument(
        "--only",
        default=default,
        metavar="TEXT",
        help="run or print only the runs whose name contains TEXT (e.g. _seed0 or squad_to_); "
        "the report always covers the whole sweep",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python launch/sweep.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _common(parser, argparse.SUPPRESS)  # --sweep etc. may come before or after the command
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the sweep locally, one run after another")
    _common(run, argparse.SUPPRESS)
    run.add_argument("--retries", type=int, default=1, help="retries of a failed run (default %(default)s)")
    run.add_argument("--timeout", type=float, default=None, help="seconds one attempt may take (default: no limit)")
    run.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    show = commands.add_parser("commands", help="print every run's command, run nothing")
    _common(show, argparse.SUPPRESS)
    show.add_argument("--hosts", default=None, help="comma-separated hosts: runs are dealt round-robin, ssh-wrapped")
    show.add_argument("--hosts-file", default=None, help="a file with one host per line")
    show.add_argument(
        "--remote-dir", default=None, help="the repository folder on the hosts (default: this folder's path)"
    )
    show.add_argument("--python", default="python", help="the Python to run (default %(default)s)")
    report = commands.add_parser(
        "report", help="aggregate the runs into results.md, results.tex, results.csv and heatmap.png"
    )
    _common(report, argparse.SUPPRESS)
    return parser


def _runs(args: argparse.Namespace) -> tuple[Sweep, epath.Path, list[Run], list[Run]]:
    """The sweep, its root, all its runs and those --only selects."""
    if not getattr(args, "sweep", None):
        raise StiltsError("pass --sweep configs/sweeps/<name>.py")
    sweep = load_sweep(args.sweep)
    root = getattr(args, "root", None) or sweep.root
    extra = list(getattr(args, "override", None) or [])
    steps = getattr(args, "steps", None)
    if steps is not None:
        if steps < 1:
            raise StiltsError(f"--steps must be at least 1, got {steps}")
        extra = [f"intermediate.train.max_steps={steps}", f"target.train.max_steps={steps}", *extra]
    runs = expand(sweep, root=root, extra=extra)
    only = getattr(args, "only", None)
    selected = [r for r in runs if only in r.name] if only else runs
    if not selected:
        raise StiltsError(f"--only {only!r} matches no run of {args.sweep}")
    return sweep, as_path(root), runs, selected


def _report(sweep: Sweep, root: epath.Path, runs: list[Run]) -> int:
    state = load_state(root)
    table = aggregate(runs, state)
    for path in write_report(table, root, sweep.name):
        print(f"wrote {path}")
    for model in table.averaged:  # evaluation.average_checkpoints: the averaged models' own tables
        for path in write_report(aggregate(runs, state, model), root, sweep.name):
            print(f"wrote {path}")
    incomplete = sum(not cell.complete for cell in table.cells.values())
    if incomplete:
        print(f"{incomplete} table cells are missing or incomplete: see {root / 'results.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        sweep, root, all_runs, runs = _runs(args)
        if args.command == "commands":
            hosts = read_hosts(args.hosts, args.hosts_file)
            if hosts:
                remote_dir = args.remote_dir or str(Path.cwd())
                for host, run in assign_hosts(runs, hosts):
                    print(ssh_command(host, run, remote_dir=remote_dir, python=args.python))
            else:
                for run in runs:
                    print(shell_command(run, args.python))
            return 0
        if args.command == "report":  # the whole sweep: runs --only leaves out show as missing
            return _report(sweep, root, all_runs)
        print(f"sweep {sweep.name}: {len(runs)} runs under {root}", flush=True)
        records = run_sweep(
            runs,
            root,
            sweep.name,
            retries=args.retries,
            env=environment_for_runs(),
            timeout=args.timeout,
            say=lambda line: print(line, flush=True),
        )
        summary, not_done = summary_line(records, runs)
        print(f"sweep {sweep.name}: {summary}", flush=True)
        if not args.no_report:
            _report(sweep, root, all_runs)
        return 1 if not_done else 0
    except StiltsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
