"""Reading prepared TensorFlow Datasets data without TensorFlow (tfds.data_source over ArrayRecord files).

Used by the one data stack of every task (task_sources/tfds_source.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from etils import epath

from stilts_jax.core.errors import InputError
from stilts_jax.core.paths import data_path


def tfds_data_dir(source: Mapping[str, Any]) -> epath.Path:
    """The data_dir of a source, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
    data_dir = source.get("data_dir") or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return data_path(data_dir)


def tfds_records(name: str, tfds_split: str, data_dir: epath.Path) -> tuple[Iterator[dict[str, Any]], str]:
    """All records of a prepared split, and a description for messages; a clear error names how to prepare it."""
    builder = name.split(":", 1)[0]
    builder_dir = data_dir / builder
    build = (
        f"`tfds build {builder} --data_dir {data_dir} --file_format array_record` on a machine with network "
        "access (tfds.data_source reads ArrayRecord data only; TensorFlow is not needed; if tfds fails with "
        "\"No module named 'importlib_resources'\", pip install importlib_resources)"
    )
    prepared = builder_dir.is_dir() and any((v / "dataset_info.json").is_file() for v in builder_dir.iterdir())
    if not prepared:
        raise InputError(
            f"TFDS dataset {name!r} is not prepared in {data_dir} (no {builder_dir}/<version>/"
            f"dataset_info.json). Prepare it with {build}, or set data_dir to the folder holding it"
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise InputError(f"the 'tfds' source needs tensorflow-datasets (pip install tensorflow-datasets): {e}") from e
    where = f"TFDS {name} split {tfds_split} in {data_dir}"
    try:
        records = tfds.data_source(name, split=tfds_split, data_dir=str(data_dir), download=False)
    except Exception as e:  # tfds raises NotImplementedError for TFRecord data, ValueError for unknown splits, ...
        raise InputError(f"could not read {where}: {type(e).__name__}: {e}. Rebuild it with {build}") from e

    def rows() -> Iterator[dict[str, Any]]:
        for start in range(0, len(records), 1024):
            yield from records.__getitems__(list(range(start, min(start + 1024, len(records)))))

    return rows(), where
