"""Where the CUDA calls' time goes: the device kernels (torch.profiler, which records every
kernel on the device, sparseopt's too) against each call's wall time, for the cases of
bench/bench_cuda.py. A call whose kernels take a small part of its wall time is bound by the
host (launches, allocation, the wait for the indices' check), not by the device.

    python bench/diagnostics/cuda_profile.py        # needs a GPU, torch with CUDA, SPARSEOPT_CUDA=ON
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import sparseopt
from sparseopt import optim

ROWS, DIM, LOOKUPS, REPS = 1_000_000, 128, 65_536, 20


def wall_us(fn, reps: int = REPS) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def kernels(fn, reps: int = REPS) -> list[tuple[str, float, int]]:
    """(kernel, device us per call, launches per call), largest first."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        device = getattr(e, "self_device_time_total", None)
        if device is None:
            device = e.self_cuda_time_total
        if device > 0:
            rows.append((e.key[:70], device / reps, e.count / reps))
    return sorted(rows, key=lambda r: -r[1])


def report(name: str, fn) -> None:
    wall = wall_us(fn)
    ks = kernels(fn)
    device = sum(k[1] for k in ks)
    print(f"\n== {name}: wall {wall:.0f} us per call, device kernels {device:.0f} us ({device / wall:.0%})")
    for k, us, count in ks[:12]:
        print(f"   {us:8.1f} us  x{count:<5.1f} {k}")


def main() -> None:
    rng = np.random.default_rng(0)
    print(torch.cuda.get_device_name(), sparseopt.info())
    idx = torch.from_numpy(rng.integers(0, ROWS, LOOKUPS)).cuda()
    idx32 = idx.to(torch.int32)
    val = torch.from_numpy(rng.standard_normal((LOOKUPS, DIM), dtype=np.float32)).cuda()
    table = torch.zeros(ROWS, DIM, device="cuda")
    opt = optim.Adam(table, lr=1e-3)
    report("lazy Adam, 1M x 128, 64k int64 lookups", lambda: opt.step(idx, val))
    report("lazy Adam, int32 lookups", lambda: opt.step(idx32, val))
    empty_i, empty_v = idx[:0], val[:0]
    report("lazy Adam, an empty step (the fixed cost)", lambda: opt.step(empty_i, empty_v))
    one_i, one_v = idx[:1], val[:1]
    report("lazy Adam, one lookup", lambda: opt.step(one_i, one_v))
    report("coalesce alone", lambda: sparseopt.coalesce(idx, val, ROWS))
    exact = optim.Adam(torch.zeros(ROWS, DIM, device="cuda"), lr=1e-3, mode="exact")
    report("exact Adam", lambda: exact.step(idx, val))
    theirs = torch.nn.Parameter(torch.zeros(ROWS, DIM, device="cuda"))
    sparse_adam = torch.optim.SparseAdam([theirs], lr=1e-3)

    def torch_step():
        theirs.grad = torch.sparse_coo_tensor(idx[None], val, (ROWS, DIM), check_invariants=False)
        sparse_adam.step()

    report("torch SparseAdam", torch_step)
    bags = 16_384
    indices = idx[:bags * 4].contiguous()
    indptr = torch.arange(0, bags * 4 + 1, 4, device="cuda")
    grad_out = val[:bags].contiguous()
    report("gather_sum_backward 16k bags x 4", lambda: sparseopt.gather_sum_backward(
        grad_out, indptr, indices, num_rows=ROWS))
    report("gather_sum forward", lambda: sparseopt.gather_sum(table, indptr, indices))
    x = torch.from_numpy(rng.standard_normal((4096, 4096), dtype=np.float32)).cuda()
    report("topk 4096 x 4096, k = 32", lambda: sparseopt.topk(x, 32))
    report("torch.topk", lambda: torch.topk(x, 32, dim=-1, sorted=True))


if __name__ == "__main__":
    main()
