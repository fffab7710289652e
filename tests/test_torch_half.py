"""sparseopt.torch with float16 and bfloat16 parameters: the adapter hands the tensor's own
memory to sparseopt.optim's half tables (tests/test_half.py checks their numerics against
float32 and NumPy) and widens autograd's half gradients to float32. Checked here: every
optimizer, both modes, sparse and dense parameters, give the bits of sparseopt.optim driven by
hand with the same gradients; state_dict round trips; options are validated up front."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ml_dtypes = pytest.importorskip("ml_dtypes")

import sparseopt.torch as st  # noqa: E402
from sparseopt import optim  # noqa: E402

pytestmark = pytest.mark.requires_torch

ROWS, DIM = 50, 8
CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("Adagrad", {"lr": 0.1}),
    ("RMSprop", {"lr": 1e-2, "momentum": 0.5}),
    ("Adam", {"lr": 1e-2}),
    ("AdamW", {"lr": 1e-2, "weight_decay": 0.1}),
    ("RowWiseAdagrad", {"lr": 0.1}),
    ("FTRL", {"lr": 0.1, "l1": 0.01}),
]
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def _as_numpy(t):
    """A half tensor's values as an independent float32 array (torch's own widening)."""
    return t.detach().float().numpy().copy()


def _batches(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, ROWS, (12,), generator=g) for _ in range(n)]


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_half_embedding_steps_as_sparseopt_optim_does(name, kw, dtype, mode):
    torch.manual_seed(0)
    emb = torch.nn.Embedding(ROWS, DIM, sparse=True, dtype=DTYPES[dtype])
    lin = torch.nn.Linear(DIM, 1, dtype=DTYPES[dtype])  # a dense half parameter too
    opt = getattr(st, name)([emb.weight, lin.weight], mode=mode, rounding="nearest", seed=3, **kw)
    # the reference: sparseopt.optim on NumPy half tables, fed the same gradients by hand
    np_dtype = np.float16 if dtype == "float16" else np.dtype(ml_dtypes.bfloat16)
    table = emb.weight.detach().float().numpy().astype(np_dtype)
    dense = lin.weight.detach().float().numpy().astype(np_dtype).reshape(1, -1)
    ref = getattr(optim, name)(table, mode=mode, rounding="nearest", seed=3, **kw)
    # a dense parameter is one row touched by every step: torch's dense Adam formula is exact
    # mode's row update; the other optimizers' lazy update is their dense formula
    dense_mode = "exact" if name in ("Adam", "AdamW") else "lazy"
    ref_dense = getattr(optim, name)(dense, mode=dense_mode, rounding="nearest", seed=3, **kw)
    for ids in _batches(8):
        opt.zero_grad()
        lin(emb(ids)).pow(2).mean().backward()
        g = emb.weight.grad.coalesce()
        ref.step(g.indices()[0].numpy(), g.values().float().numpy())
        ref_dense.step(np.zeros(1, np.int64), lin.weight.grad.float().numpy().reshape(1, -1))
        opt.step()
        assert np.array_equal(_as_numpy(emb.weight), table.astype(np.float32))
        assert np.array_equal(_as_numpy(lin.weight).reshape(1, -1), dense.astype(np.float32))
    assert emb.weight.dtype == DTYPES[dtype]


@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_half_state_dict_round_trip(dtype):
    def run():
        torch.manual_seed(0)
        emb = torch.nn.Embedding(ROWS, DIM, sparse=True, dtype=DTYPES[dtype])
        opt = st.Adam(emb.parameters(), lr=1e-2, mode="exact", state_dtype=dtype, seed=9)
        return emb, opt

    emb, opt = run()
    batches = _batches(10, seed=1)
    for ids in batches[:5]:
        opt.zero_grad()
        emb(ids).pow(2).sum().backward()
        opt.step()
    saved, weight = opt.state_dict(), emb.weight.detach().clone()
    entry = next(iter(saved["state"].values()))
    assert entry["exp_avg"].dtype == DTYPES[dtype]
    for ids in batches[5:]:
        opt.zero_grad()
        emb(ids).pow(2).sum().backward()
        opt.step()
    emb2, opt2 = run()
    with torch.no_grad():
        emb2.weight.copy_(weight)
    opt2.load_state_dict(saved)
    for ids in batches[5:]:
        opt2.zero_grad()
        emb2(ids).pow(2).sum().backward()
        opt2.step()
    assert torch.equal(emb.weight.view(torch.int16), emb2.weight.view(torch.int16))


def test_half_options_are_checked_up_front():
    p = torch.nn.Parameter(torch.zeros(4, 3, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="rounding"):
        st.Adam([p], rounding="up")
    with pytest.raises(ValueError, match="state_dtype"):
        st.SGD([p], lr=0.1, momentum=0.9, state_dtype="int8")
    # a float parameter ignores the half options (its state keeps its own dtype)
    q = torch.nn.Parameter(torch.zeros(4, 3))
    opt = st.Adam([q], rounding="nearest", state_dtype="bfloat16")
    q.grad = torch.ones(4, 3)
    opt.step()
    assert opt.state_dict()["state"][0]["exp_avg"].dtype == torch.float32
