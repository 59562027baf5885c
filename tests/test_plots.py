"""Result figures: the retrieval score per layer and the zero-shot score per language, as decodable PNGs."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from stilts_jax.config.loader import ConfigError, parse_config_args
from stilts_jax.core.paths import as_path
from stilts_jax.evaluation.plots import (
    BAR_COLORS,
    MEAN_COLOR,
    SOURCE_BAR_COLORS,
    PlotsUnavailable,
    headline_columns,
    language_bars,
    language_bars_figure,
    language_bars_png,
    layer_curves_figure,
    layer_curves_png,
    layer_series,
    model_label,
    write_plot,
)
from stilts_jax.evaluation.report import summarize
from stilts_jax.tasks.families import ClassificationTask
from stilts_jax.tasks.span_qa import SpanQATask
from tests.test_remote_workdir import BUCKET, bucket  # noqa: F401  (the in-memory gs:// bucket fixture)

PER_LAYER = {  # as evaluate_retrieval builds it: layer -> language -> scores (sw has no layer-2 accuracy)
    0: {"de": {"accuracy": 10.0}, "fr": {"accuracy": 20.0}, "sw": {"accuracy": 0.0}},
    1: {"de": {"accuracy": 40.0}, "fr": {"accuracy": 50.0}, "sw": {"accuracy": 30.0}},
    2: {"de": {"accuracy": 60.0}, "fr": {"accuracy": 70.0}, "sw": {"accuracy_reverse": 5.0}},
}
PER_LANGUAGE = {  # as evaluate_zero_shot builds it, out of order on purpose
    "zh": {"f1": 40.0, "exact_match": 30.0, "baseline_f1": 2.0, "examples": 5},
    "en": {"f1": 80.0, "exact_match": 70.0, "baseline_f1": 3.0, "examples": 5},
    "ar": {"f1": 60.0, "exact_match": 45.0, "baseline_f1": 1.0, "examples": 5},
}


def decode(png: bytes) -> np.ndarray:
    import matplotlib.image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(png))


def pixels_of(image: np.ndarray, color: str, tolerance: float = 0.02) -> int:
    """How many pixels have exactly this colour (up to PNG rounding)."""
    from matplotlib.colors import to_rgb

    return int(np.all(np.abs(image[..., :3] - np.array(to_rgb(color))) < tolerance, axis=-1).sum())


def test_layer_series_reads_int_or_string_layers_and_averages_the_languages_that_have_a_score():
    series = layer_series({str(k): v for k, v in PER_LAYER.items()}, "accuracy")  # results.json's string keys
    assert series.layers == [0, 1, 2] and series.languages == ["de", "fr", "sw"]
    assert np.isnan(series.values[2, 2]) and series.values[1, 0] == 20.0 and series.values[0, 1] == 40.0
    assert series.mean == pytest.approx([10.0, 40.0, 65.0])
    with pytest.raises(ValueError, match="no per-layer scores carry the metric 'f1'"):
        layer_series(PER_LAYER, "f1")
    with pytest.raises(ValueError, match="no per-layer scores to plot"):
        layer_series({}, "accuracy")


def test_layer_curves_render_a_png_with_a_bold_mean_line():
    image = decode(
        layer_curves_png(
            PER_LAYER, "accuracy", default_layer=1, task="tatoeba", model="xlm-roberta-base", intermediate="squad"
        )
    )
    height, width = image.shape[:2]
    assert image.ndim == 3 and width > 800 and height > 450 and width > height
    assert (image[..., :3] < 0.9).any(axis=-1).mean() > 0.02  # not blank: lines, ticks and text are drawn


def test_layer_curves_draw_a_thin_line_per_language_a_bold_mean_and_mark_the_default_layer():
    figure = layer_curves_figure(
        PER_LAYER, "accuracy", default_layer=1, task="tatoeba", model="xlm-roberta-base", intermediate="squad"
    )
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert {"de", "fr", "sw", "mean"} <= set(lines)
    assert lines["mean"].get_linewidth() > 2 * max(lines[lang].get_linewidth() for lang in ("de", "fr", "sw"))
    assert lines["mean"].get_color() == MEAN_COLOR
    assert np.asarray(lines["mean"].get_ydata(), dtype=float) == pytest.approx([10.0, 40.0, 65.0])
    assert np.asarray(lines["sw"].get_xdata()).tolist() == [0, 1, 2]
    vertical = [line for line in ax.get_lines() if np.asarray(line.get_xdata()).tolist() == [1, 1]]
    assert len(vertical) == 1  # the default layer's marker line
    texts = [text.get_text() for text in ax.texts]
    assert "default layer 1: mean 40.0" in texts
    assert ax.get_title().splitlines() == ["tatoeba: accuracy per layer", "xlm-roberta-base, intermediate task: squad"]
    assert ax.get_ylabel() == "accuracy" and [t.get_text() for t in ax.get_legend().get_texts()][-1] == "mean"


def test_headline_columns_are_what_results_md_shows_without_baselines():
    assert headline_columns(SpanQATask.columns) == [("f1", "F1"), ("exact_match", "EM")]
    assert headline_columns(ClassificationTask.columns) == [("accuracy", "accuracy")]
    assert headline_columns([("f1", "F1"), ("baseline_f1", "baseline F1")]) == [("f1", "F1")]
    with pytest.raises(ValueError, match="no metric other than baselines"):
        headline_columns([("baseline_f1", "baseline F1")])


def test_language_bars_follow_the_table_order_and_its_average_row():
    metrics = headline_columns(SpanQATask.columns)
    bars = language_bars(PER_LANGUAGE, metrics)
    assert bars.languages == ["ar", "en", "zh"]  # results.md sorts languages
    assert bars.values.tolist() == [[60.0, 80.0, 40.0], [45.0, 70.0, 30.0]]
    average = summarize("tydiqa", PER_LANGUAGE)["average"]
    assert bars.averages.tolist() == pytest.approx([average["f1"], average["exact_match"]])
    with pytest.raises(ValueError, match="lack metrics to plot .*ar: accuracy"):
        language_bars(PER_LANGUAGE, [("accuracy", "accuracy")])


def test_language_bars_draw_each_average_as_a_line_and_name_english_in_bold():
    ax = language_bars_figure(PER_LANGUAGE, headline_columns(SpanQATask.columns), task="tydiqa").axes[0]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["ar", "en", "zh"]
    assert [tick.get_text() for tick in ax.get_xticklabels() if tick.get_fontweight() == "bold"] == ["en"]
    levels = {line.get_label(): np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()}
    assert levels["average F1 (all languages): 60.0"] == pytest.approx([60.0, 60.0])
    assert levels["average EM (all languages): 48.3"] == pytest.approx([145.0 / 3] * 2)
    heights = sorted(round(bar.get_height(), 6) for bar in ax.patches)
    assert heights == sorted([60.0, 80.0, 40.0, 45.0, 70.0, 30.0])
    assert sorted(text.get_text() for text in ax.texts) == sorted(["60.0", "80.0", "40.0", "45.0", "70.0", "30.0"])
    assert ax.get_ylim()[0] == 0.0 and ax.get_ylim()[1] > 80.0  # bars start at 0, the tallest value fits


def test_language_bars_highlight_english_and_only_when_it_was_evaluated():
    metrics = headline_columns(SpanQATask.columns)
    image = decode(language_bars_png(PER_LANGUAGE, metrics, task="tydiqa", model="m", intermediate=""))
    assert image.shape[1] > image.shape[0] > 300
    assert pixels_of(image, BAR_COLORS[0]) > 1000 and pixels_of(image, BAR_COLORS[1]) > 1000  # F1 and EM bars
    english = pixels_of(image, SOURCE_BAR_COLORS[0])
    assert english > 1000 and pixels_of(image, SOURCE_BAR_COLORS[1]) > 1000
    zero_shot_only = {lang: row for lang, row in PER_LANGUAGE.items() if lang != "en"}
    image = decode(language_bars_png(zero_shot_only, metrics, task="tydiqa"))
    assert pixels_of(image, SOURCE_BAR_COLORS[0]) == 0 and pixels_of(image, BAR_COLORS[0]) > 1000
    single = decode(language_bars_png({"de": {"accuracy": 70.0}}, [("accuracy", "accuracy")], task="xnli"))
    assert pixels_of(single, BAR_COLORS[0]) > 1000 and pixels_of(single, BAR_COLORS[1]) == 0  # one metric, one colour


def test_write_plot_writes_locally_and_to_a_bucket(tmp_path, bucket):  # noqa: F811
    render = lambda: language_bars_png(PER_LANGUAGE, [("f1", "F1")], task="tydiqa")  # noqa: E731
    local = tmp_path / "run" / "tydiqa_languages.png"
    assert write_plot(local, render)
    assert decode(local.read_bytes()).shape[0] > 300 and not list(local.parent.glob(".*.tmp"))
    remote = as_path(f"gs://{BUCKET}/run/tydiqa_languages.png")
    assert write_plot(remote, render)
    assert bucket[f"{BUCKET}/run/tydiqa_languages.png"].getvalue() == local.read_bytes()


def test_without_matplotlib_plots_are_skipped_with_the_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # `from matplotlib.figure import ...` fails
    with pytest.raises(PlotsUnavailable, match=r"pip install 'matplotlib>=3.8'.*--config.evaluation.plots=false"):
        layer_curves_png(PER_LAYER, "accuracy", default_layer=1, task="tatoeba")
    messages = []
    path = tmp_path / "panx_languages.png"
    assert not write_plot(path, lambda: language_bars_png(PER_LANGUAGE, [("f1", "F1")], task="panx"), messages.append)
    assert not path.exists() and len(messages) == 1
    assert "panx_languages.png not written" in messages[0] and "pip install" in messages[0]


def test_model_label_shortens_local_folders_only(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    assert model_label(str(folder)) == "my-model"
    assert model_label("FacebookAI/xlm-roberta-large") == "FacebookAI/xlm-roberta-large"
    assert model_label("xlm-roberta-base") == "xlm-roberta-base"


def test_the_plots_switch_is_a_checked_config_key():
    config, _ = parse_config_args(["--config=configs/demo.py"])
    assert config.evaluation.plots is True
    config, _ = parse_config_args(["--config=configs/demo.py", "--config.evaluation.plots=false"])
    assert config.evaluation.plots is False
    with pytest.raises(ConfigError, match=r"evaluation has no 'plot'; valid keys there: .*plots"):
        parse_config_args(["--config=configs/demo.py", "--config.evaluation.plot=false"])
