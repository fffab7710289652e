"""Half-precision embedding tables: does a bfloat16 table train as well as a float32 one?

The matrix factorisation of ``python -m sparseopt demo`` (a user table and an item table whose
dot products predict ratings; a synthetic rating log drawn from planted rank-8 factors with
Zipf item popularity and noise RMSE 0.1, from one seed: no data files) is trained with lazy
Adam and a cosine learning-rate decay, five ways:

    float32               float32 table, float32 state (the reference)
    bf16 nearest          bfloat16 table, float32 state, round to nearest
    bf16 stochastic       bfloat16 table, float32 state, stochastic rounding (the default)
    bf16 + bf16 state     bfloat16 table and state, stochastic rounding
    bf16 nearest + state  bfloat16 table and state, round to nearest

Each step's update is computed in float32 from the widened rows; only the stored rows differ.
As the learning rate decays, an update falls below half a bfloat16 unit in the last place
(2^-9 of the weight): rounding to nearest drops it, stochastic rounding keeps it on average.

    python examples/half_tables.py                   # about 3 minutes on 2 cores (3 seeds)
    python examples/half_tables.py --quick           # a smaller run, seconds (writes to a temp dir)
    python examples/half_tables.py --update-readme   # ... and rewrite its table in examples/README.md

Writes DIR/half_tables.md (the table), DIR/half_tables.png (training curves) and
DIR/half_tables.json (every number), DIR = examples/output/ unless --out says otherwise (a
--quick run writes to a temporary folder unless --out is given). Needs numpy, ml_dtypes
(``pip install "sparseopt[bf16]"``) and, for the plot, matplotlib.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sparseopt
from sparseopt.demo import _ratings
from sparseopt.optim import Adam

NAME = "half_tables"
REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "output"

FULL = dict(users=20_000, items=2_000, dim=16, ratings=1_000_000, epochs=8, batch=4096,
            lr=0.05, lr_min=1e-5)
QUICK = dict(users=5_000, items=1_000, dim=16, ratings=100_000, epochs=6, batch=2048,
             lr=0.05, lr_min=1e-5)

# name: (table dtype, state dtype, rounding)
RUNS = {
    "float32": ("float32", "float32", None),
    "bf16 nearest": ("bfloat16", "float32", "nearest"),
    "bf16 stochastic": ("bfloat16", "float32", "stochastic"),
    "bf16 + bf16 state": ("bfloat16", "bfloat16", "stochastic"),
    "bf16 nearest + state": ("bfloat16", "bfloat16", "nearest"),
}


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def _mse(user_table, item_table, users, items, ratings) -> float:
    pred = np.einsum("ij,ij->i", user_table[users].astype(np.float32), item_table[items].astype(np.float32))
    return float(np.mean((pred - ratings) ** 2))


def train(cfg, data, run_name, seed):
    table_dtype, state_dtype, rounding = RUNS[run_name]
    users, items, ratings, train_ids, test_ids = data
    rng = np.random.default_rng(seed + 1)  # the same start and batch order for every run
    start_u = (0.1 * rng.standard_normal((cfg["users"], cfg["dim"]))).astype(np.float32)
    start_i = (0.1 * rng.standard_normal((cfg["items"], cfg["dim"]))).astype(np.float32)
    tables = [start_u.astype(_dtype(table_dtype)), start_i.astype(_dtype(table_dtype))]
    half = {} if table_dtype == "float32" else dict(rounding=rounding, state_dtype=state_dtype, seed=seed)
    opts = [Adam(t, lr=cfg["lr"], **half) for t in tables]
    steps_per_epoch = -(-len(train_ids) // cfg["batch"])
    total = cfg["epochs"] * steps_per_epoch
    curve, step, seconds = [], 0, 0.0
    for epoch in range(cfg["epochs"]):
        order = rng.permutation(train_ids)
        for s in range(0, len(order), cfg["batch"]):
            lr = cfg["lr_min"] + 0.5 * (cfg["lr"] - cfg["lr_min"]) * (1 + np.cos(np.pi * step / total))
            b = order[s:s + cfg["batch"]]
            u, i = users[b], items[b]
            eu, ei = tables[0][u].astype(np.float32), tables[1][i].astype(np.float32)
            err = (np.einsum("ij,ij->i", eu, ei) - ratings[b]) * np.float32(2.0 / len(b))
            t0 = time.perf_counter()
            for opt, idx, g in ((opts[0], u, err[:, None] * ei), (opts[1], i, err[:, None] * eu)):
                opt.lr = lr
                opt.step(idx, np.ascontiguousarray(g, dtype=np.float32))
            seconds += time.perf_counter() - t0
            step += 1
        curve.append(_mse(*tables, users[train_ids], items[train_ids], ratings[train_ids]))
    bytes_per_row = cfg["dim"] * (_dtype(table_dtype).itemsize + 2 * _dtype(state_dtype).itemsize)
    # What any bfloat16 table pays for its precision alone: the float32 run's tables rounded to
    # bfloat16 once, at the end.
    rounded = [t.astype(_dtype("bfloat16")) for t in tables] if table_dtype == "float32" else None
    return {
        "train_mse": curve[-1],
        "test_rmse": float(np.sqrt(_mse(*tables, users[test_ids], items[test_ids], ratings[test_ids]))),
        "curve": curve,
        "bytes_per_row": bytes_per_row,
        "optimizer_seconds": seconds,
        **({"rounded_at_end": {
            "train_mse": _mse(*rounded, users[train_ids], items[train_ids], ratings[train_ids]),
            "test_rmse": float(np.sqrt(_mse(*rounded, users[test_ids], items[test_ids], ratings[test_ids])))}}
           if rounded else {}),
    }


# The runs repeated from other seeds (--seeds).
SEED_RUNS = ("float32", "bf16 nearest", "bf16 stochastic")


def _data(cfg, seed):
    """The synthetic rating log of one seed, split into train and held-out ids."""
    rng = np.random.default_rng(seed)
    users, items, ratings = _ratings(rng, cfg["users"], cfg["items"], cfg["ratings"], rank=8, noise=0.1)
    held_out = rng.random(cfg["ratings"]) < 0.05
    return users, items, ratings, np.flatnonzero(~held_out), np.flatnonzero(held_out)


def table(results, cfg) -> str:
    ref = results["runs"]["float32"]
    lines = ["| run | table | state | rounding | final train MSE | vs float32 | held-out RMSE | bytes per row (table + Adam state) |",
             "|:---|:---|:---|:---|---:|---:|---:|---:|"]
    for name, (t, s, rounding) in RUNS.items():
        r = results["runs"][name]
        rel = r["train_mse"] / ref["train_mse"] - 1
        lines.append(f"| {name} | {t} | {s} | {rounding or '-'} | {r['train_mse']:.5f} | {rel:+.2%} | "
                     f"{r['test_rmse']:.4f} | {r['bytes_per_row']} |")
        if "rounded_at_end" in r:
            e = r["rounded_at_end"]
            rel = e["train_mse"] / ref["train_mse"] - 1
            lines.append(f"| float32, rounded to bfloat16 once at the end | bfloat16 | - | nearest | "
                         f"{e['train_mse']:.5f} | {rel:+.2%} | {e['test_rmse']:.4f} | - |")
    seeds = results.get("seeds", {})
    if seeds:  # the same study from other seeds: how far the differences move with the data
        def spread(name):
            rels = [r[name] / r["float32"] - 1 for r in seeds.values()]
            return f"{np.mean(rels):+.2%} (from {min(rels):+.2%} to {max(rels):+.2%})"
        lines.append(f"\nFinal train MSE against float32 over seeds {', '.join(seeds)}: bf16 stochastic "
                     f"{spread('bf16 stochastic')}, bf16 nearest {spread('bf16 nearest')}.")
    notes = (f"\n{cfg['users']:,} users x {cfg['items']:,} items, {cfg['dim']}-dim rows, "
             f"{cfg['ratings']:,} synthetic ratings (5% held out; noise floor MSE 0.01), lazy Adam, "
             f"lr {cfg['lr']} cosine-decayed to {cfg['lr_min']} over {cfg['epochs']} epochs of batch "
             f"{cfg['batch']}; seed {results['seed']}. Written by `python examples/half_tables.py"
             f"{' --quick' if results['quick'] else ''}`.")
    return "\n".join(lines) + "\n" + notes + "\n"


def plot(results, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, rel) = plt.subplots(1, 2, figsize=(11, 4.2))
    ref = np.array(results["runs"]["float32"]["curve"])
    styles = {"float32": dict(color="black", lw=4, alpha=0.35)}
    for name, r in results["runs"].items():
        epochs = range(1, len(r["curve"]) + 1)
        style = styles.get(name, dict(lw=1.6))
        ax.plot(epochs, r["curve"], marker="o", ms=4, label=name, **style)
        rel.plot(epochs, 100 * (np.array(r["curve"]) / ref - 1), marker="o", ms=4, label=name, **style)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train MSE")
    ax.set_title("Matrix factorisation, lazy Adam")
    rel.axhline(1.0, color="grey", ls=":", lw=1)
    rel.set_xlabel("epoch")
    rel.set_ylabel("train MSE above the float32 run (%)")
    rel.set_title("bfloat16 tables against float32 (dotted: 1%)")
    rel.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def update_readme(markdown: str) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    import harness

    harness.splice_readme(NAME, markdown, REPO / "examples" / "README.md")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller run (seconds)")
    ap.add_argument("--out", type=Path, default=None, help="output folder (default examples/output/, "
                    "or a temporary folder with --quick)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=None,
                    help="also repeat the float32 and bfloat16 (stochastic, nearest) runs from this "
                         "many seeds in all, from --seed on (default 3, or 1 with --quick)")
    ap.add_argument("--update-readme", action="store_true",
                    help="rewrite the table in examples/README.md (full run only)")
    args = ap.parse_args(argv)
    if args.update_readme and args.quick:
        ap.error("--update-readme needs the full run (no --quick)")
    cfg = QUICK if args.quick else FULL
    out = args.out or (Path(tempfile.mkdtemp(prefix="half-tables-")) if args.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)

    results = {"name": NAME, "quick": args.quick, "seed": args.seed, "config": cfg,
               "sparseopt": sparseopt.__version__, "runs": {}}
    data = _data(cfg, args.seed)
    for name in RUNS:
        results["runs"][name] = r = train(cfg, data, name, args.seed)
        print(f"{name:>22}: train MSE {r['train_mse']:.5f}, held-out RMSE {r['test_rmse']:.4f}, "
              f"{r['bytes_per_row']} bytes/row, optimizer {r['optimizer_seconds']:.1f} s", flush=True)
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if seeds > 1:
        results["seeds"] = {str(args.seed): {k: results["runs"][k]["train_mse"] for k in SEED_RUNS}}
        for seed in range(args.seed + 1, args.seed + seeds):
            other = _data(cfg, seed)
            results["seeds"][str(seed)] = {k: train(cfg, other, k, seed)["train_mse"] for k in SEED_RUNS}
            print(f"seed {seed}: " + ", ".join(f"{k} {v:.5f}" for k, v in results["seeds"][str(seed)].items()),
                  flush=True)
    markdown = table(results, cfg)
    (out / f"{NAME}.md").write_text(markdown)
    (out / f"{NAME}.json").write_text(json.dumps(results, indent=1))
    if not plot(results, out / f"{NAME}.png"):
        print("matplotlib is not installed: no plot (pip install matplotlib)")
    print(markdown)
    print(f"wrote {out}/{NAME}.md, .json and .png")
    if args.update_readme:
        update_readme(markdown)
    return results


if __name__ == "__main__":
    main()
