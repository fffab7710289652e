"""Benchmark: sparseopt.topk against torch.topk and NumPy's argpartition.

Cases (random standard-normal float32 rows, top-k along the last axis, sorted output):

  * 4096 x 4096, k = 32 -- a large batch of long rows;
  * 50 x 500, k = 20 -- meProp's shape (batch 50, 500 hidden units), by value and by
    magnitude (meProp keeps the k largest |gradients|);
  * 4096 x 4096, k = 32 by magnitude.

Timed in the same process, interleaved block by block so that machine noise hits all of them
alike:

  * ``sparseopt.topk(x, k)`` with all threads (num_threads=0) and with num_threads=1;
  * ``torch.topk(t, k, dim=-1)`` on a tensor sharing x's memory, with
    ``torch.set_num_threads(2)``; by magnitude ``torch.topk(t.abs(), k)`` (torch has no
    magnitude option, so the abs is part of its cost);
  * NumPy: ``np.argpartition`` of the k best, then a sort of those k (``np.abs`` first by
    magnitude).

Each number is the median over blocks of the block's mean time per call (min--max in
brackets); blocks during which other processes kept >= 0.3 cores busy are set aside when there
are enough others (the machine is shared).  Before timing, sparseopt's values are checked
against torch's and NumPy's.

    python bench/bench_topk.py [--quick] [--no-write]
    python bench/run.py --only topk [--update-readme]
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "topk"
TORCH_THREADS = 2
BUSY_CORES = 0.3

# calls per block are chosen so that a block of the slowest side lasts about block_s
FULL = dict(blocks=9, max_rounds_factor=3, block_s=0.25, warmup=3)
QUICK = dict(blocks=2, max_rounds_factor=1, block_s=0.05, warmup=1)

CASES = [
    dict(key="large", label="4096 x 4096, k = 32", shape=(4096, 4096), k=32, magnitude=False),
    dict(key="meprop", label="50 x 500, k = 20 (meProp)", shape=(50, 500), k=20, magnitude=False),
    dict(key="meprop_abs", label="50 x 500, k = 20, by magnitude", shape=(50, 500), k=20,
         magnitude=True),
    dict(key="large_abs", label="4096 x 4096, k = 32, by magnitude", shape=(4096, 4096), k=32,
         magnitude=True),
]


def numpy_topk(x: np.ndarray, k: int, magnitude: bool):
    """The k largest (by |x| with magnitude) of each row, sorted descending: argpartition,
    then a sort of the k."""
    s = np.abs(x) if magnitude else x
    part = np.argpartition(-s, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(s, part, axis=-1), axis=-1, kind="stable")
    idx = np.take_along_axis(part, order, axis=-1)
    return np.take_along_axis(x, idx, axis=-1), idx


def make_impls(x: np.ndarray, k: int, magnitude: bool, have_so: bool, torch):
    impls = {}
    if have_so:
        import sparseopt
        impls["sparseopt"] = lambda: sparseopt.topk(x, k, magnitude=magnitude)
        impls["sparseopt_1t"] = lambda: sparseopt.topk(x, k, magnitude=magnitude, num_threads=1)
    if torch is not None:
        t = torch.from_numpy(x)
        if magnitude:
            impls["torch"] = lambda: torch.topk(t.abs(), k, dim=-1)
        else:
            impls["torch"] = lambda: torch.topk(t, k, dim=-1)
    impls["numpy"] = lambda: numpy_topk(x, k, magnitude)
    return impls


def check_agreement(x, k, magnitude, impls, torch) -> None:
    """sparseopt's values equal NumPy's and torch's (random normal data: the values are
    unique up to ties, which have equal values anyway)."""
    if "sparseopt" not in impls:
        return
    v, i = impls["sparseopt"]()
    nv, _ = numpy_topk(x, k, magnitude)
    s = np.abs if magnitude else (lambda a: a)
    if not np.array_equal(s(v), s(nv)):
        raise AssertionError("sparseopt.topk disagrees with NumPy")
    if not np.array_equal(v, np.take_along_axis(x, i, axis=-1)):
        raise AssertionError("sparseopt.topk values are not x[indices]")
    if torch is not None:
        tv, _ = impls["torch"]()
        if not np.array_equal(s(v), tv.numpy()):
            raise AssertionError("sparseopt.topk disagrees with torch.topk")


def time_case(impls: dict, cfg: dict) -> dict:
    # calls per block from a first timing of each side
    number = {}
    for name, fn in impls.items():
        t = harness.time_callable(fn, warmup=cfg["warmup"], repeat=3, number=1)
        number[name] = max(1, int(cfg["block_s"] / max(t["median"], 1e-7)))
    blocks = {n: [] for n in impls}
    other = {n: [] for n in impls}
    order = list(impls)

    def clean(name):
        return [b for b, o in zip(blocks[name], other[name]) if o is not None and o < BUSY_CORES]

    max_rounds = cfg["blocks"] * cfg["max_rounds_factor"]
    r = 0
    while r < max_rounds and (r < cfg["blocks"] or any(len(clean(n)) < cfg["blocks"] for n in order)):
        rot = order[r % len(order):] + order[:r % len(order)]
        for name in rot:
            mon = harness.CpuMonitor()
            t = harness.time_callable(impls[name], warmup=1, repeat=1, number=number[name])
            load = mon.read()
            blocks[name].append(t["median"])
            other[name].append(load["other_cores"] if load else None)
        r += 1
    out = {}
    for name in impls:
        good = clean(name)
        use_clean = len(good) >= cfg["blocks"] // 2 + 1
        chosen = good if use_clean else blocks[name]
        s = harness.summarize(chosen)
        s.update(calls_per_block=number[name], n_blocks_total=len(blocks[name]),
                 n_blocks_undisturbed=len(good),
                 blocks_used="undisturbed" if use_clean else "all (too few undisturbed)",
                 block_means_s=blocks[name], block_other_cores=other[name])
        out[name] = s
    return out


def run(quick: bool = False, seed: int = 0, bandwidth: dict | None = None,
        machine: dict | None = None) -> dict:
    cfg = dict(QUICK if quick else FULL)
    t_start = time.perf_counter()
    machine = machine or harness.machine_info()
    so_info = machine.get("sparseopt")
    have_so = so_info is not None and "error" not in so_info
    try:
        import torch
    except Exception:
        torch = None
    old_threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(TORCH_THREADS)
    rng = np.random.default_rng(seed)
    results = []
    try:
        for case in CASES:
            x = rng.standard_normal(case["shape"], dtype=np.float32)
            impls = make_impls(x, case["k"], case["magnitude"], have_so, torch)
            check_agreement(x, case["k"], case["magnitude"], impls, torch)
            harness.log(f"[{case['key']}] timing {', '.join(impls)} ...")
            res = time_case(impls, cfg)
            entry = dict(case, impls=res)
            for comp in ("torch", "numpy"):
                if comp in res and "sparseopt" in res:
                    entry[f"speedup_vs_{comp}"] = harness.paired_blocks(
                        res[comp]["block_means_s"], res["sparseopt"]["block_means_s"],
                        num_other=res[comp]["block_other_cores"],
                        den_other=res["sparseopt"]["block_other_cores"],
                        busy_cores=BUSY_CORES)["median"]
            harness.log(f"[{case['key']}] " + ", ".join(
                f"{n} {s['median'] * 1e3:.3f} ms" for n, s in res.items()))
            results.append(entry)
            del impls, x
            gc.collect()
    finally:
        if torch is not None:
            torch.set_num_threads(old_threads)
    data = {"name": NAME, "quick": quick, "config": cfg, "seed": seed,
            "torch_threads": TORCH_THREADS if torch is not None else None,
            "sparseopt_threads": so_info.get("max_threads") if have_so else None,
            "machine": machine, "copy_bandwidth": bandwidth, "cases": results,
            "elapsed_s": time.perf_counter() - t_start}
    data["markdown"] = to_markdown(data)
    return data


def _fmt(s: dict | None, unit: float) -> str:
    """median (min–max); a trailing * when the machine was too busy to keep only undisturbed
    blocks for this cell."""
    if s is None:
        return "n/a"
    d = 3 if unit == 1e3 else 1
    star = "" if s["blocks_used"] == "undisturbed" else "*"
    return f"{s['median'] * unit:.{d}f} ({s['min'] * unit:.{d}f}–{s['max'] * unit:.{d}f}){star}"


def to_markdown(data: dict) -> str:
    st = data["sparseopt_threads"] or "?"
    tt = data["torch_threads"] or "?"
    header = ["case", "unit", f"sparseopt ({st} thr)", "sparseopt (1 thr)",
              f"torch.topk ({tt} thr)", "NumPy argpartition + sort", "speedup vs torch",
              "speedup vs NumPy"]
    rows = []
    for c in data["cases"]:
        im = c["impls"]
        unit, scale = ("ms", 1e3) if c["shape"][0] * c["shape"][1] >= 1 << 20 else ("µs", 1e6)
        sp = lambda key: f"{c[key]:.1f}x" if key in c else "n/a"  # noqa: E731
        rows.append([c["label"], unit, _fmt(im.get("sparseopt"), scale),
                     _fmt(im.get("sparseopt_1t"), scale), _fmt(im.get("torch"), scale),
                     _fmt(im.get("numpy"), scale), sp("speedup_vs_torch"), sp("speedup_vs_numpy")])
    table = harness.markdown_table(header, rows)
    used = [(s["n_blocks_undisturbed"], s["blocks_used"]) for c in data["cases"]
            for s in c["impls"].values()]
    clean = [u[0] for u in used if u[1] == "undisturbed"]
    span = "" if not clean else (f"{min(clean)}" if min(clean) == max(clean)
                                 else f"{min(clean)}–{max(clean)}")
    blocks_txt = (f"{span} blocks per cell, those during which other processes used "
                  f"< {BUSY_CORES} cores" if clean else "")
    if len(clean) < len(used):
        blocks_txt += ("; " if clean else "") + (
            "* marks cells where too few blocks were undisturbed (the machine is shared), "
            "so all were used and the number is noisy")
    notes = (
        "Top-k along the last axis of standard-normal float32 rows, sorted output. Times: median "
        "(min–max) over interleaved blocks of the mean time per call "
        f"({blocks_txt}). Speedups: median of the per-round paired ratios torch or NumPy / "
        f"sparseopt ({st} thr), blocks of the same round (undisturbed ones when enough). "
        "By magnitude, torch runs `torch.topk(t.abs(), k)` and NumPy `np.abs` first (neither "
        "has the option). NumPy: `np.argpartition` then an argsort of the k.")
    lines = [table, "", notes, "", harness.describe_machine(data["machine"], data.get("copy_bandwidth"))]
    loads = [o for c in data["cases"] for s in c["impls"].values()
             for o in s["block_other_cores"] if o is not None]
    if loads:
        n_busy = sum(o >= BUSY_CORES for o in loads)
        lines += ["", f"Other processes' CPU use during the timed blocks: mean "
                      f"{sum(loads) / len(loads):.2f}, max {max(loads):.2f} cores; {n_busy} of "
                      f"{len(loads)} blocks disturbed."]
    if data["quick"]:
        lines.insert(0, "**Quick smoke run (few repetitions) -- not representative.**\n")
    return "\n".join(lines) + "\n"


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
