"""Sparse optimizers: apply row-sparse gradients ``(indices, values)`` to a parameter table.

Every optimizer updates ``param`` -- the very array passed in -- in place, and follows the
formulas and defaults of the ``torch.optim`` class of the same name. ``mode`` says what happens
to rows a step does not touch:

``"lazy"``
    They keep their parameters and state (``torch.optim.SparseAdam``, TensorFlow's LazyAdam).
``"exact"``
    The result equals the dense ``torch.optim`` optimizer fed zeros for untouched rows
    (moments decay, momentum keeps moving the parameter, decoupled weight decay reaches every
    row) at the cost of the touched rows: each row remembers the step it was last brought up to
    date and is caught up in closed form when it is next touched, or by :meth:`Optimizer.flush`.
    Call ``flush(indices)`` before a forward pass reads a batch's rows, and ``flush()`` before
    reading the whole table (evaluation, export); ``state_dict()`` does not flush, so
    save/load/continue gives the same bits as an uninterrupted run.

Each step coalesces repeated indices (their values are summed, as ``torch.sparse`` does), checks
every argument before it writes anything (a rejected call leaves ``param`` and the state exactly
as they were), and runs on ``num_threads`` threads (0 = all) with the same result for any count.

An optimizer object is one stream of steps: calls from several Python threads on the same object
take turns (its step count stays exact). For Hogwild! training, where workers update one table
at once, each worker steps its own :meth:`Optimizer.replica` over the shared arrays (see
:mod:`sparseopt.hogwild`).
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

import numpy as np

from . import _alloc, _args, _core, _device, _half

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RowWiseAdagrad", "FTRL"]

_MODES = ("lazy", "exact")
# The most steps an optimizer counts: far beyond any training, and small enough that step + 1
# and the history's sizes never overflow an int64.
MAX_STEP = 2**62
_BIAS_CORRECTIONS = ("global", "row", "none")
_EXACT_STATE = ("last_step", "history", "window", "history_start")


class Optimizer:
    """Shared machinery: the parameter, hyper-parameters, step count and state arrays.

    Subclasses define ``_options_from(hyperparams)`` (the core's options object, checked),
    ``_state_spec(options, hyperparams)`` (name -> (dtype, fill value) of each state array;
    None dtype means the parameter's shape and dtype, an int64 array has one entry per row),
    ``_apply(indices, values, step, bags)`` (``bags``: None, or :meth:`step_bags`'s
    ``(indptr, weights, mean)`` with ``values`` its ``grad_out``) and, for exact mode,
    ``_flush()``.

    In exact mode the state also holds ``last_step`` (int64 per row: the step through which
    the row is up to date), ``history_start`` (int64, one value: the step ``history``'s first
    row records), ``history`` (float64, one row per step since then: the learning rate and the
    per-step scalars the catch-up needs) and ``window`` (float64 sums over recent steps). The
    record stays bounded: every 4,096 steps (``exact_record_span``) a step catches every row
    up and restarts ``history`` at itself, so exact mode's memory does not grow with the
    number of steps (that step costs one :meth:`flush` more).

    Half-precision tables (float16, bfloat16): ``half`` holds the constructor's ``(rounding,
    seed, state_dtype)``; for a half table they become hyper-parameters (so snapshots carry
    them), for a float table they are checked and ignored.
    """

    _on_device = False  # a device (CUDA) table; also for objects pickled before devices existed

    def __init__(self, param: np.ndarray, hyperparams: dict[str, Any], *, num_threads: int = 0,
                 half: tuple[Any, Any, Any] = (None, 0, None)):
        # A device array (CuPy, Numba, torch CUDA): the CUDA kernels, state on its device.
        self._on_device = _device.is_device(param)
        self._half = None if self._on_device else _half.kind(param)
        if self._on_device:
            _device.module()  # or a RuntimeError saying how to build with CUDA
        elif self._half is None:
            _core.check_param(param)
            _half.check_ignored(param.dtype, *half)
        else:
            _half.check_table(param)
            hyperparams = {**hyperparams, **_half.hyperparams(*half)}
        self._lock = threading.Lock()  # one step (or flush, snapshot) at a time per object
        self._param = param
        self._num_threads = _args.threads("num_threads", num_threads)
        self._options = self._options_from(hyperparams)
        self._hyperparams = dict(hyperparams)
        self._step = 0
        self._state = {name: self._new_state_array(dtype, fill)
                       for name, (dtype, fill) in self._full_spec(self._options, hyperparams).items()}
        if self._on_device and self.exact:  # the device's copy of the record's per-step scalars
            self._device_record = _device.exact_record(param)

    # -- public API --------------------------------------------------------------------------
    @property
    def param(self) -> np.ndarray:
        """The parameter table this optimizer updates in place (the array that was passed)."""
        return self._param

    @property
    def lr(self) -> float:
        """Learning rate; set it between steps to follow a schedule."""
        return self._options.lr

    @lr.setter
    def lr(self, value: float) -> None:
        value = _args.real("lr", value)
        old = self._options.lr
        self._options.lr = value
        try:
            self._options.validate()
            self._check_in_dtype(self._options)
        except ValueError:
            self._options.lr = old
            raise
        self._hyperparams["lr"] = value

    def _check_in_dtype(self, options: Any) -> None:
        """Raises ValueError unless `options` suit the type this table's step computes in
        (the check every step makes, run early so that construction and setters refuse them);
        optimizers whose options can be valid in float64 but not in float32 override it."""

    @property
    def num_threads(self) -> int:
        """Threads per step (0 = all available); set it between steps. Results do not depend
        on it."""
        return self._num_threads

    @num_threads.setter
    def num_threads(self, value: int) -> None:
        self._num_threads = _args.threads("num_threads", value)

    @property
    def step_count(self) -> int:
        """Number of steps taken (empty steps included, as in PyTorch)."""
        return self._step

    @property
    def half(self) -> str | None:
        """``"float16"`` or ``"bfloat16"`` for a half-precision table, else None."""
        return self._half

    @property
    def rounding(self) -> str | None:
        """Half tables: ``"stochastic"`` or ``"nearest"`` (settable between steps); None for a
        float table, which ignores it."""
        return self._hyperparams.get("rounding")

    @rounding.setter
    def rounding(self, value: str) -> None:
        self._set_half_hyperparameter("rounding", value)

    @property
    def seed(self) -> int | None:
        """Half tables: the stochastic rounding's seed (settable between steps); None for a
        float table."""
        return self._hyperparams.get("seed")

    @seed.setter
    def seed(self, value: int) -> None:
        self._set_half_hyperparameter("seed", value)

    @property
    def state_dtype(self) -> str | None:
        """Half tables: the state arrays' dtype name (fixed at construction); None for a float
        table, whose state has the table's dtype."""
        return self._hyperparams.get("state_dtype")

    @state_dtype.setter
    def state_dtype(self, value: Any) -> None:
        self._set_half_hyperparameter("state_dtype", value)

    def _set_half_hyperparameter(self, name: str, value: Any) -> None:
        if not self._half:
            raise ValueError(f"{name} applies to float16 and bfloat16 tables; this table is "
                             f"{self._param.dtype}")
        self._set_hyperparameter(name, value)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The live state arrays (not copies); use :meth:`state_dict` for a snapshot.

        In exact mode rows may be behind until :meth:`flush`, and ``history`` may be replaced by a
        larger array as steps accumulate.
        """
        return dict(self._state)

    @property
    def exact(self) -> bool:
        """Whether this optimizer runs in ``mode="exact"``."""
        return getattr(self._options, "mode", None) == _core.Mode.exact

    def step(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Apply the row-sparse gradient ``values[k]`` of row ``indices[k]`` (repeats summed).

        ``indices``: int32 or int64, shape ``(n,)``, each in ``[0, len(param))``;
        ``values``: the parameter's dtype, shape ``(n, *param.shape[1:])``, C-contiguous.
        ``n = 0`` is a valid, empty step (it still counts as a step, as in PyTorch).

        Calls on one object from several threads take turns; Hogwild! workers each step their
        own :meth:`replica`.

        A device table (a CUDA torch tensor, CuPy or Numba array, with sparseopt built with
        ``SPARSEOPT_CUDA=ON``) takes device ``indices`` and ``values`` and is stepped on its
        device, on the array library's current stream: lazy mode with the CPU's bits, exact mode
        (Adam, AdamW, SGD, RMSprop; ``last_step`` on the device, the record on the host) within
        rounding of the CPU's (1e-6 relative in float32).
        """
        self._step_with(indices, values, None)

    def step_bags(self, grad_out: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
                  weights: np.ndarray | None = None, *, mode: str = "sum") -> None:
        """One step with the gradient of an EmbeddingBag over ``param``, fused with its backward.

        ``param`` was read as ``out = sparseopt.gather_sum(param, indptr, indices, weights,
        mode=mode)``; ``grad_out`` is the loss's gradient for ``out``. This applies the
        table's gradient without forming it: each touched row's gradient is summed in
        registers and the row is updated at once. The result is bit for bit that of::

            rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights,
                                                         mode=mode, num_rows=len(param))
            opt.step(rows, values)

        for any ``num_threads``, in both modes, at a fraction of the two calls' cost.

        Parameters
        ----------
        grad_out : ndarray of param.dtype, shape (num_bags, *param.shape[1:])
        indptr, indices, weights, mode :
            As for :func:`sparseopt.gather_sum`: bag ``b`` is
            ``indices[indptr[b]:indptr[b + 1]]`` (``indptr`` has ``num_bags + 1`` entries;
            torch's ``offsets`` are ``indptr[:-1]``), ``weights`` one per index
            (``param.dtype``; ``mode="sum"`` only), ``mode`` ``"sum"`` or ``"mean"``.
            Every index must be in ``[0, len(param))``.

        A rejected call (a bad shape, dtype, offset or index) changes nothing.
        """
        mode = _args.choice("mode", mode, ("sum", "mean"))
        self._step_with(indices, grad_out, (indptr, weights, mode == "mean"))

    def _step_with(self, indices: Any, values: Any, bags: tuple[Any, Any, bool] | None) -> None:
        _device.require_same_place("param", self._on_device, indices=indices, values=values)
        with self._lock:
            if self._step >= MAX_STEP:
                raise ValueError(f"this optimizer has taken {self._step} steps, the most it "
                                 f"counts ({MAX_STEP}); build a new one")
            history = self._state.get("history")
            if self.exact:
                self._reserve_history(self._step + 1)
            try:
                self._apply(indices, values, self._step + 1, bags)
            except BaseException:
                if history is not None:  # a rejected step leaves every state array as it was
                    self._state["history"] = history
                raise
            self._step += 1

    def flush(self, indices: np.ndarray | None = None) -> None:
        """Bring rows up to the current step (exact mode; nothing to do in lazy mode).

        ``indices=None`` brings every row (O(table)); an int32/int64 array brings just those
        rows (repeats fine), which is what a training loop wants before it reads a batch's
        rows for the forward pass: the model then sees exactly what the dense optimizer has, at
        the cost of the batch. Afterwards those rows of ``param`` and the state equal the dense
        optimizer's; stepping on costs nothing extra.
        """
        if self.exact:
            with self._lock:
                self._flush(indices)

    def state_dict(self) -> dict[str, Any]:
        """A snapshot: ``{"step": int, "hyperparams": dict, "state": {name: ndarray copy}}``
        (NumPy copies for a device table too; loading one copies them back to its device).

        Nothing is flushed: the snapshot holds rows as they are, with what is needed to
        catch them up later (exact mode's ``history`` has one row per step since
        ``history_start``, plus one).
        """
        with self._lock:
            # a device table's state comes back as NumPy copies (exact mode's record is NumPy)
            state = {name: array.copy() if isinstance(array, np.ndarray) else _device.to_host(array)
                     for name, array in self._state.items()}
            if "history" in state:
                kept = self._step - int(self._state["history_start"][0]) + 1
                state["history"] = self._state["history"][:kept].copy()
            return {"step": self._step, "hyperparams": dict(self._hyperparams), "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot, copying into this optimizer's own arrays.

        The snapshot is untrusted input: everything is checked first (keys, hyper-parameters,
        state names, shapes, dtypes, and the values the kernels index with: step counts within
        ``[0, step]``, exact mode's record finite), and a rejected snapshot raises ValueError or
        TypeError and leaves the optimizer unchanged. To keep one on disk, use
        :func:`sparseopt.save` / :func:`sparseopt.load` (or pickle the dict).
        """
        with self._lock:
            self._load_state_dict(state_dict)

    def _load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        keys = {"step", "hyperparams", "state"}
        if not isinstance(state_dict, Mapping) or set(state_dict) != keys:
            raise ValueError(f"state_dict must be a mapping with exactly the keys 'step', "
                             f"'hyperparams' and 'state', as returned by state_dict(); got "
                             f"{_describe(state_dict)}")
        step = _args.count("state_dict['step']", state_dict["step"], maximum=MAX_STEP)
        hyperparams = state_dict["hyperparams"]
        if not isinstance(hyperparams, Mapping) or set(hyperparams) != set(self._hyperparams):
            raise ValueError(f"state_dict['hyperparams'] must be a mapping with the keys "
                             f"{sorted(self._hyperparams)}, got {_describe(hyperparams)}"
                             f"{_NPZ_HINT if isinstance(hyperparams, np.ndarray) else ''}")
        hyperparams = dict(hyperparams)
        options = self._options_from(hyperparams)
        if self._half and hyperparams["state_dtype"] != self._hyperparams["state_dtype"]:
            raise ValueError(f"state_dict was saved with state_dtype="
                             f"{hyperparams['state_dtype']!r}, this optimizer keeps "
                             f"{self._hyperparams['state_dtype']!r}; construct the optimizer "
                             f"with the same state_dtype")
        spec = self._full_spec(options, hyperparams)
        if set(spec) != set(self._state):
            raise ValueError(f"state_dict was saved with options that need the state "
                             f"{sorted(spec)}, this optimizer has {sorted(self._state)}; "
                             f"construct the optimizer with the same options")
        arrays = state_dict["state"]
        if not isinstance(arrays, Mapping) or set(arrays) != set(self._state):
            raise ValueError(f"state_dict['state'] must be a mapping with the arrays "
                             f"{sorted(self._state)}, got {_describe(arrays)}")
        # The record's first step comes first: it sets history's length and the rows' range.
        names = sorted(self._state, key=lambda name: name != "history_start")
        start = 0
        for name in names:
            own = self._state[name]
            if self._on_device and not isinstance(own, np.ndarray):  # its dtype and shape
                own = _device.host_like(own)
            _check_state_array(name, arrays[name], own, step, start)
            if name == "history_start":
                start = int(arrays[name][0])
        for name, own in self._state.items():
            if name == "history":
                kept = step - start + 1
                history = np.zeros((max(16, 2 * kept), own.shape[1]))
                history[:kept] = arrays[name]
                self._state[name] = history
            elif isinstance(own, np.ndarray):
                np.copyto(own, arrays[name])
            else:
                _device.copy_in(own, arrays[name])
        if self._on_device and "history" in self._state:  # the device's copy of the record
            kept = step - start + 1
            self._device_record = _device.exact_record(self._param, self._state["history"][:kept])
        self._options = options
        self._hyperparams = hyperparams
        self._step = step

    # -- hyper-parameters --------------------------------------------------------------------
    def _set_hyperparameter(self, name: str, value: Any) -> None:
        """Set a hyper-parameter between steps, checked like the constructor's argument.
        Refused (nothing changes): ``mode`` and ``initial_accumulator_value``, and a value that
        would change which state arrays exist (momentum to or from 0, amsgrad, centered, ...).
        In exact mode a change (other than ``lr``) first brings every row up to date, O(table)."""
        if name in _FIXED_AT_CONSTRUCTION:
            raise AttributeError(f"{name} is fixed when the optimizer is built "
                                 f"({_FIXED_AT_CONSTRUCTION[name]}); build a new optimizer")
        with self._lock:
            hyperparams = dict(self._hyperparams)
            hyperparams[name] = value
            options = self._options_from(hyperparams)  # checks (and normalises) the value
            spec = self._full_spec(options, hyperparams)
            if set(spec) != set(self._state):
                raise ValueError(f"setting {name} to {value!r} would change the state this "
                                 f"optimizer keeps ({sorted(self._state)} -> {sorted(spec)}); "
                                 f"build a new optimizer with it")
            if self.exact:
                # Rows are caught up in closed form over the steps they missed, for one set of
                # hyper-parameters: catch every row up under the old ones (O(table)), then
                # start a new record, shaped for the new ones, at this step.
                self._flush(None)
                for part in ("history", "window"):
                    self._state[part] = self._new_state_array(*spec[part])
                self._state["history_start"][0] = self._step
                if self._on_device:  # the new record's row 0 is zeros on the device too
                    self._device_record = _device.exact_record(self._param)
            self._options = options
            self._hyperparams = hyperparams

    # -- Hogwild! ----------------------------------------------------------------------------
    def replica(self) -> Optimizer:
        """A new optimizer object over the same ``param`` and the same state arrays.

        Nothing is copied: steps of the replica and of this optimizer update the same arrays.
        The replica starts with this optimizer's hyper-parameters, ``num_threads`` and step count,
        and then keeps its own (its ``lr``, schedule and step count are its own). This is what each
        Hogwild! worker steps; :func:`sparseopt.hogwild.run` hands every worker replicas of the
        optimizers in its arguments.

        Raises ValueError in ``mode="exact"``, whose state cannot be shared (see
        :meth:`share_memory`).
        """
        with self._lock:
            self._require_shareable("replica()")
            twin = object.__new__(type(self))
            twin.__setstate__(self.__getstate__())
        return twin

    def share_memory(self) -> Optimizer:
        """Move the state arrays into shared memory, so that worker processes update them in
        place (as ``torch.optim.Adagrad.share_memory()``); returns ``self``.

        ``param`` must already live there: create it with :func:`sparseopt.hogwild.share`
        (or :func:`~sparseopt.hogwild.zeros` / :func:`~sparseopt.hogwild.empty`). Each state
        array is copied once into a block of :mod:`sparseopt.hogwild` (arrays already in shared
        memory stay as they are); ``state`` then returns the shared arrays. Worker threads do not
        need this, only worker processes.

        Raises ValueError in ``mode="exact"``: its ``history`` grows with the steps of one
        optimizer and rows are caught up against it by step number, so workers with their own
        step counts would read records that do not exist. Lazy-mode state never changes size.
        """
        from . import hogwild

        with self._lock:
            self._require_shareable("share_memory()")
            if not hogwild.is_shared(self._param):
                raise ValueError("share_memory() needs param in shared memory: create the table "
                                 "with sparseopt.hogwild.share(table) (or hogwild.zeros / "
                                 "hogwild.empty) and build the optimizer over that array")
            self._state = {name: array if hogwild.is_shared(array) else hogwild.share(array)
                           for name, array in self._state.items()}
        return self

    def _require_shareable(self, what: str) -> None:
        if self.exact:
            raise ValueError(f"{what}: mode='exact' cannot be shared between Hogwild! workers "
                             f"(its per-step history grows with one optimizer's steps and rows "
                             f"are caught up against it by step number); use mode='lazy'")

    def __getstate__(self) -> dict[str, Any]:
        # The core's options object is rebuilt from the hyper-parameters; the lock is per object.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_options", "_lock")}
        state["_state"] = dict(self._state)
        state["_hyperparams"] = dict(self._hyperparams)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._options = self._options_from(dict(self._hyperparams))

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._hyperparams.items())
        return (f"{type(self).__name__}(param: {self._param.dtype}{list(self._param.shape)}, "
                f"{options}, step_count={self._step})")

    # -- for subclasses ----------------------------------------------------------------------
    def _full_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        spec = dict(self._state_spec(options, hyperparams))
        if getattr(options, "mode", None) == _core.Mode.exact:
            window, quantities, columns = options.exact_layout()
            spec["last_step"] = (np.int64, 0)
            spec["history"] = ("history", (16, columns))
            spec["history_start"] = ("start", 0)
            spec["window"] = ("window", (window, quantities))
        return spec

    @property
    def _kernels(self) -> Any:
        """Where the steps run: _core, or the CUDA kernels for a device parameter."""
        return _device.Kernels(self._param, getattr(self, "_device_record", None)) if self._on_device else _core

    def _new_state_array(self, dtype: Any, fill: Any) -> np.ndarray:
        if self._on_device and dtype not in ("history", "window", "start"):
            # the parameter's shape, or one value per row (exact mode's record stays on the host)
            shape = tuple(self._param.shape) if dtype is None else (int(self._param.shape[0]),)
            return _device.full(self._param, shape, dtype, fill)
        if dtype in ("history", "window"):  # float64 arrays of their own shape
            return np.zeros(fill, dtype=np.float64)
        if dtype == "start":  # one int64
            return np.full(1, fill, dtype=np.int64)
        # The arrays the kernels read and write row by row start on a cache line (a 2 MiB page
        # from 2 MiB up), as sparseopt.zeros allocates tables: np.full's 16-byte offset would
        # spread every 256-byte row over five lines instead of four (a lazy Adam step ~10%
        # slower on a 1,000,000 x 64 table).
        if dtype is None:  # the parameter's shape; a half table's state has the state_dtype
            shape = self._param.shape
            dtype = _half.dtype(self._hyperparams["state_dtype"]) if self._half else self._param.dtype
        else:  # one value per row
            shape = (self._param.shape[0],)
        out = _alloc.zeros(shape, dtype)
        if fill:
            out[...] = fill
        return out

    def _reserve_history(self, step: int) -> None:
        history = self._state["history"]
        if history.shape[0] <= step - int(self._state["history_start"][0]):
            grown = np.zeros((2 * history.shape[0], history.shape[1]))
            grown[: history.shape[0]] = history
            self._state["history"] = grown

    def _exact_args(self) -> tuple[Any, Any, Any]:
        return tuple(self._state.get(name) for name in _EXACT_STATE)

    def _options_from(self, hyperparams: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        raise NotImplementedError

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        raise NotImplementedError

    def _flush(self, indices: np.ndarray | None) -> None:
        raise NotImplementedError

    def _rounding(self) -> tuple[str, int] | None:
        """The kernels' ``rounding`` argument: ``(rounding, seed)`` for a half table, else None."""
        if not self._half:
            return None
        return (self._hyperparams["rounding"], self._hyperparams["seed"])

    def _options_from_half(self, h: dict[str, Any], options: Any) -> Any:
        """Checks a half table's own hyper-parameters in `h`; returns `options`."""
        if self._half:
            _half.check(h)
        return options


# Hyper-parameters that only matter when the optimizer is built, and why.
_FIXED_AT_CONSTRUCTION = {
    "mode": "it decides which state arrays exist",
    "state_dtype": "it is the dtype of the state arrays",
    "initial_accumulator_value": "it is only the accumulator's starting value",
}

_NPZ_HINT = ("; np.savez stores dicts as pickled 0-d arrays: save an optimizer with "
             "sparseopt.save(path, opt) and restore it with sparseopt.load(path, opt)")


def _describe(obj: object) -> str:
    """What `obj` is, for an error message (never fails, whatever `obj` is)."""
    if isinstance(obj, np.ndarray):
        return f"a numpy array of shape {obj.shape} and dtype {obj.dtype}"
    if isinstance(obj, Mapping):
        try:
            return f"the keys {sorted(str(k) for k in obj)}"
        except Exception:  # noqa: BLE001 - a mapping whose keys cannot even be listed
            return f"a {type(obj).__name__}"
    return f"a {type(obj).__name__}"


def _check_state_array(name: str, given: Any, own: np.ndarray, step: int, start: int) -> None:
    """Checks a snapshot's state array before anything is copied: type, dtype, shape, and the
    values that the kernels use as positions (step counts) or that must be finite. `start` is
    the snapshot's history_start (checked before the other arrays; 0 without one)."""
    where = f"state_dict['state'][{name!r}]"
    if not isinstance(given, np.ndarray) or given.dtype != own.dtype:
        got = f"dtype {given.dtype}" if isinstance(given, np.ndarray) else type(given).__name__
        raise TypeError(f"{where} must be a numpy array of dtype {own.dtype}, got {got}")
    expected = (step - start + 1, own.shape[1]) if name == "history" else own.shape
    if given.shape != expected:
        raise ValueError(f"{where} must have shape {expected}, got {given.shape}")
    if given.size == 0:
        return
    if given.dtype == np.int64:  # last_step, row_steps: steps through which a row counts
        # last_step: no row may be older than the record that catches it up.
        first = start if name == "last_step" else 0
        low, high = int(given.min()), int(given.max())
        if low < first or high > step:
            bounds = "[history_start, step]" if first else "[0, step]"
            raise ValueError(f"{where} must hold step counts in {bounds} = [{first}, {step}], "
                             f"got values from {low} to {high}: the snapshot is corrupt")
    elif name in ("history", "window"):
        if not np.isfinite(given).all():
            raise ValueError(f"{where} must be finite (exact mode's record of each step), "
                             f"but holds NaN or infinity: the snapshot is corrupt")
        if name == "history" and (given[:, 0] < 0).any():
            raise ValueError(f"{where}[:, 0] holds each step's lr and must be >= 0: the "
                             f"snapshot is corrupt")


_HALF_DOC = """
    Half-precision tables (both modes): ``param`` may be ``np.float16`` or bfloat16
    (``ml_dtypes.bfloat16``, extra ``sparseopt[bf16]``). Each update is computed in float32 from
    the widened row, exactly as for a float32 table (exact mode's catch-up included), and
    stored with ``rounding``: ``"stochastic"`` (the default: rounded up or down with
    probabilities that make the stored value right on average, so updates far below one unit
    in the last place still count) or ``"nearest"``. The random bits are a hash of ``(seed,
    step, row, column, array)``: the same bits for any ``num_threads``, on rerun, and after
    ``load_state_dict``. Gradient ``values`` are float32 (summed and applied in float32). State
    arrays have ``state_dtype``: float32 (the default), or float16/bfloat16 (half the memory,
    rounded like the table). ``rounding`` and ``seed`` may be set between steps;
    ``state_dtype`` is fixed. A float32/float64 table ignores ``rounding`` and ``seed`` and
    keeps its state in its own dtype. Not for half tables: :meth:`step_bags` (TypeError:
    compute the rows' float32 gradient with ``gather_sum_backward`` and call :meth:`step`).
"""


def _hyperparameter(name: str, doc: str) -> property:
    """A hyper-parameter readable and settable between steps (checked like the constructor's
    argument; see :meth:`Optimizer._set_hyperparameter` for when a change is refused)."""

    def get(self: Optimizer) -> Any:
        return self._hyperparams[name]

    def set_(self: Optimizer, value: Any) -> None:
        self._set_hyperparameter(name, value)

    return property(get, set_, doc=doc)


def _mode(value: object) -> Any:
    return getattr(_core.Mode, _args.choice("mode", value, _MODES))


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


class _ModesCoincide(Optimizer):
    """An optimizer whose sparse update already is the dense optimizer's (a zero gradient
    changes nothing): ``mode="lazy"`` and ``mode="exact"`` are accepted and give the same
    bits, so code can pass one ``mode`` to every optimizer. The mode is kept as an attribute,
    not a hyper-parameter, so snapshots saved before ``mode=`` existed still load."""

    def _set_mode(self, mode: object) -> None:
        self._mode = _args.choice("mode", mode, _MODES)

    @property
    def mode(self) -> str:
        """``"lazy"`` or ``"exact"``, as passed (fixed at construction); both run the same
        update here."""
        return getattr(self, "_mode", "lazy")  # objects pickled before mode= existed

    @mode.setter
    def mode(self, value: object) -> None:
        self._set_hyperparameter("mode", value)  # refused, as for the other optimizers


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and L2 weight decay
    (``torch.optim.SGD``'s formula).

    ``g += weight_decay * p``; ``buf = momentum * buf + (1 - dampening) * g`` (``buf = g`` on
    its first step), then ``p -= lr * (g + momentum * buf if nesterov else buf)``; without
    momentum ``p -= lr * g``.

    ``mode="lazy"``: each row follows that formula over only the steps that touch it (its
    buffer starts at its first touch; untouched rows keep parameter and buffer, and are not
    decayed). ``mode="exact"``: ``torch.optim.SGD`` fed zeros for untouched rows (momentum
    keeps moving them, weight decay shrinks them, and with both the decayed parameter feeds
    the buffer), also when ``lr`` changes every step. Without momentum, exact mode needs
    ``lr * weight_decay < 1`` (ValueError otherwise); with momentum any ``lr`` and
    ``weight_decay`` are exact. With both, a row resting k steps is caught up with O(log k)
    2x2 products of per-step matrices recorded in ``history``.

    State: ``momentum_buffer`` (the parameter's shape, with momentum); ``row_steps`` (int64
    per row, lazy mode with momentum); exact mode's ``last_step``, ``history``, ``window``.
    """

    def __init__(self, param: np.ndarray, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 mode: str = "lazy", *, num_threads: int = 0, rounding: str | None = None,
                 seed: int = 0, state_dtype: Any = None):
        super().__init__(param, dict(lr=lr, momentum=momentum, dampening=dampening,
                                     nesterov=nesterov, weight_decay=weight_decay, mode=mode),
                         num_threads=num_threads, half=(rounding, seed, state_dtype))

    momentum = _hyperparameter("momentum", "Momentum factor (settable between steps in lazy mode).")
    dampening = _hyperparameter("dampening", "Dampening of the momentum (settable between steps in lazy mode).")
    nesterov = _hyperparameter("nesterov", "Nesterov momentum (settable between steps in lazy mode).")
    weight_decay = _hyperparameter("weight_decay", "L2 weight decay (settable between steps in lazy mode).")
    mode = _hyperparameter("mode", "'lazy' or 'exact' (fixed at construction).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.SgdOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        o.momentum = h["momentum"] = _args.real("momentum", h["momentum"])
        o.dampening = h["dampening"] = _args.real("dampening", h["dampening"])
        o.nesterov = h["nesterov"] = _flag("nesterov", h["nesterov"])
        o.weight_decay = h["weight_decay"] = _args.real("weight_decay", h["weight_decay"])
        o.mode = _mode(h["mode"])
        o.validate()
        return self._options_from_half(h, o)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        if options.momentum == 0.0:
            return {}
        spec: dict[str, tuple[Any, float]] = {"momentum_buffer": (None, 0.0)}
        if options.mode == _core.Mode.lazy:
            spec["row_steps"] = (np.int64, 0)
        return spec

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.sgd_step(self._param, indices, values, bags,
                               self._state.get("momentum_buffer"), self._state.get("row_steps"),
                               *self._exact_args(), self._options, step, self._num_threads,
                               self._rounding())

    def _flush(self, indices: np.ndarray | None) -> None:
        self._kernels.sgd_flush(self._param, indices, self._state.get("momentum_buffer"),
                                *self._exact_args(), self._options, self._step, self._num_threads,
                                self._rounding())


class Adagrad(_ModesCoincide):
    """Adagrad (``torch.optim.Adagrad``'s formula with a sparse gradient).

    ``sum += g**2``, ``p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) * lr_decay)`` and ``step`` the global step count. A zero
    gradient changes nothing, so this lazy update already is the dense optimizer's result.

    ``mode``: ``"lazy"`` or ``"exact"``; the two coincide (anything else: ValueError).

    State: ``sum`` (the parameter's shape, starting at ``initial_accumulator_value``).
    """

    def __init__(self, param: np.ndarray, lr: float = 1e-2, lr_decay: float = 0.0,
                 eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                 mode: str = "lazy", *, num_threads: int = 0, rounding: str | None = None,
                 seed: int = 0, state_dtype: Any = None):
        self._set_mode(mode)
        super().__init__(param, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                     initial_accumulator_value=initial_accumulator_value),
                         num_threads=num_threads, half=(rounding, seed, state_dtype))

    lr_decay = _hyperparameter("lr_decay", "Learning-rate decay (settable between steps).")
    eps = _hyperparameter("eps", "Term added to the denominator (settable between steps).")
    initial_accumulator_value = _hyperparameter("initial_accumulator_value", "Starting value of ``sum`` (fixed at construction).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.AdagradOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        o.lr_decay = h["lr_decay"] = _args.real("lr_decay", h["lr_decay"])
        o.eps = h["eps"] = _args.real("eps", h["eps"])
        initial = h["initial_accumulator_value"] = _args.real(
            "initial_accumulator_value", h["initial_accumulator_value"])
        if not (np.isfinite(initial) and initial >= 0.0):
            raise ValueError(f"initial_accumulator_value must be a finite number >= 0, got {initial}")
        o.validate()
        return self._options_from_half(h, o)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        return {"sum": (None, hyperparams["initial_accumulator_value"])}

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.adagrad_step(self._param, indices, values, bags, self._state["sum"],
                                   self._options, step, self._num_threads, self._rounding())


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``'s formula).

    ``square_avg = alpha * square_avg + (1 - alpha) * g**2``; ``avg = sqrt(square_avg) + eps``
    (``centered``: ``grad_avg = lerp(grad_avg, g, 1 - alpha)`` and
    ``avg = sqrt(square_avg - grad_avg**2) + eps``); with momentum
    ``buf = momentum * buf + g / avg``, ``p -= lr * buf``, else ``p -= lr * g / avg``.

    ``mode="lazy"``: touched rows take that step, untouched rows keep everything.
    ``mode="exact"``: ``torch.optim.RMSprop`` fed zeros for untouched rows (their averages
    decay and momentum keeps moving them).

    State: ``square_avg``, ``momentum_buffer`` (with momentum), ``grad_avg`` (centered), all
    the parameter's shape; exact mode's ``last_step``, ``history``, ``window``.
    """

    def __init__(self, param: np.ndarray, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, centered: bool = False,
                 mode: str = "lazy", *, num_threads: int = 0, rounding: str | None = None,
                 seed: int = 0, state_dtype: Any = None):
        super().__init__(param, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                     centered=centered, mode=mode), num_threads=num_threads,
                         half=(rounding, seed, state_dtype))

    alpha = _hyperparameter("alpha", "Smoothing constant (settable between steps in lazy mode).")
    eps = _hyperparameter("eps", "Term added to the denominator (settable between steps in lazy mode).")
    momentum = _hyperparameter("momentum", "Momentum factor (settable between steps in lazy mode, while it stays nonzero or zero).")
    centered = _hyperparameter("centered", "Centered RMSprop (fixed by the state it needs).")
    mode = _hyperparameter("mode", "'lazy' or 'exact' (fixed at construction).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.RmspropOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        o.alpha = h["alpha"] = _args.real("alpha", h["alpha"])
        o.eps = h["eps"] = _args.real("eps", h["eps"])
        o.momentum = h["momentum"] = _args.real("momentum", h["momentum"])
        o.centered = h["centered"] = _flag("centered", h["centered"])
        o.mode = _mode(h["mode"])
        o.validate()
        return self._options_from_half(h, o)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        spec: dict[str, tuple[Any, float]] = {"square_avg": (None, 0.0)}
        if options.momentum != 0.0:
            spec["momentum_buffer"] = (None, 0.0)
        if options.centered:
            spec["grad_avg"] = (None, 0.0)
        return spec

    def _arrays(self) -> tuple[Any, ...]:
        return (self._state["square_avg"], self._state.get("momentum_buffer"),
                self._state.get("grad_avg"), *self._exact_args())

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.rmsprop_step(self._param, indices, values, bags, *self._arrays(),
                                   self._options, step, self._num_threads, self._rounding())

    def _flush(self, indices: np.ndarray | None) -> None:
        self._kernels.rmsprop_flush(self._param, indices, *self._arrays(), self._options,
                                    self._step, self._num_threads, self._rounding())


class Adam(Optimizer):
    """Adam for row-sparse gradients.

    ``mode="lazy"`` is ``torch.optim.SparseAdam``: on each touched row
    ``m += (1 - beta1) (g - m)``, ``v += (1 - beta2) (g**2 - v)``,
    ``p -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``; untouched rows
    keep parameters and moments. ``weight_decay`` adds ``weight_decay * p`` to the gradient of
    touched rows; ``amsgrad`` uses the running maximum of ``v``.

    ``mode="exact"`` is ``torch.optim.Adam`` (``eps`` added after the bias correction) fed zeros
    for untouched rows. Its ``weight_decay`` (L2 added to the gradient) has no closed form over
    skipped steps and is refused in exact mode: use :class:`AdamW`.

    ``bias_correction`` picks ``t``: ``"global"`` the optimizer's step count (as PyTorch);
    ``"row"`` (lazy mode) the number of steps that touched the row, so a row first touched
    late still starts with a step of size ``lr``; ``"none"`` no correction.

    State: ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` (amsgrad), all the parameter's
    shape; ``row_steps`` (int64 per row) with ``bias_correction="row"``; exact mode's
    ``last_step``, ``history``, ``window``.
    """

    _decoupled = False

    def __init__(self, param: np.ndarray, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, mode: str = "lazy",
                 bias_correction: str = "global", *, num_threads: int = 0,
                 rounding: str | None = None, seed: int = 0, state_dtype: Any = None):
        super().__init__(param, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                     amsgrad=amsgrad, mode=mode, bias_correction=bias_correction),
                         num_threads=num_threads, half=(rounding, seed, state_dtype))


    betas = _hyperparameter("betas", "(beta1, beta2) (settable between steps in lazy mode).")
    eps = _hyperparameter("eps", "Term added to the denominator (settable between steps in lazy mode).")
    weight_decay = _hyperparameter("weight_decay", "Weight decay (settable between steps in lazy mode).")
    amsgrad = _hyperparameter("amsgrad", "AMSGrad variant (fixed by the state it needs).")
    mode = _hyperparameter("mode", "'lazy' or 'exact' (fixed at construction).")
    bias_correction = _hyperparameter("bias_correction", "'global', 'row' or 'none' (settable in lazy mode where the state stays the same).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.AdamOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        betas = h["betas"]
        if isinstance(betas, (str, bytes)) or np.ndim(betas) != 1 or len(betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        o.beta1 = _args.real("betas[0]", betas[0])
        o.beta2 = _args.real("betas[1]", betas[1])
        h["betas"] = (o.beta1, o.beta2)
        o.eps = h["eps"] = _args.real("eps", h["eps"])
        o.weight_decay = h["weight_decay"] = _args.real("weight_decay", h["weight_decay"])
        o.decoupled = self._decoupled
        o.amsgrad = h["amsgrad"] = _flag("amsgrad", h["amsgrad"])
        o.mode = _mode(h["mode"])
        bias = _args.choice("bias_correction", h["bias_correction"], _BIAS_CORRECTIONS)
        o.bias_correction = getattr(_core.BiasCorrection, "global_" if bias == "global" else bias)
        o.validate()
        return self._options_from_half(h, o)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        spec: dict[str, tuple[Any, float]] = {"exp_avg": (None, 0.0), "exp_avg_sq": (None, 0.0)}
        if options.amsgrad:
            spec["max_exp_avg_sq"] = (None, 0.0)
        if options.mode == _core.Mode.lazy and options.bias_correction == _core.BiasCorrection.row:
            spec["row_steps"] = (np.int64, 0)
        return spec

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.adam_step(self._param, indices, values, bags, self._state["exp_avg"],
                                self._state["exp_avg_sq"], self._state.get("max_exp_avg_sq"),
                                self._state.get("row_steps"), *self._exact_args(), self._options,
                                step, self._num_threads, self._rounding())

    def _flush(self, indices: np.ndarray | None) -> None:
        self._kernels.adam_flush(self._param, indices, self._state["exp_avg"], self._state["exp_avg_sq"],
                                 self._state.get("max_exp_avg_sq"), *self._exact_args(), self._options,
                                 self._step, self._num_threads, self._rounding())


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``'s formula).

    Each step first shrinks the parameter, ``p *= 1 - lr * weight_decay``, then takes Adam's
    step. ``mode="lazy"`` shrinks and updates the touched rows only (SparseAdam's update);
    ``mode="exact"`` is ``torch.optim.AdamW`` fed zeros for untouched rows, so the decay
    reaches every row (caught up in closed form, also under a changing ``lr``).
    """

    _decoupled = True

    def __init__(self, param: np.ndarray, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, mode: str = "lazy",
                 bias_correction: str = "global", *, num_threads: int = 0,
                 rounding: str | None = None, seed: int = 0, state_dtype: Any = None):
        super().__init__(param, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, mode=mode, bias_correction=bias_correction,
                         num_threads=num_threads, rounding=rounding, seed=seed,
                         state_dtype=state_dtype)


class RowWiseAdagrad(_ModesCoincide):
    """Row-wise Adagrad: one accumulator per row (FBGEMM's and TorchRec's
    ``EXACT_ROWWISE_ADAGRAD`` without weight decay), for huge embedding tables whose state
    must stay small.

    For each touched row ``r`` with coalesced gradient row ``g`` (``row_width`` elements)::

        sum[r] += mean(g**2)                     # mean over the row's elements
        p[r]   -= lr * g / (sqrt(sum[r]) + eps)

    The mean, the row's multiplier ``lr / (sqrt(sum[r]) + eps)`` and the update are computed
    in the table's precision (float32 for float32 and half tables, as FBGEMM does), in an
    order that does not depend on ``num_threads``. A zero gradient changes nothing, so this
    lazy update already is the dense optimizer's result.

    Parameters
    ----------
    param : ndarray of float32 or float64, shape (num_rows, *row_shape)
        The table, updated in place.
    lr : float
        Learning rate, finite and >= 0.
    eps : float
        Added to ``sqrt(sum[r])``; finite and > 0 (with 0, a row whose gradient and
        accumulator are both 0 would divide 0 by 0), and ``lr / eps`` must be finite, in
        float32 too for a float32 or half table (an eps of 1e-50 is 0 in float32).
    mode : str
        ``"lazy"`` or ``"exact"``: the two coincide (anything else: ValueError).
    num_threads : int
        Threads per step (0 = all available); results do not depend on it.

    Notes
    -----
    State: ``sum``, shape ``(num_rows,)`` with the parameter's dtype, starting at 0.
    """

    def __init__(self, param: np.ndarray, lr: float = 1e-2, eps: float = 1e-10,
                 mode: str = "lazy", *, num_threads: int = 0, rounding: str | None = None,
                 seed: int = 0, state_dtype: Any = None):
        self._set_mode(mode)
        super().__init__(param, dict(lr=lr, eps=eps), num_threads=num_threads,
                         half=(rounding, seed, state_dtype))

    eps = _hyperparameter("eps", "Term added to the denominator (settable between steps).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.RowWiseAdagradOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        o.eps = h["eps"] = _args.real("eps", h["eps"])
        o.validate()
        self._check_in_dtype(o)
        return self._options_from_half(h, o)

    def _check_in_dtype(self, options: Any) -> None:
        # The step computes in the table's precision and checks eps and lr / eps there too.
        (_device if self._on_device else _core).rowwise_adagrad_check_options(self._param, options)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        # A dtype (the parameter's, or a half table's state_dtype) gives one value per row
        # instead of the param's shape.
        dtype = _half.dtype(hyperparams["state_dtype"]) if self._half else self._param.dtype
        return {"sum": (dtype, 0.0)}

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.rowwise_adagrad_step(self._param, indices, values, bags, self._state["sum"],
                                           self._options, self._num_threads, self._rounding(), step)


class FTRL(_ModesCoincide):
    """FTRL-proximal, as TensorFlow's ``SparseApplyFtrl`` (``tf.compat.v1.train.FtrlOptimizer``
    without l2 shrinkage) computes it.

    On every element of every touched row, with ``g`` the coalesced gradient (repeated indices
    summed first, as TensorFlow's optimizers do)::

        accum_new = accum + g**2
        sigma     = (accum_new**(-lr_power) - accum**(-lr_power)) / lr   # sqrt for lr_power=-0.5
        linear   += g - sigma * p
        quadratic = accum_new**(-lr_power) / lr + 2 * l2
        p         = (clip(linear, -l1, l1) - linear) / quadratic         # 0 when |linear| <= l1
        accum     = accum_new

    in the table's dtype. Untouched rows keep parameters and state, as in TensorFlow's sparse
    kernel. A zero gradient changes neither ``accumulator`` nor ``linear``, so the state is the
    dense optimizer's; a dense step would also recompute ``p`` from them, which is the same
    ``p`` for a row last updated under the current ``lr``, ``l1``, ``l2``, but 0 for a row never
    touched.

    Parameters
    ----------
    param : ndarray of float32 or float64, shape (num_rows, *row_shape)
        The table, updated in place.
    lr : float
        Learning rate, finite and > 0.
    lr_power : float
        Power of the per-element learning-rate schedule, <= 0 (-0.5: ``1/sqrt``; 0: fixed).
    l1, l2 : float
        Regularisation strengths, >= 0.
    initial_accumulator_value : float
        Starting value of ``accumulator``, >= 0. It must be > 0 when ``lr_power < 0`` and
        ``l2 == 0``: then ``quadratic`` would be 0 for an element whose accumulator and gradient
        are both 0 (TensorFlow's kernel divides 0 by 0 there). ``quadratic`` at this value must
        also be a positive finite number in the table's dtype (a float32 table can underflow
        it to 0 or overflow it); an ``lr`` set later that breaks this is refused by the next
        step (ValueError, nothing changed).
    mode : str
        ``"lazy"`` or ``"exact"``: both run the update above, whose state is the dense
        optimizer's (the parameters too, but for the rows described above); anything else is
        a ValueError.
    num_threads : int
        Threads per step (0 = all available); results do not depend on it.

    Notes
    -----
    State: ``accumulator`` (the parameter's shape, starting at ``initial_accumulator_value``)
    and ``linear`` (the parameter's shape, starting at 0).
    """

    def __init__(self, param: np.ndarray, lr: float, lr_power: float = -0.5, l1: float = 0.0,
                 l2: float = 0.0, initial_accumulator_value: float = 0.1, mode: str = "lazy",
                 *, num_threads: int = 0, rounding: str | None = None, seed: int = 0,
                 state_dtype: Any = None):
        self._set_mode(mode)
        super().__init__(param, dict(lr=lr, lr_power=lr_power, l1=l1, l2=l2,
                                     initial_accumulator_value=initial_accumulator_value),
                         num_threads=num_threads, half=(rounding, seed, state_dtype))

    lr_power = _hyperparameter("lr_power", "Power of the learning-rate schedule (settable between steps).")
    l1 = _hyperparameter("l1", "L1 regularisation strength (settable between steps).")
    l2 = _hyperparameter("l2", "L2 regularisation strength (settable between steps).")
    initial_accumulator_value = _hyperparameter("initial_accumulator_value", "Starting value of ``accumulator`` (fixed at construction).")

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.FtrlOptions()
        for name in ("lr", "lr_power", "l1", "l2", "initial_accumulator_value"):
            value = h[name] = _args.real(name, h[name])
            setattr(o, name, value)
        o.validate()
        self._check_in_dtype(o)
        return self._options_from_half(h, o)

    def _check_in_dtype(self, options: Any) -> None:
        # Every step also checks the bounds in the table's dtype.
        (_device if self._on_device else _core).ftrl_check_options(self._param, options)

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        return {"accumulator": (None, hyperparams["initial_accumulator_value"]),
                "linear": (None, 0.0)}

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int,
               bags: tuple[Any, Any, bool] | None = None) -> None:
        self._kernels.ftrl_step(self._param, indices, values, bags, self._state["accumulator"],
                                self._state["linear"], self._options, self._num_threads,
                                self._rounding(), step)


for _optimizer in (SGD, Adagrad, RMSprop, Adam, AdamW, RowWiseAdagrad, FTRL):
    _optimizer.__doc__ = (_optimizer.__doc__ or "") + _HALF_DOC
