"""tools/scaling_table.py's choices and table, without compiling (the compiles are `python -m stilts_jax.aot`'s)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("scaling_table", ROOT / "tools" / "scaling_table.py")
assert _spec is not None and _spec.loader is not None
scaling_table = importlib.util.module_from_spec(_spec)
sys.modules["scaling_table"] = scaling_table  # dataclasses look their module up
_spec.loader.exec_module(scaling_table)

LARGE = (16, 4096)


def test_settings_split_the_batch_then_the_heads_as_a_run_does() -> None:
    labels = [s.label for s in scaling_table.settings_for(8, 4, LARGE)]
    assert labels == [
        "data=4, tensor=2",
        "fsdp=4, tensor=2",
        "fsdp=4, tensor=2, remat save_dots",
        "fsdp=4, tensor=2, remat full",
    ]
    assert scaling_table.settings_for(8, 4, LARGE)[1].overrides()[:3] == [
        "--config.mesh.data=1",
        "--config.mesh.fsdp=4",
        "--config.mesh.tensor=2",
    ]
    assert scaling_table.settings_for(256, 4, LARGE) == []  # 64-way heads: XLM-R large has 16
    assert scaling_table.settings_for(256, None, LARGE)[0].label == "data=256"  # nothing trains: every device
    assert scaling_table.recipe_rows("squad_to_tydiqa") == 4 and scaling_table.recipe_rows("tatoeba") is None


def test_the_table_lists_fitting_programs_and_says_why_nothing_fits(tmp_path: Path) -> None:
    gib = 1024**3
    program = {
        "name": "target/train_step",
        "live_bytes": 4 * gib,
        "hbm_bytes": 16 * gib,
        "roofline_mfu": 0.9,
        "roofline_mfu_all_memories": 0.2,
        "compile_seconds": 12.0,
    }
    setting = scaling_table.settings_for(4, 16, LARGE)[0]
    rows = [
        {"model": "m", "slice": "v5e-8", "recipe": "r", "chosen": (setting, {"programs": [program]}), "tried": []},
        {"model": "m", "slice": "v5e-256", "recipe": "r", "chosen": None, "tried": []},
    ]
    table = scaling_table.markdown(rows)
    assert "| m | v5e-8 | r: target/train_step | data=4 | 4.00 | 16 | 75% | 0.900 | 0.200 | 12 |" in table
    assert "| m | v5e-256 | r | nothing fits |" in table and "the batch cannot be split over this slice" in table
    doc = tmp_path / "SCALING.md"
    doc.write_text(f"intro\n{scaling_table.BEGIN}\nold\n{scaling_table.END}\nafter\n")
    scaling_table.write_doc(doc, table)
    assert doc.read_text() == f"intro\n{scaling_table.BEGIN}\n{table}{scaling_table.END}\nafter\n"
    doc.write_text("no markers")
    with pytest.raises(SystemExit, match="markers"):
        scaling_table.write_doc(doc, table)
