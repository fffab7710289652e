"""Benchmark: exact-mode steps against lazy-mode steps and against dense torch.optim.

Table: 1,000,000 x 64 float32, 16,384 row lookups per step (duplicates summed), uniform and
Zipf (1/r^1.1) indices, as in bench_sparse_adam.  For each optimizer family

  * Adam (lr 1e-3); Adam again with gradient values scaled by 1e-5, as small as a real
    model's (then sqrt(v) is near eps, where exact catch-up cannot always use its closed form);
    AdamW (lr 1e-3, weight_decay 1e-2); SGD with momentum 0.9 (lr 1e-2), without and with
    weight_decay 1e-4 (coupled: caught up with O(log gap) 2x2 products per row); RMSprop
    (lr 1e-2, momentum 0 and 0.9),

it times, in the same process and interleaved block by block:

  * sparseopt ``mode="lazy"`` and ``mode="exact"``: ``opt.step(indices, values)``;
  * the dense ``torch.optim`` optimizer of the same name (``fused=True`` where torch has it)
    on the same table: ``p.grad`` is a dense tensor holding the batch's rows and zeros
    elsewhere, built before the timed region (only ``optimizer.step()`` is timed);
  * for SGD with momentum, ``torch.optim.SGD`` with a sparse gradient (torch accepts it: its
    momentum buffer becomes a sparse tensor that grows by one batch of rows every step).

Exact mode's cost depends on how long a touched row has been left alone, so every optimizer
first takes ``warmup`` (200) steps, and the index batches are not cycled: 512 index batches are
drawn up front (more than a case uses), so every step sees fresh indices and the gaps between
a row's touches are those of the distribution (uniform: about 61 steps on average).  Gradient
values cycle through a smaller pool (their content does not change the cost).  After the timed
blocks, ``flush()`` of the exact optimizer (catching every row up) is timed once.

A family or mode that the installed sparseopt does not offer yet is skipped with a note.

    python bench/bench_exact.py [--quick] [--only adam sgd_momentum ...] [--no-write]
    python bench/run.py --only exact
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "exact"

# steps/blocks: sparseopt sides; dense_*: the dense torch side (tens of ms per step) and
# torch's sparse momentum SGD (slower still, and growing).
FULL = dict(num_rows=1_000_000, width=64, lookups=16_384, index_batches=512, value_batches=16,
            warmup=200, block_warmup=1, steps=20, blocks=5, dense_warmup=2, dense_steps=2,
            dense_blocks=4, max_rounds_factor=2, torch_sparse_warmup=30, torch_sparse_blocks=2,
            torch_sparse_warmup_cap_s=30.0, bw_reps=7)
QUICK = dict(num_rows=1_000_000, width=64, lookups=16_384, index_batches=64, value_batches=4,
             warmup=20, block_warmup=1, steps=5, blocks=2, dense_warmup=1, dense_steps=1,
             dense_blocks=1, max_rounds_factor=1, torch_sparse_warmup=10, torch_sparse_blocks=1,
             torch_sparse_warmup_cap_s=5.0, bw_reps=3)

ZIPF_S = 1.1
BUSY_CORES = 0.3  # a block during which other processes kept this many cores busy is disturbed

# name -> how to build each side.  "so": sparseopt class and keywords; "torch": dense
# torch.optim class, keywords, and the keyword that turns fusing on when torch has it.
FAMILIES = {
    "adam": dict(label="Adam", so="Adam", kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
                 torch="Adam", torch_kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
                 fused=True, state_arrays=2),
    # Gradients as small as a real model's (1e-5): sqrt(v) is then within a few hundred eps,
    # where exact Adam's catch-up cannot use its closed form for every element.
    "adam_small_grad": dict(label="Adam, gradient x 1e-5", so="Adam",
                            kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), torch="Adam",
                            torch_kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8), fused=True,
                            state_arrays=2, value_scale=1e-5),
    "adamw": dict(label="AdamW (wd 1e-2)", so="AdamW",
                  kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
                  torch="AdamW",
                  torch_kw=dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2),
                  fused=True, state_arrays=2),
    "sgd_momentum": dict(label="SGD, momentum 0.9", so="SGD", kw=dict(lr=1e-2, momentum=0.9),
                         torch="SGD", torch_kw=dict(lr=1e-2, momentum=0.9), fused=True,
                         torch_sparse=True, state_arrays=1),
    # Coupled weight decay: the catch-up multiplies O(log gap) 2x2 step-range products per
    # row. torch.optim.SGD fails on weight decay with a sparse gradient ("add(sparse, dense) is
    # not supported"), so there is no torch sparse side.
    "sgd_momentum_wd": dict(label="SGD, momentum 0.9, weight decay 1e-4", so="SGD",
                            kw=dict(lr=1e-2, momentum=0.9, weight_decay=1e-4), torch="SGD",
                            torch_kw=dict(lr=1e-2, momentum=0.9, weight_decay=1e-4),
                            fused=True, state_arrays=1),
    "rmsprop": dict(label="RMSprop", so="RMSprop", kw=dict(lr=1e-2, alpha=0.99, eps=1e-8),
                    torch="RMSprop", torch_kw=dict(lr=1e-2, alpha=0.99, eps=1e-8),
                    fused=False, state_arrays=1),
    "rmsprop_momentum": dict(label="RMSprop, momentum 0.9", so="RMSprop",
                             kw=dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9),
                             torch="RMSprop",
                             torch_kw=dict(lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.9),
                             fused=False, state_arrays=2),
}


# --------------------------------------------------------------------------------------------
# inputs
# --------------------------------------------------------------------------------------------
def make_batches(dist: str, cfg: dict, rng: np.random.Generator):
    """``index_batches`` int64 index arrays and ``value_batches`` float32 value arrays."""
    N, w, n = cfg["num_rows"], cfg["width"], cfg["lookups"]
    if dist == "zipf":
        cdf = np.cumsum(np.arange(1, N + 1, dtype=np.float64) ** -ZIPF_S)
        cdf /= cdf[-1]
        perm = rng.permutation(N).astype(np.int64)
    idx = []
    for _ in range(cfg["index_batches"]):
        if dist == "uniform":
            i = rng.integers(0, N, size=n, dtype=np.int64)
        elif dist == "zipf":
            i = perm[np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), N - 1)]
        else:
            raise ValueError(dist)
        idx.append(np.ascontiguousarray(i, dtype=np.int64))
    vals = [rng.standard_normal((n, w), dtype=np.float32) for _ in range(cfg["value_batches"])]
    return idx, vals


def gap_stats(idx_batches, first: int, last: int, num_rows: int) -> dict:
    """Steps since the previous touch of the unique rows touched by steps first..last-1
    (0-based); a row not touched before counts from the start and is also counted apart."""
    last_seen = np.full(num_rows, -1, dtype=np.int64)
    gaps, fresh = [], 0
    nb = len(idx_batches)
    for t in range(last):
        u = np.unique(idx_batches[t % nb])
        if t >= first:
            prev = last_seen[u]
            fresh += int(np.count_nonzero(prev < 0))
            gaps.append(np.where(prev < 0, t + 1, t - prev))
        last_seen[u] = t
    if not gaps:
        return {}
    g = np.concatenate(gaps)
    return {"mean": float(g.mean()), "median": float(np.median(g)),
            "p90": float(np.quantile(g, 0.9)), "max": int(g.max()),
            "first_touch_fraction": fresh / g.size}


# --------------------------------------------------------------------------------------------
# availability
# --------------------------------------------------------------------------------------------
def so_available(fam: dict, mode: str) -> str | None:
    """None when sparseopt offers this optimizer and mode, else why not."""
    try:
        import sparseopt
        cls = getattr(sparseopt.optim, fam["so"], None)
        if cls is None:
            return f"sparseopt.optim.{fam['so']} does not exist yet"
        opt = cls(np.zeros((4, 2), np.float32), **fam["kw"], mode=mode)
        opt.step(np.array([1], np.int64), np.ones((1, 2), np.float32))
        if mode == "exact":
            opt.flush()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return None


def flush_takes_indices(fam: dict) -> bool:
    import inspect
    import sparseopt
    return "indices" in inspect.signature(getattr(sparseopt.optim, fam["so"]).flush).parameters


def torch_dense_optimizer(fam: dict, params):
    """The dense torch.optim optimizer for ``fam``, its fastest CPU variant: fused where torch
    has one, else foreach; returns (optimizer, description)."""
    import torch
    cls = getattr(torch.optim, fam["torch"])
    for flag in (("fused",) if fam["fused"] else ()) + ("foreach",):
        try:
            opt = cls(params, **fam["torch_kw"], **{flag: True})
            return opt, f"torch.optim.{fam['torch']}({flag}=True)"
        except (TypeError, RuntimeError, ValueError):
            pass
    return cls(params, **fam["torch_kw"]), f"torch.optim.{fam['torch']}"


# --------------------------------------------------------------------------------------------
# implementations: dicts with step(i), prepare(i) or None, objs (kept alive), warmup/steps/blocks
# --------------------------------------------------------------------------------------------
def make_sparseopt(fam, mode, base, idx_b, val_b, cfg, flush_batch=False):
    """``flush_batch``: a training loop's step in exact mode, ``opt.flush(indices)`` (so the
    forward pass would read the batch's rows where the dense optimizer has them), then
    ``opt.step(indices, values)``."""
    import sparseopt
    param = harness.aligned_copy(base)
    opt = getattr(sparseopt.optim, fam["so"])(param, **fam["kw"], mode=mode)
    ni, nv = len(idx_b), len(val_b)

    if flush_batch:
        def step(i):
            idx = idx_b[i % ni]
            opt.flush(idx)
            opt.step(idx, val_b[i % nv])
    else:
        def step(i):
            opt.step(idx_b[i % ni], val_b[i % nv])

    return dict(step=step, prepare=None, opt=opt, objs=[param, opt], warmup=cfg["warmup"],
                steps=cfg["steps"], blocks=cfg["blocks"], block_warmup=cfg["block_warmup"])


def make_torch_dense(fam, base, idx_b, val_b, cfg):
    import torch
    p = torch.nn.Parameter(torch.from_numpy(base).clone())
    p.grad = torch.zeros_like(p)
    opt, desc = torch_dense_optimizer(fam, [p])
    idx_t = [torch.from_numpy(i) for i in idx_b]
    val_t = [torch.from_numpy(v) for v in val_b]
    ni, nv = len(idx_t), len(val_t)
    prev = [None]

    def prepare(i):  # untimed: the dense gradient holds this batch's rows, zeros elsewhere
        g = p.grad
        if prev[0] is not None:
            g.index_fill_(0, prev[0], 0.0)
        g.index_add_(0, idx_t[i % ni], val_t[i % nv])
        prev[0] = idx_t[i % ni]

    def step(i):
        opt.step()

    return dict(step=step, prepare=prepare, objs=[p, opt, idx_t, val_t], desc=desc,
                warmup=cfg["dense_warmup"], steps=cfg["dense_steps"],
                blocks=cfg["dense_blocks"], block_warmup=0)


def make_torch_sparse(fam, base, idx_b, val_b, cfg):
    import torch
    N, w = base.shape
    p = torch.nn.Parameter(torch.from_numpy(base).clone())
    opt = torch.optim.SGD([p], **fam["torch_kw"])
    idx_t = [torch.from_numpy(i).unsqueeze(0) for i in idx_b]
    val_t = [torch.from_numpy(v) for v in val_b]
    ni, nv = len(idx_t), len(val_t)

    def prepare(i):
        p.grad = torch.sparse_coo_tensor(idx_t[i % ni], val_t[i % nv], (N, w),
                                         check_invariants=False)

    def step(i):
        opt.step()

    return dict(step=step, prepare=prepare, objs=[p, opt, idx_t, val_t],
                desc="torch.optim.SGD, sparse gradient", warmup=cfg["torch_sparse_warmup"],
                warmup_cap_s=cfg["torch_sparse_warmup_cap_s"], steps=cfg["dense_steps"],
                blocks=cfg["torch_sparse_blocks"], block_warmup=0)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------
def warm_up(im: dict) -> tuple[int, float]:
    """Untimed warm-up steps (stopping early after warmup_cap_s); returns (steps, seconds)."""
    t0 = time.perf_counter()
    cap = im.get("warmup_cap_s")
    i = 0
    while i < im["warmup"]:
        if im["prepare"] is not None:
            im["prepare"](i)
        im["step"](i)
        i += 1
        if cap is not None and time.perf_counter() - t0 > cap:
            break
    return i, time.perf_counter() - t0


def paired(num: dict, den: dict) -> float:
    """The median of the per-round ratios num / den of two sides' interleaved blocks (as
    interleaved() returns them), over the rounds both ran, undisturbed ones when enough."""
    return harness.paired_blocks(
        num["block_means_ms"], den["block_means_ms"], num_other=num["block_other_cores"],
        den_other=den["block_other_cores"], num_rounds=num.get("block_rounds"),
        den_rounds=den.get("block_rounds"), busy_cores=BUSY_CORES)["median"]


def interleaved(impls: dict, counters: dict, cfg: dict, tag: str) -> dict:
    """Blocks of each implementation in rotating order until each has its number of
    undisturbed blocks (or max_rounds_factor times as many blocks in all)."""
    blocks = {n: [] for n in impls}
    rounds = {n: [] for n in impls}  # the round of each block, to pair sides by round
    other = {n: [] for n in impls}
    steal = {n: [] for n in impls}
    order = list(impls)

    def clean(n):
        return [t for t, o in zip(blocks[n], other[n]) if o is not None and o < BUSY_CORES]

    def wants(n):
        im = impls[n]
        return (len(blocks[n]) < im["blocks"] or len(clean(n)) < im["blocks"]) and \
            len(blocks[n]) < im["blocks"] * cfg["max_rounds_factor"]

    b = 0
    while any(wants(n) for n in order):
        rot = order[b % len(order):] + order[:b % len(order)]
        for n in rot:
            if not wants(n):
                continue
            im = impls[n]
            mon = harness.CpuMonitor()
            r = harness.time_steps(im["step"], prepare=im["prepare"], warmup=im["block_warmup"],
                                   steps=im["steps"], repeat=1, start=counters[n])
            counters[n] = r["next"]
            blocks[n].append(r["samples"][0])
            rounds[n].append(b)
            load = mon.read()
            other[n].append(load["other_cores"] if load else None)
            steal[n].append(load["steal_cores"] if load else None)
        b += 1
        harness.log(f"[{tag}] round {b}: " + ", ".join(
            f"{n} {blocks[n][-1] * 1e3:.2f} ms" for n in order if blocks[n]))
    out = {}
    for n in impls:
        good = clean(n)
        need = impls[n]["blocks"] // 2 + 1 if impls[n]["blocks"] > 1 else 1
        use_clean = len(good) >= need
        s = harness.summarize([x * 1e3 for x in (good if use_clean else blocks[n])])
        s["blocks_used"] = "undisturbed" if use_clean else "all (too few undisturbed)"
        s["n_blocks_total"] = len(blocks[n])
        s["n_blocks_undisturbed"] = len(good)
        s["steps_per_block"] = impls[n]["steps"]
        s["block_means_ms"] = [x * 1e3 for x in blocks[n]]
        s["block_rounds"] = rounds[n]
        s["block_other_cores"] = other[n]
        s["block_steal_cores"] = steal[n]
        out[n] = s
    return out


# --------------------------------------------------------------------------------------------
# driver
# --------------------------------------------------------------------------------------------
def run(quick: bool = False, seed: int = 0, bandwidth: dict | None = None,
        machine: dict | None = None, dists=("uniform", "zipf"), families=None) -> dict:
    cfg = dict(QUICK if quick else FULL)
    families = list(families or FAMILIES)
    t_start = time.perf_counter()
    machine = machine or harness.machine_info()
    if bandwidth is None:
        harness.log("measuring copy bandwidth ...")
        bandwidth = harness.copy_bandwidth(repeat=cfg["bw_reps"], threads=2)
    so_info = machine.get("sparseopt")
    have_so = so_info is not None and "error" not in so_info
    try:
        import torch
        torch_threads = torch.get_num_threads()
        have_torch = True
    except Exception:
        have_torch, torch_threads = False, None
    so_threads = (so_info.get("max_threads") or machine.get("usable_cpus")) if have_so else None

    # What can run: skip (with a note) what the installed sparseopt does not offer yet.
    avail = {}
    for f in families:
        fam = FAMILIES[f]
        lazy = so_available(fam, "lazy") if have_so else "sparseopt does not import"
        exact = so_available(fam, "exact") if have_so else "sparseopt does not import"
        avail[f] = {"lazy": lazy, "exact": exact}
        for mode, why in avail[f].items():
            if why:
                harness.log(f"[{f}] {mode} mode skipped: {why}")

    rng = np.random.default_rng(seed)
    N, w = cfg["num_rows"], cfg["width"]
    harness.log(f"allocating {N} x {w} float32 base table ...")
    base = rng.random((N, w), dtype=np.float32)
    base *= 0.02
    base -= 0.01

    cases = []
    for dist in dists:
        harness.log(f"[{dist}] generating {cfg['index_batches']} index batches ...")
        idx_b, vals_unit = make_batches(dist, cfg, rng)
        U = float(np.mean([np.unique(i).size for i in idx_b[:64]]))
        for f in families:
            fam = FAMILIES[f]
            tag = f"{dist}/{f}"
            case = {"dist": dist, "family": f, "label": fam["label"], "unique_rows_mean": U,
                    "skipped": {m: why for m, why in avail[f].items() if why}, "impls": {}}
            impls = {}
            if fam.get("value_scale"):
                val_b = [v * np.float32(fam["value_scale"]) for v in vals_unit]
            else:
                val_b = vals_unit
            if not avail[f]["lazy"]:
                impls["lazy"] = make_sparseopt(fam, "lazy", base, idx_b, val_b, cfg)
            if not avail[f]["exact"]:
                impls["exact"] = make_sparseopt(fam, "exact", base, idx_b, val_b, cfg)
                if flush_takes_indices(fam):
                    impls["exact_flush_batch"] = make_sparseopt(fam, "exact", base, idx_b,
                                                                val_b, cfg, flush_batch=True)
                else:
                    case["skipped"]["exact_flush_batch"] = "flush() takes no indices"
            if have_torch and impls:  # torch alone has no ratio to report
                try:
                    impls["torch_dense"] = make_torch_dense(fam, base, idx_b, val_b, cfg)
                    case["torch_dense_desc"] = impls["torch_dense"]["desc"]
                except Exception as e:
                    case["skipped"]["torch_dense"] = f"{type(e).__name__}: {e}"
                if fam.get("torch_sparse"):
                    impls["torch_sparse"] = make_torch_sparse(fam, base, idx_b, val_b, cfg)
            if not impls:
                cases.append(case)
                continue
            counters, warm = {}, {}
            for n, im in impls.items():
                try:
                    steps, secs = warm_up(im)
                except Exception as e:  # e.g. torch refusing a sparse gradient
                    harness.log(f"[{tag}] {n} failed in warm-up: {e!r}; skipped")
                    case["skipped"][n] = f"{type(e).__name__}: {e}"
                    continue
                counters[n], warm[n] = steps, {"steps": steps, "seconds": secs}
                harness.log(f"[{tag}] warm-up {n}: {steps} steps, {secs:.2f} s")
            impls = {n: im for n, im in impls.items() if n in counters}
            case["warmup"] = warm
            stats = interleaved(impls, counters, cfg, tag)
            for n, s in stats.items():
                s["steps_before_timing"] = warm[n]["steps"]
                s["steps_at_end"] = counters[n]
                case["impls"][n] = s
            if "exact" in impls:
                opt = impls["exact"]["opt"]
                t0 = time.perf_counter()
                opt.flush()
                case["flush_ms"] = (time.perf_counter() - t0) * 1e3
                t0 = time.perf_counter()
                opt.flush()
                case["flush_again_ms"] = (time.perf_counter() - t0) * 1e3
                case["gaps"] = gap_stats(idx_b, warm["exact"]["steps"], counters["exact"], N)
            im = case["impls"]
            if "lazy" in im and "exact" in im:
                case["exact_over_lazy"] = paired(im["exact"], im["lazy"])
                case["exact_extra_ms"] = im["exact"]["median"] - im["lazy"]["median"]
            if "exact_flush_batch" in im and "lazy" in im:
                case["exact_flush_batch_over_lazy"] = paired(im["exact_flush_batch"], im["lazy"])
            if "torch_dense" in im and "exact" in im:
                case["dense_over_exact"] = paired(im["torch_dense"], im["exact"])
            if "torch_dense" in im and "lazy" in im:
                case["dense_over_lazy"] = paired(im["torch_dense"], im["lazy"])
            if "torch_sparse" in im and "exact" in im:
                case["torch_sparse_over_exact"] = paired(im["torch_sparse"], im["exact"])
            harness.log(f"[{tag}] " + ", ".join(f"{n} {s['median']:.2f} ms" for n, s in im.items())
                        + (f", flush {case['flush_ms']:.1f} ms" if "flush_ms" in case else ""))
            cases.append(case)
            del impls, stats, val_b
            gc.collect()
        del idx_b, vals_unit
        gc.collect()
    del base
    gc.collect()

    data = {"name": NAME, "quick": quick, "config": cfg, "zipf_exponent": ZIPF_S, "seed": seed,
            "families": {f: {k: v for k, v in FAMILIES[f].items()} for f in families},
            "sparseopt_threads": so_threads, "torch_threads": torch_threads,
            "machine": machine, "copy_bandwidth": bandwidth, "cases": cases,
            "elapsed_s": time.perf_counter() - t_start}
    data["markdown"] = to_markdown(data)
    return data


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _ms(s: dict | None, digits: int = 2) -> str:
    if s is None:
        return "n/a"
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _ratio(x: float | None, target: float | None = None, at_most: bool = True) -> str:
    if x is None:
        return "n/a"
    s = f"{x:.1f}x" if x >= 10 else f"{x:.2f}x"
    if target is not None and not (x <= target if at_most else x >= target):
        s += " (missed)"
    return s


def to_markdown(data: dict) -> str:
    cfg = data["config"]
    st = data["sparseopt_threads"] or "?"
    tt = data["torch_threads"] or "?"
    header = ["optimizer", "indices", "unique rows/step", f"lazy ms ({st} thr)",
              f"exact ms ({st} thr)", "exact / lazy (≤ 2x)", "exact + flush(batch) ms",
              "exact + flush(batch) / lazy", f"torch dense ms ({tt} thr)",
              "dense / exact", "dense / lazy", "torch sparse ms", "flush() ms (once)"]
    rows, notes = [], []
    met = {"lazy": [0, 0]}
    for c in data["cases"]:
        im = c["impls"]
        dist = "uniform" if c["dist"] == "uniform" else f"Zipf (s={data['zipf_exponent']})"
        lz, ex = im.get("lazy"), im.get("exact")
        td, ts = im.get("torch_dense"), im.get("torch_sparse")
        efb = im.get("exact_flush_batch")
        r1, r2 = c.get("exact_over_lazy"), c.get("dense_over_exact")
        if r1 is not None:
            met["lazy"][0] += r1 <= 2.0
            met["lazy"][1] += 1
        ts_txt = f"{_ms(ts, 1)} after {ts['steps_before_timing']} steps" if ts else ""
        rows.append([c["label"], dist, f"{c['unique_rows_mean']:,.0f}",
                     _ms(lz) if lz else "skipped", _ms(ex) if ex else "skipped",
                     _ratio(r1, 2.0, True), _ms(efb) if efb else "n/a",
                     _ratio(c.get("exact_flush_batch_over_lazy")),
                     _ms(td, 1) if td else "n/a", _ratio(r2),
                     _ratio(c.get("dense_over_lazy")), ts_txt,
                     f"{c['flush_ms']:.0f}" if "flush_ms" in c else "n/a"])
        for mode, why in c.get("skipped", {}).items():
            notes.append(f"{c['label']} ({c['dist']}): {mode} skipped — {why}")
    table = harness.markdown_table(header, rows)

    gaps = [(c["dist"], c["gaps"]) for c in data["cases"] if "gaps" in c]
    gap_txt = ""
    if gaps:
        g = {}
        for dist, s in gaps:
            g.setdefault(dist, s)
        gap_txt = (" Rows a timed step touched had last been touched " + "; ".join(
            f"{'uniform' if d == 'uniform' else 'Zipf'}: {s['median']:.0f} steps earlier "
            f"(median; mean {s['mean']:.0f}, 90th percentile {s['p90']:.0f})"
            for d, s in g.items()) + ".")
    dense_descs = sorted({c["torch_dense_desc"] for c in data["cases"] if "torch_dense_desc" in c})
    used = [s["blocks_used"] for c in data["cases"] for s in c["impls"].values()]
    blocks_txt = ("undisturbed blocks only (other processes used < "
                  f"{BUSY_CORES} cores)" if used and all(u == "undisturbed" for u in used)
                  else "all blocks where too few were undisturbed")
    cost = []
    for c in data["cases"]:
        if "exact_extra_ms" in c:
            cost.append(f"{c['label']} ({'uniform' if c['dist'] == 'uniform' else 'Zipf'}) "
                        f"{c['exact_extra_ms'] * 1e6 / c['unique_rows_mean']:+.0f}")
    caption = (
        f"One optimizer step on a {cfg['num_rows']:,} x {cfg['width']} float32 table, "
        f"{cfg['lookups']:,} lookups/step (duplicates summed). "
        f"**What exact costs per step**: the lazy step's work on the touched rows plus catching "
        f"each touched row up over the steps since it was last touched (closed-form sums "
        f"shared by all rows, plus a bounded per-element loop where the closed form does not "
        f"reach float tolerance; SGD with weight decay: a 2x2 matrix per row, the product of "
        f"O(log gap) recorded step-range products) and a per-row `last_step` read and write; "
        f"never work on "
        f"untouched rows. Measured extra time over lazy, in ns per unique touched row: "
        + (", ".join(cost) if cost else "n/a") + ". "
        f"exact + flush(batch): `opt.flush(indices)` then `opt.step(indices, values)`, what "
        f"a training loop does so that its forward pass reads the batch's rows where the dense "
        f"optimizer has them (the step's own catch-up is then already done). "
        f"Every optimizer first took {cfg['warmup']} untimed steps so that rows have realistic "
        f"gaps; {cfg['index_batches']} index batches are drawn up front and not reused within "
        f"a case, so every step sees fresh indices.{gap_txt} "
        f"ms/step: median (min–max) over interleaved blocks ({cfg['blocks']} blocks of "
        f"{cfg['steps']} steps for sparseopt; {cfg['dense_blocks']} blocks of "
        f"{cfg['dense_steps']} steps for torch; {blocks_txt}). "
        f"torch dense: " + (", ".join(dense_descs) or "n/a") + " on the same table with a dense "
        f"gradient (the batch's rows, zeros elsewhere, built outside the timed region; only "
        f"`optimizer.step()` is timed). Ratios (exact / lazy, dense / exact, ...): the median of "
        f"the per-round paired ratios of the two sides' blocks (blocks of the same round, "
        f"undisturbed ones when enough), which cancels the shared host's drift. "
        f"dense / lazy: the same ratio for lazy mode, the ceiling "
        f"that exact mode's ratio approaches as its extra cost goes to zero. "
        f"torch sparse: `torch.optim.SGD(momentum=0.9)` given the sparse gradient; its momentum "
        f"buffer is an uncoalesced sparse tensor that grows by one batch every step, so its step "
        f"time grows with the step count (timed after {cfg['torch_sparse_warmup']} steps). "
        f"flush(): one call after the timed steps, catching every row of the table up. "
        f"Target: exact / lazy ≤ 2x (met in {met['lazy'][0]} of {met['lazy'][1]} rows). "
        f"dense / exact has no target: where dense fused Adam runs at memory bandwidth it is "
        f"capped by dense / lazy, and it grows with the table; what exact mode promises, a "
        f"step that costs what the touched rows cost whatever the table's size, is measured "
        f"by the size curve (`bench_size_curve.py`).")
    lines = [table, "", caption, "",
             harness.describe_machine(data["machine"], data["copy_bandwidth"])]
    loads = [x for c in data["cases"] for s in c["impls"].values()
             for x in s.get("block_other_cores", []) if x is not None]
    if loads:
        n_busy = sum(x >= BUSY_CORES for x in loads)
        line = (f"Other processes' CPU use during the timed blocks: "
                f"mean {sum(loads) / len(loads):.2f}, "
                f"max {max(loads):.2f} cores (of {data['machine'].get('usable_cpus') or '?'}); "
                f"{n_busy} of {len(loads)} blocks disturbed (set aside).")
        if any(u != "undisturbed" for u in used):
            line = ("**Warning: the machine was busy; numbers are noisy.** "
                    + line.replace("(set aside)", "(kept where too few were undisturbed)"))
        lines += ["", line]
    if notes:
        lines += ["", "Skipped: " + "; ".join(notes) + "."]
    if data["quick"]:
        lines.insert(0, "**Quick smoke run (few repetitions) -- not representative.**\n")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run, few repetitions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="+", choices=sorted(FAMILIES), metavar="FAMILY",
                    help=f"only these optimizer families ({', '.join(FAMILIES)})")
    ap.add_argument("--dists", nargs="+", choices=("uniform", "zipf"), default=("uniform", "zipf"))
    ap.add_argument("--no-write", action="store_true",
                    help="print only, do not write bench/results/")
    args = ap.parse_args(argv)
    data = run(quick=args.quick, seed=args.seed, families=args.only, dists=tuple(args.dists))
    print(data["markdown"])
    if not args.no_write:
        out = harness.RESULTS_DIR / "quick" if args.quick else harness.RESULTS_DIR
        for p in harness.write_results(NAME, data, data["markdown"], out):
            harness.log(f"wrote {p}")


if __name__ == "__main__":
    main()
