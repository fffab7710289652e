"""sparseopt.torch against torch.optim through real modules (Embedding + EmbeddingBag + Linear).

The reference is torch itself: the same model with dense embeddings (sparse=False) stepped by
torch.optim.<Name> for exact mode, SparseAdam + Adam for lazy mode.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

pytestmark = pytest.mark.requires_torch

torch = pytest.importorskip("torch")
nn = torch.nn
so = pytest.importorskip("sparseopt.torch")

NUM_ROWS, DIM, CLASSES = 40, 6, 3
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


class Model(nn.Module):
    """A bag of word embeddings weighted by a per-word mask embedding, then a linear layer."""

    def __init__(self, sparse: bool, dtype: torch.dtype, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.EmbeddingBag(NUM_ROWS, DIM, mode="sum", sparse=sparse, dtype=dtype)
        self.mask = nn.Embedding(NUM_ROWS, 1, sparse=sparse, dtype=dtype)
        self.out = nn.Linear(DIM, CLASSES, dtype=dtype)

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        weights = self.mask(ids).reshape(-1)
        return self.out(self.emb(ids, offsets, per_sample_weights=weights))


def batches(seed: int, steps: int):
    """Random batches over a few hot rows (duplicates in every batch, many rows untouched)."""
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        lengths = rng.integers(1, 5, size=4)
        ids = torch.from_numpy(rng.integers(0, NUM_ROWS // 2, size=int(lengths.sum())))
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
        labels = torch.from_numpy(rng.integers(0, CLASSES, size=4))
        yield ids, offsets, labels


def train(model, opt, sched, seed, steps):
    for ids, offsets, labels in batches(seed, steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(ids, offsets), labels).backward()
        opt.step()
        if sched is not None:
            sched.step()


def assert_same(ours: nn.Module, ref: nn.Module, dtype) -> None:
    for (name, a), b in zip(ours.named_parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), err_msg=name,
                                   **TOL[dtype])


SCHEDULES = {
    "lambda": lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + 0.3 * s)),
    "step": lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5),
}

EXACT_CASES = [
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.05, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.5)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.3)),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
@pytest.mark.parametrize("name,hyper", EXACT_CASES)
def test_exact_equals_dense_torch(name, hyper, schedule, dtype):
    ours, ref = Model(True, dtype), Model(False, dtype)
    opt = getattr(so, name)(ours.parameters(), mode="exact", **hyper).attach(ours)
    ref_opt = getattr(torch.optim, name)(ref.parameters(), **hyper)
    train(ours, opt, SCHEDULES[schedule](opt), seed=1, steps=25)
    train(ref, ref_opt, SCHEDULES[schedule](ref_opt), seed=1, steps=25)
    opt.flush()
    assert_same(ours, ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lazy_equals_sparse_adam_plus_adam(dtype):
    ours, ref = Model(True, dtype), Model(True, dtype)
    opt = so.Adam(ours.parameters(), lr=0.05)
    sparse = [ref.emb.weight, ref.mask.weight]
    ref_opts = [torch.optim.SparseAdam(sparse, lr=0.05),
                torch.optim.Adam(ref.out.parameters(), lr=0.05)]
    train(ours, opt, None, seed=2, steps=25)
    for ids, offsets, labels in batches(2, 25):
        for o in ref_opts:
            o.zero_grad()
        nn.functional.cross_entropy(ref(ids, offsets), labels).backward()
        for o in ref_opts:
            o.step()
    assert_same(ours, ref, dtype)


def test_param_groups_with_different_lr():
    dtype = torch.float64
    ours, ref = Model(True, dtype), Model(False, dtype)
    groups = lambda m: [{"params": [m.emb.weight, m.mask.weight], "lr": 0.1},  # noqa: E731
                        {"params": m.out.parameters()}]
    opt = so.Adam(groups(ours), lr=0.01, mode="exact").attach(ours)
    ref_opt = torch.optim.Adam(groups(ref), lr=0.01)
    train(ours, opt, None, seed=3, steps=15)
    train(ref, ref_opt, None, seed=3, steps=15)
    opt.flush()
    assert_same(ours, ref, dtype)


@pytest.mark.parametrize("mode", ["lazy", "exact"])
def test_state_dict_round_trip_gives_the_same_bits(mode):
    dtype = torch.float32
    straight = Model(True, dtype)
    opt = so.Adam(straight.parameters(), lr=0.05, mode=mode).attach(straight)
    train(straight, opt, None, seed=4, steps=20)

    first = Model(True, dtype)
    opt1 = so.Adam(first.parameters(), lr=0.05, mode=mode).attach(first)
    train(first, opt1, None, seed=4, steps=10)
    saved_model = copy.deepcopy(first.state_dict())
    saved = copy.deepcopy(opt1.state_dict())
    resumed = Model(True, dtype, seed=99)
    resumed.load_state_dict(saved_model)
    opt2 = so.Adam(resumed.parameters(), lr=0.05, mode=mode).attach(resumed)
    opt2.load_state_dict(saved)
    rest = list(batches(4, 20))[10:]
    for ids, offsets, labels in rest:
        opt2.zero_grad()
        nn.functional.cross_entropy(resumed(ids, offsets), labels).backward()
        opt2.step()
    opt.flush()
    opt2.flush()
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_state_is_torch_tensors():
    model = Model(True, torch.float32)
    opt = so.Adam(model.parameters(), mode="exact").attach(model)
    train(model, opt, None, seed=5, steps=2)
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    entry = sd["state"][0]
    assert isinstance(entry["exp_avg"], torch.Tensor) and entry["exp_avg"].shape == (NUM_ROWS, DIM)


def test_zero_copy_updates_the_tensors_own_memory():
    model = Model(True, torch.float32)
    ptrs = [p.data_ptr() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    opt = so.Adam(model.parameters(), lr=0.1, mode="exact").attach(model)
    train(model, opt, None, seed=6, steps=3)
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(inner.param.ctypes.data == p.data_ptr() for p, inner in opt._inner.items())


def test_attach_is_what_makes_exact_mode_dense():
    """Without attach the forward reads rows that are behind, so training drifts."""
    dtype = torch.float64
    ours, ref = Model(True, dtype), Model(False, dtype)
    opt = so.Adam(ours.parameters(), lr=0.05, mode="exact")  # no attach
    ref_opt = torch.optim.Adam(ref.parameters(), lr=0.05)
    train(ours, opt, None, seed=7, steps=20)
    train(ref, ref_opt, None, seed=7, steps=20)
    opt.flush()
    diff = (ours.emb.weight - ref.emb.weight).abs().max().item()
    assert diff > 1e-6


def test_uncoalesced_sparse_gradient_equals_coalesced():
    a = nn.Parameter(torch.randn(10, 3, dtype=torch.float64))
    b = nn.Parameter(a.detach().clone())
    idx = torch.tensor([[1, 4, 1, 7]])
    val = torch.randn(4, 3, dtype=torch.float64)
    oa, ob = so.Adam([a], lr=0.1), so.Adam([b], lr=0.1)
    a.grad = torch.sparse_coo_tensor(idx, val, (10, 3), check_invariants=True)
    b.grad = a.grad.coalesce()
    oa.step()
    ob.step()
    assert torch.equal(a, b)


def test_other_optimizers_run_on_sparse_and_dense_gradients():
    for cls, hyper in [(so.Adagrad, {}), (so.RowWiseAdagrad, {}), (so.FTRL, dict(lr=0.1))]:
        model = Model(True, torch.float64)
        before = [p.detach().clone() for p in model.parameters()]
        opt = cls(model.parameters(), **hyper)
        train(model, opt, None, seed=8, steps=3)
        assert all(not torch.equal(x, y) for x, y in zip(before, model.parameters()))


def test_adagrad_equals_torch_adagrad():
    dtype = torch.float64
    ours, ref = Model(True, dtype), Model(True, dtype)  # torch.optim.Adagrad takes sparse grads
    train(ours, so.Adagrad(ours.parameters(), lr=0.1, lr_decay=0.01), None, seed=9, steps=15)
    train(ref, torch.optim.Adagrad(ref.parameters(), lr=0.1, lr_decay=0.01), None, seed=9,
          steps=15)
    assert_same(ours, ref, dtype)


# -- bad input: a clear error naming the fix, and nothing changes --------------------------------
def snapshot(opt, params):
    return [p.detach().clone() for p in params], copy.deepcopy(opt.state_dict())


def assert_unchanged(opt, params, snap):
    for a, b in zip(params, snap[0]):
        assert torch.equal(a, b)
    now = opt.state_dict()
    for k, entry in snap[1]["state"].items():
        for name, v in entry.items():
            if isinstance(v, torch.Tensor):
                assert torch.equal(v, now["state"][k][name]), name


def test_out_of_range_sparse_gradient_changes_nothing():
    model = Model(True, torch.float32)
    opt = so.Adam(model.parameters(), lr=0.1, mode="exact").attach(model)
    train(model, opt, None, seed=10, steps=2)
    params = list(model.parameters())
    snap = snapshot(opt, params)
    model.out.weight.grad = torch.ones_like(model.out.weight)  # a valid one, stepped first
    model.emb.weight.grad = torch.sparse_coo_tensor(torch.tensor([[0, NUM_ROWS]]),
                                                    torch.ones(2, DIM), (NUM_ROWS, DIM),
                                                    check_invariants=False)
    with pytest.raises(IndexError, match="out of range.*num_embeddings"):
        opt.step()
    assert_unchanged(opt, params, snap)


def test_sparse_gradient_over_two_dimensions_changes_nothing():
    p = nn.Parameter(torch.zeros(5, 2))
    opt = so.SGD([p], lr=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.ones(1), (5, 2),
                                     check_invariants=True)
    with pytest.raises(ValueError, match="first dimension"):
        opt.step()
    assert torch.equal(p, torch.zeros(5, 2))


def test_unsupported_dtype_is_refused():
    with pytest.raises(TypeError, match="float32 or float64"):
        so.Adam([nn.Parameter(torch.zeros(3, 2, dtype=torch.float16))])


def test_non_contiguous_param_is_refused():
    t = torch.zeros(4, 6)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        so.Adam([nn.Parameter(t)])


def test_non_cpu_param_is_refused():
    with pytest.raises(ValueError, match="CPU"):
        so.Adam([torch.zeros(3, 2, device="meta")])


def test_bad_hyperparameter_is_refused_at_construction():
    with pytest.raises(ValueError, match="lr"):
        so.Adam([nn.Parameter(torch.zeros(3, 2))], lr=-1.0)
    with pytest.raises(ValueError, match="weight_decay|AdamW"):
        so.Adam([nn.Parameter(torch.zeros(3, 2))], weight_decay=0.1, mode="exact")


def test_mode_change_after_the_first_step_is_refused():
    model = Model(True, torch.float32)
    opt = so.Adam(model.parameters(), mode="lazy")
    train(model, opt, None, seed=11, steps=1)
    opt.param_groups[0]["mode"] = "exact"
    params = list(model.parameters())
    snap = snapshot(opt, params)
    ids, offsets, labels = next(batches(12, 1))
    nn.functional.cross_entropy(model(ids, offsets), labels).backward()
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['mode'\]"):
        opt.step()
    assert_unchanged(opt, params, snap)
