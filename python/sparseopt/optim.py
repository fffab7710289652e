"""Sparse optimizers: apply row-sparse gradients ``(indices, values)`` to a parameter table.

Every optimizer updates ``param`` -- the very array passed in -- in place, and follows the
formulas and defaults of the ``torch.optim`` class of the same name. ``mode`` says what happens
to rows a step does not touch: ``"lazy"`` keeps their parameters and state as they are
(``torch.optim.SparseAdam``); ``"exact"`` gives the dense optimizer's result.

Each step coalesces repeated indices (their values are summed, as ``torch.sparse`` does), checks
every argument before it writes anything (a rejected call leaves ``param`` and the state exactly
as they were), and runs on ``num_threads`` threads (0 = all) with the same result for any count.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import _args, _core

__all__ = ["Optimizer", "SGD", "Adagrad", "Adam"]

_MODES = ("lazy", "exact")
_BIAS_CORRECTIONS = ("global", "row", "none")


class Optimizer:
    """Shared machinery: the parameter, hyper-parameters, step count and state arrays.

    Subclasses define ``_options_from(hyperparams)`` (the core's options object, checked),
    ``_state_spec(options, hyperparams)`` (name -> (dtype, fill value) of each state array; None dtype means
    the parameter's, an int64 array has one entry per row) and ``_apply(indices, values, step)``.
    """

    def __init__(self, param: np.ndarray, hyperparams: dict[str, Any], *, num_threads: int = 0):
        _core.check_param(param)
        self._param = param
        self._num_threads = _args.count("num_threads", num_threads)
        self._options = self._options_from(hyperparams)
        self._hyperparams = dict(hyperparams)
        self._step = 0
        self._state = {
            name: self._new_state_array(dtype, fill)
            for name, (dtype, fill) in self._state_spec(self._options, self._hyperparams).items()
        }

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
        except ValueError:
            self._options.lr = old
            raise
        self._hyperparams["lr"] = value

    @property
    def step_count(self) -> int:
        """Number of steps taken (empty steps included, as in PyTorch)."""
        return self._step

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The live state arrays (not copies); use :meth:`state_dict` for a snapshot."""
        return dict(self._state)

    def step(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Apply the row-sparse gradient ``values[k]`` of row ``indices[k]`` (repeats summed).

        ``indices``: int32 or int64, shape ``(n,)``, each in ``[0, len(param))``;
        ``values``: the parameter's dtype, shape ``(n, *param.shape[1:])``, C-contiguous.
        ``n = 0`` is a valid, empty step (it still counts as a step, as in PyTorch).
        """
        self._apply(indices, values, self._step + 1)
        self._step += 1

    def state_dict(self) -> dict[str, Any]:
        """A snapshot: ``{"step": int, "hyperparams": dict, "state": {name: ndarray copy}}``."""
        return {
            "step": self._step,
            "hyperparams": dict(self._hyperparams),
            "state": {name: array.copy() for name, array in self._state.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict` snapshot, copying into this optimizer's own arrays.

        Everything is checked first (keys, hyper-parameters, state names, shapes, dtypes);
        a rejected snapshot leaves the optimizer unchanged.
        """
        if not isinstance(state_dict, Mapping) or set(state_dict) != {"step", "hyperparams", "state"}:
            raise ValueError("state_dict must be a mapping with exactly the keys 'step', "
                             "'hyperparams' and 'state', as returned by state_dict()")
        step = _args.count("state_dict['step']", state_dict["step"])
        hyperparams = state_dict["hyperparams"]
        if not isinstance(hyperparams, Mapping) or set(hyperparams) != set(self._hyperparams):
            raise ValueError(f"state_dict['hyperparams'] must have the keys "
                             f"{sorted(self._hyperparams)}, got {sorted(hyperparams)}")
        hyperparams = dict(hyperparams)
        options = self._options_from(hyperparams)
        spec = self._state_spec(options, hyperparams)
        if set(spec) != set(self._state):
            raise ValueError(f"state_dict was saved with options that need the state "
                             f"{sorted(spec)}, this optimizer has {sorted(self._state)}; "
                             f"construct the optimizer with the same options")
        arrays = state_dict["state"]
        if not isinstance(arrays, Mapping) or set(arrays) != set(self._state):
            raise ValueError(f"state_dict['state'] must have the arrays {sorted(self._state)}, "
                             f"got {sorted(arrays) if isinstance(arrays, Mapping) else arrays!r}")
        for name, own in self._state.items():
            given = arrays[name]
            if not isinstance(given, np.ndarray) or given.dtype != own.dtype:
                got = given.dtype if isinstance(given, np.ndarray) else type(given).__name__
                raise TypeError(f"state_dict['state'][{name!r}] must be a numpy array of dtype "
                                f"{own.dtype}, got {got}")
            if given.shape != own.shape:
                raise ValueError(f"state_dict['state'][{name!r}] must have shape {own.shape}, "
                                 f"got {given.shape}")
        for name, own in self._state.items():
            np.copyto(own, arrays[name])
        self._options = options
        self._hyperparams = hyperparams
        self._step = step

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self._hyperparams.items())
        return (f"{type(self).__name__}(param: {self._param.dtype}{list(self._param.shape)}, "
                f"{options}, step_count={self._step})")

    # -- for subclasses ----------------------------------------------------------------------
    def _new_state_array(self, dtype: Any, fill: float) -> np.ndarray:
        if dtype is None:
            return np.full_like(self._param, fill, order="C")
        return np.full(self._param.shape[0], fill, dtype=dtype)

    def _options_from(self, hyperparams: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        raise NotImplementedError

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int) -> None:
        raise NotImplementedError


def _mode(value: object) -> Any:
    return getattr(_core.Mode, _args.choice("mode", value, _MODES))


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with momentum (``torch.optim.SGD``'s formula).

    ``buf = momentum * buf + (1 - dampening) * g`` (``buf = g`` on its first step), then
    ``p -= lr * (g + momentum * buf if nesterov else buf)``; without momentum ``p -= lr * g``.

    ``mode="lazy"``: each row follows that formula over only the steps that touch it (its
    buffer starts at its first touch; untouched rows keep parameter and buffer).
    Without momentum the two modes are the same algorithm.

    State: ``momentum_buffer`` (the parameter's shape) and ``row_steps`` (int64 per row: steps
    that touched the row), only when ``momentum != 0``.
    """

    def __init__(self, param: np.ndarray, lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, mode: str = "lazy", *,
                 num_threads: int = 0):
        super().__init__(param, dict(lr=lr, momentum=momentum, dampening=dampening,
                                     nesterov=nesterov, mode=mode), num_threads=num_threads)

    def _options_from(self, h: dict[str, Any]) -> Any:
        o = _core.SgdOptions()
        o.lr = h["lr"] = _args.real("lr", h["lr"])
        o.momentum = h["momentum"] = _args.real("momentum", h["momentum"])
        o.dampening = h["dampening"] = _args.real("dampening", h["dampening"])
        if not isinstance(h["nesterov"], (bool, np.bool_)):
            raise ValueError(f"nesterov must be True or False, got {h['nesterov']!r}")
        o.nesterov = h["nesterov"] = bool(h["nesterov"])
        o.mode = _mode(h["mode"])
        o.validate()
        return o

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        if options.momentum == 0.0:
            return {}
        return {"momentum_buffer": (None, 0.0), "row_steps": (np.int64, 0)}

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int) -> None:
        _core.sgd_step(self._param, indices, values, self._state.get("momentum_buffer"),
                       self._state.get("row_steps"), self._options, self._num_threads)


class Adagrad(Optimizer):
    """Adagrad (``torch.optim.Adagrad``'s formula with a sparse gradient).

    ``sum += g**2``, ``p -= clr * g / (sqrt(sum) + eps)`` with
    ``clr = lr / (1 + (step - 1) * lr_decay)`` and ``step`` the global step count. A zero
    gradient changes nothing, so this lazy update already is the dense optimizer's result.

    State: ``sum`` (the parameter's shape, starting at ``initial_accumulator_value``).
    """

    def __init__(self, param: np.ndarray, lr: float = 1e-2, lr_decay: float = 0.0,
                 eps: float = 1e-10, initial_accumulator_value: float = 0.0, *,
                 num_threads: int = 0):
        super().__init__(param, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                     initial_accumulator_value=initial_accumulator_value),
                         num_threads=num_threads)

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
        return o

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        return {"sum": (None, hyperparams["initial_accumulator_value"])}

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int) -> None:
        _core.adagrad_step(self._param, indices, values, self._state["sum"], self._options,
                           step, self._num_threads)


class Adam(Optimizer):
    """Adam for row-sparse gradients.

    ``mode="lazy"`` is ``torch.optim.SparseAdam``: on each touched row
    ``m += (1 - beta1) (g - m)``, ``v += (1 - beta2) (g**2 - v)``,
    ``p -= lr * sqrt(1 - beta2**t) / (1 - beta1**t) * m / (sqrt(v) + eps)``; untouched rows
    keep parameters and moments.

    ``bias_correction`` picks ``t``: ``"global"`` the optimizer's step count (as PyTorch);
    ``"row"`` the number of steps that touched the row, so a row first touched late still
    starts with a step of size ``lr``; ``"none"`` no correction.

    State: ``exp_avg``, ``exp_avg_sq`` (the parameter's shape), and ``row_steps`` (int64 per
    row) with ``bias_correction="row"``.
    """

    def __init__(self, param: np.ndarray, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, mode: str = "lazy", bias_correction: str = "global", *,
                 num_threads: int = 0):
        super().__init__(param, dict(lr=lr, betas=betas, eps=eps, mode=mode,
                                     bias_correction=bias_correction), num_threads=num_threads)

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
        o.mode = _mode(h["mode"])
        bias = _args.choice("bias_correction", h["bias_correction"], _BIAS_CORRECTIONS)
        o.bias_correction = getattr(_core.BiasCorrection, "global_" if bias == "global" else bias)
        o.validate()
        return o

    def _state_spec(self, options: Any, hyperparams: dict[str, Any]) -> dict[str, tuple[Any, float]]:
        spec: dict[str, tuple[Any, float]] = {"exp_avg": (None, 0.0), "exp_avg_sq": (None, 0.0)}
        if options.bias_correction == _core.BiasCorrection.row:
            spec["row_steps"] = (np.int64, 0)
        return spec

    def _apply(self, indices: np.ndarray, values: np.ndarray, step: int) -> None:
        _core.adam_step(self._param, indices, values, self._state["exp_avg"],
                        self._state["exp_avg_sq"], self._state.get("row_steps"), self._options,
                        step, self._num_threads)
