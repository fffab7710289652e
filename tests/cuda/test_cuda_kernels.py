"""Every CUDA kernel against the CPU's on the same inputs: the optimizers' lazy steps over many
steps (empty steps, single indices, many repeats), both float and index dtypes; gather_sum and
its backward; and the refusals, which must leave the table and state unchanged. Bit for bit
where the device runs the CPU's operations in the CPU's order (the shared formulas,
--fmad=false); within 1e-6 (float32) of the array's largest magnitude where a device library
function (pow) rounds differently."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import sparseopt
from sparseopt import optim

torch = pytest.importorskip("torch")

# (optimizer, hyper-parameters, bit for bit?)
CASES = [
    ("SGD", dict(lr=0.1), True),
    ("SGD", dict(lr=0.1, weight_decay=0.01), True),
    ("SGD", dict(lr=0.1, momentum=0.9), True),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01), True),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3), True),
    ("Adam", dict(lr=0.01), True),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.01), True),
    ("Adam", dict(lr=0.01, bias_correction="none"), True),
    ("Adam", dict(lr=0.01, bias_correction="row"), False),  # the step size's pow, per row
    ("AdamW", dict(lr=0.01, weight_decay=0.1), True),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True), True),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01), True),
    ("RMSprop", dict(lr=0.01), True),
    ("RMSprop", dict(lr=0.01, centered=True), True),
    ("RMSprop", dict(lr=0.01, momentum=0.9), True),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.9), True),
    ("RowWiseAdagrad", dict(lr=0.1), True),
    ("FTRL", dict(lr=0.1, l1=0.01, l2=0.01), True),
    ("FTRL", dict(lr=0.1, lr_power=-0.3, l1=0.01), False),  # pow
]


def to_device(a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a)).cuda()


def to_host(t) -> np.ndarray:
    torch.cuda.synchronize()
    return t.cpu().numpy()


def assert_same(expected: np.ndarray, got: np.ndarray, bitwise: bool, what: str) -> None:
    assert got.dtype == expected.dtype and got.shape == expected.shape, what
    if bitwise:
        assert expected.tobytes() == got.tobytes(), f"{what}: not bit for bit the CPU's"
    else:  # measured against the array's largest magnitude: FTRL's l1 threshold subtracts
        # nearly equal numbers, so an element near it keeps the absolute error, not the relative
        rtol = 1e-6 if expected.dtype == np.float32 else 1e-12
        scale = float(np.abs(expected).max()) if expected.size else 0.0
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize("name,hyper,bitwise", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("width", [1, 40])  # one element per row; more elements than a warp
def test_lazy_steps_equal_the_cpu(name, hyper, bitwise, dtype, index_dtype, width):
    rng = np.random.default_rng(zlib.crc32(f"{name} {hyper} {width}".encode()))
    num_rows = 64
    host = rng.standard_normal((num_rows, width)).astype(dtype)
    device = to_device(host)
    cpu = getattr(optim, name)(host, **hyper)
    gpu = getattr(optim, name)(device, **hyper)
    for step in range(16):
        n = (0, 1, 24, 300)[step % 4]  # empty steps, one index, some and many repeats
        indices = rng.integers(0, num_rows, n).astype(index_dtype)
        values = rng.standard_normal((n, width)).astype(dtype)
        cpu.step(indices, values)
        gpu.step(to_device(indices), to_device(values))
    assert gpu.step_count == cpu.step_count == 16
    assert_same(host, to_host(device), bitwise, f"{name} param")
    assert set(cpu._state) == set(gpu._state)
    for key, array in cpu._state.items():
        assert_same(array, to_host(gpu._state[key]), bitwise, f"{name} {key}")


def _bags(rng, num_bags: int, num_rows: int, index_dtype):
    lengths = rng.integers(0, 6, num_bags)
    lengths[::5] = 0  # empty bags
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(index_dtype)
    indices = rng.integers(0, num_rows, int(indptr[-1])).astype(index_dtype)
    return indptr, indices


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("mode,weighted", [("sum", False), ("sum", True), ("mean", False)])
def test_gather_sum_and_backward_equal_the_cpu(dtype, index_dtype, mode, weighted):
    rng = np.random.default_rng(7)
    num_rows, width, num_bags = 30, 70, 41
    table = rng.standard_normal((num_rows, width)).astype(dtype)
    indptr, indices = _bags(rng, num_bags, num_rows, index_dtype)
    weights = rng.standard_normal(len(indices)).astype(dtype) if weighted else None
    dev = [to_device(a) if a is not None else None for a in (table, indptr, indices, weights)]
    expected = sparseopt.gather_sum(table, indptr, indices, weights, mode=mode)
    got = sparseopt.gather_sum(*dev, mode=mode)
    assert_same(expected, to_host(got), True, "gather_sum")

    grad_out = rng.standard_normal((num_bags, width)).astype(dtype)
    rows, values = sparseopt.gather_sum_backward(grad_out, indptr, indices, weights, mode=mode,
                                                 num_rows=num_rows)
    d_rows, d_values = sparseopt.gather_sum_backward(to_device(grad_out), *dev[1:], mode=mode,
                                                     num_rows=num_rows)
    assert_same(rows, to_host(d_rows), True, "gather_sum_backward rows")
    assert_same(values, to_host(d_values), True, "gather_sum_backward values")


def _snapshot(opt) -> dict[str, np.ndarray]:
    return {"param": to_host(opt.param).copy(), **{k: to_host(v).copy() for k, v in opt._state.items()}}


@pytest.mark.parametrize("name,hyper", [("Adam", dict(lr=0.1, amsgrad=True)),
                                        ("SGD", dict(lr=0.1, momentum=0.9)), ("FTRL", dict(lr=0.1))])
def test_rejected_steps_change_nothing(name, hyper):
    rng = np.random.default_rng(3)
    device = to_device(rng.standard_normal((8, 5)).astype(np.float32))
    opt = getattr(optim, name)(device, **hyper)
    opt.step(to_device(np.array([1, 1, 2])), to_device(np.ones((3, 5), np.float32)))
    before = _snapshot(opt)
    good_values = to_device(np.ones((2, 5), np.float32))
    bad_calls = [
        (IndexError, "out of range", to_device(np.array([0, 8])), good_values),
        (IndexError, "out of range", to_device(np.array([-1, 2])), good_values),
        (ValueError, "float32", to_device(np.array([0, 1])), to_device(np.ones((2, 5)))),
        (ValueError, "shape", to_device(np.array([0, 1])), to_device(np.ones((2, 4), np.float32))),
        (TypeError, "host memory", np.array([0, 1]), good_values),
        (ValueError, "C-contiguous", to_device(np.array([0, 1])),
         to_device(np.ones((2, 10), np.float32))[:, ::2]),
    ]
    for error, message, indices, values in bad_calls:
        with pytest.raises(error, match=message):
            opt.step(indices, values)
        after = _snapshot(opt)
        for key in before:
            assert before[key].tobytes() == after[key].tobytes(), (message, key)
    assert opt.step_count == 1


@pytest.mark.parametrize("hyper", [dict(lr=1.0, eps=1e-50), dict(lr=1e39, eps=1.0)])
def test_rowwise_hyperparameters_out_of_float32_refused(hyper):
    """A float32 device table computes in float32: an eps that is 0 there or an lr / eps
    that overflows it is refused before any step; a float64 device table takes them."""
    device = to_device(np.ones((8, 5), np.float32))
    with pytest.raises(ValueError, match="no finite lr / eps in float32"):
        optim.RowWiseAdagrad(device, **hyper)
    wide = to_device(np.ones((8, 5)))
    optim.RowWiseAdagrad(wide, **hyper).step(to_device(np.array([1, 1])), to_device(np.ones((2, 5))))
    assert np.isfinite(to_host(wide)).all()


def test_a_parameter_that_requires_grad_is_updated_in_place():
    param = torch.nn.Parameter(torch.zeros(4, 3, device="cuda"))
    opt = optim.SGD(param, lr=1.0)
    opt.step(to_device(np.array([2])), to_device(np.ones((1, 3), np.float32)))
    assert to_host(param.detach())[2].tolist() == [-1.0, -1.0, -1.0]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("magnitude", [False, True])
def test_topk_equals_the_cpu_sorted_output(dtype, largest, magnitude):
    rng = np.random.default_rng(11)
    x = rng.integers(-4, 5, (37, 300)).astype(dtype)  # many ties
    x[0, 5] = x[3, 7] = np.nan
    x[1, :40] = -0.0
    x[2, 100] = np.inf
    x[4] = np.nan  # a row of NaNs: ties between NaNs, lower index first
    for k in (1, 7, 33, 300):
        expected = sparseopt.topk(x, k, largest=largest, magnitude=magnitude)
        for sorted_ in (True, False):  # the device always returns sorted output
            got = sparseopt.topk(to_device(x), k, largest=largest, magnitude=magnitude, sorted=sorted_)
            assert_same(expected[0], to_host(got[0]), True, f"topk values k={k}")
            assert_same(expected[1], to_host(got[1]), True, f"topk indices k={k}")
    one = x[5]
    expected = sparseopt.topk(one, 4, largest=largest, magnitude=magnitude)
    got = sparseopt.topk(to_device(one), 4, largest=largest, magnitude=magnitude)
    assert_same(expected[1], to_host(got[1]), True, "topk of a 1-D array")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_coalesce_equals_the_cpu(dtype, index_dtype):
    rng = np.random.default_rng(5)
    for n, bound in ((0, None), (1, 10), (500, None), (500, 40)):
        indices = rng.integers(0, bound or 40, n).astype(index_dtype)
        values = rng.standard_normal((n, 3, 11)).astype(dtype)
        expected = sparseopt.coalesce(indices, values, bound)
        got = sparseopt.coalesce(to_device(indices), to_device(values), bound)
        for e, g, what in zip(expected, got, ("unique", "summed", "counts")):
            assert_same(e, to_host(g), True, f"coalesce {what}")
    with pytest.raises(IndexError, match="out of range"):
        sparseopt.coalesce(to_device(np.array([0, 40])), to_device(np.ones((2, 1))), 40)


@pytest.mark.parametrize("name", ["Adam", "SGD", "Adagrad"])
def test_sparseopt_torch_steps_cuda_parameters_as_cpu_ones(name):
    import sparseopt.torch as so_torch

    torch.manual_seed(0)
    cpu = torch.nn.Embedding(50, 40, sparse=True)
    gpu = torch.nn.Embedding(50, 40, sparse=True).cuda()
    with torch.no_grad():
        gpu.weight.copy_(cpu.weight)
    opts = [getattr(so_torch, name)(m.parameters(), lr=0.1) for m in (cpu, gpu)]
    for _ in range(5):
        ids = torch.randint(0, 50, (64,))
        for module, opt in zip((cpu, gpu), opts):
            opt.zero_grad()
            module(ids.to(module.weight.device)).square().sum().backward()
            opt.step()
    assert_same(cpu.weight.detach().numpy(), to_host(gpu.weight.detach()), True, f"sparseopt.torch.{name}")
