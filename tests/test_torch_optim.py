"""sparseopt.torch against torch, through real modules: an Embedding(sparse=True) and an
EmbeddingBag(sparse=True) beside a Linear, trained with sparseopt.torch optimizers, compared
with the same model (sparse=False embeddings) trained by torch.optim's dense optimizers (exact
mode) or by SparseAdam + Adam (lazy mode), under learning-rate schedulers, in both dtypes."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import sparseopt  # noqa: E402
import sparseopt.torch as st  # noqa: E402

pytestmark = pytest.mark.requires_torch

NUM_WORDS, NUM_BAG, DIM = 60, 40, 4


def _model(sparse: bool, dtype=torch.float64, seed=0):
    torch.manual_seed(seed)
    return torch.nn.ModuleDict(dict(
        emb=torch.nn.Embedding(NUM_WORDS, DIM, sparse=sparse, dtype=dtype),
        bag=torch.nn.EmbeddingBag(NUM_BAG, DIM, mode="sum", sparse=sparse, dtype=dtype),
        lin=torch.nn.Linear(2 * DIM, 3, dtype=dtype)))


def _loss(model, batch):
    ids, bag_ids, offsets = batch
    h = torch.cat([model["emb"](ids).sum(1), model["bag"](bag_ids, offsets)], 1)
    return model["lin"](h).pow(2).mean()


def _batches(n, seed=0, hot=12):
    """Batches that touch a few hot rows often and the rest rarely (long rests)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in range(n):
        top = NUM_WORDS if t % 9 == 0 else hot
        ids = torch.from_numpy(rng.integers(0, top, (3, 2)))
        bag_ids = torch.from_numpy(rng.integers(0, NUM_BAG if t % 7 == 0 else hot, 5))
        out.append((ids, bag_ids, torch.tensor([0, 2, 3])))
    return out


def _train(model, opt, batches, scheduler=None):
    for batch in batches:
        opt.zero_grad()
        _loss(model, batch).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _max_diff(a, b):
    return max((x.detach() - y.detach()).abs().max().item() for x, y in zip(a.parameters(), b.parameters()))


TOL = {torch.float64: 1e-12, torch.float32: 2e-5}

EXACT_CASES = {
    "adam": ("Adam", dict(lr=0.01)),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    "adam_amsgrad": ("Adam", dict(lr=0.01, amsgrad=True, betas=(0.8, 0.99))),
    "sgd_momentum": ("SGD", dict(lr=0.05, momentum=0.9)),
    "sgd_nesterov_wd": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    "rmsprop_momentum": ("RMSprop", dict(lr=0.01, momentum=0.5)),
    "rmsprop_centered": ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True)),
}

SCHEDULERS = {
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5),
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 / (1 + 0.1 * t)),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case", sorted(EXACT_CASES))
def test_exact_equals_dense_torch(case, dtype, schedule):
    name, kw = EXACT_CASES[case]
    batches = _batches(40)
    ref = _model(False, dtype)
    ref_opt = getattr(torch.optim, name)(ref.parameters(), **kw)
    _train(ref, ref_opt, batches, SCHEDULERS[schedule](ref_opt))
    ours = _model(True, dtype)
    opt = getattr(st, name)(ours.parameters(), mode="exact", **kw)
    opt.attach(ours)
    _train(ours, opt, batches, SCHEDULERS[schedule](opt))
    opt.flush()
    assert _max_diff(ref, ours) <= TOL[dtype]
    # ... and lazy mode is not that (the test can fail).
    lazy = _model(True, dtype)
    lazy_opt = getattr(st, name)(lazy.parameters(), mode="lazy", **kw)
    _train(lazy, lazy_opt, batches, SCHEDULERS[schedule](lazy_opt))
    assert _max_diff(ref, lazy) > 100 * TOL[dtype]


def test_attach_is_what_makes_the_forward_see_dense_values():
    """Without attach, a forward reads rows as they were at their last step."""
    batches = _batches(30)
    ref = _model(False)
    ref_opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    _train(ref, ref_opt, batches)
    ours = _model(True)
    opt = st.SGD(ours.parameters(), lr=0.05, momentum=0.9, mode="exact")
    _train(ours, opt, batches)  # no attach
    opt.flush()
    assert _max_diff(ref, ours) > 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_lazy_equals_sparse_adam_plus_adam(dtype):
    batches = _batches(40)
    ref = _model(True, dtype)
    sparse_params = list(ref["emb"].parameters()) + list(ref["bag"].parameters())
    ref_opts = [torch.optim.SparseAdam(sparse_params, lr=0.01),
                torch.optim.Adam(ref["lin"].parameters(), lr=0.01)]
    ours = _model(True, dtype)
    opt = st.Adam(ours.parameters(), lr=0.01)
    for batch in batches:
        for o in ref_opts:
            o.zero_grad()
        _loss(ref, batch).backward()
        for o in ref_opts:
            o.step()
        opt.zero_grad()
        _loss(ours, batch).backward()
        opt.step()
    assert _max_diff(ref, ours) <= TOL[dtype]


@pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # torch's own Adagrad
def test_sparse_adagrad_equals_torch_adagrad():
    """torch.optim.Adagrad takes sparse gradients itself: the same model, both sparse."""
    batches = _batches(30)
    ref = _model(True)
    ref_opt = torch.optim.Adagrad(ref.parameters(), lr=0.1, lr_decay=0.01,
                                  initial_accumulator_value=0.1)
    _train(ref, ref_opt, batches)
    ours = _model(True)
    _train(ours, st.Adagrad(ours.parameters(), lr=0.1, lr_decay=0.01,
                            initial_accumulator_value=0.1), batches)
    assert _max_diff(ref, ours) <= 1e-12


def test_param_groups_with_their_own_lr():
    batches = _batches(30)

    def groups(model):
        return [{"params": list(model["emb"].parameters()) + list(model["bag"].parameters()),
                 "lr": 0.05},
                {"params": model["lin"].parameters()}]

    ref = _model(False)
    _train(ref, torch.optim.Adam(groups(ref), lr=0.01), batches)
    ours = _model(True)
    opt = st.Adam(groups(ours), lr=0.01, mode="exact")
    opt.attach(ours)
    _train(ours, opt, batches)
    opt.flush()
    assert _max_diff(ref, ours) <= 1e-12
    same_lr = _model(True)
    opt2 = st.Adam(same_lr.parameters(), lr=0.01, mode="exact")
    opt2.attach(same_lr)
    _train(same_lr, opt2, batches)
    opt2.flush()
    assert _max_diff(ours, same_lr) > 1e-6


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("name,kw", [("Adam", dict(lr=0.01)), ("SGD", dict(lr=0.05, momentum=0.9)),
                                     ("RowWiseAdagrad", dict(lr=0.1)), ("FTRL", dict(lr=0.1))])
def test_save_load_continue_gives_the_same_bits(mode, name, kw):
    batches = _batches(30)
    straight = _model(True)
    opt = getattr(st, name)(straight.parameters(), mode=mode, **kw)
    opt.attach(straight)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.5)
    _train(straight, opt, batches, sched)
    opt.flush()

    first = _model(True)
    opt1 = getattr(st, name)(first.parameters(), mode=mode, **kw)
    opt1.attach(first)
    sched1 = torch.optim.lr_scheduler.StepLR(opt1, 5, 0.5)
    _train(first, opt1, batches[:13], sched1)
    buffer = io.BytesIO()
    torch.save({"model": first.state_dict(), "opt": opt1.state_dict(),
                "sched": sched1.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=False)

    resumed = _model(True, seed=1)  # other initial values: everything must come from the file
    resumed.load_state_dict(saved["model"])
    opt2 = getattr(st, name)(resumed.parameters(), mode=mode, **kw)
    opt2.attach(resumed)
    sched2 = torch.optim.lr_scheduler.StepLR(opt2, 5, 0.5)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    _train(resumed, opt2, batches[13:], sched2)
    opt2.flush()
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_zero_copy_and_zero_grad():
    model = _model(True)
    pointers = [p.data_ptr() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    opt = st.Adam(model.parameters(), lr=0.01, mode="exact")
    _train(model, opt, _batches(5))
    assert [p.data_ptr() for p in model.parameters()] == pointers
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for p in model.parameters():
        inner, _ = opt._inners[p]
        assert np.shares_memory(inner.param, p.detach().numpy())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_closure_and_step_without_gradients():
    model = _model(True)
    opt = st.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    assert opt.step() is None  # no gradients yet: nothing moves
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    batch = _batches(1)[0]

    def closure():
        opt.zero_grad()
        loss = _loss(model, batch)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor)
    assert not torch.equal(before[-1], list(model.parameters())[-1])


def _snapshot(model):
    return [p.detach().clone() for p in model.parameters()]


def _unchanged(model, snap):
    return all(torch.equal(a, b) for a, b in zip(snap, model.parameters()))


def test_bad_input_is_refused_and_changes_nothing():
    meta = torch.nn.Parameter(torch.empty(3, 2, device="meta"))
    with pytest.raises(ValueError, match="CPU"):
        st.Adam([meta])
    with pytest.raises(ValueError, match="contiguous"):
        st.Adam([torch.nn.Parameter(torch.randn(4, 3).t())])
    with pytest.raises(ValueError, match="float32, float64, float16 or bfloat16"):
        st.Adam([torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.complex64))])
    with pytest.raises(ValueError, match="mode"):
        st.Adam(_model(True).parameters(), mode="fast")

    model = _model(True)
    opt = st.Adam(model.parameters(), lr=0.01, mode="exact")
    _train(model, opt, _batches(3))
    snap = _snapshot(model)
    state = opt.state_dict()
    # An out-of-range sparse gradient on the second embedding: nothing moves, not even the
    # parameters listed before it.
    _loss(model, _batches(1)[0]).backward()
    weight = model["bag"].weight
    weight.grad = torch.sparse_coo_tensor(torch.tensor([[1, NUM_BAG + 5]]),
                                          torch.ones(2, DIM, dtype=weight.dtype), weight.shape,
                                          check_invariants=False)
    with pytest.raises(IndexError, match="out of range"):
        opt.step()
    assert _unchanged(model, snap)
    # A hyper-parameter the kernel refuses (exact Adam: L2 weight decay).
    opt.zero_grad()
    _loss(model, _batches(1)[0]).backward()
    opt.param_groups[0]["weight_decay"] = 0.1
    with pytest.raises(ValueError, match="weight_decay"):
        opt.step()
    assert _unchanged(model, snap)
    opt.param_groups[0]["weight_decay"] = 0.0
    # A corrupt snapshot: refused whole.
    corrupt = opt.state_dict()
    corrupt["state"][0]["last_step"][0] = -10**9
    with pytest.raises(ValueError, match="last_step"):
        opt.load_state_dict(corrupt)
    for k, v in state["state"][1].items():
        got = opt.state_dict()["state"][1][k]
        assert (torch.equal(got, v) if isinstance(v, torch.Tensor) else got == v)


def test_sparseopt_optim_points_torch_users_here():
    w = torch.nn.Embedding(10, 4).weight
    with pytest.raises(TypeError, match="sparseopt.torch"):
        sparseopt.optim.Adam(w)
    with pytest.raises(TypeError, match="one optimizer per table"):
        sparseopt.optim.Adam([np.zeros((3, 2)), np.zeros((3, 2))])


def test_import_sparseopt_does_not_import_torch():
    code = "import sys, sparseopt, sparseopt.optim; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- MePropLinear ------------------------------------------------------------------------------
def _masked_reference(x, weight, grad_out, k):
    """The meProp backward written plainly: keep each row's k largest |grad_out| (ties to the
    lower unit), then the ordinary linear backward."""
    mask = torch.zeros_like(grad_out)
    for b in range(grad_out.shape[0]):
        order = sorted(range(grad_out.shape[1]), key=lambda j: (-abs(grad_out[b, j].item()), j))
        mask[b, order[:k]] = 1
    g = grad_out * mask
    return g @ weight, g.t() @ x, grad_out.sum(0)


@pytest.mark.parametrize("sparse_grad", [True, False])
@pytest.mark.parametrize("k", [3, 10])
def test_meprop_linear_gradients(k, sparse_grad):
    torch.manual_seed(3)
    layer = st.MePropLinear(6, 10, k, dtype=torch.float64, sparse_grad=sparse_grad)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    grad_out = torch.randn(5, 10, dtype=torch.float64)
    out.backward(grad_out)
    gx, gw, gb = _masked_reference(x.detach(), layer.weight.detach(), grad_out, k)
    assert torch.allclose(x.grad, gx, rtol=1e-12, atol=1e-12)
    assert layer.weight.grad.is_sparse == sparse_grad
    assert torch.allclose(layer.weight.grad.to_dense(), gw, rtol=1e-12, atol=1e-12)
    assert torch.allclose(layer.bias.grad, gb, rtol=1e-12, atol=1e-12)
    if k == 10:  # every unit kept: nn.Linear's gradients
        ref = torch.nn.Linear(6, 10, dtype=torch.float64)
        ref.load_state_dict({"weight": layer.weight.detach(), "bias": layer.bias.detach()})
        x2 = x.detach().clone().requires_grad_(True)
        ref(x2).backward(grad_out)
        assert torch.allclose(ref.weight.grad, layer.weight.grad.to_dense(), rtol=1e-12)


def test_meprop_linear_trains_with_sparseopt_torch():
    torch.manual_seed(4)
    layer = st.MePropLinear(8, 20, 4, dtype=torch.float32)
    opt = st.Adam(layer.parameters(), lr=1e-2, mode="exact")
    opt.attach(layer)
    x = torch.randn(64, 8)
    target = torch.randn(64, 20)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (layer(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]
    with pytest.raises(ValueError, match="k must be"):
        st.MePropLinear(4, 3, 5)
