"""Benchmark: sparseopt's CUDA kernels against torch on the same GPU.

- Lazy Adam on float32 tables of 1M and 16M rows x 128, 65,536 uniform random lookups per step
  (repeats summed), against torch.optim.SparseAdam on the same table (a sparse COO gradient)
  and against dense fused Adam (torch.optim.Adam(fused=True), the whole table per step).
  Exact Adam (mode="exact") on the same tables and batches against dense fused Adam, which
  computes the same result (the dense optimizer's).
- gather_sum_backward (16,384 bags of 4 indices into 1M x 128) against the backward pass of
  torch.nn.functional.embedding_bag(mode="sum", sparse=True).
- top-k per row (4096 x 4096 float32, k = 32) against torch.topk (sorted output both).

Each round steps the same batch once per variant, in rotating order, each step followed by
torch.cuda.synchronize(); a variant's speedup is the median of the per-round paired ratios
(torch's time / sparseopt's). "of bandwidth" divides the bytes a step must move (the model in
_bytes_adam: each touched row of the table and both moments read and written once, the
gradient rows and indices read once) by its time and by the device's copy bandwidth, measured
here with a 1 GiB device-to-device copy. Without a CUDA device, torch with CUDA, or sparseopt
built with SPARSEOPT_CUDA=ON, the benchmark is skipped with the reason and bench/results keeps
its last table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "cuda"

FULL = dict(tables=(1_000_000, 16_000_000), dim=128, lookups=65_536, batches=8, warmup=3, rounds=20,
            bags=16_384, bag_len=4, topk=(4096, 4096, 32))
QUICK = dict(tables=(100_000,), dim=128, lookups=8_192, batches=2, warmup=1, rounds=3,
             bags=2_048, bag_len=4, topk=(256, 4096, 32))


def why_not() -> str | None:
    """Why the benchmark cannot run here (None: it can)."""
    try:
        from sparseopt import _device
    except ImportError:
        return "sparseopt does not import"
    return _device.why_not_runnable()


def device_bandwidth(torch, size_mib: int = 1024, repeat: int = 7) -> float:
    """GB/s of a device-to-device copy (bytes read + written / time), median of `repeat`."""
    src = torch.empty(size_mib << 20, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeat + 1):
        start.record()
        dst.copy_(src)
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * src.numel() / float(np.median(times[1:])) / 1e9


def _bytes_adam(touched: int, cfg: dict) -> int:
    row = cfg["dim"] * 4
    return touched * 6 * row + cfg["lookups"] * (row + 8)


def _adam(torch, rows: int, cfg: dict, rng, mode: str = "lazy") -> list[list]:
    from sparseopt import optim

    dim, lookups = cfg["dim"], cfg["lookups"]
    batches = [(torch.from_numpy(rng.integers(0, rows, lookups)).cuda(),
                torch.from_numpy(rng.standard_normal((lookups, dim), dtype=np.float32)).cuda())
               for _ in range(cfg["batches"])]
    ours = torch.zeros(rows, dim, device="cuda")
    theirs = torch.nn.Parameter(torch.zeros(rows, dim, device="cuda"))
    dense = torch.nn.Parameter(torch.zeros(rows, dim, device="cuda"))
    opt = optim.Adam(ours, lr=1e-3, mode=mode)  # exact: also catches the touched rows up
    sparse_adam = torch.optim.SparseAdam([theirs], lr=1e-3)
    fused = torch.optim.Adam([dense], lr=1e-3, fused=True)

    def batch(i):
        return batches[i % len(batches)]

    def step_ours(i):
        opt.step(*batch(i))
        torch.cuda.synchronize()

    def step_sparse(i):
        idx, val = batch(i)
        theirs.grad = torch.sparse_coo_tensor(idx[None], val, (rows, dim), check_invariants=False)
        sparse_adam.step()
        torch.cuda.synchronize()

    def step_dense(i):
        idx, val = batch(i)
        dense.grad = torch.zeros_like(dense).index_add_(0, idx, val)
        fused.step()
        torch.cuda.synchronize()

    times = harness.paired_rounds({"ours": step_ours, "sparse": step_sparse, "dense": step_dense},
                                  rounds=cfg["rounds"], warmup=cfg["warmup"])
    touched = int(np.mean([len(torch.unique(b[0])) for b in batches]))
    t = float(np.median(times["ours"]))
    return [f"{rows:,} x {dim}", t * 1e3, _bytes_adam(touched, cfg) / t / 1e9,
            harness.paired_ratio(times["sparse"], times["ours"])["median"],
            harness.paired_ratio(times["dense"], times["ours"])["median"]]


def _gather_backward(torch, cfg: dict, rng) -> list:
    import sparseopt

    rows, dim, bags, length = cfg["tables"][0], cfg["dim"], cfg["bags"], cfg["bag_len"]
    indices = torch.from_numpy(rng.integers(0, rows, bags * length)).cuda()
    indptr = torch.arange(0, bags * length + 1, length, device="cuda")
    grad_out = torch.from_numpy(rng.standard_normal((bags, dim), dtype=np.float32)).cuda()
    weight = torch.nn.Parameter(torch.zeros(rows, dim, device="cuda"))

    def ours(i):
        sparseopt.gather_sum_backward(grad_out, indptr, indices, num_rows=rows)
        torch.cuda.synchronize()

    def theirs(i):
        weight.grad = None
        out = torch.nn.functional.embedding_bag(indices, weight, indptr[:-1], mode="sum", sparse=True)
        out.backward(grad_out)
        torch.cuda.synchronize()

    times = harness.paired_rounds({"ours": ours, "theirs": theirs}, rounds=cfg["rounds"], warmup=cfg["warmup"])
    return [f"{bags:,} bags x {length} into {rows:,} x {dim}", float(np.median(times["ours"])) * 1e3,
            harness.paired_ratio(times["theirs"], times["ours"])["median"]]


def _topk(torch, cfg: dict, rng) -> list:
    import sparseopt

    rows, n, k = cfg["topk"]
    x = torch.from_numpy(rng.standard_normal((rows, n), dtype=np.float32)).cuda()

    def ours(i):
        sparseopt.topk(x, k)
        torch.cuda.synchronize()

    def theirs(i):
        torch.topk(x, k, dim=-1, sorted=True)
        torch.cuda.synchronize()

    times = harness.paired_rounds({"ours": ours, "theirs": theirs}, rounds=cfg["rounds"], warmup=cfg["warmup"])
    return [f"{rows:,} x {n:,}, k = {k}", float(np.median(times["ours"])) * 1e3,
            harness.paired_ratio(times["theirs"], times["ours"])["median"]]


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    reason = why_not()
    if reason is not None:
        harness.log(f"bench_cuda skipped: {reason}")
        return {"skipped": reason, "quick": quick,
                "markdown": f"CUDA benchmark skipped: {reason}. The GPU path has not been run here.\n"}
    import torch

    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    device = torch.cuda.get_device_name()
    gbps = device_bandwidth(torch)
    adam_rows = [_adam(torch, rows, cfg, rng) for rows in cfg["tables"]]
    for row in adam_rows:
        row.insert(3, row[2] / gbps)
    exact_rows = [_adam(torch, rows, cfg, rng, "exact") for rows in cfg["tables"]]
    gather = _gather_backward(torch, cfg, rng)
    topk = _topk(torch, cfg, rng)
    data = {"name": NAME, "quick": quick, "config": cfg, "device": device, "device_copy_gbps": gbps,
            "adam": adam_rows, "exact_adam": exact_rows, "gather_backward": gather, "topk": topk, "machine": machine or harness.machine_info(),
            "copy_bandwidth": bandwidth}
    table = harness.markdown_table(
        ["lazy Adam, float32", "ms / step", "GB/s (model)", "of bandwidth", "vs SparseAdam", "vs fused dense Adam"],
        [[r[0], f"{r[1]:.3f}", f"{r[2]:.0f}", f"{r[3]:.0%}", f"{r[4]:.1f}x", f"{r[5]:.1f}x"] for r in adam_rows])
    table += "\n\n" + harness.markdown_table(
        ["exact Adam, float32", "ms / step", "vs fused dense Adam (the same result)"],
        [[r[0], f"{r[1]:.3f}", f"{r[4]:.1f}x"] for r in exact_rows])
    table += "\n\n" + harness.markdown_table(
        ["gather_sum_backward", "ms", "vs embedding_bag backward"],
        [[gather[0], f"{gather[1]:.3f}", f"{gather[2]:.1f}x"]])
    table += "\n\n" + harness.markdown_table(
        ["top-k per row", "ms", "vs torch.topk"], [[topk[0], f"{topk[1]:.3f}", f"{topk[2]:.1f}x"]])
    notes = (f"Device: {device}, copy bandwidth {gbps:.0f} GB/s (1 GiB device-to-device). "
             f"{cfg['lookups']:,} lookups per step; exact Adam's rows catch up over the steps they "
             f"rested (rows touched at random), so its cost per step is above lazy Adam's.")
    data["markdown"] = harness.report(table, notes, data)
    return data


if __name__ == "__main__":
    if why_not() is not None:  # nothing measured: keep bench/results as it is
        print(run()["markdown"])
    else:
        harness.cli(NAME, run, __doc__)
