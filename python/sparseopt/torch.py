"""PyTorch front end: ``torch.optim.Optimizer`` subclasses over :mod:`sparseopt.optim`.

Quickstart::

    import sparseopt.torch as so
    model = MyModel()                       # nn.Embedding(..., sparse=True) + nn.Linear ...
    opt = so.Adam(model.parameters(), lr=1e-3, mode="exact")
    opt.attach(model)                       # exact mode: forward passes read caught-up rows
    for x, y in data: opt.zero_grad(); loss_fn(model(x), y).backward(); opt.step()

Each parameter tensor gets one :mod:`sparseopt.optim` object, created at its first gradient,
over the tensor's own memory (``p.detach().numpy()`` shares it; nothing is copied):

- a **sparse COO gradient** (``nn.Embedding(sparse=True)``, ``nn.EmbeddingBag(sparse=True)``;
  uncoalesced is fine, repeats are summed by the core) steps the rows it names with the group's
  ``mode``: ``"lazy"`` (untouched rows keep everything; ``Adam`` is ``torch.optim.SparseAdam``)
  or ``"exact"`` (the dense ``torch.optim`` optimizer fed zeros for untouched rows, caught up
  when read);
- a **dense gradient** (``nn.Linear`` beside the embeddings) steps the tensor viewed as one row
  that every step touches, which is the dense formula of the ``torch.optim`` class of the same
  name, so one optimizer serves a whole model.

Hyper-parameters are read from ``param_groups`` at every step, so ``torch.optim.lr_scheduler``
works unchanged. A changed value other than ``lr`` is handed to the inner optimizer with
``setattr``; when it cannot take it, the step raises an error naming the group and the name.

Exact mode and the forward pass: rows a step does not touch fall behind until they are read.
:meth:`attach` registers forward pre-hooks on the ``nn.Embedding``/``nn.EmbeddingBag`` modules
whose weight this optimizer holds; each forward first catches up the rows it reads, so training
equals dense torch training. Without ``attach``, the forward reads stale rows of untouched-then-
touched ids (the step itself still catches a row up before updating it, but the gradient was
computed from the stale value) and the result drifts from dense torch; call :meth:`flush` before
reading the whole table (evaluation, export).

Limits: CPU tensors only (CUDA waits for the CUDA build), C-contiguous float32/float64
parameters, sparse gradients over the first dimension. ``Adam(weight_decay>0, mode="exact")`` is
refused by the core (torch's L2 decay reaches untouched rows through the gradient, which has no
closed form): use ``AdamW``. The parameters are written through NumPy, so autograd's version
counter does not see the step (as with ``p.data``).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import optim as _optim

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSprop", "Adam", "AdamW", "RowWiseAdagrad", "FTRL",
           "MePropLinear"]

_DTYPES = (torch.float32, torch.float64)
# Hyper-parameters the wrapper handles itself rather than through the inner object's setters.
_OWN = ("mode", "num_threads")


def _describe(p: torch.Tensor) -> str:
    return f"tensor of shape {tuple(p.shape)}, dtype {p.dtype}, device {p.device}"


def _check_param(p: Any, where: str) -> None:
    """Refuse what cannot be viewed as a NumPy array without a copy, naming the fix."""
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"{where}: expected a torch.Tensor, got {type(p).__name__}")
    if p.device.type != "cpu":
        raise ValueError(f"{where}: sparseopt.torch steps CPU tensors only ({_describe(p)}); "
                         f"keep this parameter on the CPU (a CUDA build is planned) or use "
                         f"torch.optim for it")
    if p.dtype not in _DTYPES:
        raise TypeError(f"{where}: dtype {p.dtype} is not supported; build the module in "
                        f"float32 or float64 (e.g. model.float() or model.double())")
    if p.is_sparse or not p.is_contiguous():
        raise ValueError(f"{where}: the parameter must be a dense C-contiguous tensor "
                         f"({_describe(p)}, strides {p.stride() if not p.is_sparse else None}); "
                         f"make the module's parameter contiguous when it is created "
                         f"(nn.Parameter(t.contiguous())) so the optimizer updates it in place")


class Optimizer(torch.optim.Optimizer):
    """Shared machinery; subclasses name the :mod:`sparseopt.optim` class in ``_inner_cls``."""

    _inner_cls: type = _optim.Optimizer
    _hyper: tuple[str, ...] = ()  # inner hyper-parameter names, from its signature

    def __init__(self, params: Any, **hyperparams: Any):
        defaults = dict(self._defaults())
        unknown = set(hyperparams) - set(defaults)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown hyper-parameter(s) "
                            f"{sorted(unknown)}; it takes {sorted(defaults)}")
        defaults.update(hyperparams)
        super().__init__(params, defaults)
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                _check_param(p, f"param_groups[{gi}]['params'][{pi}]")
            if inspect.Parameter.empty in (group[k] for k in defaults):
                missing = [k for k in defaults if group[k] is inspect.Parameter.empty]
                raise TypeError(f"{type(self).__name__}: param_groups[{gi}] needs {missing} "
                                f"(no default)")
            # Check the group's hyper-parameters now, not at the first step.
            self._inner_cls(np.zeros((1, 1)), **self._inner_kwargs(group, dense=False))
        self._inner: dict[torch.Tensor, _optim.Optimizer] = {}
        self._hooks: list[Any] = []

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        sig = inspect.signature(cls._inner_cls.__init__)
        out = {name: p.default for name, p in sig.parameters.items()
               if name not in ("self", "param")}
        out.setdefault("mode", "lazy")
        return out

    # -- inner objects ----------------------------------------------------------------------
    def _inner_kwargs(self, group: dict[str, Any], dense: bool) -> dict[str, Any]:
        names = [k for k in self._defaults() if k != "mode"]
        kwargs = {k: group[k] for k in names}
        if "mode" in inspect.signature(self._inner_cls.__init__).parameters:
            # A dense gradient touches its one row every step, where exact mode is the dense
            # torch formula (lazy mode would be SparseAdam's, whose eps sits elsewhere).
            kwargs["mode"] = "exact" if dense else group["mode"]
        return kwargs

    def _get_inner(self, p: torch.Tensor, group: dict[str, Any], dense: bool) -> _optim.Optimizer:
        inner = self._inner.get(p)
        if inner is None:
            table = p.detach().numpy()
            if dense:
                table = table.reshape(1, -1)
            try:
                inner = self._inner_cls(table, **self._inner_kwargs(group, dense))
            except ValueError as e:
                if not dense:
                    raise
                raise ValueError(f"a parameter of shape {tuple(p.shape)} has a dense gradient, "
                                 f"which takes the dense torch formula (exact mode): {e}") from e
            inner._torch_dense = dense  # type: ignore[attr-defined]
            self._inner[p] = inner
        return inner

    def _sync(self, inner: _optim.Optimizer, group: dict[str, Any], gi: int) -> None:
        """Hand changed hyper-parameters of ``group`` to ``inner`` (schedulers change lr)."""
        current = inner._hyperparams  # noqa: SLF001 -- the values the inner object runs with
        for name, value in group.items():
            if name == "params" or name not in current and name not in _OWN:
                continue
            if name == "num_threads":
                inner.num_threads = value
                continue
            if name == "mode":
                dense = getattr(inner, "_torch_dense", False)
                if not dense and "mode" in current and value != current["mode"]:
                    raise ValueError(f"param_groups[{gi}]['mode'] changed from "
                                     f"{current['mode']!r} to {value!r}; the mode is fixed when "
                                     f"a parameter takes its first step: build a new optimizer")
                continue
            if value == current[name]:
                continue
            try:
                setattr(inner, name, value)
            except (AttributeError, ValueError, TypeError) as e:
                raise type(e)(f"param_groups[{gi}][{name!r}] = {value!r}: the sparseopt "
                              f"optimizer cannot take this change ({e})") from e

    # -- gradients --------------------------------------------------------------------------
    @staticmethod
    def _gradient(p: torch.Tensor, where: str) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, values)`` as NumPy, checked, without densifying a sparse gradient."""
        g = p.grad
        if g.device.type != "cpu" or g.dtype != p.dtype:
            raise TypeError(f"{where}: gradient ({_describe(g)}) must be a CPU tensor of the "
                            f"parameter's dtype {p.dtype}")
        if g.is_sparse:
            if g.sparse_dim() != 1 or g.shape != p.shape:
                raise ValueError(f"{where}: a sparse gradient must be over the first dimension "
                                 f"of a parameter of shape {tuple(p.shape)} (sparse_dim 1), "
                                 f"got shape {tuple(g.shape)}, sparse_dim {g.sparse_dim()}")
            indices = g._indices()[0].numpy()
            values = g._values()
            if not values.is_contiguous():
                values = values.contiguous()  # a copy of the gradient, never of the parameter
            values = values.numpy()
            if indices.size and (indices.min() < 0 or indices.max() >= p.shape[0]):
                raise IndexError(f"{where}: sparse gradient index out of range "
                                 f"[{indices.min()}, {indices.max()}] for {p.shape[0]} rows; "
                                 f"the embedding's input ids must lie in [0, num_embeddings)")
            return indices, values
        if g.layout != torch.strided or g.shape != p.shape:
            raise ValueError(f"{where}: gradient of shape {tuple(g.shape)} and layout "
                             f"{g.layout} does not match the parameter {tuple(p.shape)}")
        return np.zeros(1, np.int64), g.detach().contiguous().numpy().reshape(1, -1)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step for every parameter with a gradient; ``closure`` re-evaluates the loss.

        Every parameter's gradient is checked before any parameter is written, so a rejected
        step leaves parameters and state unchanged."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        for gi, group in enumerate(self.param_groups):
            for pi, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                where = f"param_groups[{gi}]['params'][{pi}]"
                _check_param(p, where)
                indices, values = self._gradient(p, where)
                dense = not p.grad.is_sparse
                inner = self._inner.get(p)
                if inner is not None and inner._torch_dense != dense:  # type: ignore[attr-defined]
                    raise ValueError(f"{where}: its gradient switched between sparse and dense; "
                                     f"one optimizer state serves one kind (make the module's "
                                     f"sparse= setting fixed)")
                if inner is not None and inner.param.ctypes.data != p.data_ptr():
                    raise ValueError(f"{where}: the tensor's storage was replaced since the "
                                     f"first step; build a new optimizer over the new tensor")
                work.append((gi, group, p, indices, values, dense))
        inners = []
        for gi, group, p, _, _, dense in work:  # new inner objects, changed hyper-parameters:
            known = p in self._inner              # everything that can fail, before any write
            inner = self._get_inner(p, group, dense)
            if known:
                self._sync(inner, group, gi)
            inners.append(inner)
        for inner, (_, _, _, indices, values, _) in zip(inners, work):
            inner.step(indices, values)
        return loss

    # -- exact mode -------------------------------------------------------------------------
    def flush(self, param: torch.Tensor | None = None, indices: Any = None) -> None:
        """Bring rows up to date (exact mode; a no-op otherwise): every row of every parameter
        by default, or ``indices`` (ids tensor or array) of ``param``."""
        targets = self._inner.items() if param is None else [(param, self._inner.get(param))]
        for _, inner in targets:
            if inner is None:
                continue
            if indices is None:
                inner.flush()
            else:
                ids = indices.detach().reshape(-1) if isinstance(indices, torch.Tensor) else indices
                ids = np.ascontiguousarray(np.asarray(ids).reshape(-1))
                if ids.dtype not in (np.int32, np.int64):
                    ids = ids.astype(np.int64)
                inner.flush(ids)

    def attach(self, model: nn.Module) -> "Optimizer":
        """Register forward pre-hooks on the ``nn.Embedding``/``nn.EmbeddingBag`` modules of
        ``model`` whose weight this optimizer holds: each forward first catches up the rows it
        will read (all ids of its input). Returns self; :meth:`detach` removes the hooks."""
        held = {p for group in self.param_groups for p in group["params"]}
        for module in model.modules():
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.weight in held:
                self._hooks.append(module.register_forward_pre_hook(self._pre_forward))
        return self

    def detach(self) -> None:
        """Remove the hooks :meth:`attach` registered."""
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def _pre_forward(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if module.weight in self._inner and args:
            self.flush(module.weight, args[0])

    # -- state dict -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """torch's format; each parameter's state holds ``step`` and the inner optimizer's
        arrays as tensors (copies), plus ``sparseopt_dense`` and ``sparseopt_hyperparams``.
        Nothing is flushed: save, load and continue gives the bits of an uninterrupted run."""
        self.state.clear()
        for p, inner in self._inner.items():
            snap = inner.state_dict()
            entry: dict[str, Any] = {"step": torch.tensor(float(snap["step"]))}
            entry.update({k: torch.from_numpy(v) for k, v in snap["state"].items()})
            entry["sparseopt_dense"] = inner._torch_dense  # type: ignore[attr-defined]
            entry["sparseopt_hyperparams"] = dict(snap["hyperparams"])
            self.state[p] = entry
        try:
            return super().state_dict()
        finally:
            self.state.clear()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; everything is checked before anything changes."""
        saved_groups = state_dict["param_groups"]
        params = [p for g in self.param_groups for p in g["params"]]
        ids = [i for g in saved_groups for i in g["params"]]
        if len(saved_groups) != len(self.param_groups) or len(ids) != len(params):
            raise ValueError("state_dict has a different number of parameter groups or "
                             "parameters than this optimizer")
        built: dict[torch.Tensor, _optim.Optimizer] = {}
        group_of = {p: g for g in self.param_groups for p in g["params"]}
        for pid, p in zip(ids, params):
            entry = state_dict["state"].get(pid)
            if entry is None:
                continue
            dense = bool(entry["sparseopt_dense"])
            table = p.detach().numpy()
            table = table.reshape(1, -1) if dense else table
            inner = self._inner_cls(table, **self._inner_kwargs(group_of[p], dense))
            inner._torch_dense = dense  # type: ignore[attr-defined]
            arrays = {k: v.numpy() for k, v in entry.items()
                      if isinstance(v, torch.Tensor) and k != "step"}
            inner.load_state_dict({"step": int(entry["step"]), "state": arrays,
                                   "hyperparams": dict(entry["sparseopt_hyperparams"])})
            built[p] = inner
        stripped = dict(state_dict, state={})
        super().load_state_dict(stripped)
        self.state.clear()
        self._inner = built


def _make(name: str, inner_cls: type, doc: str) -> type:
    cls = type(name, (Optimizer,), {"_inner_cls": inner_cls, "__module__": __name__})
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
              inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    params += [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v)
               for k, v in cls._defaults().items()]
    cls.__signature__ = inspect.Signature(params[1:])  # type: ignore[attr-defined]
    cls.__doc__ = (f"``torch.optim.Optimizer`` over :class:`sparseopt.optim.{name}` "
                   f"({doc}). Hyper-parameters and defaults are those of "
                   f":class:`sparseopt.optim.{name}`, plus ``mode`` and ``num_threads``; see the "
                   f"module docstring for sparse and dense gradients.")
    return cls


SGD = _make("SGD", _optim.SGD, "torch.optim.SGD: momentum, dampening, nesterov, weight decay")
Adagrad = _make("Adagrad", _optim.Adagrad, "torch.optim.Adagrad; lazy and exact coincide")
RMSprop = _make("RMSprop", _optim.RMSprop, "torch.optim.RMSprop: momentum, centered")
Adam = _make("Adam", _optim.Adam, "lazy: torch.optim.SparseAdam; exact: torch.optim.Adam")
AdamW = _make("AdamW", _optim.AdamW, "torch.optim.AdamW, decoupled weight decay")
RowWiseAdagrad = _make("RowWiseAdagrad", _optim.RowWiseAdagrad, "one accumulator per row")
FTRL = _make("FTRL", _optim.FTRL, "FTRL-Proximal; lazy and exact coincide")


class _MePropFunction(torch.autograd.Function):
    """``F.linear`` forward; :func:`sparseopt.meprop.linear_backward` backward."""

    @staticmethod
    def forward(ctx, x, weight, bias, k, unified, sparse_grad):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.options = (k, unified, sparse_grad, bias is not None)
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        from . import meprop

        x, weight = ctx.saved_tensors
        k, unified, sparse_grad, has_bias = ctx.options
        grads = meprop.linear_backward(
            x.detach().contiguous().numpy(), weight.detach().numpy(),
            grad_out.detach().contiguous().numpy(), k, unified=unified,
            need_grad_x=ctx.needs_input_grad[0])
        rows, values = grads.weight
        grad_w = torch.sparse_coo_tensor(torch.from_numpy(rows).reshape(1, -1),
                                         torch.from_numpy(values), tuple(weight.shape),
                                         is_coalesced=True)
        if not sparse_grad:
            grad_w = grad_w.to_dense()
        grad_x = None if grads.grad_x is None else torch.from_numpy(grads.grad_x)
        grad_b = torch.from_numpy(grads.bias) if has_bias else None
        return grad_x, grad_w, grad_b, None, None, None


class MePropLinear(nn.Linear):
    """``nn.Linear`` whose backward keeps the top-``k`` output-gradient entries per example
    (meProp, :mod:`sparseopt.meprop`; ``unified=True``: one set of ``k`` units per batch).

    The weight gradient is a sparse COO tensor over the selected output rows (``sparse_grad=
    False``: dense), ready for the optimizers of this module; the bias gradient is the unmasked
    column sum of the output gradient, as in the reference code. Input: ``(batch, in)``, CPU,
    float32/float64.
    """

    def __init__(self, in_features: int, out_features: int, k: int, bias: bool = True,
                 unified: bool = False, dtype: torch.dtype | None = None,
                 sparse_grad: bool = True):
        super().__init__(in_features, out_features, bias=bias, dtype=dtype)
        if not 1 <= int(k) <= out_features:
            raise ValueError(f"k must be in [1, out_features={out_features}], got {k}")
        self.k, self.unified, self.sparse_grad = int(k), bool(unified), bool(sparse_grad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2:
            raise ValueError(f"MePropLinear takes a (batch, in_features) input, got shape "
                             f"{tuple(x.shape)}; reshape it to 2-D first")
        return _MePropFunction.apply(x, self.weight, self.bias, self.k, self.unified,
                                     self.sparse_grad)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.k}, unified={self.unified}"
