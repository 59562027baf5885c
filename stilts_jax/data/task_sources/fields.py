"""Field access and label decoding for dict records (hub rows, TFDS records, jsonl lines, rows under a TSV/CSV
header); every failure is a TaskDataError naming where the record is."""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from stilts_jax.data.task_sources.catalog import TaskDataError, TaskDataset

# --- label decoding --------------------------------------------------------------------------------------------


def _label_index(spec: TaskDataset, dataset: str, value: Any, where: str) -> int | None:
    """Index into spec.labels of a raw label: a class-label integer (negative: none), a label name or alias."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "-"):  # '-': no gold label (MNLI/SNLI originals); '': hub test splits
            return None
        name = spec.label_aliases.get(text, text)
        if name in spec.labels:
            return spec.labels.index(name)
        raise TaskDataError(f"{where}: unknown label {value!r}; {dataset} labels: {', '.join(spec.labels)}")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        index = int(value)
        if index < 0:
            return None
        if index >= len(spec.labels):
            raise TaskDataError(
                f"{where}: label {index} is out of range for {dataset}'s {len(spec.labels)} labels "
                f"({', '.join(spec.labels)})"
            )
        return index
    raise TaskDataError(f"{where}: label {value!r} is neither a label name nor a class index")


def _tag_names(spec: TaskDataset, dataset: str, values: Sequence[Any], where: str) -> tuple[str, ...]:
    tags = []
    for value in values:
        index = _label_index(spec, dataset, value, where)
        if index is None:
            raise TaskDataError(f"{where}: missing tag {value!r} in a tagged sentence")
        tags.append(spec.labels[index])
    return tuple(tags)


# --- field access for dict records (hf rows, TFDS records, jsonl lines) ----------------------------------------


def _text(value: Any, field: str, where: str) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8")
    if isinstance(value, str):
        return str(value)
    raise TaskDataError(f"{where}: field {field!r} holds {type(value).__name__}, not text")


def _seq(value: Any, field: str, where: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return list(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return list(value.tolist()) if getattr(value, "ndim", 1) else [value.tolist()]
    raise TaskDataError(f"{where}: field {field!r} holds {type(value).__name__}, not a list")


def _get(row: Mapping[str, Any], names: Sequence[str], where: str, required: bool = True) -> Any:
    for name in names:
        if name in row:
            return row[name]
    if required:
        raise TaskDataError(f"{where}: no {'/'.join(names)} field; the record has {', '.join(sorted(map(str, row)))}")
    return None


def _record_id(row: Mapping[str, Any], names: Sequence[str], default: str) -> str:
    value = _get(row, names, "", required=False)
    if value is None or value == "":
        return default
    return bytes(value).decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)
