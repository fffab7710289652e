"""sparseopt.torch: cases beside tests/test_torch_optim.py, written independently of it.

Uncoalesced gradients, gradients the module must refuse (sparse over two dimensions, a mode
changed after the first step), every optimizer on sparse + dense gradients, and MePropLinear's
unified (one top-k per batch) backward against a plain torch reference.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.requires_torch

torch = pytest.importorskip("torch")
nn = torch.nn
so = pytest.importorskip("sparseopt.torch")


def sparse_grad(indices, values, shape, check=True):
    return torch.sparse_coo_tensor(torch.tensor([indices]), values, shape, check_invariants=check)


@pytest.mark.parametrize("mode", ["lazy", "exact"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uncoalesced_gradient_gives_the_bits_of_the_coalesced_one(mode, dtype):
    torch.manual_seed(0)
    a = nn.Parameter(torch.randn(10, 3, dtype=dtype))
    b = nn.Parameter(a.detach().clone())
    oa, ob = so.Adam([a], lr=0.1, mode=mode), so.Adam([b], lr=0.1, mode=mode)
    for step in range(5):
        values = torch.randn(4, 3, dtype=dtype)
        a.grad = sparse_grad([1, 4, 1, step], values, (10, 3))
        b.grad = a.grad.coalesce()
        assert not a.grad.is_coalesced()
        oa.step()
        ob.step()
    oa.flush()
    ob.flush()
    assert torch.equal(a, b)


def test_sparse_gradient_over_two_dimensions_is_refused_and_changes_nothing():
    p = nn.Parameter(torch.zeros(5, 2))
    opt = so.SGD([p], lr=0.1)
    p.grad = torch.sparse_coo_tensor(torch.tensor([[0], [1]]), torch.ones(1), (5, 2),
                                     check_invariants=True)
    with pytest.raises((ValueError, TypeError)):
        opt.step()
    assert torch.equal(p, torch.zeros(5, 2))


def test_mode_changed_after_the_first_step_is_refused_and_changes_nothing():
    emb = nn.Embedding(8, 3, sparse=True)
    opt = so.Adam(emb.parameters(), lr=0.1, mode="lazy")
    emb(torch.tensor([1, 2])).sum().backward()
    opt.step()
    before = emb.weight.detach().clone()
    opt.param_groups[0]["mode"] = "exact"
    opt.zero_grad()
    emb(torch.tensor([2, 3])).sum().backward()
    with pytest.raises(ValueError, match="mode"):
        opt.step()
    assert torch.equal(emb.weight, before)


@pytest.mark.parametrize("name,hyper", [("Adagrad", {}), ("RowWiseAdagrad", {}),
                                        ("FTRL", dict(lr=0.1)), ("SGD", dict(lr=0.1)),
                                        ("RMSprop", {}), ("AdamW", {})])
def test_every_optimizer_steps_sparse_and_dense_gradients_in_place(name, hyper):
    torch.manual_seed(1)
    emb, lin = nn.EmbeddingBag(20, 4, mode="sum", sparse=True), nn.Linear(4, 2)
    params = [*emb.parameters(), *lin.parameters()]
    before = [p.detach().clone() for p in params]
    ptrs = [p.data_ptr() for p in params]
    opt = getattr(so, name)(params, **hyper)
    for _ in range(3):
        opt.zero_grad()
        lin(emb(torch.tensor([1, 5, 5, 9]), torch.tensor([0, 2]))).square().sum().backward()
        opt.step()
    assert [p.data_ptr() for p in params] == ptrs
    assert all(not torch.equal(x, p) for x, p in zip(before, params))
    untouched = [r for r in range(20) if r not in (1, 5, 9)]
    if name in ("Adagrad", "RowWiseAdagrad", "FTRL", "SGD"):  # no decay of untouched rows
        assert torch.equal(emb.weight[untouched], before[0][untouched])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_meprop_unified_backward_matches_plain_reference(dtype):
    torch.manual_seed(2)
    layer = so.MePropLinear(7, 12, k=3, unified=True, dtype=dtype)
    x = torch.randn(5, 7, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(5, 12, dtype=dtype)
    layer(x).backward(grad_out)
    keep = torch.zeros(12, dtype=dtype)
    keep[grad_out.abs().sum(0).topk(3).indices] = 1  # one set of k units for the batch
    g = grad_out * keep
    w = layer.weight.detach()
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x.grad.numpy(), (g @ w).numpy(), **tol)
    np.testing.assert_allclose(layer.weight.grad.to_dense().numpy(), (g.T @ x.detach()).numpy(),
                               **tol)
    np.testing.assert_allclose(layer.bias.grad.numpy(), grad_out.sum(0).numpy(), **tol)
    assert layer.weight.grad.is_sparse and layer.weight.grad._nnz() == 3


@pytest.mark.parametrize("name,hyper,word", [
    ("Adam", dict(lr=-1.0), "lr"),
    ("Adam", dict(weight_decay=0.1, mode="exact"), "weight_decay"),
    ("SGD", dict(lr=0.1, momentum=-0.5), "momentum"),
    ("RMSprop", dict(alpha=1.5), "alpha"),
])
def test_bad_hyperparameters_are_refused_by_the_constructor(name, hyper, word):
    with pytest.raises(ValueError, match=f"param group 0: .*{word}"):
        getattr(so, name)(nn.Embedding(4, 2, sparse=True).parameters(), **hyper)


def test_a_bad_group_among_good_ones_names_its_number():
    emb, lin = nn.Embedding(4, 2, sparse=True), nn.Linear(2, 2)
    with pytest.raises(ValueError, match="param group 1: .*lr"):
        so.Adam([{"params": emb.parameters()}, {"params": lin.parameters(), "lr": -0.1}])
