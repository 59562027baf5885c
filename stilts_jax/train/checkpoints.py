"""Orbax checkpoints: periodic async saves, keep-last-N plus keep-best, resume from the latest good one, and the
encoder hand-off between phases.

Orbax writes each step into a temporary folder and renames it when complete, so a save killed midway never
looks like a checkpoint. On top of that, every finished local checkpoint gets a manifest of file sizes and
CRC32s (in `<dir>_manifests/`), started as soon as the training loop sees the async save complete and computed
on a background thread, so that reading the checkpoint back never stalls a train step (the hashing is finished
before any restore, and at `wait` and `close`); a checkpoint
whose files no longer match, or that Orbax cannot read, is reported, moved to `<dir>_corrupt/`, and the previous
one is used. A checkpoint without a manifest (a run killed between the end of a save and its manifest, or a
remote folder) is restored and then checked: every array finite and shaped as the state being trained, else it
is quarantined the same way.

All paths are etils.epath paths: Orbax (TensorStore) writes gs:// itself, and the manifest, quarantine and
existence checks here go through epath, so a remote checkpoint folder works like a local one. Manifests are off
by default on object stores, where computing them would download every checkpoint again (the stores keep their
own checksums).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from stilts_jax.core.errors import StiltsError, WeightsError
from stilts_jax.core.io_utils import atomic_write_text
from stilts_jax.core.paths import PathLike, absolute, as_path, is_remote, iter_files

log = logging.getLogger(__name__)


def _crc32(path: epath.Path) -> int:
    crc = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _file_manifest(folder: epath.Path) -> dict[str, list[int]]:
    return {name: [p.stat().length, _crc32(p)] for name, p in iter_files(folder)}


class Checkpoints:
    """A phase's checkpoints under `directory`.

    Args:
      keep_last: the newest checkpoints to keep.
      keep_best: also keep this many best checkpoints by `best_metric` (saved with `metrics=`).
      best_mode: 'max' or 'min'.
      verify: write and check size+CRC32 manifests (local folders only).
      background_manifests: compute the manifests on a background thread (the default); False computes them on
        the calling thread, as the training loop did before (kept for comparisons: bench/checkpoint_bench.py).
    """

    def __init__(
        self,
        directory: PathLike,
        *,
        keep_last: int = 2,
        keep_best: int = 1,
        best_metric: str = "dev_score",
        best_mode: str = "max",
        async_save: bool = True,
        verify: bool = True,
        background_manifests: bool = True,
    ):
        self.directory = absolute(directory)
        self.manifest_dir = self.directory.with_name(self.directory.name + "_manifests")
        self.corrupt_dir = self.directory.with_name(self.directory.name + "_corrupt")
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.verify = verify and not is_remote(directory)
        policies = [checkpoint_managers.LatestN(n=keep_last)]
        if keep_best:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=lambda metrics: metrics[best_metric],
                    reverse=best_mode == "min",
                    n=keep_best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self._options = ocp.CheckpointManagerOptions(
            # best_fn makes Orbax store each save's metrics, which the BestN policy ranks by.
            best_fn=(lambda metrics: metrics[best_metric]) if keep_best else None,
            best_mode=best_mode,
            enable_async_checkpointing=async_save,
            preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
            cleanup_tmp_directories=True,
        )
        self._manager = self._open()
        self._saved: set[int] = set()  # steps saved by this session whose manifest is not started yet
        # One worker: manifests are computed one after another, in the order the saves finished.
        self._hasher = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint-manifest")
            if self.verify and background_manifests
            else None
        )
        self._hashing: list[Future[None]] = []

    def _open(self) -> ocp.CheckpointManager:
        return ocp.CheckpointManager(self.directory, options=self._options)

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def metrics(self, step: int) -> dict[str, float] | None:
        """The metrics saved with a kept checkpoint (its dev evaluation), or None when it was saved without."""
        metrics = self._manager.metrics(step)
        return dict(metrics) if metrics else None

    def best_step(self) -> int | None:
        """The kept step with the best `best_metric`, or None when no checkpoint carries it."""
        scored = {}
        for step in self._manager.all_steps():
            metrics = self._manager.metrics(step)
            if metrics and self.best_metric in metrics:
                scored[step] = metrics[self.best_metric]
        if not scored:
            return None
        pick = min if self.best_mode == "min" else max
        return pick(scored, key=lambda step: (scored[step], -step if self.best_mode == "max" else step))

    def save(
        self, step: int, state: Any, data_position: dict[str, Any], metrics: dict[str, float] | None = None
    ) -> None:
        """Start an async save; the previous save is finished first (its manifest is computed in the background)."""
        self._manager.wait_until_finished()
        self._start_manifests()
        self._saved.add(step)
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_position)),
            metrics=metrics,
            force=True,
        )

    def _finish_pending(self) -> None:
        """The last save complete and every manifest written."""
        self._manager.wait_until_finished()
        self._start_manifests()
        self._join_manifests()

    def record_finished(self) -> None:
        """Start the manifest of a save that has completed in the background (a no-op while one is in progress).

        Called at the loop's safe points, so a checkpoint is unverified only between the end of its save and the
        end of its hashing, not until the next save."""
        if self.verify and jax.process_index() == 0 and not self._manager.is_saving_in_progress():
            self._start_manifests()

    def _start_manifests(self) -> None:
        """Hash this session's finished saves (on the background thread unless background_manifests=False) and
        remove the manifests of checkpoints Orbax no longer keeps."""
        if not self.verify or jax.process_index() != 0:
            return
        self._raise_hashing_errors()
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        steps = set(self._manager.all_steps())
        # Only saves of this session: a checkpoint an earlier run left without a manifest is never vouched for here.
        folders = [(step, self.directory / str(step)) for step in sorted(self._saved & steps)]
        self._saved.clear()
        for stale in self.manifest_dir.glob("*.json"):
            if stale.stem.isdigit() and int(stale.stem) not in steps:
                stale.unlink()
        if not folders:
            return
        if self._hasher is None:
            self._write_manifests(folders)
        else:
            self._hashing.append(self._hasher.submit(self._write_manifests, folders))

    def _write_manifests(self, folders: list[tuple[int, epath.Path]]) -> None:
        for step, folder in folders:
            try:
                manifest = _file_manifest(folder)
            except FileNotFoundError:
                # Orbax's retention removed this step (keep_last) before it was hashed: nothing left to vouch for.
                if folder.exists():
                    raise
                continue
            if folder.is_dir():
                atomic_write_text(self.manifest_dir / f"{step}.json", json.dumps(manifest))

    def _raise_hashing_errors(self) -> None:
        """Surface (on the calling thread) an error of a finished background manifest; forget the finished ones."""
        running = []
        for future in self._hashing:
            if future.done():
                future.result()
            else:
                running.append(future)
        self._hashing = running

    def _join_manifests(self) -> None:
        """Wait for every manifest started so far."""
        hashing, self._hashing = self._hashing, []
        for future in hashing:
            future.result()

    def wait(self) -> None:
        """Block until the last save is complete and its manifest written."""
        self._finish_pending()

    def close(self) -> None:
        try:
            self._finish_pending()
        finally:
            if self._hasher is not None:
                self._hasher.shutdown(wait=True)
                self._hasher = None
            self._manager.close()

    def _check_manifest(self, step: int) -> str | None:
        manifest = self.manifest_dir / f"{step}.json"
        if not self.verify or not manifest.exists():
            return None
        expected = json.loads(manifest.read_text())
        actual_files = dict(iter_files(self.directory / str(step)))
        for name, (size, crc) in expected.items():
            path = actual_files.get(name)
            if path is None:
                return f"file {name} is missing"
            if path.stat().length != size:
                return f"file {name} has {path.stat().length} bytes, {size} were written"
            if _crc32(path) != crc:
                return f"file {name} does not match its checksum"
        return None

    def _quarantine(self, step: int, reason: str) -> None:
        log.warning(
            "checkpoint %s/%d is unusable (%s); moved to %s, using the previous one",
            self.directory,
            step,
            reason,
            self.corrupt_dir,
        )
        print(
            f"warning: checkpoint step {step} in {self.directory} is unusable ({reason}); "
            f"moved to {self.corrupt_dir}, falling back to the previous checkpoint",
            flush=True,
        )
        if jax.process_index() == 0:
            self.corrupt_dir.mkdir(parents=True, exist_ok=True)
            _move_folder(self.directory / str(step), self.corrupt_dir / f"{step}-{int(time.time())}")
            (self.manifest_dir / f"{step}.json").unlink(missing_ok=True)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"stilts_quarantine_{step}")
        self._manager.close()
        self._manager = self._open()

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """(step, state, data position) of the newest readable checkpoint, or None when there is none.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying shardings: arrays land directly on them.
        """
        self._join_manifests()  # a manifest still being computed would read as missing
        for step in sorted(self._manager.all_steps(), reverse=True):
            problem = self._check_manifest(step)
            if problem is None and not self._has_manifest(step):
                problem = unreadable_arrays(self.directory / str(step) / "state")
            if problem is None:
                self._check_structure(step, abstract_state)  # intact but for another model: stop, keep it
                try:
                    restored = self._manager.restore(
                        step,
                        args=ocp.args.Composite(
                            state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore()
                        ),
                    )
                except Exception as e:  # noqa: BLE001 (Orbax/TensorStore raise many kinds for unreadable files)
                    problem = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                else:
                    problem = None if self._has_manifest(step) else _unverified_problem(restored.state, abstract_state)
                    if problem is None:
                        return step, restored.state, restored.data
            self._quarantine(step, problem)
        return None

    def _has_manifest(self, step: int) -> bool:
        return self.verify and (self.manifest_dir / f"{step}.json").exists()

    def _check_structure(self, step: int, abstract_state: Any) -> None:
        """Refuse, without touching it, a readable checkpoint whose arrays do not fit the state being trained.

        A changed model, head or multi-task list in an existing workdir is a configuration mistake, not damage:
        the checkpoint must not be quarantined and training must not silently start over.
        """
        checkpointer = ocp.StandardCheckpointer()
        try:
            saved_tree = checkpointer.metadata(self.directory / str(step) / "state").item_metadata.tree
        except Exception:  # noqa: BLE001 (no readable metadata: let the restore decide, and quarantine if damaged)
            return
        finally:
            checkpointer.close()
        saved, expected = _shapes(saved_tree), _shapes(abstract_state)

        def order(keys: set[str]) -> list[str]:  # parameters first: they say what changed; optimizer slots follow
            return sorted(keys, key=lambda k: (not k.startswith("params"), k))

        missing = order(set(expected) - set(saved))
        unexpected = order(set(saved) - set(expected))
        misshaped = [
            f"{k}: saved {saved[k][0]}, now {expected[k][0]}"
            for k in order(set(saved) & set(expected))
            if saved[k][0] != expected[k][0]
        ]
        if missing or unexpected or misshaped:

            def show(items: list[str]) -> str:
                return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "") or "none"

            layout = _layer_layout_hint(set(saved), set(expected))
            if layout:
                raise CheckpointMismatchError(
                    f"the checkpoint of step {step} in {self.directory} {layout} It is left as it is."
                )
            raise CheckpointMismatchError(
                f"the checkpoint of step {step} in {self.directory} was written for a different model or task set "
                f"than this run's: missing {show(missing)}; unexpected {show(unexpected)}; wrong shape "
                f"{show(misshaped)}. It is left as it is. Use a new workdir for the changed configuration, or "
                f"rerun with the configuration that wrote it."
            )

    def restore_state(self, step: int, abstract_state: Any) -> Any:
        """The state saved at `step` (e.g. the best one), restored onto the abstract state's shardings."""
        return self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        ).state


def _move_folder(source: epath.Path, target: epath.Path) -> None:
    """A local folder is renamed; on an object store, which has no folder rename, its files are copied, then removed."""
    if not is_remote(source):
        shutil.move(str(source), str(target))
        return
    for name, path in iter_files(source):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        path.copy(destination, overwrite=True)
    source.rmtree()


def unreadable_arrays(folder: PathLike) -> str | None:
    """Read every stored chunk of a local Orbax (OCDBT) array folder once, synchronously; say what is damaged.

    Orbax reads all arrays at once on an asyncio loop: when one read fails it closes the loop with the others in
    flight, and each of those then prints an "Event loop is closed" traceback. Reading first here turns a missing
    or truncated data file into one message instead (an OCDBT data file that is gone reads as empty values).
    Remote folders are left to the restore (this would download them a second time)."""
    folder = as_path(folder)
    if is_remote(folder) or not (folder / "manifest.ocdbt").exists():
        return None
    import tensorstore as ts

    try:
        store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{folder}/"}).result()
        for key in store.list().result():
            if not len(store.read(key).result().value):
                return f"the stored data of {key.decode(errors='replace')} is missing (a data file was deleted)"
    except Exception as e:  # noqa: BLE001 (TensorStore reports damage as ValueError, OSError, ...)
        return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return None


def _unverified_problem(state: Any, abstract_state: Any) -> str | None:
    """What is wrong with a state restored from a checkpoint no manifest vouches for: damaged bytes decode to NaN
    or inf (or to arrays of another shape); None when every array is finite and shaped as expected."""
    restored, expected = _shapes(state), _shapes(abstract_state)
    if restored != expected:
        differing = sorted(k for k in set(restored) | set(expected) if restored.get(k) != expected.get(k))
        return f"no manifest, and its arrays differ from the state's: {', '.join(differing[:5])}"
    named = [
        (_path_name(p), x)
        for p, x in jax.tree_util.tree_leaves_with_path(state)
        if jax.numpy.issubdtype(x.dtype, jax.numpy.inexact)
    ]
    finite = jax.jit(lambda xs: [jax.numpy.isfinite(x).all() for x in xs])([x for _, x in named])
    bad = [name for (name, _), ok in zip(named, jax.device_get(finite)) if not ok]
    if bad:
        shown = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        return (
            f"no manifest (the run stopped before writing it) and {len(bad)} restored array(s) hold NaN or inf, "
            f"as damaged bytes do: {shown}"
        )
    return None


class CheckpointMismatchError(StiltsError):
    """A readable checkpoint that belongs to another model/optimizer structure than the one being restored."""


def save_params(path: PathLike, params: Any) -> None:
    """Write a pure dict of parameters (the encoder for the next phase, a phase's best model); whole or not at all."""
    path = absolute(path)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(path, params, force=True)
    checkpointer.wait_until_finished()
    checkpointer.close()


def _path_name(path: tuple) -> str:
    # Orbax metadata turns integer keys (layer indices) into strings; compare paths as text.
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def _shapes(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    return {_path_name(p): (tuple(x.shape), str(x.dtype)) for p, x in jax.tree_util.tree_leaves_with_path(tree)}


_PER_LAYER = re.compile(r"(^|/)layers/\d+/")
_STACKED = re.compile(r"(^|/)layers/\D")


def _layer_layout_hint(saved: set[str], expected: set[str]) -> str:
    """The fix, when saved and expected paths differ by the encoder's layer layout (model.scan_layers); else ''."""
    saved_stacked, expected_stacked = (any(_STACKED.search(k) for k in keys) for keys in (saved, expected))
    saved_unrolled, expected_unrolled = (any(_PER_LAYER.search(k) for k in keys) for keys in (saved, expected))
    if saved_stacked == expected_stacked or saved_unrolled == expected_unrolled:
        return ""
    written = saved_stacked
    return (
        f"stores the encoder's layers {'stacked' if written else 'one by one'} (model.scan_layers={written}) and "
        f"this run {'stacks' if not written else 'unrolls'} them: a train state resumes only with the layout that "
        f"wrote it. Rerun with --config.model.scan_layers={written}, the setting of the run that wrote it."
    )


def _nest(flat: dict[tuple, Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _flatten(tree: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    if isinstance(tree, dict):
        return {path: leaf for key, child in tree.items() for path, leaf in _flatten(child, (*prefix, key)).items()}
    return {prefix: tree}


def _stacked_sharding(sharding: Any, add: bool) -> Any:
    if isinstance(sharding, jax.sharding.NamedSharding):
        spec = tuple(sharding.spec)
        spec = (None, *spec) if add else spec[1:]
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec(*spec))
    return sharding  # a single device's: the same for any rank


def _other_layer_layout(abstract_params: Any) -> Any:
    """`abstract_params` (jax.ShapeDtypeStruct leaves) with the encoder's layers in the other layout: stacked when
    they are per layer, per layer when stacked; None when it has no layers."""
    from stilts_jax.models.encoder import LAYERS, stack_layers, unstack_layers

    flat = _flatten(abstract_params)
    if not any(LAYERS in path[:-1] for path in flat):
        return None

    def stack(layers: list[Any]) -> jax.ShapeDtypeStruct:
        first = layers[0]
        return jax.ShapeDtypeStruct(
            (len(layers), *first.shape), first.dtype, sharding=_stacked_sharding(first.sharding, True)
        )

    def unstack(stacked: Any) -> list[Any]:
        layer = jax.ShapeDtypeStruct(
            stacked.shape[1:], stacked.dtype, sharding=_stacked_sharding(stacked.sharding, False)
        )
        return [layer] * stacked.shape[0]

    if any(_PER_LAYER.search("/".join(map(str, path))) for path in flat):
        return _nest(stack_layers(flat, stack))
    return _nest(unstack_layers(flat, unstack))


def _to_layer_layout(params: Any, abstract_params: Any) -> Any:
    """Restored `params` in the layer layout of `abstract_params`, placed on its shardings."""
    from stilts_jax.models.encoder import stack_layers, unstack_layers

    flat = _flatten(params)
    if any(_PER_LAYER.search("/".join(map(str, path))) for path in flat):
        converted = _nest(stack_layers(flat, jax.numpy.stack))
    else:
        converted = _nest(unstack_layers(flat, lambda x: [x[i] for i in range(x.shape[0])]))
    return jax.tree.map(lambda x, target: jax.device_put(x, target.sharding), converted, abstract_params)


def load_params(path: PathLike, abstract_params: Any) -> Any:
    """Saved parameters, strictly: every path and shape must match `abstract_params`.

    `abstract_params` is a pure dict of jax.ShapeDtypeStruct with shardings (where the arrays land). A missing,
    unexpected or mis-shaped parameter is an error listing them; nothing is ever silently left random or zero.
    Parameters saved with the encoder's layers in the other layout (model.scan_layers) are converted: stacked
    ones unstacked, per-layer ones stacked.
    """
    path = absolute(path)
    if not path.exists():
        raise WeightsError(f"no saved parameters at {path}")
    problem = unreadable_arrays(path)
    if problem is not None:
        raise DamagedParamsError(_damaged_message(path, problem))
    checkpointer = ocp.StandardCheckpointer()
    try:
        saved = _shapes(checkpointer.metadata(path).item_metadata.tree)
    except Exception as e:
        checkpointer.close()
        raise DamagedParamsError(_damaged_message(path, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")) from e
    expected = _shapes(abstract_params)
    requested = abstract_params
    if set(expected) != set(saved):
        other = _other_layer_layout(abstract_params)
        if other is not None and set(_shapes(other)) == set(saved):
            abstract_params, expected = other, _shapes(other)
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    misshaped = [
        f"{k}: saved {saved[k][0]}, model {expected[k][0]}"
        for k in sorted(set(saved) & set(expected))
        if saved[k][0] != expected[k][0]
    ]
    if missing or unexpected or misshaped:
        raise WeightsError(
            f"the parameters saved at {path} do not fit the new model: missing {missing}, unexpected {unexpected}, "
            f"wrong shape {misshaped}. Both phases must use the same encoder architecture."
        )
    try:
        restored = checkpointer.restore(path, abstract_params)
    except Exception as e:
        raise DamagedParamsError(_damaged_message(path, f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")) from e
    finally:
        checkpointer.close()
    return restored if abstract_params is requested else _to_layer_layout(restored, requested)


class DamagedParamsError(WeightsError):
    """Saved parameters (a phase's best_model or encoder) that cannot be read back."""


def _damaged_message(path: epath.Path, problem: str) -> str:
    phase_dir = path.parent
    done = phase_dir / "phase_done.json"
    if done.exists():
        fix = (
            f"Rerun the phase that wrote it: delete {done} and run the same command again; the phase is redone "
            f"from its checkpoints in {phase_dir} (trained again if none is left) and writes {path.name} anew."
        )
    else:
        fix = f"Write {path} again (rerun what produced it), or point to an intact copy."
    return f"the saved parameters in {path} are damaged or incomplete ({problem}). {fix}"


def transplant_encoder(model: Any, path: PathLike) -> None:
    """Load the encoder saved by the previous phase into `model.encoder` in place; `model.head` is untouched."""
    from flax import nnx

    state = nnx.state(model.encoder)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(state))
    if not as_path(path).exists():
        raise WeightsError(f"no saved encoder at {path}: run the intermediate phase first (or point to its workdir)")
    # Uncommitted arrays, as load_pretrained gives: ones committed to this process's first device cannot be
    # device_put onto a mesh spanning several processes (JAX refuses cross-host transfers on CPU and GPU).
    loaded = jax.tree.map(lambda x: jax.numpy.asarray(jax.device_get(x)), load_params(path, abstract))
    nnx.replace_by_pure_dict(state, loaded)
    nnx.update(model.encoder, state)
