"""sparseopt.torch.MePropLinear against a plain torch reference of meProp's backward."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.requires_torch

torch = pytest.importorskip("torch")
so = pytest.importorskip("sparseopt.torch")


def reference(x, weight, grad_out, k, unified):
    """meProp written plainly: mask all but the top-k |grad_out| (per row, or per batch)."""
    if unified:
        keep = torch.zeros(grad_out.shape[1], dtype=torch.bool)
        keep[grad_out.abs().sum(0).topk(k).indices] = True
        mask = keep.expand_as(grad_out)
    else:
        mask = torch.zeros_like(grad_out, dtype=torch.bool)
        mask.scatter_(1, grad_out.abs().topk(k, dim=1).indices, True)
    g = grad_out * mask
    return g @ weight, g.T @ x, grad_out.sum(0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("unified", [False, True])
def test_backward_matches_reference(dtype, unified):
    torch.manual_seed(0)
    layer = so.MePropLinear(7, 12, k=3, unified=unified, dtype=dtype)
    x = torch.randn(5, 7, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(5, 12, dtype=dtype)
    layer(x).backward(grad_out)
    gx, gw, gb = reference(x.detach(), layer.weight.detach(), grad_out, 3, unified)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    assert layer.weight.grad.is_sparse
    np.testing.assert_allclose(x.grad.numpy(), gx.numpy(), **tol)
    np.testing.assert_allclose(layer.weight.grad.to_dense().numpy(), gw.numpy(), **tol)
    np.testing.assert_allclose(layer.bias.grad.numpy(), gb.numpy(), **tol)


def test_forward_is_linear_and_sparse_optimizer_steps_it():
    torch.manual_seed(1)
    layer = so.MePropLinear(4, 9, k=2)
    x = torch.randn(3, 4)
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    before = layer.weight.detach().clone()
    opt = so.Adam(layer.parameters(), lr=0.1)
    layer(x).pow(2).sum().backward()
    opt.step()
    changed = (layer.weight != before).any(1)
    assert 0 < int(changed.sum()) <= 6  # at most k rows per example (3 examples x 2)


def test_bad_k_is_refused():
    with pytest.raises(ValueError, match="k must be"):
        so.MePropLinear(4, 3, k=4)
