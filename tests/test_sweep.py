"""Sweeps: expansion and naming, the command lines, resumable execution with retries, aggregation and the report."""

from __future__ import annotations

import csv
import json
import shlex
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.evaluation.xtreme_tasks import TASK2LANGS
from stilts_jax.experiments import runner
from stilts_jax.experiments.aggregate import aggregate, format_cell
from stilts_jax.experiments.heatmap import COLORMAP, cell_colors, delta_matrix, write_heatmap
from stilts_jax.experiments.report import csv_text, latex, markdown, write_report
from stilts_jax.experiments.sweep import (
    SweepError,
    assign_hosts,
    expand,
    load_sweep,
    run_name,
    ssh_command,
    sweep_from_mapping,
)

ROOT = Path(__file__).resolve().parent.parent


def _sweep(**changes):
    data = dict(
        name="t",
        recipe="configs/demo.py",
        root="sweeps/t",
        intermediate=["squad", "none", "mnli"],
        targets=["tydiqa"],
        seeds=[0, 1],
    )
    data.update(changes)
    return sweep_from_mapping(data)


# --- expansion, names, commands --------------------------------------------------------------------------------


def test_expansion_is_intermediate_x_target_x_seed_with_the_baseline_first_and_stable_names():
    runs = expand(_sweep(targets=["tydiqa", "xnli"]))
    assert [r.name for r in runs] == [
        "baseline_to_tydiqa_seed0",
        "baseline_to_tydiqa_seed1",
        "baseline_to_xnli_seed0",
        "baseline_to_xnli_seed1",
        "squad_to_tydiqa_seed0",
        "squad_to_tydiqa_seed1",
        "squad_to_xnli_seed0",
        "squad_to_xnli_seed1",
        "mnli_to_tydiqa_seed0",
        "mnli_to_tydiqa_seed1",
        "mnli_to_xnli_seed0",
        "mnli_to_xnli_seed1",
    ]
    assert runs == expand(_sweep(targets=["tydiqa", "xnli"]))  # stable
    assert len({r.workdir for r in runs}) == len(runs)
    assert all(r.workdir == Path("sweeps/t") / r.name for r in runs)
    assert run_name("none", "xcopa", 3) == "baseline_to_xcopa_seed3"


def test_run_arguments_give_the_intended_config():
    sweep = _sweep(
        overrides={"model.name": "{root}/tiny", "target.train.epochs": 1, "evaluation.languages": ["en", "ar"]},
        intermediate_overrides={"mnli": {"source.kind": "hf", "source.path": "", "max_length": 128}},
        target_overrides={"tydiqa": {"train.dropout": False}},
    )
    runs = {r.name: r for r in expand(sweep, root="/tmp/my sweep", extra=["target.train.max_steps=7"])}
    base, _ = parse_config_args(list(runs["baseline_to_tydiqa_seed1"].args))
    mnli, _ = parse_config_args(list(runs["mnli_to_tydiqa_seed0"].args))
    assert base.intermediate.task == "" and base.target.task == "tydiqa" and base.seed == 1
    assert base.workdir == "/tmp/my sweep/baseline_to_tydiqa_seed1"
    assert base.model.name == "/tmp/my sweep/tiny"
    assert base.target.train.epochs == 1.0 and base.target.train.max_steps == 7
    assert list(base.evaluation.languages) == ["en", "ar"] and base.target.train.dropout is False
    assert base.intermediate.source.kind == "xtreme"  # the mnli override applies to mnli runs only
    assert mnli.intermediate.task == "mnli" and mnli.intermediate.source.kind == "hf"
    assert mnli.intermediate.source.path == "" and mnli.intermediate.max_length == 128


def test_templated_recipe_gets_the_pair_as_arguments():
    runs = expand(_sweep(recipe="configs/stilts.py:intermediate={intermediate},target={target}"))
    assert runs[0].args[0] == "--config=configs/stilts.py:intermediate=none,target=tydiqa"
    config, _ = parse_config_args(list(runs[-1].args))
    assert config.intermediate.task == "mnli" and config.target.task == "tydiqa"
    assert config.model.name == "xlm-roberta-large"  # configs/stilts.py, not the demo


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(targets=["none"]), "not a target"),
        (dict(seeds=[0, 0]), "distinct integers"),
        (dict(intermediate=[]), "non-empty list"),
        (dict(intermediate_overrides={"qqp": {"max_length": 1}}), "not one of the sweep's tasks"),
        (dict(epochs=3), "unknown sweep key"),
    ],
)
def test_bad_sweeps_are_refused_with_the_reason(change, message):
    with pytest.raises(SweepError, match=message):
        _sweep(**change)


def test_hosts_are_assigned_round_robin_and_commands_survive_the_remote_shell():
    runs = expand(_sweep(), root="/data/my sweep")
    pairs = assign_hosts(runs, ["a", "b", "c", "d"])
    assert [h for h, _ in pairs] == ["a", "b", "c", "d", "a", "b"]
    line = ssh_command("b", runs[1], remote_dir="/srv/stilts jax", python="python3")
    ssh, host, inner = shlex.split(line)
    assert (ssh, host) == ("ssh", "b")
    words = shlex.split(inner)
    assert words[:3] == ["cd", "/srv/stilts jax", "&&"]
    assert words[3:6] == ["python3", "-m", "stilts_jax.main"]
    assert tuple(words[6:]) == runs[1].args


def test_the_demo_sweep_file_and_the_commands_cli(tmp_path):
    sweep = load_sweep(ROOT / "configs" / "sweeps" / "demo.py")
    assert sweep.intermediate == ("none", "squad", "mnli") and sweep.targets == ("tydiqa",) and sweep.seeds == (0, 1)
    out = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            "commands",
            "--sweep",
            "configs/sweeps/demo.py",
            "--root",
            str(tmp_path / "r s"),
            "--steps",
            "5",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 6
    for line, run in zip(lines, expand(sweep, root=str(tmp_path / "r s"))):
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "stilts_jax.main"]
        assert f"--config.workdir={run.workdir}" in words
        assert "--config.intermediate.train.max_steps=5" in words and "--config.target.train.max_steps=5" in words
        config, _ = parse_config_args(words[3:])  # every line is a valid pipeline command
        assert config.seed == run.seed
    hosts = subprocess.run(
        [
            sys.executable,
            "launch/sweep.py",
            "commands",
            "--sweep",
            "configs/sweeps/demo.py",
            "--hosts",
            "gpu1,gpu2",
            "--remote-dir",
            "/srv/x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert [shlex.split(line)[1] for line in hosts.stdout.splitlines()] == ["gpu1", "gpu2"] * 3
    assert not (tmp_path / "r s").exists()  # commands runs nothing


# --- execution: a real subprocess standing in for the pipeline ----------------------------------------------------

FAKE_MAIN = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--config.") and "=" in a)
    workdir = Path(args["config.workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    plan = json.loads(Path(sys.argv[1]).read_text()).get(workdir.name, {})
    calls = workdir / "calls"
    n = int(calls.read_text()) + 1 if calls.exists() else 1
    calls.write_text(str(n))
    print(f"fake pipeline call {n} for {workdir.name}")
    if n <= plan.get("fail_times", 0):
        print("boom: simulated failure", file=sys.stderr)
        sys.exit(3)
    if plan.get("no_results"):
        sys.exit(0)
    score = 50.0 + int(args["config.seed"])
    (workdir / "results.json").write_text(json.dumps({"per_language": {
        lang: {"f1": score, "exact_match": score} for lang in ("ar", "bn", "en", "fi", "id", "ko", "ru", "sw", "te")}}))
    (workdir / "evaluation").mkdir(exist_ok=True)
    (workdir / "evaluation" / "phase_done.json").write_text("{}")
""")


def _fake_entrypoint(tmp_path: Path, plan: dict) -> list[str]:
    script, plan_file = tmp_path / "fake_main.py", tmp_path / "plan.json"
    script.write_text(FAKE_MAIN)
    plan_file.write_text(json.dumps(plan))
    return [sys.executable, str(script), str(plan_file)]


def _calls(run) -> int:
    path = run.workdir / "calls"
    return int(path.read_text()) if path.exists() else 0


def test_runs_are_retried_recorded_and_skipped_once_finished(tmp_path):
    root = tmp_path / "sweep"
    runs = expand(_sweep(intermediate=["none", "squad"], seeds=[0]), root=str(root))
    base, squad = runs
    entry = _fake_entrypoint(tmp_path, {base.name: {"fail_times": 1}, squad.name: {"fail_times": 9}})
    lines: list[str] = []
    records = runner.run_sweep(runs, root, "t", retries=1, entrypoint=entry, say=lines.append)

    assert records[base.name]["status"] == "done" and records[base.name]["exit_codes"] == [3, 0]
    assert records[base.name]["attempts"] == 2 and len(records[base.name]["durations_s"]) == 2
    assert records[squad.name]["status"] == "failed" and records[squad.name]["exit_codes"] == [3, 3]
    assert _calls(base) == 2 and _calls(squad) == 2
    assert json.loads((root / "sweep_state.json").read_text())["runs"] == records  # the file says the same
    log = (squad.workdir / "sweep.log").read_text()
    assert log.count("=== ") == 2 and "boom: simulated failure" in log and "fake pipeline call 2" in log
    assert any(line.startswith(f"[1/2] {base.name}: done") for line in lines)
    assert any(line.startswith(f"[2/2] {squad.name}: failed (exit 3)") for line in lines)
    assert runner.summary_line(records, runs) == ("1 done, 1 failed", 1)

    # The same command again: the finished run is skipped, the failed one gets its attempts again.
    lines.clear()
    records = runner.run_sweep(runs, root, "t", retries=0, entrypoint=entry, say=lines.append)
    assert _calls(base) == 2 and _calls(squad) == 3
    assert lines[0] == f"[1/2] {base.name}: finished earlier, skipped"
    assert records[squad.name]["attempts"] == 3 and records[squad.name]["status"] == "failed"


def test_a_zero_exit_without_results_is_a_failure_and_finished_workdirs_need_no_state(tmp_path):
    root = tmp_path / "sweep"
    runs = expand(_sweep(intermediate=["none"], seeds=[0, 1]), root=str(root))
    entry = _fake_entrypoint(tmp_path, {runs[0].name: {"no_results": True}})
    records = runner.run_sweep(runs, root, "t", retries=0, entrypoint=entry, say=lambda _: None)
    assert records[runs[0].name]["status"] == "failed"
    assert "left no evaluation/phase_done.json" in records[runs[0].name]["note"]
    assert records[runs[1].name]["status"] == "done"

    (root / "sweep_state.json").unlink()  # the state is lost; the workdirs still say what is finished
    records = runner.run_sweep(runs[1:], root, "t", retries=0, entrypoint=entry, say=lambda _: None)
    assert _calls(runs[1]) == 1 and records[runs[1].name]["status"] == "done"


def test_a_corrupt_state_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "sweep_state.json").write_text("{oops")
    with pytest.raises(SweepError, match="sweep_state.json:1: not valid JSON"):
        runner.run_sweep(expand(_sweep(), root=str(tmp_path)), tmp_path, "t", say=lambda _: None)


# --- aggregation on hand-written results ----------------------------------------------------------------------

# (intermediate, target) -> the per-seed value every language of the benchmark gets (None: that run failed).
SCORES = {
    ("none", "tydiqa"): [50.0, 54.0],
    ("squad", "tydiqa"): [60.0, 62.0],
    ("mnli", "tydiqa"): [49.0, 51.0],
    ("none", "udpos"): [70.0, 72.0],
    ("squad", "udpos"): [71.0, 71.0],
    ("mnli", "udpos"): [75.0, None],
    ("none", "xcopa"): [55.0, 57.0],
    ("squad", "xcopa"): [54.0, 54.0],
    ("mnli", "xcopa"): [60.0, 62.0],
}


def _write_results(run, value: float) -> None:
    """results.json as the pipeline writes it; XTREME-R-only languages score 0 to show which list is averaged."""
    xtreme_languages = set(TASK2LANGS["xtreme"].get(run.target, []))
    languages = TASK2LANGS["xtreme-r"].get(run.target) or TASK2LANGS["xtreme"][run.target]
    per_language = {}
    for lang in languages:
        v = value if (lang in xtreme_languages or not xtreme_languages) else 0.0
        if run.target == "tydiqa":  # (EM + F1) / 2 = v
            per_language[lang] = {"f1": v + 10, "exact_match": v - 10, "baseline_f1": 99.0, "examples": 40}
        elif run.target == "udpos":
            per_language[lang] = {"f1": v, "baseline_f1": 99.0, "examples": 40}
        else:
            per_language[lang] = {"accuracy": v, "baseline_accuracy": 99.0, "examples": 40}
    run.workdir.mkdir(parents=True)
    (run.workdir / "results.json").write_text(json.dumps({"per_language": per_language, "task": run.target}))
    (run.workdir / "evaluation").mkdir()
    (run.workdir / "evaluation" / "phase_done.json").write_text("{}")


@pytest.fixture
def table_and_runs(tmp_path):
    runs = expand(_sweep(targets=["tydiqa", "udpos", "xcopa"]), root=str(tmp_path))
    records = {}
    for run in runs:
        value = SCORES[(run.intermediate, run.target)][run.seed]
        if value is None:
            records[run.name] = {"status": "failed", "attempts": 2, "durations_s": [1.0, 1.0]}
        else:
            _write_results(run, value)
    return aggregate(runs, records), runs


def test_cells_are_mean_and_sample_std_over_seeds_with_the_delta_to_the_baseline(table_and_runs):
    table, _ = table_and_runs
    assert table.rows == ["none", "squad", "mnli"]
    assert table.columns() == ["tydiqa", "udpos", "xcopa", "xtreme", "xtreme-r", "xtreme-r/classification"]
    cell = table.cells[("squad", "tydiqa")]
    assert cell.seeds == {0: pytest.approx(60.0), 1: pytest.approx(62.0)}
    assert cell.mean == pytest.approx(61.0) and cell.std == pytest.approx(np.std([60, 62], ddof=1))
    assert cell.delta == pytest.approx(61.0 - 52.0)
    assert table.cells[("none", "tydiqa")].delta == pytest.approx(0.0)
    # UD-POS in the table uses XTREME's 33 languages (the XTREME-R-only ones scored 0 and must not count).
    assert table.cells[("none", "udpos")].mean == pytest.approx(71.0)
    assert table.cells[("squad", "xcopa")].delta == pytest.approx(54.0 - 56.0)
    assert format_cell(table.cells[("squad", "tydiqa")], with_delta=True) == "61.0 ± 1.4 (+9.0)"


def test_benchmark_averages_use_each_benchmarks_tasks_and_languages(table_and_runs):
    table, _ = table_and_runs
    assert table.benchmark_tasks == {
        "xtreme": ["tydiqa", "udpos"],
        "xtreme-r": ["tydiqa", "udpos", "xcopa"],
        "xtreme/classification": [],
        "xtreme-r/classification": ["xcopa"],
    }
    xtreme = table.cells[("none", "xtreme")]
    assert xtreme.seeds == {0: pytest.approx((50 + 70) / 2), 1: pytest.approx((54 + 72) / 2)}
    # XTREME-R: UD-POS over its 38 languages, 5 of which scored 0 here.
    udpos_r = [v * 33 / 38 for v in (70.0, 72.0)]
    expected = [(50 + udpos_r[0] + 55) / 3, (54 + udpos_r[1] + 57) / 3]
    assert list(table.cells[("none", "xtreme-r")].seeds.values()) == pytest.approx(expected)
    assert table.cells[("none", "xtreme-r")].std == pytest.approx(statistics.stdev(expected))
    squad = table.cells[("squad", "xtreme")]
    assert squad.delta == pytest.approx(statistics.fmean([(60 + 71) / 2, (62 + 71) / 2]) - statistics.fmean([60, 63]))


def test_missing_runs_are_shown_never_dropped(table_and_runs, tmp_path):
    table, _ = table_and_runs
    cell = table.cells[("mnli", "udpos")]
    assert cell.seeds == {0: pytest.approx(75.0)} and not cell.complete
    assert cell.problems == ["mnli_to_udpos_seed1: failed"]
    assert format_cell(cell, with_delta=True) == "75.0 (1/2 seeds) (+4.0)"
    average = table.cells[("mnli", "xtreme")]  # seed 1 has no UD-POS: the average is over seed 0 only, and says so
    assert average.seeds == {0: pytest.approx((49 + 75) / 2)} and "mnli_to_udpos_seed1: failed" in average.problems
    md = markdown(table, "t")
    assert "| mnli | 50.0 ± 1.4 (-2.0) | 75.0 (1/2 seeds) (+4.0) |" in md
    assert "- mnli / udpos: mnli_to_udpos_seed1: failed" in md
    assert "| mnli_to_udpos_seed1 | failed | - | 2 | 2 | - |" in md
    assert "XTREME avg: mean over tydiqa (9 languages), udpos (33 languages); not in XTREME, so left out: xcopa" in md

    (tmp_path / "mnli_to_tydiqa_seed0" / "results.json").unlink()  # a finished run losing its results
    again = aggregate(*_runs_and_state(tmp_path))
    assert again.cells[("mnli", "tydiqa")].problems == ["mnli_to_tydiqa_seed0: pending"]


def _runs_and_state(root: Path):
    return expand(_sweep(targets=["tydiqa", "udpos", "xcopa"]), root=str(root)), {}


def test_csv_has_one_row_per_cell_with_seed_scores(table_and_runs):
    table, _ = table_and_runs
    rows = list(csv.DictReader(csv_text(table).splitlines()))
    assert len(rows) == 3 * 6
    squad = next(r for r in rows if r["intermediate"] == "squad" and r["column"] == "tydiqa")
    assert float(squad["mean"]) == pytest.approx(61.0) and float(squad["delta"]) == pytest.approx(9.0)
    assert float(squad["seed_0"]) == pytest.approx(60.0) and float(squad["seed_1"]) == pytest.approx(62.0)
    assert squad["metric"] == "(EM+F1)/2" and squad["status"] == "complete"
    failed = next(r for r in rows if r["intermediate"] == "mnli" and r["column"] == "udpos")
    assert failed["seed_1"] == "" and failed["status"] == "incomplete" and failed["seeds_scored"] == "1"


def test_latex_table_has_every_cell_the_best_complete_mean_in_bold_and_escaped_names(table_and_runs):
    table, _ = table_and_runs
    tex = latex(table, "demo_sweep")
    body = tex[tex.index(r"\midrule") : tex.index(r"\bottomrule")]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert [row.split(" & ")[0] for row in rows] == ["baseline (none)", "squad", "mnli"]
    assert all(row.count(" & ") == 6 for row in rows)  # the intermediate task and 6 columns, as the tabular says
    assert r"\begin{tabular}{lcccccc}" in tex and tex.count("{") == tex.count("}")
    squad = rows[1].split(" & ")
    assert squad[1] == r"\textbf{61.0}$_{\pm 1.4}$ (+9.0)"  # the best TyDiQA mean, with std and delta
    mnli = rows[2].split(" & ")
    assert mnli[2] == r"75.0 (+4.0)$^\dagger$"  # a seed missing: marked, and never bold although the highest mean
    assert rows[0].split(" & ")[2].startswith(r"\textbf{71.0}")  # the best complete UD-POS mean instead
    assert r"\label{tab:sweep-demo-sweep}" in tex and "seeds or languages missing" in tex
    table.rows[1] = "anli_plus"  # names are escaped for LaTeX
    table.cells.update({("anli_plus", c): table.cells[("squad", c)] for c in table.columns()})
    assert r"anli\_plus & " in latex(table, "t")


def test_heatmap_colours_deltas_around_zero_and_writes_a_readable_png(table_and_runs, tmp_path):
    import matplotlib.image
    from matplotlib import colormaps

    table, _ = table_and_runs
    deltas = delta_matrix(table)
    assert deltas.shape == (3, 6) and np.allclose(deltas[0], 0.0)
    cmap = colormaps[COLORMAP]
    up, down, zero, missing = cell_colors(np.array([[1.0, -4.0, 0.0, np.nan]]))[0]
    # Centred at 0 with a symmetric range (+-4 here), not stretched between the smallest and largest delta.
    assert np.allclose(up, cmap(0.5 + 0.5 * 1 / 4)) and np.allclose(down, cmap(0.0)) and np.allclose(zero, cmap(0.5))
    assert up[2] > up[0] and down[0] > down[2]  # above the baseline blue, below red
    assert min(zero[:3]) > 0.9 and np.allclose(missing[:3], missing[0])  # white at 0, grey when missing
    paths = write_report(table, tmp_path / "out", "t")
    assert [p.name for p in paths] == ["results.md", "results.tex", "results.csv", "heatmap.png"]
    image = matplotlib.image.imread(paths[3])
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300
    assert not list((tmp_path / "out").glob(".*.tmp"))  # atomic writes leave no temporaries
    write_heatmap(table, paths[3], "again")  # overwriting works


def test_tables_name_the_transfer_protocol_and_flag_a_sweep_that_mixes_them(table_and_runs):
    table, runs = table_and_runs
    # Results written without a protocol are zero-shot (the only protocol before the label existed).
    assert table.transfers() == ["zero-shot"]
    assert "Transfer protocol: zero-shot." in markdown(table, "demo")
    assert "Cross-lingual transfer (zero-shot)" in latex(table, "demo")
    translated = next(run for run in runs if (run.workdir / "results.json").exists())
    results = json.loads((translated.workdir / "results.json").read_text())
    results["protocol"] = {"transfer": "translate-train-all", "setting": "translate-train-all: ..."}
    (translated.workdir / "results.json").write_text(json.dumps(results))
    mixed = aggregate(runs, {})
    assert mixed.transfers() == ["translate-train-all", "zero-shot"]
    text = markdown(mixed, "demo")
    assert "Transfer protocol: MIXED (translate-train-all, zero-shot" in text
    assert f"| {translated.name} | done | translate-train-all |" in text


def test_averaged_checkpoints_get_a_table_of_their_own(table_and_runs, tmp_path):
    """Runs with evaluation.average_checkpoints hold the averaged model's scores in results.json; the sweep report
    tables them apart (results_avg-last-2.md ...), and the main table names that table."""
    from stilts_jax.experiments.aggregate import AVERAGED_RESULTS
    from stilts_jax.pipeline.zero_shot import AVERAGED, averaged_label

    assert AVERAGED_RESULTS == AVERAGED
    label = averaged_label(2)
    table, runs = table_and_runs
    assert table.averaged == [] and "Averaged models" not in markdown(table, "t")
    averaged_runs = [run for run in runs if run.target == "tydiqa"]
    for run in averaged_runs:
        path = run.workdir / "results.json"
        results = json.loads(path.read_text())
        # The averaged model scores 1 point above the selected one in every language.
        shifted = {
            lang: {key: value + 1.0 if key in ("f1", "exact_match") else value for key, value in row.items()}
            for lang, row in results["per_language"].items()
        }
        results[AVERAGED] = {"label": label, "steps": [4, 6], "per_language": shifted}
        path.write_text(json.dumps(results))
    main = aggregate(runs, {})
    assert main.averaged == [label]
    averaged = aggregate(runs, {}, label)
    for row in averaged.rows:
        assert averaged.cells[(row, "tydiqa")].mean == pytest.approx(main.cells[(row, "tydiqa")].mean + 1.0)
    # Runs without an averaged model are missing from its table, and say why.
    assert averaged.cells[("squad", "udpos")].mean is None
    assert "no avg-last-2 results" in " ".join(averaged.cells[("squad", "udpos")].problems)
    out = tmp_path / "report"
    assert [p.name for p in write_report(averaged, out, "t")] == [
        "results_avg-last-2.md",
        "results_avg-last-2.tex",
        "results_avg-last-2.csv",
        "heatmap_avg-last-2.png",
    ]
    text = (out / "results_avg-last-2.md").read_text()
    assert text.startswith("# Sweep t: intermediate task x target task, avg-last-2")
    assert "uniform average of the parameters of the last 2 kept checkpoints" in text
    assert "avg-last-2, the average of the last 2 checkpoints" in (out / "results_avg-last-2.tex").read_text()
    assert "Averaged models of the same runs: avg-last-2 (results_avg-last-2.md)." in markdown(main, "t")
