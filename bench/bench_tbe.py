"""Benchmark: sparseopt's fused EmbeddingBag step against FBGEMM's CPU table-batched embedding.

The peer: ``fbgemm_gpu``'s ``SplitTableBatchedEmbeddingBagsCodegen`` with one table on
``ComputeDevice.CPU`` (pip package ``fbgemm-gpu-cpu``; 1.8.0 is built against torch 2.13, the
torch CI installs: ``pip install fbgemm-gpu-cpu==1.8.0``). FBGEMM fuses the table's backward
with the optimizer (its "exact" optimizers): ``out.backward(grad_out)`` updates the table. The
sparseopt side is ``opt.step_bags(grad_out, indptr, indices)``, the same fusion.

On the same 1,000,000 x 64 float32 table and the same bags (4096 bags x 32 int64 lookups,
uniform or Zipf(1.1) rows; mode "sum", no per-sample weights), for each optimizer FBGEMM's CPU
path has and sparseopt has too:

  * row-wise Adagrad (FBGEMM ``EXACT_ROWWISE_ADAGRAD``, ``sparseopt.optim.RowWiseAdagrad``),
  * SGD (``EXACT_SGD``, ``sparseopt.optim.SGD``),
  * Adagrad (``EXACT_ADAGRAD``, ``sparseopt.optim.Adagrad``),

at 1 and 2 threads (torch.set_num_threads for FBGEMM, ``num_threads`` for sparseopt).

First, for each optimizer, both libraries step a small table 10 times from the same start
(uniform and Zipf bags, every other step with per-sample weights) and must agree to float32
rounding (check_same_table); the timed runs then step the same batch
sequence, and their tables are compared again at the end (reported).

Timed: (a) backward + optimizer -- the forward runs untimed just before each timed step (for
FBGEMM it builds the autograd graph; for sparseopt it is ``gather_sum``, so both find the same
rows in cache); (b) forward + backward + optimizer. Reported: the median step time of each,
and speedups as medians of per-round paired ratios (FBGEMM's time / sparseopt's in the same
round; harness.paired_rounds rotates the order every round).

Without fbgemm_gpu (or with one that does not load against the installed torch), the bench
prints why and returns a "skipped" result; bench/run.py then leaves the README as it was.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "tbe"
INSTALL_HINT = ("pip install fbgemm-gpu-cpu==1.8.0 (built for torch 2.13; other torch "
                "versions need the fbgemm-gpu-cpu release made for them)")

FULL = dict(num_rows=1_000_000, width=64, bags=4096, bag_len=32, batches=8, rounds=15,
            steps_per_round=3, warmup=1, threads=(1, 2))
QUICK = dict(num_rows=100_000, width=64, bags=512, bag_len=32, batches=2, rounds=2,
             steps_per_round=1, warmup=1, threads=(1, 2))
LR, EPS = 0.05, 1e-8
DISTS = ("uniform", "zipf")


def load_fbgemm():
    """(namespace of the FBGEMM names used here, None) or (None, why it cannot be used)."""
    try:
        import torch  # noqa: F401
    except Exception as e:  # pragma: no cover - torch is installed by CI
        return None, f"torch does not import ({e!r})"
    try:
        with warnings.catch_warnings():  # its import warns about optional CUDA/SSD ops it lacks
            warnings.simplefilter("ignore")
            from fbgemm_gpu.split_embedding_configs import EmbOptimType, SparseType
            from fbgemm_gpu.split_table_batched_embeddings_ops_common import (
                ComputeDevice, EmbeddingLocation, PoolingMode)
            from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
                SplitTableBatchedEmbeddingBagsCodegen)
    except Exception as e:  # ImportError, or an OSError/RuntimeError from a torch ABI mismatch
        return None, f"fbgemm_gpu is not usable here ({type(e).__name__}: {e}); {INSTALL_HINT}"
    import types
    return types.SimpleNamespace(
        EmbOptimType=EmbOptimType, SparseType=SparseType, ComputeDevice=ComputeDevice,
        EmbeddingLocation=EmbeddingLocation, PoolingMode=PoolingMode,
        TBE=SplitTableBatchedEmbeddingBagsCodegen), None


# name -> (FBGEMM optimizer name, sparseopt class name, sparseopt keyword arguments)
OPTIMIZERS = {
    "row-wise Adagrad": ("EXACT_ROWWISE_ADAGRAD", "RowWiseAdagrad", dict(lr=LR, eps=EPS)),
    "SGD": ("EXACT_SGD", "SGD", dict(lr=LR)),
    "Adagrad": ("EXACT_ADAGRAD", "Adagrad", dict(lr=LR, eps=EPS)),
}


class Pair:
    """One table stepped by FBGEMM and one by sparseopt, from the same start."""

    def __init__(self, fb, opt_name: str, table: np.ndarray, threads: int):
        import sparseopt
        fb_opt, so_cls, so_kw = OPTIMIZERS[opt_name]
        n, w = table.shape
        self.tbe = fb.TBE([(n, w, fb.EmbeddingLocation.HOST, fb.ComputeDevice.CPU)],
                          optimizer=getattr(fb.EmbOptimType, fb_opt), learning_rate=LR, eps=EPS,
                          pooling_mode=fb.PoolingMode.SUM,
                          weights_precision=fb.SparseType.FP32, output_dtype=fb.SparseType.FP32)
        import torch
        with torch.no_grad():
            self.tbe.split_embedding_weights()[0].copy_(torch.from_numpy(table))
        self.param = harness.aligned_copy(table)
        self.opt = getattr(sparseopt.optim, so_cls)(self.param, num_threads=threads, **so_kw)
        self._out = None

    def fbgemm_table(self) -> np.ndarray:
        return self.tbe.split_embedding_weights()[0].detach().numpy()

    # one step of each: forward (gather) then backward + optimizer, fused
    def fb_forward(self, bags, weights=None):
        indptr, indices, _ = bags
        self._out = self.tbe(indices["torch"], indptr["torch"],
                             per_sample_weights=None if weights is None else weights["torch"])

    def fb_backward(self, bags):
        self._out.backward(bags[2]["torch"])
        self._out = None

    def so_forward(self, bags):
        import sparseopt
        indptr, indices, _ = bags
        self._so_out = sparseopt.gather_sum(self.param, indptr["np"], indices["np"],
                                            num_threads=self.opt.num_threads)

    def so_backward(self, bags, weights=None):
        indptr, indices, grad_out = bags
        self.opt.step_bags(grad_out["np"], indptr["np"], indices["np"],
                           None if weights is None else weights["np"])


def make_bags(dist: str, cfg: dict, rng: np.random.Generator) -> list:
    """cfg["batches"] batches of (indptr, indices, grad_out), each as NumPy and as a torch
    tensor sharing its memory."""
    import torch
    from bench_gather import make_bag_batches
    indptr = np.arange(0, cfg["bags"] * cfg["bag_len"] + 1, cfg["bag_len"], dtype=np.int64)
    out = []
    for idx in make_bag_batches(dist, cfg, rng):
        g = rng.standard_normal((cfg["bags"], cfg["width"]), dtype=np.float32)
        out.append(tuple({"np": a, "torch": torch.from_numpy(a)} for a in (indptr, idx, g)))
    return out


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max(1, |b|): 0 for equal tables, ~1e-7 for float32 rounding."""
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b))))


def check_same_table(fb=None, *, num_rows: int = 2000, width: int = 16, steps: int = 5,
                     seed: int = 0, tol: float = 1e-5) -> dict:
    """Step a small table with FBGEMM and with sparseopt, same start and bags (uniform and
    Zipf, repeats included, every other step with per-sample weights), for every optimizer; raise AssertionError unless the tables agree
    to ``tol`` (relative, float32 rounding) and the step changed them. Returns
    {optimizer: max relative difference}."""
    if fb is None:
        fb, why = load_fbgemm()
        if fb is None:
            raise RuntimeError(why)
    cfg = dict(num_rows=num_rows, width=width, bags=64, bag_len=8, batches=steps)
    out = {}
    for opt_name in OPTIMIZERS:
        rng = np.random.default_rng(seed)
        table = rng.standard_normal((num_rows, width), dtype=np.float32)
        pair = Pair(fb, opt_name, table, threads=0)
        for dist in DISTS:
            for k, bags in enumerate(make_bags(dist, cfg, rng)):
                weights = None
                if k % 2:  # every other step with per-sample weights (a weighted bag)
                    import torch
                    w = rng.uniform(-1.0, 2.0, len(bags[1]["np"])).astype(np.float32)
                    weights = {"np": w, "torch": torch.from_numpy(w)}
                pair.fb_forward(bags, weights)
                pair.fb_backward(bags)
                pair.so_backward(bags, weights)
        d = max_rel_diff(pair.fbgemm_table(), pair.param)
        moved = max_rel_diff(pair.param, table)
        if not (d <= tol and moved > 100 * tol):
            raise AssertionError(f"{opt_name}: FBGEMM and sparseopt tables differ by {d:.3g} "
                                 f"(tolerance {tol}; the steps moved the table by {moved:.3g})")
        out[opt_name] = d
    return out


def _time_pair(fb, opt_name, table, bags, threads, cfg) -> dict:
    import torch
    pair = Pair(fb, opt_name, table, threads)
    nb = len(bags)
    steps = {
        "fbgemm bwd+opt": lambda i: pair.fb_backward(bags[i % nb]),
        "sparseopt bwd+opt": lambda i: pair.so_backward(bags[i % nb]),
        "fbgemm fwd+bwd+opt": lambda i: (pair.fb_forward(bags[i % nb]),
                                         pair.fb_backward(bags[i % nb])),
        "sparseopt fwd+bwd+opt": lambda i: (pair.so_forward(bags[i % nb]),
                                            pair.so_backward(bags[i % nb])),
    }
    prepare = {"fbgemm bwd+opt": lambda i: pair.fb_forward(bags[i % nb]),
               "sparseopt bwd+opt": lambda i: pair.so_forward(bags[i % nb])}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = harness.paired_rounds(steps, prepare=prepare, rounds=cfg["rounds"],
                                      steps_per_round=cfg["steps_per_round"],
                                      warmup=cfg["warmup"])
    finally:
        torch.set_num_threads(before)
    res = {"times_s": times,
           "ms": {n: harness.summarize([t * 1e3 for t in ts]) for n, ts in times.items()},
           "speedup_bwd_opt": harness.paired_ratio(times["fbgemm bwd+opt"],
                                                   times["sparseopt bwd+opt"]),
           "speedup_fwd_bwd_opt": harness.paired_ratio(times["fbgemm fwd+bwd+opt"],
                                                       times["sparseopt fwd+bwd+opt"]),
           # both stepped the same batches in the same order: the same table, up to rounding
           "final_table_rel_diff": max_rel_diff(pair.fbgemm_table(), pair.param)}
    del pair
    return res


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    cfg = QUICK if quick else FULL
    fb, why = load_fbgemm()
    if fb is None:
        harness.log(f"bench tbe skipped: {why}")
        return {"name": NAME, "quick": quick, "skipped": why,
                "markdown": f"Skipped: {why}.\n"}
    import fbgemm_gpu
    import torch

    import sparseopt
    check = check_same_table(fb, seed=seed)
    harness.log("same table (max relative difference after 2 x 5 steps): " + ", ".join(
        f"{k} {v:.1e}" for k, v in check.items()))
    rng = np.random.default_rng(seed)
    table = rng.standard_normal((cfg["num_rows"], cfg["width"]), dtype=np.float32)
    cases = []
    for dist in DISTS:
        bags = make_bags(dist, cfg, rng)
        for opt_name in OPTIMIZERS:
            for threads in cfg["threads"]:
                res = _time_pair(fb, opt_name, table, bags, threads, cfg)
                res.update(optimizer=opt_name, dist=dist, threads=threads)
                harness.log(f"[{opt_name}, {dist}, {threads} thr] bwd+opt: sparseopt "
                            f"{res['speedup_bwd_opt']['median']:.2f}x faster; fwd+bwd+opt "
                            f"{res['speedup_fwd_bwd_opt']['median']:.2f}x")
                cases.append(res)
    data = {"name": NAME, "quick": quick, "config": cfg, "same_table_check": check,
            "cases": cases, "fbgemm_gpu": fbgemm_gpu.__version__, "torch": torch.__version__,
            "sparseopt": sparseopt.__version__, "machine": machine or harness.machine_info(),
            "copy_bandwidth": bandwidth}
    data["markdown"] = to_markdown(data)
    return data


def _ms(s: dict) -> str:
    return f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    rows = []
    for c in data["cases"]:
        ms = c["ms"]
        rows.append([c["optimizer"], c["dist"], c["threads"],
                     _ms(ms["fbgemm bwd+opt"]), _ms(ms["sparseopt bwd+opt"]),
                     f"**{c['speedup_bwd_opt']['median']:.2f}x**",
                     _ms(ms["fbgemm fwd+bwd+opt"]), _ms(ms["sparseopt fwd+bwd+opt"]),
                     f"{c['speedup_fwd_bwd_opt']['median']:.2f}x",
                     f"{c['final_table_rel_diff']:.0e}"])
    table = harness.markdown_table(
        ["optimizer", "indices", "threads", "FBGEMM bwd+opt ms", "sparseopt bwd+opt ms",
         "sparseopt faster by", "FBGEMM fwd+bwd+opt ms", "sparseopt fwd+bwd+opt ms",
         "sparseopt faster by", "tables differ by"], rows,
        align=["l", "l", "r", "r", "r", "r", "r", "r", "r", "r"])
    check = ", ".join(f"{k} {v:.0e}" for k, v in data["same_table_check"].items())
    notes = (
        f"FBGEMM {data['fbgemm_gpu']} CPU TBE (`SplitTableBatchedEmbeddingBagsCodegen`, one "
        f"FP32 table on `ComputeDevice.CPU`, exact optimizers) against sparseopt "
        f"{data['sparseopt']}'s `opt.step_bags` on the same {cfg['num_rows']:,} x "
        f"{cfg['width']} float32 table and bags ({cfg['bags']} bags x {cfg['bag_len']} int64 "
        f"lookups, uniform or Zipf(1.1) rows, mode sum), torch {data['torch']}. "
        f"bwd+opt: the backward fused with the optimizer, the forward run untimed just before "
        f"(FBGEMM: `out.backward(grad_out)` on the graph its forward built); fwd+bwd+opt: the "
        f"whole step. ms: median (min–max) over {cfg['rounds']} rounds of {cfg['steps_per_round']} "
        f"steps; speedups: median of per-round paired ratios (FBGEMM / sparseopt, order "
        f"rotated each round). Same table: before timing, both step a 2000 x 16 table 10 times "
        f"(every other step with per-sample weights) "
        f"from the same start and agree to {check} (max relative difference); 'tables differ "
        f"by': the same after the timed steps. Command: `python bench/run.py --only tbe` "
        f"(needs `{INSTALL_HINT.split(' (')[0]}`).")
    return harness.report(table, notes, data)


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
