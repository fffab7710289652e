"""sparseopt for PyTorch: drop-in ``torch.optim`` optimizers that run sparseopt's kernels on CPU
tensors in place, and a meProp linear layer.

Importing this module imports torch (``import sparseopt`` alone never does); install it with
``pip install "sparseopt[torch]"``.

Each optimizer is a :class:`torch.optim.Optimizer` built like torch's own (``params`` as tensors
or param-group dicts with per-group hyper-parameters), with the hyper-parameters and defaults of
the :mod:`sparseopt.optim` class of the same name, plus ``mode`` and ``num_threads``::

    emb = torch.nn.Embedding(1_000_000, 64, sparse=True)
    opt = sparseopt.torch.Adam(model.parameters(), lr=1e-3, mode="exact")
    opt.attach(model)            # exact mode: rows a forward pass reads are caught up first
    loss.backward(); opt.step(); opt.zero_grad()

- A **sparse gradient** (COO, as ``nn.Embedding(sparse=True)``, ``nn.EmbeddingBag(sparse=True)``
  and ``F.embedding_bag(..., sparse=True)`` produce; uncoalesced is fine) is applied by the
  sparseopt kernel to the parameter's own memory: no copy of the table, no dense gradient.
  ``mode="lazy"`` is ``torch.optim.SparseAdam``'s update for Adam (untouched rows keep
  everything); ``mode="exact"`` gives the dense optimizer's result (``torch.optim.Adam`` with
  ``sparse=False`` embeddings) at the cost of the touched rows.
- A **dense gradient** (an ``nn.Linear`` beside the embeddings) gets the dense formula of the
  torch class of the same name, through the same kernels with the whole tensor as one touched
  row, so one optimizer serves the whole model (for a dense parameter the two modes coincide).
  One exception: ``Adam`` with L2 ``weight_decay`` (or ``bias_correction="row"``) steps dense
  parameters with SparseAdam's update, which adds ``eps`` before the bias correction instead of
  after it (a difference of the order of ``eps``); ``AdamW`` has none.
- **CUDA parameters** (sparseopt built with ``SPARSEOPT_CUDA=ON``): sparse gradients in
  ``mode="lazy"`` and dense gradients of the optimizers whose dense formula is lazy mode's (all
  but ``Adam``/``AdamW``) are stepped on the device by sparseopt's CUDA kernels, with the CPU's
  bits; exact mode and ``state_dict()`` are refused there (not implemented yet).
- Hyper-parameters are read from ``param_groups`` at every step, so
  ``torch.optim.lr_scheduler`` works unchanged; a value the kernel cannot follow (see
  :mod:`sparseopt.optim`: in exact mode only ``lr`` may change) is a ValueError naming the
  group and the hyper-parameter.
- ``state_dict()`` / ``load_state_dict()`` use torch's format (``{"state": {index: {name:
  tensor}}, "param_groups": [...]}``); save, load and continue gives the same bits as an
  uninterrupted run, in both modes. A snapshot is checked whole before anything changes.

Exact mode and the forward pass: a row untouched by recent steps is brought up to date when it
is next stepped, or by :meth:`flush`. A forward pass that reads such a row before then sees it
as it was at its last step. ``attach(model)`` registers forward pre-hooks on the
``nn.Embedding`` / ``nn.EmbeddingBag`` / :class:`MePropLinear` modules whose weight the optimizer
holds, so that the rows each forward reads are caught up first: with it, exact-mode training
equals dense torch training. Without it (or with ``F.embedding`` on a raw tensor), call
``opt.flush(weight, ids)`` before the forward, or ``opt.flush()`` before evaluation.

Only CPU tensors, contiguous, are supported (CUDA tensors: a clear error, until sparseopt's
CUDA build exists), of dtype float32, float64, float16 or bfloat16. A float16/bfloat16
parameter is a half table (:mod:`sparseopt.optim`): each update is computed in float32 and
stored with the group's ``rounding`` (``"stochastic"``, the default, or ``"nearest"``) and
``seed``; its state has the group's ``state_dtype`` (float32 by default). Its gradient, which
autograd makes in the parameter's dtype, is widened to float32 (exact) for the step. bfloat16
needs ml_dtypes (``pip install 'sparseopt[bf16]'``).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from . import _args, _device, meprop as _meprop
from . import optim as _optim

__all__ = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RowWiseAdagrad", "FTRL",
           "MePropLinear"]

_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_HALF_DTYPES = (torch.float16, torch.bfloat16)
_MODES = ("lazy", "exact")
# A half parameter's options (param-group entries; float parameters ignore them).
_HALF_DEFAULTS = {"rounding": "stochastic", "seed": 0, "state_dtype": None}


def _bfloat16() -> Any:
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError("bfloat16 parameters need the ml_dtypes package: pip install "
                          "'sparseopt[bf16]' (or pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def _numpy(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as a NumPy array (bfloat16 through ml_dtypes' dtype)."""
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(_bfloat16())
    return t.numpy()


def _torch(a: np.ndarray) -> torch.Tensor:
    """A NumPy array's memory as a tensor (ml_dtypes' bfloat16 as torch.bfloat16)."""
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def _float32_values(t: torch.Tensor) -> np.ndarray:
    """Gradient values as the step takes them: a half parameter's widened to float32."""
    t = t.detach().contiguous()
    return (t.float() if t.dtype in _HALF_DTYPES else t).numpy()


class _Optimizer(torch.optim.Optimizer):
    """The shared adapter: one :mod:`sparseopt.optim` optimizer per parameter tensor, over the
    tensor's own memory, created at the parameter's first step."""

    _inner: type = _optim.Optimizer
    # Hyper-parameters passed to the inner class (besides lr), in its argument order.
    _hyper: tuple[str, ...] = ()

    def __init__(self, params: Any, defaults: dict[str, Any]):
        defaults = {**_HALF_DEFAULTS, **defaults}
        _check_mode(defaults["mode"], "mode")
        defaults["num_threads"] = _args.threads("num_threads", defaults["num_threads"])
        super().__init__(params, defaults)
        for number, group in enumerate(self.param_groups):
            _check_mode(group["mode"], "a param group's mode")
            for p in group["params"]:
                _check_param(p)
            # Hyper-parameters are checked now, as torch's constructors do, not at the first
            # step: the inner class validates them over a one-element probe table.
            try:
                self._new_inner(torch.zeros(1, 1, dtype=torch.float64), group, "sparse")
                if any(p.dtype in _HALF_DTYPES for p in group["params"]):  # and the half options
                    self._new_inner(torch.zeros(1, 1, dtype=torch.float16), group, "sparse")
            except (ValueError, TypeError, ImportError) as exc:
                raise type(exc)(f"param group {number}: {exc}") from exc
        # param -> (inner optimizer, "sparse" or "dense"); the numpy view the inner updates
        self._inners: dict[torch.Tensor, tuple[_optim.Optimizer, str]] = {}

    # -- stepping ----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One step for every parameter that has a gradient (as torch's optimizers).

        Everything is checked first (devices, dtypes, layouts, sparse indices in range,
        hyper-parameters); a rejected step raises and changes no parameter.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                _check_param(p)
                layout = "sparse" if p.grad.is_sparse else "dense"
                indices, values = (_sparse_parts(p, p.grad) if layout == "sparse"
                                   else _dense_parts(p, p.grad))
                work.append((group, p, layout, indices, values))
        inners = [self._inner_for(p, group, layout) for group, p, layout, _, _ in work]
        for (group, _, layout, _, _), inner in zip(work, inners):
            self._sync(inner, group, layout)
        for (_, _, _, indices, values), inner in zip(work, inners):
            inner.step(indices, values)
        return loss

    def flush(self, param: torch.Tensor | None = None, indices: Any = None) -> None:
        """Exact mode: bring rows up to date (nothing to do in lazy mode).

        ``flush()`` brings every row of every parameter; ``flush(weight)`` every row of one;
        ``flush(weight, ids)`` the rows ``ids`` (a tensor or array of int64/int32 ids, any
        shape), what a forward pass reading those rows needs first (:meth:`attach` does it).
        """
        if param is None:
            for inner, _ in self._inners.values():
                inner.flush()
            return
        entry = self._inners.get(param)
        if entry is None:
            if not any(param is p for g in self.param_groups for p in g["params"]):
                raise ValueError("flush(param): this optimizer does not hold that parameter")
            return  # never stepped: nothing is behind
        inner, _ = entry
        if indices is None:
            inner.flush()
        else:
            inner.flush(_ids(indices, "indices"))

    def attach(self, model: nn.Module) -> list[Any]:
        """Register forward pre-hooks on the ``nn.Embedding``, ``nn.EmbeddingBag`` and
        :class:`MePropLinear` modules of ``model`` whose weight this optimizer holds: before
        each forward, the rows it reads are brought up to date (exact mode; the hooks cost
        nothing in lazy mode). Returns the hook handles (``handle.remove()`` detaches)."""
        held = {p for g in self.param_groups for p in g["params"]}
        handles = []
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if weight is None or weight not in held:
                continue
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
                handles.append(module.register_forward_pre_hook(self._embedding_hook(weight)))
            elif isinstance(module, MePropLinear):
                handles.append(module.register_forward_pre_hook(
                    lambda _module, _args, weight=weight: self.flush(weight)))
        return handles

    def _embedding_hook(self, weight: torch.Tensor) -> Any:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            entry = self._inners.get(weight)
            if entry is not None and entry[0].exact and args:
                entry[0].flush(_ids(args[0], "input"))
        return hook

    # -- the inner optimizers ----------------------------------------------------------------
    def _inner_for(self, p: torch.Tensor, group: dict[str, Any], layout: str) -> _optim.Optimizer:
        entry = self._inners.get(p)
        if entry is not None:
            if entry[1] != layout:
                raise ValueError(f"a parameter of shape {tuple(p.shape)} had a {entry[1]} "
                                 f"gradient before and a {layout} one now; sparseopt keeps one "
                                 f"kind of state per parameter")
            # The inner table is a view that starts at the tensor's first element: comparing
            # addresses is enough (and costs nothing, where an overlap test scans shapes).
            table = entry[0].param
            if (table.data_ptr() if p.is_cuda else table.ctypes.data) != p.data_ptr():
                raise ValueError("a parameter's storage changed (p.data was replaced) after "
                                 "its first step; update it in place instead")
            return entry[0]
        inner = self._new_inner(p, group, layout)
        self._inners[p] = (inner, layout)
        return inner

    def _new_inner(self, p: torch.Tensor, group: dict[str, Any], layout: str) -> _optim.Optimizer:
        # The tensor's memory, updated in place: a NumPy view, or the CUDA tensor itself.
        table = p.detach() if p.is_cuda else _numpy(p.detach())
        if layout == "dense" or table.ndim == 0:
            table = table.reshape(1, -1)  # one row, touched by every step
        kwargs = {name: group[name] for name in self._hyper}
        if p.dtype in _HALF_DTYPES:
            kwargs.update({name: group[name] for name in _HALF_DEFAULTS})
        kwargs["mode"] = group["mode"] if layout == "sparse" else self._dense_mode(group)
        if p.is_cuda and kwargs["mode"] == "exact":  # (dense Adam's formula is exact mode's)
            raise NotImplementedError(
                f"this CUDA parameter (shape {tuple(p.shape)}, a {layout} gradient) would be "
                f"stepped in exact mode, which the CUDA kernels do not implement yet: use "
                f"mode='lazy' for sparse parameters and torch.optim for dense CUDA ones")
        return self._inner(table, group["lr"], **kwargs, num_threads=group["num_threads"])

    def _dense_mode(self, group: dict[str, Any]) -> str:
        """The inner mode for a dense parameter, touched whole by every step: the lazy update
        is then the dense formula of torch's class for SGD and RMSprop."""
        return "lazy"

    def _sync(self, inner: _optim.Optimizer, group: dict[str, Any], layout: str) -> None:
        if layout == "sparse" and group["mode"] != inner.mode:
            # The inner optimizer's state was built for its mode; stepping on in the old mode
            # while param_groups says the new one would be a silent mismatch.
            number = next(i for i, g in enumerate(self.param_groups) if g is group)
            raise ValueError(f"param group {number}: cannot set mode to {group['mode']!r}: a "
                             f"parameter has stepped in mode {inner.mode!r}, and the mode is "
                             f"fixed by its first step; build a new optimizer for another mode")
        for name in ("lr", *self._hyper, *(("rounding", "seed") if inner.half else ())):
            value = group[name]
            if _differs(getattr(inner, name), value):
                try:
                    setattr(inner, name, value)
                except (ValueError, TypeError, AttributeError) as exc:
                    number = next(i for i, g in enumerate(self.param_groups) if g is group)
                    raise ValueError(f"param group {number}: cannot set {name} to {value!r}: "
                                     f"{exc}") from exc
        inner.num_threads = _args.threads("num_threads", group["num_threads"])

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's format: ``{"state": {index: {...}}, "param_groups": [...]}``; each
        parameter's entry holds ``step`` (an int64 tensor), ``layout`` (``"sparse"`` or
        ``"dense"``) and its sparseopt state arrays as tensors (copies)."""
        self.state.clear()
        for p, (inner, layout) in self._inners.items():
            snapshot = inner.state_dict()
            entry: dict[str, Any] = {"step": torch.tensor(snapshot["step"], dtype=torch.int64),
                                     "layout": layout}
            for name, array in snapshot["state"].items():
                entry[name] = _torch(array)
            self.state[p] = entry
        try:
            return super().state_dict()
        finally:
            self.state.clear()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`. Every parameter's state is checked (as
        :meth:`sparseopt.optim.Optimizer.load_state_dict` checks an untrusted snapshot) before
        any of it, or any param group, changes."""
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError("state_dict must be a dict with the keys 'state' and "
                             "'param_groups', as returned by state_dict()")
        saved_groups = state_dict["param_groups"]
        if (not isinstance(saved_groups, list) or len(saved_groups) != len(self.param_groups)
                or any(not isinstance(s, dict) or len(s.get("params", ())) != len(g["params"])
                       for s, g in zip(saved_groups, self.param_groups))):
            raise ValueError("state_dict's param_groups do not match this optimizer's (number "
                             "of groups and of parameters in each)")
        saved_state = state_dict["state"]
        if not isinstance(saved_state, dict):
            raise ValueError("state_dict['state'] must be a dict")
        index_to = {}
        new_groups = []
        for saved, group in zip(saved_groups, self.param_groups):
            new_group = {**group, **{k: v for k, v in saved.items() if k != "params"}}
            _check_mode(new_group.get("mode"), "a saved param group's mode")
            new_groups.append(new_group)
            for index, p in zip(saved["params"], group["params"]):
                index_to[index] = (p, new_group)
        unknown = set(saved_state) - set(index_to)
        if unknown:
            raise ValueError(f"state_dict['state'] holds parameters {sorted(unknown)} that no "
                             f"param group lists")
        inners = {}
        for index, entry in saved_state.items():
            p, group = index_to[index]
            if not isinstance(entry, dict) or entry.get("layout") not in ("sparse", "dense"):
                raise ValueError(f"state_dict['state'][{index}] must be a dict with 'step', "
                                 f"'layout' ('sparse' or 'dense') and the state tensors")
            layout = entry["layout"]
            inner = self._new_inner(p, group, layout)
            arrays = {}
            for name, value in entry.items():
                if name in ("step", "layout"):
                    continue
                if not isinstance(value, torch.Tensor) or value.device.type != "cpu":
                    raise ValueError(f"state_dict['state'][{index}][{name!r}] must be a CPU "
                                     f"tensor")
                arrays[name] = _numpy(value.detach().contiguous())
            step = entry.get("step")
            if isinstance(step, torch.Tensor):
                if step.numel() != 1 or step.is_floating_point() and step.item() != int(step.item()):
                    raise ValueError(f"state_dict['state'][{index}]['step'] must be one integer")
                step = int(step.item())
            hyperparams = dict(inner.state_dict()["hyperparams"])
            inner.load_state_dict({"step": step, "hyperparams": hyperparams, "state": arrays})
            inners[p] = (inner, layout)
        # Everything checked: apply.
        for group, new_group in zip(self.param_groups, new_groups):
            group.update({k: v for k, v in new_group.items() if k != "params"})
        self._inners = inners
        self.state.clear()

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("_inners", {})


def _differs(current: Any, wanted: Any) -> bool:
    if isinstance(current, tuple) or isinstance(wanted, (tuple, list)):
        try:
            return tuple(float(x) for x in current) != tuple(float(x) for x in wanted)
        except (TypeError, ValueError):
            return True
    return current != wanted


def _check_mode(mode: Any, what: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"{what} must be 'lazy' or 'exact', got {mode!r}")


def _check_param(p: Any) -> None:
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"parameters must be torch tensors, got {type(p).__name__}")
    if p.device.type != "cpu":
        if p.device.type != "cuda" or not _device.built():
            why = _device.BUILD_HINT if p.device.type == "cuda" else "not supported"
            raise ValueError(f"sparseopt.torch runs on CPU tensors, and on CUDA tensors when "
                             f"sparseopt is built with SPARSEOPT_CUDA=ON; this parameter is on "
                             f"{p.device} ({why}): use torch.optim for it, or keep the table on "
                             f"the CPU")
        if p.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"CUDA parameters must be float32 or float64 (the CUDA kernels take "
                             f"no half tables yet), got {p.dtype}")
    if p.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"parameters must be float32, float64, float16 or bfloat16, got "
                         f"{p.dtype}; create the module with dtype=torch.float32 (a converted "
                         f"copy would be trained instead)")
    if p.is_sparse or not p.is_contiguous():
        raise ValueError(f"parameters must be dense and contiguous (sparseopt updates their "
                         f"memory in place), got one of shape {tuple(p.shape)} with strides "
                         f"{p.stride() if not p.is_sparse else 'sparse'}; make the module's "
                         f"weight contiguous once, before building the optimizer")


def _sparse_parts(p: torch.Tensor, grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(indices, values) of a row-sparse COO gradient, as NumPy arrays (no densifying)."""
    if grad.layout != torch.sparse_coo:
        raise ValueError(f"sparse gradients must be COO tensors, got {grad.layout}")
    if grad.sparse_dim() != 1 or tuple(grad.shape) != tuple(p.shape) or p.dim() < 1:
        raise ValueError(f"a sparse gradient must be row-sparse over the parameter's first "
                         f"dimension (sparse_dim 1, shape {tuple(p.shape)}), got sparse_dim "
                         f"{grad.sparse_dim()} and shape {tuple(grad.shape)}")
    if grad.dtype != p.dtype:
        raise ValueError(f"the gradient's dtype {grad.dtype} differs from the parameter's "
                         f"{p.dtype}")
    if p.is_cuda:  # the gradient stays on its device, for the CUDA kernels
        indices, values = grad._indices()[0].contiguous(), grad._values().detach().contiguous()
    else:
        indices = grad._indices()[0].contiguous().numpy()
        values = _float32_values(grad._values())
    if len(indices):  # (a NumPy array, or a CUDA tensor)
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= p.shape[0]:
            raise IndexError(f"a sparse gradient's row index is out of range [0, {p.shape[0]}): "
                             f"got indices from {low} to {high}")
    return indices, values


def _dense_parts(p: torch.Tensor, grad: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    if grad.layout != torch.strided or tuple(grad.shape) != tuple(p.shape):
        raise ValueError(f"a dense gradient must have the parameter's shape {tuple(p.shape)}, "
                         f"got {tuple(grad.shape)}")
    if grad.dtype != p.dtype:
        raise ValueError(f"the gradient's dtype {grad.dtype} differs from the parameter's "
                         f"{p.dtype}")
    if p.is_cuda:
        return (torch.zeros(1, dtype=torch.int64, device=p.device),
                grad.detach().contiguous().reshape(1, -1))
    return np.zeros(1, np.int64), _float32_values(grad).reshape(1, -1)


def _ids(ids: Any, what: str) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    ids = np.asarray(ids)
    if ids.dtype not in (np.int32, np.int64):
        raise TypeError(f"{what} must hold int32 or int64 row ids, got {ids.dtype}")
    return np.ascontiguousarray(ids.reshape(-1))


class SGD(_Optimizer):
    """``torch.optim.SGD``'s formula; sparse gradients through :class:`sparseopt.optim.SGD`."""

    _inner = _optim.SGD
    _hyper = ("momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 mode: str = "lazy", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      nesterov=nesterov, weight_decay=weight_decay, mode=mode,
                                      num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


class Adagrad(_Optimizer):
    """``torch.optim.Adagrad``'s formula (without weight decay). Its lazy update already is
    the dense result, so ``mode`` is accepted and changes nothing."""

    _inner = _optim.Adagrad
    _hyper = ("lr_decay", "eps", "initial_accumulator_value")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0.0,
                 eps: float = 1e-10, initial_accumulator_value: float = 0.0,
                 mode: str = "lazy", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, eps=eps,
                                      initial_accumulator_value=initial_accumulator_value,
                                      mode=mode, num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


class RMSprop(_Optimizer):
    """``torch.optim.RMSprop``'s formula; sparse gradients through
    :class:`sparseopt.optim.RMSprop`."""

    _inner = _optim.RMSprop
    _hyper = ("alpha", "eps", "momentum", "centered")

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, momentum: float = 0.0, centered: bool = False,
                 mode: str = "lazy", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      centered=centered, mode=mode, num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


class Adam(_Optimizer):
    """``torch.optim.Adam``'s formula for dense gradients; sparse gradients through
    :class:`sparseopt.optim.Adam` (lazy: ``torch.optim.SparseAdam``'s update; exact: dense
    Adam's result). ``weight_decay`` (L2) is refused for sparse parameters in exact mode: use
    :class:`AdamW`."""

    _inner = _optim.Adam
    _hyper = ("betas", "eps", "weight_decay", "amsgrad", "bias_correction")

    def _dense_mode(self, group: dict[str, Any]) -> str:
        # Lazy Adam is SparseAdam, whose eps is added before the bias correction; the exact
        # kernel's row update is torch.optim.Adam's. Exact mode refuses L2 weight decay and
        # per-row bias correction, where the lazy update (SparseAdam's eps) is used instead.
        l2 = group["weight_decay"] != 0 and self._inner is _optim.Adam
        return "lazy" if l2 or group["bias_correction"] == "row" else "exact"

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, mode: str = "lazy",
                 bias_correction: str = "global", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad, mode=mode,
                                      bias_correction=bias_correction, num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


class AdamW(Adam):
    """``torch.optim.AdamW``'s formula (decoupled weight decay); exact mode decays every row,
    as the dense optimizer does."""

    _inner = _optim.AdamW

    def __init__(self, params: Iterable[Any], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, mode: str = "lazy",
                 bias_correction: str = "global", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, mode=mode, bias_correction=bias_correction,
                         num_threads=num_threads, rounding=rounding, seed=seed,
                         state_dtype=state_dtype)


class RowWiseAdagrad(_Optimizer):
    """Row-wise Adagrad (FBGEMM's and TorchRec's ``EXACT_ROWWISE_ADAGRAD``): one accumulator
    per row (a dense parameter counts as one row). See :class:`sparseopt.optim.RowWiseAdagrad`."""

    _inner = _optim.RowWiseAdagrad
    _hyper = ("eps",)

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, eps: float = 1e-10,
                 mode: str = "lazy", *, num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, eps=eps, mode=mode, num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


class FTRL(_Optimizer):
    """FTRL-proximal as TensorFlow computes it; see :class:`sparseopt.optim.FTRL`."""

    _inner = _optim.FTRL
    _hyper = ("lr_power", "l1", "l2", "initial_accumulator_value")

    def __init__(self, params: Iterable[Any], lr: float, lr_power: float = -0.5, l1: float = 0.0,
                 l2: float = 0.0, initial_accumulator_value: float = 0.1, mode: str = "lazy", *,
                 num_threads: int = 0,
                 rounding: str = "stochastic", seed: int = 0, state_dtype: Any = None):
        super().__init__(params, dict(lr=lr, lr_power=lr_power, l1=l1, l2=l2,
                                      initial_accumulator_value=initial_accumulator_value,
                                      mode=mode, num_threads=num_threads,
                                      rounding=rounding, seed=seed, state_dtype=state_dtype))


# -- meProp --------------------------------------------------------------------------------------
class _MePropLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                k: int, unified: bool, sparse: bool, num_threads: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.settings = (k, unified, sparse, num_threads)
        return torch.nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        k, unified, sparse, num_threads = ctx.settings
        out_features, in_features = weight.shape
        x2 = x.detach().reshape(-1, in_features).contiguous()
        g2 = grad_out.detach().reshape(-1, out_features).contiguous()
        need_x = ctx.needs_input_grad[0]
        grads = _meprop.linear_backward(x2.numpy(), weight.detach().numpy(), g2.numpy(), k,
                                        unified=unified, need_grad_x=need_x,
                                        num_threads=num_threads)
        grad_x = torch.from_numpy(grads.grad_x).reshape(x.shape) if need_x else None
        rows, values = grads.weight
        if sparse:
            grad_w = torch.sparse_coo_tensor(torch.from_numpy(rows)[None],
                                             torch.from_numpy(values), tuple(weight.shape),
                                             is_coalesced=True, check_invariants=False)
        else:
            grad_w = torch.zeros_like(weight)
            grad_w[torch.from_numpy(rows)] = torch.from_numpy(values)
        grad_b = torch.from_numpy(grads.bias) if ctx.has_bias else None
        return grad_x, grad_w, grad_b, None, None, None, None


class MePropLinear(nn.Module):
    """``nn.Linear`` whose backward is meProp's (Sun et al., 2017): only the ``k`` largest
    output-gradient entries of each example (or, with ``unified``, ``k`` units shared by the
    batch) are back-propagated, through sparseopt's kernels.

    The forward is ``F.linear``. The weight gradient is a sparse COO tensor over the selected
    output rows (``sparse_grad=True``, the default) so that the optimizers of this module touch
    only those rows, or a dense tensor with the other rows zero (``sparse_grad=False``). The bias
    gradient is the unmasked column sum, as in the reference code. Inputs may have any leading
    dimensions; CPU, float32 or float64.
    """

    def __init__(self, in_features: int, out_features: int, k: int, bias: bool = True,
                 unified: bool = False, dtype: torch.dtype | None = None, *,
                 sparse_grad: bool = True, num_threads: int = 0):
        super().__init__()
        self.in_features = _args.count("in_features", in_features, minimum=1)
        self.out_features = _args.count("out_features", out_features, minimum=1)
        self.k = _args.count("k", k, minimum=1)
        if self.k > self.out_features:
            raise ValueError(f"k must be <= out_features = {self.out_features}, got {self.k}")
        self.unified = bool(unified)
        self.sparse_grad = bool(sparse_grad)
        self.num_threads = _args.threads("num_threads", num_threads)
        reference = nn.Linear(in_features, out_features, bias=bias, dtype=dtype)
        self.weight = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone()) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.weight.dtype or x.device.type != "cpu":
            raise ValueError(f"input must be a CPU tensor of dtype {self.weight.dtype}, got "
                             f"{x.dtype} on {x.device}")
        return _MePropLinearFunction.apply(x, self.weight, self.bias, self.k, self.unified,
                                           self.sparse_grad, self.num_threads)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"k={self.k}, bias={self.bias is not None}, unified={self.unified}")
