"""A sweep file and its expansion into runs: one `python -m stilts_jax.main` command per intermediate x target x seed.

A sweep file is Python with `get_sweep()` returning a dict (or an ml_collections ConfigDict) with:

    name                    the sweep's name (default: the file's name)
    recipe                  the base config file, e.g. "configs/demo.py", or one taking the pair as arguments:
                            "configs/stilts.py:intermediate={intermediate},target={target}" (the baseline's
                            intermediate is then "none"). Without placeholders the runs set
                            --config.intermediate.task (empty for the baseline) and --config.target.task.
    root                    where the runs' workdirs go (default workdir/sweeps/<name>)
    intermediate            intermediate tasks; "none" is the baseline (no intermediate phase); a chain of stages
                            is one row, "anli+hellaswag" (stilts_jax/pipeline/chain.py; "squad&mnli" trains two
                            tasks together in one stage). `chains(tasks, lengths)` writes every ordering:
                            intermediate=["none", *chains(["anli", "cosmosqa", "hellaswag", "siqa"], lengths=[1, 2])]
                            is the baseline, the 4 single tasks and the 12 ordered pairs (no task twice)
    targets                 target tasks
    seeds                   seeds (default [0])
    overrides               {dotted config key: value} for every run
    intermediate_overrides  {intermediate task: {key under `intermediate.`: value}}, e.g. its data source
    target_overrides        {target task: {key under `target.`: value}}

String values may use `{root}` (the sweep root). A run's workdir is `<root>/<intermediate or baseline>_to_<target>_seed<seed>`
(a chain's `&` written `-`, as in its stage folders: `squad-mnli_to_xnli_seed0`). A sweep file imports the generator
with `from stilts_jax.experiments.sweep import chains`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from etils import epath

from stilts_jax.core.errors import StiltsError
from stilts_jax.core.paths import as_path

BASELINE = "none"
CHAIN_SEPARATOR, JOINT_SEPARATOR = "+", "&"  # as stilts_jax/pipeline/chain.py spells a chain (pipeline sits beside us)
_KNOWN_KEYS = {
    "name",
    "recipe",
    "root",
    "intermediate",
    "targets",
    "seeds",
    "overrides",
    "intermediate_overrides",
    "target_overrides",
}


class SweepError(StiltsError):
    pass


@dataclasses.dataclass(frozen=True)
class Sweep:
    name: str
    recipe: str
    root: str
    intermediate: tuple[str, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    intermediate_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    target_overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    source: str = ""  # the sweep file, for messages


@dataclasses.dataclass(frozen=True)
class Run:
    """One pipeline run of a sweep; `args` are the entry point's arguments (everything after `-m stilts_jax.main`)."""

    intermediate: str
    target: str
    seed: int
    name: str
    workdir: epath.Path  # local or gs://...
    args: tuple[str, ...]

    @property
    def is_baseline(self) -> bool:
        return self.intermediate == BASELINE


def run_name(intermediate: str, target: str, seed: int) -> str:
    """Stable workdir name of a run, e.g. `squad_to_tydiqa_seed0`, `baseline_to_tydiqa_seed1`,
    `anli+squad-mnli_to_xnli_seed0` (a chain's `&` written `-`, as its stage folders write it)."""
    return f"{row_name(intermediate)}_to_{target}_seed{seed}"


def row_name(intermediate: str) -> str:
    """A row's part of its runs' workdir names: `baseline`, `squad`, `anli+squad-mnli`."""
    return "baseline" if intermediate == BASELINE else intermediate.replace(JOINT_SEPARATOR, "-")


def chains(tasks: Sequence[str], lengths: Sequence[int] | int = (1, 2)) -> list[str]:
    """Every chain of `lengths` stages drawn from `tasks` in every order, no stage twice, as sweep rows:
    chains(["anli", "siqa", "hellaswag"], lengths=[1, 2]) is anli, siqa, hellaswag, anli+siqa, anli+hellaswag,
    siqa+anli, siqa+hellaswag, hellaswag+anli, hellaswag+siqa (shorter chains first, then itertools.permutations'
    order). An element may be a multi-task stage ("squad&mnli")."""
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise SweepError(f"chains() takes a list of stage tasks, got {tasks!r}")
    tasks = list(tasks)
    if not tasks or not all(isinstance(t, str) and t.strip() for t in tasks):
        raise SweepError(f"chains() needs a non-empty list of task names, got {tasks!r}")
    if any(CHAIN_SEPARATOR in t for t in tasks):
        raise SweepError(
            f"chains() takes single stages (a task, or tasks joined with {JOINT_SEPARATOR!r}); "
            f"{[t for t in tasks if CHAIN_SEPARATOR in t]} already chain stages with {CHAIN_SEPARATOR!r}"
        )
    if BASELINE in tasks:
        raise SweepError(
            f"chains(): {BASELINE!r} is the baseline, not a stage; list it in intermediate yourself: "
            f"intermediate=[{BASELINE!r}, *chains(...)]"
        )
    if len(set(tasks)) != len(tasks):
        raise SweepError(f"chains() lists a task twice: {tasks!r}")
    lengths = [lengths] if isinstance(lengths, int) else list(lengths)
    bad = [n for n in lengths if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(tasks)]
    if not lengths or bad or len(set(lengths)) != len(lengths):
        raise SweepError(
            f"chains(): lengths must be distinct stage counts from 1 to {len(tasks)} (the tasks given), got {lengths!r}"
        )
    return [CHAIN_SEPARATOR.join(order) for n in sorted(lengths) for order in itertools.permutations(tasks, n)]


def _check_row(row: str, where: str) -> None:
    """A row is the baseline, a task, or a chain of stages; each stage a task or tasks joined with `&`."""
    if row == BASELINE:
        return
    for stage in row.split(CHAIN_SEPARATOR):
        names = [t.strip() for t in stage.split(JOINT_SEPARATOR)]
        if not stage.strip() or "" in names:
            raise SweepError(
                f"{where}: intermediate {row!r} has an empty stage or task; join stages with "
                f"{CHAIN_SEPARATOR!r} and the tasks of one stage with {JOINT_SEPARATOR!r}, e.g. "
                "anli+squad&mnli"
            )
        if BASELINE in names:
            raise SweepError(f"{where}: intermediate {row!r}: {BASELINE!r} is the baseline's row, not a stage")
        if len(set(names)) != len(names):
            raise SweepError(f"{where}: intermediate {row!r}: stage {stage!r} lists a task twice")


def _plain(value: Any) -> Any:
    """A ConfigDict (or nested mapping) as plain dicts and lists."""
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _names(value: Any, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise SweepError(f"{where}: {key!r} must be a non-empty list of task names, got {value!r}")
    if len(set(value)) != len(value):
        raise SweepError(f"{where}: {key!r} lists a task twice: {value!r}")
    return tuple(value)


def sweep_from_mapping(data: Mapping[str, Any], *, where: str = "sweep", default_name: str = "sweep") -> Sweep:
    """A checked Sweep from the mapping a sweep file returns."""
    data = _plain(data)
    if not isinstance(data, dict):
        raise SweepError(f"{where}: get_sweep() must return a dict or ConfigDict, got {type(data).__name__}")
    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise SweepError(
            f"{where}: unknown sweep key(s) {', '.join(sorted(unknown))}; valid keys: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    for key in ("recipe", "intermediate", "targets"):
        if key not in data:
            raise SweepError(f"{where}: the sweep needs {key!r} (see stilts_jax/experiments/sweep.py)")
    if not isinstance(data["recipe"], str) or not data["recipe"]:
        raise SweepError(f"{where}: 'recipe' must be a config file such as configs/demo.py, got {data['recipe']!r}")
    intermediate = _names(data["intermediate"], "intermediate", where)
    for row in intermediate:
        _check_row(row, where)
    folders: dict[str, str] = {}
    for row in intermediate:  # "a&b" and a task named "a-b" would share workdirs
        if folders.setdefault(row_name(row), row) != row:
            raise SweepError(
                f"{where}: intermediate rows {folders[row_name(row)]!r} and {row!r} would share the "
                f"workdir name {row_name(row)}_to_..."
            )
    targets = _names(data["targets"], "targets", where)
    if BASELINE in targets:
        raise SweepError(f"{where}: {BASELINE!r} is the baseline's intermediate task, not a target")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        or len(set(seeds)) != len(seeds)
    ):
        raise SweepError(f"{where}: 'seeds' must be a non-empty list of distinct integers, got {seeds!r}")
    name = data.get("name") or default_name
    for key in ("overrides", "intermediate_overrides", "target_overrides"):
        if not isinstance(data.get(key, {}), dict):
            raise SweepError(f"{where}: {key!r} must be a mapping, got {data[key]!r}")
    for key, tasks in (("intermediate_overrides", intermediate), ("target_overrides", targets)):
        for task, values in data.get(key, {}).items():
            if task not in tasks:
                raise SweepError(
                    f"{where}: {key} names {task!r}, which is not one of the sweep's tasks ({', '.join(tasks)})"
                )
            if not isinstance(values, dict):
                raise SweepError(f"{where}: {key}[{task!r}] must be a mapping key -> value, got {values!r}")
    # Users' task modules (overrides["task_modules"]): their tasks must be known to plan and to report the sweep.
    from stilts_jax.tasks.user_modules import load_task_modules

    load_task_modules(list(data.get("overrides", {}).get("task_modules", [])))
    return Sweep(
        name=name,
        recipe=data["recipe"],
        root=data.get("root") or f"workdir/sweeps/{name}",
        intermediate=intermediate,
        targets=targets,
        seeds=tuple(seeds),
        overrides=data.get("overrides", {}),
        intermediate_overrides=data.get("intermediate_overrides", {}),
        target_overrides=data.get("target_overrides", {}),
        source=where,
    )


def load_sweep(path: str | Path) -> Sweep:
    """Execute a sweep file and check what its `get_sweep()` returns."""
    file = Path(path)
    if not file.is_file():
        raise SweepError(
            f"sweep file {file} does not exist (sweeps live in configs/sweeps/, e.g. configs/sweeps/demo.py)"
        )
    spec = importlib.util.spec_from_file_location(f"stilts_sweep_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise SweepError(f"{file}:{e.lineno}: syntax error in the sweep file: {e.msg}") from e
    if not hasattr(module, "get_sweep"):
        raise SweepError(f"{file} defines no get_sweep(); it must return the sweep as a dict or ConfigDict")
    return sweep_from_mapping(module.get_sweep(), where=str(file), default_name=file.stem)


def config_value(value: Any) -> str:
    """A value as `--config.key=` text that stilts_jax.config.loader parses back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if value is None:
        return "none"
    return repr(_plain(value))


def _override_args(prefix: str, values: Mapping[str, Any], root: str) -> list[str]:
    args = []
    for key, value in values.items():
        text = config_value(value)
        if isinstance(value, str):
            text = text.replace("{root}", root)
        args.append(f"--config.{prefix}{key}={text}")
    return args


def expand(sweep: Sweep, *, root: str | None = None, extra: Sequence[str] = ()) -> list[Run]:
    """Every run of the sweep, in the order intermediate (baseline first) x target x seed.

    `extra` are further `KEY=VALUE` overrides (keys under the config's top level) applied to every run, last.
    """
    root = root or sweep.root
    extra_args = []
    for item in extra:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SweepError(f"override {item!r} must be KEY=VALUE, e.g. target.train.max_steps=10")
        extra_args.append(f"--config.{key.removeprefix('--config.')}={value}")
    templated = "{intermediate}" in sweep.recipe or "{target}" in sweep.recipe
    ordered = sorted(sweep.intermediate, key=lambda task: task != BASELINE)  # stable: baseline first
    runs = []
    for intermediate in ordered:
        for target in sweep.targets:
            for seed in sweep.seeds:
                name = run_name(intermediate, target, seed)
                workdir = as_path(root) / name
                if templated:
                    args = [f"--config={sweep.recipe.format(intermediate=intermediate, target=target)}"]
                else:
                    args = [
                        f"--config={sweep.recipe}",
                        f"--config.intermediate.task={'' if intermediate == BASELINE else intermediate}",
                        f"--config.target.task={target}",
                    ]
                args += [f"--config.seed={seed}", f"--config.workdir={workdir}"]
                args += _override_args("", sweep.overrides, root)
                if intermediate != BASELINE:
                    args += _override_args("intermediate.", sweep.intermediate_overrides.get(intermediate, {}), root)
                args += _override_args("target.", sweep.target_overrides.get(target, {}), root)
                args += extra_args
                runs.append(Run(intermediate, target, seed, name, workdir, tuple(args)))
    return runs


def shell_command(run: Run, python: str = "python") -> str:
    """The run as one shell command line (quoted so that spaces and shell characters survive)."""
    return shlex.join([python, "-m", "stilts_jax.main", *run.args])


def assign_hosts(runs: Sequence[Run], hosts: Sequence[str]) -> list[tuple[str, Run]]:
    """Runs dealt round-robin over hosts, in run order."""
    if not hosts:
        raise SweepError("no hosts given; pass --hosts h1,h2 or --hosts-file FILE (one host per line)")
    return [(hosts[i % len(hosts)], run) for i, run in enumerate(runs)]


def ssh_command(host: str, run: Run, *, remote_dir: str, python: str = "python") -> str:
    """`ssh HOST 'cd DIR && python -m stilts_jax.main ...'`: the inner command quoted once more for the remote shell."""
    inner = f"cd {shlex.quote(remote_dir)} && {shell_command(run, python)}"
    return shlex.join(["ssh", host, inner])


def read_hosts(hosts: str | None, hosts_file: str | None) -> list[str]:
    """Hosts from a comma-separated list or a file with one host per line (`#` comments and blank lines ignored)."""
    found: list[str] = []
    if hosts:
        found += [h.strip() for h in hosts.split(",") if h.strip()]
    if hosts_file:
        path = Path(hosts_file)
        if not path.is_file():
            raise SweepError(f"hosts file {path} does not exist")
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                found.append(line)
    return found
