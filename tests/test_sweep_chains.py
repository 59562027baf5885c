"""Sweeps over chains: the `chains()` generator, chain rows and their workdirs, and the report with chain rows beside
the single stages and the baseline, and each benchmark's classification average (fast: hand-written results)."""

from __future__ import annotations

import csv
import statistics
import textwrap

import pytest

from stilts_jax.config.loader import parse_config_args
from stilts_jax.experiments.aggregate import aggregate, column_label
from stilts_jax.experiments.heatmap import delta_matrix
from stilts_jax.experiments.report import csv_text, latex, markdown, write_report
from stilts_jax.experiments.sweep import SweepError, chains, expand, load_sweep, run_name, sweep_from_mapping
from stilts_jax.pipeline.chain import chain_stages
from tests.test_sweep import _write_results


def test_chains_are_every_ordering_of_each_length_without_repeats():
    rows = chains(["anli", "cosmosqa", "hellaswag", "siqa"], lengths=[1, 2])
    assert rows[:4] == ["anli", "cosmosqa", "hellaswag", "siqa"]
    assert rows[4:] == [
        "anli+cosmosqa",
        "anli+hellaswag",
        "anli+siqa",
        "cosmosqa+anli",
        "cosmosqa+hellaswag",
        "cosmosqa+siqa",
        "hellaswag+anli",
        "hellaswag+cosmosqa",
        "hellaswag+siqa",
        "siqa+anli",
        "siqa+cosmosqa",
        "siqa+hellaswag",
    ]
    assert len(chains(["a", "b", "c"], lengths=[3])) == 6 and chains(["a", "b"], 2) == ["a+b", "b+a"]
    assert chains(["squad&mnli", "anli"], lengths=[2]) == ["squad&mnli+anli", "anli+squad&mnli"]  # stages may be joint
    assert chains(["a", "b"], lengths=[2, 1]) == ["a", "b", "a+b", "b+a"]  # shorter chains first


@pytest.mark.parametrize(
    "tasks, lengths, message",
    [
        (["anli", "anli"], [1], "lists a task twice"),
        (["anli", "siqa"], [3], "from 1 to 2"),
        (["anli", "siqa"], [0], "from 1 to 2"),
        (["anli", "siqa"], [1, 1], "distinct"),
        (["anli+siqa"], [1], "already chain stages"),
        (["none", "anli"], [1], "is the baseline"),
        ("anli", [1], "takes a list"),
        ([], [1], "non-empty"),
    ],
)
def test_chains_refuses_what_it_cannot_mean(tasks, lengths, message):
    with pytest.raises(SweepError, match=message):
        chains(tasks, lengths=lengths)


def test_a_sweep_file_uses_the_generator_and_chain_rows_make_runnable_commands(tmp_path):
    file = tmp_path / "chains.py"
    file.write_text(
        textwrap.dedent("""\
        from stilts_jax.experiments.sweep import chains

        def get_sweep():
            return dict(recipe="configs/stilts.py:intermediate={intermediate},target={target}",
                        intermediate=["none", *chains(["anli", "siqa"], lengths=[1, 2]), "anli+squad&mnli"],
                        targets=["xcopa"])
        """)
    )
    sweep = load_sweep(file)
    assert sweep.intermediate == ("none", "anli", "siqa", "anli+siqa", "siqa+anli", "anli+squad&mnli")
    runs = expand(sweep, root=str(tmp_path / "root"))
    assert [r.name for r in runs] == [
        "baseline_to_xcopa_seed0",
        "anli_to_xcopa_seed0",
        "siqa_to_xcopa_seed0",
        "anli+siqa_to_xcopa_seed0",
        "siqa+anli_to_xcopa_seed0",
        "anli+squad-mnli_to_xcopa_seed0",
    ]  # "&" is "-" in workdir names
    config, _ = parse_config_args(list(runs[-1].args))
    assert config.intermediate.task == "anli+squad&mnli" and config.workdir == str(runs[-1].workdir)
    assert [folder for folder, _ in chain_stages(config.intermediate)] == [
        "intermediate/0_anli",
        "intermediate/1_squad-mnli",
    ]
    # The plain-recipe form passes the chain as --config.intermediate.task.
    plain = expand(
        sweep_from_mapping(dict(recipe="configs/chain_demo.py", intermediate=["squad&mnli+mnli"], targets=["xnli"])),
        root=str(tmp_path),
    )
    config, _ = parse_config_args(list(plain[0].args))
    assert config.intermediate.task == "squad&mnli+mnli" and plain[0].name == "squad-mnli+mnli_to_xnli_seed0"


@pytest.mark.parametrize(
    "rows, message",
    [
        (["anli+"], "empty stage"),
        (["anli+squad&"], "empty stage or task"),
        (["anli+none"], "baseline's row"),
        (["squad&squad"], "lists a task twice"),
        (["a&b", "a-b"], "would share the workdir name a-b"),
    ],
)
def test_malformed_chain_rows_are_refused(rows, message):
    with pytest.raises(SweepError, match=message):
        sweep_from_mapping(dict(recipe="configs/demo.py", intermediate=rows, targets=["xnli"]))


# --- the report of a chain sweep, on hand-written results ---------------------------------------------------------

ROWS = ["none", "squad", "mnli", "squad+mnli", "mnli+squad", "squad&mnli"]
TARGETS = ["xcopa", "xnli", "pawsx"]
# row -> (xcopa, xnli, pawsx) per seed: seeds 0 and 1
VALUES = {row: {t: [50.0 + 2 * i + j + s for s in (0, 1)] for j, t in enumerate(TARGETS)} for i, row in enumerate(ROWS)}


@pytest.fixture
def chain_table(tmp_path):
    sweep = sweep_from_mapping(dict(recipe="configs/chain_demo.py", intermediate=ROWS, targets=TARGETS, seeds=[0, 1]))
    runs = expand(sweep, root=str(tmp_path))
    for run in runs:
        _write_results(run, VALUES[run.intermediate][run.target][run.seed])
    return aggregate(runs, {}), tmp_path


def test_chain_rows_stand_beside_the_single_stages_and_the_baseline(chain_table):
    table, root = chain_table
    assert table.rows == ROWS  # baseline first, then the sweep's order
    cell = table.cells[("squad+mnli", "xnli")]
    assert cell.mean == pytest.approx(statistics.fmean(VALUES["squad+mnli"]["xnli"]))
    assert cell.delta == pytest.approx(cell.mean - statistics.fmean(VALUES["none"]["xnli"]))
    md = markdown(table, "chains")
    table_rows = [
        line.split("|")[1].strip()
        for line in md.splitlines()
        if line.startswith("| ") and not line.startswith(("| intermediate", "| run ")) and "_to_" not in line
    ]
    assert table_rows == ["baseline (none)", "squad", "mnli", "squad+mnli", "mnli+squad", "squad&mnli"]
    assert "`a+b` is a chain" in md and "`a&b` trains a and b together" in md
    assert "| squad-mnli_to_xnli_seed1 | done |" in md  # the runs list the workdir names
    tex = latex(table, "chains")
    assert r"squad\&mnli & " in tex and "squad+mnli & " in tex  # "&" escaped for LaTeX
    assert delta_matrix(table).shape == (len(ROWS), len(table.columns()))
    paths = write_report(table, root / "out", "chains")
    assert all(path.exists() for path in paths)


def test_each_benchmarks_classification_average_is_a_column(chain_table):
    table, _ = chain_table
    assert table.columns() == [
        "xcopa",
        "xnli",
        "pawsx",
        "xtreme",
        "xtreme/classification",
        "xtreme-r",
        "xtreme-r/classification",
    ]
    assert [column_label(c) for c in table.columns()[3:]] == [
        "XTREME avg",
        "XTREME classification avg",
        "XTREME-R avg",
        "XTREME-R classification avg",
    ]
    # XTREME-R's classification group is XNLI and XCOPA (evaluate.py); PAWS-X is no XTREME-R task.
    assert table.benchmark_tasks["xtreme-r/classification"] == ["xcopa", "xnli"]
    assert table.benchmark_tasks["xtreme/classification"] == ["xnli", "pawsx"]
    for row in ROWS:
        v = VALUES[row]
        cell = table.cells[(row, "xtreme-r/classification")]
        assert cell.seeds == {s: pytest.approx((v["xcopa"][s] + v["xnli"][s]) / 2) for s in (0, 1)}
        assert table.cells[(row, "xtreme/classification")].seeds == {
            s: pytest.approx((v["xnli"][s] + v["pawsx"][s]) / 2) for s in (0, 1)
        }
        assert cell.complete
    chain = table.cells[("mnli+squad", "xtreme-r/classification")]
    assert chain.delta == pytest.approx(chain.mean - table.cells[("none", "xtreme-r/classification")].mean)
    md = markdown(table, "chains")
    assert (
        "| intermediate | xcopa | xnli | pawsx | XTREME avg | XTREME classification avg | XTREME-R avg | "
        "XTREME-R classification avg |"
    ) in md
    assert (
        "- XTREME-R classification avg: mean over xcopa (11 languages), xnli (15 languages), of XTREME-R's "
        "classification tasks (xnli, xcopa, as evaluate.py groups them)."
    ) in md
    assert (
        "XTREME-R avg: mean over xcopa (11 languages), xnli (15 languages); not in XTREME-R, so left out: pawsx" in md
    )
    rows = {(r["intermediate"], r["column"]): r for r in csv.DictReader(csv_text(table).splitlines())}
    assert rows[("squad&mnli", "xtreme-r/classification")]["metric"] == "average"
    assert float(rows[("squad&mnli", "xtreme-r/classification")]["mean"]) == pytest.approx(
        statistics.fmean((VALUES["squad&mnli"]["xcopa"][s] + VALUES["squad&mnli"]["xnli"][s]) / 2 for s in (0, 1))
    )


def test_a_classification_average_says_which_of_its_tasks_the_sweep_lacks(tmp_path):
    sweep = sweep_from_mapping(
        dict(recipe="configs/chain_demo.py", intermediate=["none", "squad+mnli"], targets=["xnli", "tydiqa"])
    )
    runs = expand(sweep, root=str(tmp_path))
    for run in runs:
        _write_results(run, 60.0)
    table = aggregate(runs, {})
    assert table.columns() == [
        "xnli",
        "tydiqa",
        "xtreme",
        "xtreme/classification",
        "xtreme-r",
        "xtreme-r/classification",
    ]
    md = markdown(table, "t")
    assert "classification tasks (xnli, xcopa, as evaluate.py groups them); not in this sweep: xcopa." in md
    assert "classification tasks (pawsx, xnli, as evaluate.py groups them); not in this sweep: pawsx." in md
    assert table.cells[("squad+mnli", "xtreme-r/classification")].mean == pytest.approx(60.0)
    # No classification target, no classification column (the demo sweep's TyDiQA-only table is unchanged).
    only_qa = expand(
        sweep_from_mapping(dict(recipe="configs/demo.py", intermediate=["none"], targets=["tydiqa"])),
        root=str(tmp_path),
    )
    assert aggregate(only_qa, {}).columns() == ["tydiqa", "xtreme", "xtreme-r"]
    assert run_name("squad&mnli", "xnli", 0) == "squad-mnli_to_xnli_seed0"
