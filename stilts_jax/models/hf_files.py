"""Finding a Hugging Face model folder (local or on the hub) and reading its weight files."""

from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np

from stilts_jax.core.errors import WeightsError

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PYTORCH_BIN = "pytorch_model.bin"
PYTORCH_BIN_INDEX = "pytorch_model.bin.index.json"

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "sentencepiece.bpe.model",
    "vocab.txt",
)

_SAFETENSORS_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": ml_dtypes.bfloat16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def resolve_model_dir(name_or_path: str | Path, *, revision: str | None = None) -> Path:
    """A local folder as is, or a hub id downloaded to the Hugging Face cache (config, weights, tokenizer)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise WeightsError(f"{path} is a file; pass the folder that holds config.json and the weights")
    name = str(name_or_path)
    if _looks_like_path(name):
        raise WeightsError(f"model folder {name} does not exist; pass a folder with config.json and model.safetensors")
    return _download_from_hub(name, revision)


def _download_from_hub(repo_id: str, revision: str | None) -> Path:
    from huggingface_hub import list_repo_files, snapshot_download

    how_to_fix = (
        f"To use it without network access, download it on a connected machine "
        f"(`hf download {repo_id}`) and pass the local folder, or point HF_HOME at a cache that holds it."
    )
    try:
        try:
            files = set(list_repo_files(repo_id, revision=revision))
        except Exception:  # noqa: BLE001 (offline: fall back to what the local cache has)
            files = set()
        weights = [SAFETENSORS, "model-*.safetensors", SAFETENSORS_INDEX]
        if files and not any(f.endswith(".safetensors") for f in files):
            weights = [PYTORCH_BIN, "pytorch_model-*.bin", PYTORCH_BIN_INDEX]
        return Path(
            snapshot_download(repo_id, revision=revision, allow_patterns=["config.json", *weights, *TOKENIZER_FILES])
        )
    except Exception as e:
        raise WeightsError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(e).__name__}: {e}). {how_to_fix}"
        ) from e


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Memory-mapped tensors of a .safetensors file, bfloat16 included (safetensors.numpy cannot read it)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise WeightsError(f"{path} is truncated (no header); re-download or re-export it")
        header_len = int.from_bytes(prefix, "little")
        if header_len > size - 8:
            raise WeightsError(f"{path} is truncated or not a safetensors file; re-download or re-export it")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise WeightsError(f"{path} has a corrupt header ({e}); re-download or re-export it") from e
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _SAFETENSORS_DTYPES:
            raise WeightsError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
        dtype = np.dtype(_SAFETENSORS_DTYPES[info["dtype"]])
        begin, end = info["data_offsets"]
        expected = int(np.prod(info["shape"], dtype=np.int64)) * dtype.itemsize
        if end - begin != expected or end > data.size:
            raise WeightsError(f"{path}: tensor {name} is truncated or corrupt; re-download or re-export the model")
        tensors[name] = data[begin:end].view(dtype).reshape(info["shape"])
    return tensors


def _read_pytorch_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError as e:
        raise WeightsError(
            f"{path} is a PyTorch pickle and reading it needs torch (`pip install torch`); "
            f"or convert the folder to model.safetensors"
        ) from e
    # weights_only=True: never execute code from a downloaded pickle.
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k: (v.float() if v.dtype == torch.bfloat16 else v).numpy() for k, v in state.items()}


def _shard_files(model_dir: Path, index_name: str) -> list[Path]:
    index = json.loads((model_dir / index_name).read_text())
    return [model_dir / name for name in sorted(set(index["weight_map"].values()))]


def read_state_dict(model_dir: str | Path) -> dict[str, np.ndarray]:
    """All tensors of a Hugging Face folder: model.safetensors first, pytorch_model.bin only as a fallback."""
    model_dir = Path(model_dir)
    if (model_dir / SAFETENSORS).exists():
        return read_safetensors(model_dir / SAFETENSORS)
    if (model_dir / SAFETENSORS_INDEX).exists():
        return {
            k: v for shard in _shard_files(model_dir, SAFETENSORS_INDEX) for k, v in read_safetensors(shard).items()
        }
    if (model_dir / PYTORCH_BIN).exists():
        return _read_pytorch_bin(model_dir / PYTORCH_BIN)
    if (model_dir / PYTORCH_BIN_INDEX).exists():
        return {
            k: v for shard in _shard_files(model_dir, PYTORCH_BIN_INDEX) for k, v in _read_pytorch_bin(shard).items()
        }
    present = sorted(p.name for p in model_dir.iterdir()) if model_dir.is_dir() else []
    raise WeightsError(
        f"no weights in {model_dir}: expected {SAFETENSORS} (or {SAFETENSORS_INDEX}, {PYTORCH_BIN}); "
        f"found {present or 'nothing'}. Save the model with transformers' `save_pretrained(folder)`."
    )
