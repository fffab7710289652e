"""Benchmark: sparse x dense -- EmbeddingBag sums, CSR @ dense, and their row-sparse backward.

Four operations, each against the library a user would otherwise call, in the same process,
timed in interleaved load-aware blocks (bench_exact.interleaved):

  * gather_sum (mode sum) on a 1,000,000 x 64 float32 table, 4096 bags x 32 lookups, uniform
    and Zipf indices  vs  torch.nn.functional.embedding_bag(mode="sum",
    include_last_offset=True) with torch's default threads;
  * gather_sum_backward (the coalesced row-sparse gradient of the table)  vs  torch's
    backward of embedding_bag(sparse=True): ``out.backward(grad_out)`` (the forward graph is
    built untimed), alone (its gradient is an uncoalesced n x 64 sparse tensor) and followed
    by ``weight.grad.coalesce()`` (the same result as sparseopt's);
  * csr_matmul: a 4096 x 100,000 SciPy csr_array at 0.5 % density times a 100,000 x 64 float32
    table  vs  SciPy's ``x @ table``;
  * csr_matmul_backward  vs  SciPy's ``x.T @ grad_out`` (a dense 100,000 x 64 result; SciPy's
    sparse kernels run on one thread).

sparseopt runs with all threads (num_threads=0) and with one. Several index batches are
generated up front and cycled, so a call does not find the previous call's rows in cache.

Bytes a call must move at the least (GB/s and the fraction of the measured np.copyto
bandwidth): forward n*w*4 (rows gathered) + n*i (indices) + B*w*4 (output) [+ n*4 CSR data];
backward B*w*4 (grad_out) + n*i (indices) + U*(w*4 + i) (the U touched rows written)
[+ n*4 CSR data]; i = 8 bytes (int64 indices) in the embedding cases, 4 in the CSR ones
(SciPy's int32).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402
from bench_exact import BUSY_CORES, interleaved, paired, warm_up  # noqa: E402

NAME = "gather"

FULL = dict(num_rows=1_000_000, width=64, bags=4096, bag_len=32, batches=8,
            csr_bags=4096, csr_cols=100_000, csr_density=0.005, csr_batches=2,
            target_block_s=0.3, max_steps=40, blocks=7, max_rounds_factor=3, warmup_s=1.0)
QUICK = dict(num_rows=1_000_000, width=64, bags=4096, bag_len=32, batches=2,
             csr_bags=4096, csr_cols=100_000, csr_density=0.005, csr_batches=1,
             target_block_s=0.05, max_steps=5, blocks=2, max_rounds_factor=1, warmup_s=0.2)
ZIPF_S = 1.1


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def make_bag_batches(dist: str, cfg: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """cfg["batches"] index arrays of bags * bag_len lookups (int64)."""
    N, n = cfg["num_rows"], cfg["bags"] * cfg["bag_len"]
    if dist == "zipf":  # rank-frequency 1/r^s, rank -> row through a random permutation
        cdf = np.cumsum(np.arange(1, N + 1, dtype=np.float64) ** -ZIPF_S)
        cdf /= cdf[-1]
        perm = rng.permutation(N).astype(np.int64)
    out = []
    for _ in range(cfg["batches"]):
        if dist == "uniform":
            idx = rng.integers(0, N, size=n, dtype=np.int64)
        else:
            idx = perm[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), N - 1)]
        out.append(np.ascontiguousarray(idx, dtype=np.int64))
    return out


def make_csr_batches(cfg: dict, rng: np.random.Generator):
    import scipy.sparse as sp
    return [sp.random_array((cfg["csr_bags"], cfg["csr_cols"]), density=cfg["csr_density"],
                            format="csr", dtype=np.float32, rng=rng)
            for _ in range(cfg["csr_batches"])]


# --------------------------------------------------------------------------------------------
# implementations: {"step": f(i), "prepare": g(i) or None}
# --------------------------------------------------------------------------------------------
def so_forward(table, indptr, batches, threads):
    import sparseopt
    nb = len(batches)
    return {"step": lambda i: sparseopt.gather_sum(table, indptr, batches[i % nb], num_threads=threads),
            "prepare": None}


def so_backward(grad_out, indptr, batches, num_rows, threads):
    import sparseopt
    nb = len(batches)
    return {"step": lambda i: sparseopt.gather_sum_backward(grad_out, indptr, batches[i % nb],
                                                            num_rows=num_rows, num_threads=threads),
            "prepare": None}


def torch_forward(table, indptr, batches):
    import torch
    F = torch.nn.functional
    t_table, t_indptr = torch.from_numpy(table), torch.from_numpy(indptr)
    t_batches = [torch.from_numpy(b) for b in batches]
    nb = len(batches)

    def step(i):
        with torch.no_grad():
            F.embedding_bag(t_batches[i % nb], t_table, t_indptr, mode="sum", include_last_offset=True)

    return {"step": step, "prepare": None}


def torch_backward(table, grad_out, indptr, batches, coalesce: bool):
    import torch
    F = torch.nn.functional
    weight = torch.nn.Parameter(torch.from_numpy(table))  # shares the table's memory
    t_indptr, t_grad = torch.from_numpy(indptr), torch.from_numpy(grad_out)
    t_batches = [torch.from_numpy(b) for b in batches]
    nb = len(batches)
    state = {}

    def prepare(i):  # untimed: the forward graph
        weight.grad = None
        state["out"] = F.embedding_bag(t_batches[i % nb], weight, t_indptr, mode="sum",
                                       include_last_offset=True, sparse=True)

    def step(i):
        state["out"].backward(t_grad)
        if coalesce:
            weight.grad.coalesce()

    return {"step": step, "prepare": prepare}


def so_csr(table, xs, threads, backward=False, grad_out=None):
    import sparseopt
    nb = len(xs)
    if backward:
        return {"step": lambda i: sparseopt.csr_matmul_backward(xs[i % nb], grad_out, num_threads=threads),
                "prepare": None}
    return {"step": lambda i: sparseopt.csr_matmul(xs[i % nb], table, num_threads=threads),
            "prepare": None}


def scipy_csr(table, xs, backward=False, grad_out=None):
    nb = len(xs)
    if backward:
        return {"step": lambda i: xs[i % nb].T @ grad_out, "prepare": None}
    return {"step": lambda i: xs[i % nb] @ table, "prepare": None}


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def _time_case(impls: dict, cfg: dict, tag: str) -> dict:
    """Warm up every implementation, size its blocks to about target_block_s, time them
    interleaved; returns {name: summary in ms}."""
    counters = {}
    for name, im in impls.items():
        im.update(warmup=10**6, warmup_cap_s=cfg["warmup_s"], block_warmup=1, blocks=cfg["blocks"])
        steps, secs = warm_up(im)
        counters[name] = steps
        per_call = secs / max(steps, 1)
        im["steps"] = int(min(cfg["max_steps"], max(2, round(cfg["target_block_s"] / max(per_call, 1e-6)))))
        harness.log(f"[{tag}] {name}: {per_call * 1e3:.2f} ms/call in warm-up, {im['steps']} calls/block")
    return interleaved(impls, counters, cfg, tag)


def run(quick: bool = False, seed: int = 0, bandwidth: dict | None = None,
        machine: dict | None = None) -> dict:
    cfg = dict(QUICK if quick else FULL)
    t_start = time.perf_counter()
    machine = machine or harness.machine_info()
    if bandwidth is None:
        harness.log("measuring copy bandwidth ...")
        bandwidth = harness.copy_bandwidth(repeat=3 if quick else 7, threads=2)
    so_info = machine.get("sparseopt")
    if so_info is None or "error" in so_info:
        raise RuntimeError("sparseopt does not import; this benchmark needs it")
    so_threads = so_info.get("max_threads") or machine.get("usable_cpus")
    try:
        import torch
        torch_threads = torch.get_num_threads()
    except ImportError:
        torch, torch_threads = None, None
    try:
        import scipy  # noqa: F401
        have_scipy = True
    except ImportError:
        have_scipy = False

    rng = np.random.default_rng(seed)
    N, w, B, L = cfg["num_rows"], cfg["width"], cfg["bags"], cfg["bag_len"]
    harness.log(f"allocating {N} x {w} float32 table ...")
    table = harness.aligned_copy(rng.standard_normal((N, w), dtype=np.float32))  # shared by both
    indptr = np.arange(0, B * L + 1, L, dtype=np.int64)
    grad_out = rng.standard_normal((B, w), dtype=np.float32)
    n = B * L
    cases = []
    for dist in ("uniform", "zipf"):
        batches = make_bag_batches(dist, cfg, rng)
        uniq = float(np.mean([np.unique(b).size for b in batches]))
        impls = {"sparseopt": so_forward(table, indptr, batches, 0),
                 "sparseopt_1t": so_forward(table, indptr, batches, 1)}
        if torch is not None:
            impls["torch"] = torch_forward(table, indptr, batches)
        res = _time_case(impls, cfg, f"forward {dist}")
        cases.append({"op": "forward", "dist": dist, "unique_rows": uniq, "impls": res,
                      "competitor": "torch" if torch is not None else None,
                      "bytes": n * w * 4 + n * 8 + B * w * 4})
        impls = {"sparseopt": so_backward(grad_out, indptr, batches, N, 0),
                 "sparseopt_1t": so_backward(grad_out, indptr, batches, N, 1)}
        if torch is not None:
            impls["torch"] = torch_backward(table, grad_out, indptr, batches, coalesce=True)
            impls["torch_uncoalesced"] = torch_backward(table, grad_out, indptr, batches, coalesce=False)
        res = _time_case(impls, cfg, f"backward {dist}")
        cases.append({"op": "backward", "dist": dist, "unique_rows": uniq, "impls": res,
                      "competitor": "torch" if torch is not None else None,
                      "bytes": B * w * 4 + n * 8 + uniq * (w * 4 + 8)})
        del batches, impls
        gc.collect()
    del table
    gc.collect()

    if have_scipy:
        harness.log("generating CSR matrices ...")
        xs = make_csr_batches(cfg, rng)
        cols, cb = cfg["csr_cols"], cfg["csr_bags"]
        csr_table = rng.standard_normal((cols, w), dtype=np.float32)
        csr_grad = rng.standard_normal((cb, w), dtype=np.float32)
        nnz = float(np.mean([x.nnz for x in xs]))
        uniq = float(np.mean([np.unique(x.indices).size for x in xs]))
        ib = xs[0].indices.dtype.itemsize
        for op in ("forward", "backward"):
            bwd = op == "backward"
            impls = {"sparseopt": so_csr(csr_table, xs, 0, bwd, csr_grad),
                     "sparseopt_1t": so_csr(csr_table, xs, 1, bwd, csr_grad),
                     "scipy": scipy_csr(csr_table, xs, bwd, csr_grad)}
            res = _time_case(impls, cfg, f"csr {op}")
            nbytes = (cb * w * 4 + nnz * (ib + 4) + uniq * (w * 4 + ib) if bwd
                      else nnz * (w * 4 + ib + 4) + cb * w * 4)
            cases.append({"op": f"csr_{op}", "dist": "csr", "nnz": nnz, "unique_rows": uniq,
                          "impls": res, "competitor": "scipy", "bytes": nbytes, "index_bytes": ib})
        del xs
        gc.collect()

    for c in cases:
        so = c["impls"]["sparseopt"]
        so["gbps"] = c["bytes"] / (so["median"] / 1e3) / 1e9
        so["frac_copy_bw"] = so["gbps"] / bandwidth["gbps"]["median"]
        comp = c["competitor"]
        if comp and comp in c["impls"]:
            c["speedup"] = paired(c["impls"][comp], so)
            c["speedup_1t"] = paired(c["impls"][comp], c["impls"]["sparseopt_1t"])
        if "torch_uncoalesced" in c["impls"]:
            c["speedup_uncoalesced"] = paired(c["impls"]["torch_uncoalesced"], so)
            c["speedup_uncoalesced_1t"] = paired(c["impls"]["torch_uncoalesced"],
                                                 c["impls"]["sparseopt_1t"])

    data = {"name": NAME, "quick": quick, "config": cfg, "zipf_exponent": ZIPF_S, "seed": seed,
            "sparseopt_threads": so_threads, "torch_threads": torch_threads, "machine": machine,
            "copy_bandwidth": bandwidth, "cases": cases,
            "elapsed_s": time.perf_counter() - t_start}
    data["markdown"] = to_markdown(data)
    return data


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _ms(s: dict | None) -> str:
    if s is None:
        return "n/a"
    d = 1 if s["median"] >= 100 else 2
    return f"{s['median']:.{d}f} ({s['min']:.{d}f}–{s['max']:.{d}f})"


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    st = data["sparseopt_threads"] or "?"
    tt = data["torch_threads"] or "?"
    header = ["operation", "indices", f"sparseopt ms ({st} thr)", "sparseopt ms (1 thr)",
              "competitor", "competitor ms", f"speedup ({st} thr)", "speedup (1 thr)",
              "GB/s", "% of copy bandwidth"]
    names = {"forward": "gather_sum (sum)", "backward": "gather_sum_backward",
             "csr_forward": "csr_matmul", "csr_backward": "csr_matmul_backward"}
    comps = {"forward": f"torch embedding_bag ({tt} thr)",
             "backward": f"torch embedding_bag backward, sparse=True, + coalesce() ({tt} thr)",
             "csr_forward": "SciPy `x @ table` (1 thr)",
             "csr_backward": "SciPy `x.T @ grad_out` (1 thr)"}
    rows = []
    for c in data["cases"]:
        im = c["impls"]
        so = im["sparseopt"]
        dist = {"uniform": "uniform", "zipf": f"Zipf (s={data['zipf_exponent']})",
                "csr": f"CSR, {c.get('nnz', 0):,.0f} nnz"}[c["dist"]]
        comp = im.get(c["competitor"]) if c["competitor"] else None
        sp = f"{c['speedup']:.1f}x" if "speedup" in c else "n/a"
        sp1 = f"{c['speedup_1t']:.1f}x" if "speedup_1t" in c else "n/a"
        rows.append([names[c["op"]], dist, _ms(so), _ms(im["sparseopt_1t"]),
                     comps[c["op"]] if comp else "n/a", _ms(comp), sp, sp1,
                     f"{so['gbps']:.1f}", f"{100 * so['frac_copy_bw']:.0f}%"])
        if "torch_uncoalesced" in im:
            un = im["torch_uncoalesced"]
            rows.append(["", "", "", "", "torch backward alone (uncoalesced n x 64 gradient)",
                         _ms(un), f"{c['speedup_uncoalesced']:.1f}x",
                         f"{c['speedup_uncoalesced_1t']:.1f}x", "", ""])
    table = harness.markdown_table(header, rows)
    used = [im["blocks_used"] for c in data["cases"] for im in c["impls"].values()]
    blocks_txt = (f"undisturbed blocks only (other processes used < {BUSY_CORES} cores)"
                  if all(u == "undisturbed" for u in used)
                  else "all blocks where too few were undisturbed: the machine was busy")
    notes = (
        f"Embedding rows: a {cfg['num_rows']:,} x {cfg['width']} float32 table, {cfg['bags']:,} bags "
        f"x {cfg['bag_len']} lookups (int64), {cfg['batches']} index batches cycled; "
        f"unique rows per batch: " + ", ".join(
            f"{c['dist']} {c['unique_rows']:,.0f}" for c in data["cases"] if c["op"] == "forward")
        + f". CSR rows: a {cfg['csr_bags']:,} x {cfg['csr_cols']:,} float32 SciPy csr_array at "
        f"{100 * cfg['csr_density']:.1f} % density (int32 indices, SciPy's choice) times a "
        f"{cfg['csr_cols']:,} x {cfg['width']} float32 table. "
        "Backward: sparseopt returns the coalesced row-sparse gradient (unique rows ascending, "
        "summed values). torch's backward of `embedding_bag(sparse=True)` returns one "
        "gradient row per lookup, uncoalesced, and `.coalesce()` makes it the same result, so "
        "the main row compares against backward + coalesce and the row below it against the "
        "backward alone; the forward graph is built outside the timed region. SciPy's "
        "`x.T @ grad_out` returns the dense "
        f"{cfg['csr_cols']:,} x {cfg['width']} gradient. "
        f"ms: median (min–max) over interleaved blocks, {blocks_txt}. Speedup: median of the per-round "
        f"paired ratios competitor / sparseopt ({st} threads, or one), blocks of the same "
        f"round, undisturbed ones when enough. "
        "GB/s and % of copy bandwidth are for sparseopt (all threads) and count the bytes the "
        "call must move at the least (forward: the gathered rows, indices and output; "
        "backward: grad_out, indices and the touched rows written). The Zipf rows and the CSR "
        "table (25.6 MB) are mostly read from cache, which is how those reach the DRAM copy rate.")
    lines = [table, "", notes, "", harness.describe_machine(data["machine"], data["copy_bandwidth"])]
    loads = [x for c in data["cases"] for im in c["impls"].values()
             for x in im.get("block_other_cores", []) if x is not None]
    if loads:
        n_busy = sum(x >= BUSY_CORES for x in loads)
        line = (f"Other processes' CPU use during the timed blocks: mean {sum(loads) / len(loads):.2f}, "
                f"max {max(loads):.2f} cores (of {data['machine'].get('usable_cpus') or '?'}); "
                f"{n_busy} of {len(loads)} blocks disturbed.")
        if any(u != "undisturbed" for u in used):
            line = "**Warning: the machine was busy; numbers are noisy.** " + line
        lines += ["", line]
    if data["quick"]:
        lines.insert(0, "**Quick smoke run (few repetitions) -- not representative.**\n")
    return "\n".join(lines) + "\n"


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
