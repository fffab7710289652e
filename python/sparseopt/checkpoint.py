"""Saving an optimizer's state to one ``.npz`` file, and loading it back, without pickle.

``opt.state_dict()`` is a plain dict (an int, a dict of hyper-parameters, a dict of NumPy
arrays) that ``pickle`` and ``torch.save`` handle as it is. ``np.savez`` does not: it would
store the two dicts as pickled 0-d object arrays, which ``np.load`` refuses to open unless
pickles are allowed. :func:`save` flattens the dict into plain arrays (``step``,
``hyperparams/<name>``, ``state/<name>``) so that the file holds numbers and strings only, and
:func:`load` opens it with ``allow_pickle=False`` and hands it to ``opt.load_state_dict``,
which checks everything before it changes anything.

The table itself is not part of an optimizer's state: save it beside (``np.save``).
"""

from __future__ import annotations

import os
from typing import IO, Any, Union

import numpy as np

from .optim import Optimizer

__all__ = ["save", "load"]

FORMAT = "sparseopt.optim/1"

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]


def save(file: PathOrFile, optimizer: Optimizer) -> None:
    """Write ``optimizer.state_dict()`` to ``file`` (a path or a binary file object) as an
    uncompressed ``.npz`` of plain arrays.

    The table (``optimizer.param``) is not saved: ``np.save`` it beside. Nothing is flushed
    (exact mode's rows are saved as they are, with what is needed to catch them up), so saving
    both, loading both and continuing gives the same bits as an uninterrupted run.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a sparseopt.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    snapshot = optimizer.state_dict()
    entries: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "optimizer": np.array(type(optimizer).__name__),
        "step": np.array(snapshot["step"], dtype=np.int64),
    }
    for name, value in snapshot["hyperparams"].items():
        entries[f"hyperparams/{name}"] = np.asarray(value)
    for name, array in snapshot["state"].items():
        entries[f"state/{name}"] = array
    np.savez(file, **entries)


def load(file: PathOrFile, optimizer: Optimizer) -> None:
    """Restore into ``optimizer`` what :func:`save` wrote (an optimizer of the same class, over
    a table of the same shape and dtype, built with options that need the same state).

    The file is untrusted input: it is opened without pickle, and ``load_state_dict`` checks
    every entry before it copies anything; a bad file raises ValueError or TypeError and leaves
    the optimizer unchanged.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a sparseopt.optim optimizer, got "
                        f"{type(optimizer).__name__}")
    entries = _read(file)
    snapshot = _unflatten(entries, type(optimizer).__name__)
    _restore_extension_dtypes(snapshot["state"], optimizer.state)
    optimizer.load_state_dict(snapshot)


def _restore_extension_dtypes(state: dict[str, np.ndarray], own: dict[str, np.ndarray]) -> None:
    """An .npz keeps NumPy's own dtypes; an extension dtype (ml_dtypes' bfloat16) comes back as
    raw bytes (void, its size). Such an array is given back the dtype of the optimizer's array
    of the same name, when that one has an extension dtype of the same size: the bits are the
    values, nothing is converted. Anything else is left for load_state_dict to refuse."""
    for name, value in state.items():
        mine = own.get(name)
        if (mine is not None and value.dtype.kind == "V" and value.dtype.fields is None
                and mine.dtype.kind == "V" and mine.dtype.itemsize == value.dtype.itemsize):
            state[name] = value.view(mine.dtype)


def _read(file: PathOrFile) -> dict[str, np.ndarray]:
    """Every entry of the .npz, read whole before anything is checked. A damaged file can fail
    in the zip layer, the npy header or decompression, each with its own exception type; all
    of them come out as one ValueError that says what the file should be."""
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as stream:  # closed here even when np.load fails half-way
            return _read_npz(stream, file)
    return _read_npz(file, file)


def _read_npz(stream: IO[bytes], label: object) -> dict[str, np.ndarray]:
    try:
        archive = np.load(stream, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds a single array")
        with archive:
            return {key: archive[key] for key in archive.files}
    except Exception as exc:  # noqa: BLE001 - see above; the cause is kept
        raise ValueError(f"cannot read {label!r} as a sparseopt checkpoint (an .npz written by "
                         f"sparseopt.save): {exc}") from exc


def _text(entries: dict[str, np.ndarray], key: str) -> str:
    value = entries.get(key)
    if value is None or value.shape != () or value.dtype.kind != "U":
        raise ValueError(f"not a sparseopt checkpoint: its '{key}' entry is missing or not a "
                         f"string (write checkpoints with sparseopt.save)")
    return str(value)


def _unflatten(entries: dict[str, np.ndarray], class_name: str) -> dict[str, Any]:
    found = _text(entries, "format")
    if found != FORMAT:
        raise ValueError(f"checkpoint format {found!r} is not {FORMAT!r}, the one this version "
                         f"of sparseopt reads")
    saved_by = _text(entries, "optimizer")
    if saved_by != class_name:
        raise ValueError(f"the checkpoint holds the state of an optimizer of class {saved_by}; "
                         f"load it into {saved_by}, not {class_name}")
    if "step" not in entries:
        raise ValueError("not a sparseopt checkpoint: it has no 'step' entry")
    step = entries["step"]
    if step.shape != () or step.dtype.kind not in "iu":
        raise ValueError(f"the checkpoint's 'step' must be one integer, got an array of shape "
                         f"{step.shape} and dtype {step.dtype}")
    hyperparams: dict[str, Any] = {}
    state: dict[str, np.ndarray] = {}
    for key, value in entries.items():
        group, _, name = key.partition("/")
        if group == "hyperparams" and name:
            hyperparams[name] = _python_value(value)
        elif group == "state" and name:
            state[name] = value
        elif key not in ("format", "optimizer", "step"):
            raise ValueError(f"unexpected entry {key!r} in the checkpoint")
    return {"step": int(step), "hyperparams": hyperparams, "state": state}


def _python_value(value: np.ndarray) -> Any:
    """A hyper-parameter as the optimizer's constructor takes it: a scalar, or a tuple for a
    1-D array (``betas``)."""
    if value.ndim == 0:
        return value.item()
    if value.ndim == 1:
        return tuple(v.item() for v in value)
    return value  # refused by the optimizer's own checks, with its message
