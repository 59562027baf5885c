"""What a crash leaves behind does not block the rerun: metrics.jsonl, cached language results, score's exit code."""

from __future__ import annotations

import json

import pytest

from stilts_jax import score
from stilts_jax.core.errors import StiltsError
from stilts_jax.pipeline.language_results import LanguageResults
from stilts_jax.train.metrics_log import MetricsLog, read_metrics

GOOD = '{"step": 1, "split": "train", "loss": 2.0}\n{"step": 2, "split": "train", "loss": 1.5}\n'


def test_a_partial_last_metrics_line_is_dropped_and_new_lines_start_clean(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text(GOOD + '{"step": 3, "split": "tr')  # killed mid-write
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    log = MetricsLog(tmp_path)
    assert "partial line" in capsys.readouterr().out
    log.truncate_after(2)
    log.write(3, "train", {"loss": 1.0})
    log.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert all(json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines())


def test_a_damaged_line_in_the_middle_is_an_error_naming_the_file_and_line(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "split": "train", "loss": 2.0}\n{"step": 2, "spl\n{"step": 3, "split": "train", "loss": 1.0}\n'
    )
    with pytest.raises(StiltsError, match=r"metrics\.jsonl:2: not a metrics record.*Delete or repair that line"):
        MetricsLog(tmp_path)
    with pytest.raises(StiltsError, match=r"metrics\.jsonl:2"):
        read_metrics(tmp_path)


def _results(workdir) -> LanguageResults:
    return LanguageResults(workdir / "evaluation" / "languages", "fp", root=workdir)


@pytest.mark.parametrize("damage", ["delete", "garble"])
def test_a_cached_language_whose_predictions_are_damaged_is_evaluated_again(tmp_path, capsys, damage):
    predictions = tmp_path / "predictions" / "xnli" / "test-de.tsv"
    predictions.parent.mkdir(parents=True)
    predictions.write_text("entailment\nneutral\n")
    _results(tmp_path).put("de", {"accuracy": 50.0}, files=[predictions])
    assert _results(tmp_path).get("de") == {"accuracy": 50.0}
    recorded = json.loads((tmp_path / "evaluation" / "languages" / "de.json").read_text())["files"]
    assert list(recorded) == ["predictions/xnli/test-de.tsv"]  # relative: a moved workdir keeps its results

    if damage == "delete":
        predictions.unlink()
    else:
        predictions.write_text("entailment\nneu")
    assert _results(tmp_path).get("de") is None
    assert "evaluating de again" in capsys.readouterr().out


def test_language_results_without_recorded_files_are_not_trusted(tmp_path):
    folder = tmp_path / "evaluation" / "languages"
    folder.mkdir(parents=True)
    (folder / "de.json").write_text(json.dumps({"fingerprint": "fp", "language": "de", "scores": {"accuracy": 1.0}}))
    assert _results(tmp_path).get("de") is None


def test_score_exits_non_zero_when_no_task_folder_matches(tmp_path, capsys):
    (tmp_path / "predictions" / "my_task").mkdir(parents=True)
    (tmp_path / "labels" / "xnli").mkdir(parents=True)
    code = score.main(
        [
            "--predictions",
            str(tmp_path / "predictions"),
            "--labels",
            str(tmp_path / "labels"),
            "--output",
            str(tmp_path / "scores.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "no task folder is in both" in err and "my_task" in err and "xnli" in err
    assert not (tmp_path / "scores.json").exists()
