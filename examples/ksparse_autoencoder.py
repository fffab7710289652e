#!/usr/bin/env python
"""k-sparse autoencoder on MNIST: Adam on sparse representations, and gradient-norm clipping.

A k-sparse autoencoder (Makhzani and Frey, "k-Sparse Autoencoders", 2013) with a tied decoder:
``h = W x + b``, keep the k largest of the 1,000 hidden activations of each example (the code
``z``, found with ``sparseopt.topk``), ``x_hat = W.T z + c``, loss ``0.5 ||x_hat - x||^2`` per
example. Only the rows of W (and entries of b) of the active units get a gradient, so each step
hands the optimizer a row-sparse gradient:

* decoder ``x_hat``: ``sparseopt.gather_sum`` (an EmbeddingBag over W's rows, weighted by z);
* W's gradient, encoder and decoder terms together: one ``sparseopt.gather_sum_backward`` over
  the active (example, unit) pairs -- coalesced ``(rows, values)``;
* the code gradient ``g_z = g_xhat . W[unit]`` is taken at the active pairs only (the top-k
  mask applied after the gather, by construction).

A report on TensorFlow's Adam/LazyAdam with this model (see issue 20) found: (1) Adam reacts
poorly to learning-rate changes when gradients are sparse; (2) LazyAdam trained faster but
classified no better; (3) lifetime sparsity made every unit active in each batch, so the sparse
update turned dense; (4) re-applying the top-k mask after the gather was needed for correct
outputs. This study measures each, for dense Adam (every row stepped with its zero-or-not
gradient: torch.optim.Adam), lazy Adam (SparseAdam/LazyAdam), exact Adam (dense Adam's result, stepping the touched rows;
flushed before each forward, because the encoder's forward reads every row) and Adagrad as a
baseline: test reconstruction error, linear-probe
accuracy on the codes, an lr sweep, a x10 lr change mid-run, time per epoch, rows touched per
step with and without lifetime sparsity, gradient-norm curves (``sparseopt.grad_norm``) and one
run clipped with ``sparseopt.clip_grad_norm``.

    python examples/ksparse_autoencoder.py                  # the full study (about 12 min on 2 shared cores)
    python examples/ksparse_autoencoder.py --update-readme  # ... and rewrite its tables in README.md and docs/ksparse.md
    python examples/ksparse_autoencoder.py --tables-from examples/output/ksparse_autoencoder.json --update-readme
                                                            # those tables from a saved run, without training
    python examples/ksparse_autoencoder.py --quick          # a smoke run (< 1 min), into a temp folder

Writes OUT/ksparse_autoencoder.{json,md,png}; OUT = examples/output/ for the full run, a new
temporary folder for --quick, unless --out is given. Data: MNIST IDX files from --data or
../shared/data/mnist; without them scikit-learn's 8x8 digits (clearly labelled, not the task).
Needs numpy and sparseopt; matplotlib for the plot (skipped with a note without it). Seeded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import sparseopt
from sparseopt.optim import Adagrad, Adam

sys.path.insert(0, str(Path(__file__).resolve().parent))
from meprop_mnist import load_data  # noqa: E402  (the same MNIST reader and fallback)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = Path(__file__).resolve().parent / "output"
DOCS = REPO / "docs" / "ksparse.md"
NAME = "ksparse_autoencoder"

# name: (optimizer class, mode, steps every row (dense) or only the touched ones)
OPTIMIZERS = {
    # every row stepped every step: torch.optim.Adam (lazy mode is SparseAdam, whose eps sits
    # before the bias correction, so it is not Adam even on all rows)
    "dense Adam": (Adam, "exact", True),
    "lazy Adam": (Adam, "lazy", False),
    "exact Adam": (Adam, "exact", False),
    "Adagrad": (Adagrad, None, False),    # a zero gradient leaves an Adagrad row as it is
}
ADAM_NAMES = ("dense Adam", "lazy Adam", "exact Adam")


class KSparseAE:
    """Tied k-sparse autoencoder with a sparseopt optimizer per parameter."""

    def __init__(self, dim, hidden, k, optimizer, lr, seed, *, lifetime=0.0, clip=None):
        rng = np.random.default_rng(seed)  # the same initial weights for every run
        self.W = (0.01 * rng.standard_normal((hidden, dim))).astype(np.float32)
        self.b = np.zeros(hidden, np.float32)
        self.c = np.zeros(dim, np.float32)
        self.k, self.lifetime, self.clip = k, lifetime, clip
        cls, mode, self.dense = OPTIMIZERS[optimizer]
        extra = {} if mode is None else {"mode": mode}
        self.opts = [cls(p, lr=lr, **extra) for p in (self.W, self.b, self.c)]
        self.all_units = np.arange(hidden, dtype=np.int64)
        self.all_pixels = np.arange(dim, dtype=np.int64)

    def set_lr(self, lr):
        for opt in self.opts:
            opt.lr = lr

    def encode(self, x):
        """Active pairs as bags: (indptr, units, code values), one bag per example."""
        h = x @ self.W.T
        h += self.b
        values, units = sparseopt.topk(h, self.k)
        if self.lifetime == 0.0:
            indptr = np.arange(0, units.size + 1, self.k, dtype=np.int64)
            return indptr, units.reshape(-1), values.reshape(-1)
        # lifetime sparsity: each unit also keeps its top ceil(lifetime * batch) examples
        mask = np.zeros(h.shape, bool)
        mask[np.arange(len(h))[:, None], units] = True
        per_unit = max(1, math.ceil(self.lifetime * len(h)))
        _, examples = sparseopt.topk(np.ascontiguousarray(h.T), per_unit)
        mask[examples, self.all_units[:, None]] = True
        rows, cols = np.nonzero(mask)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=len(h)))]).astype(np.int64)
        return indptr, cols.astype(np.int64), np.ascontiguousarray(h[rows, cols])

    def decode(self, indptr, units, values):
        x_hat = sparseopt.gather_sum(self.W, indptr, units, values)
        x_hat += self.c
        return x_hat

    def grads(self, x):
        """Loss and row-sparse gradients [(W rows, values), (b units, values), c] of one batch."""
        indptr, units, values = self.encode(x)
        residual = self.decode(indptr, units, values) - x
        loss = 0.5 * float(np.einsum("bd,bd->", residual, residual)) / len(x)
        g_x_hat = residual / np.float32(len(x))
        bag = np.repeat(np.arange(len(x)), np.diff(indptr))
        # the code gradient at the active pairs only: the top-k mask applied after the gather
        g_z = np.einsum("pd,pd->p", self.W[units], g_x_hat[bag])
        # W's gradient: decoder term z * g_xhat, encoder term g_z * x, in one coalesced pass
        n = len(units)
        both = sparseopt.gather_sum_backward(
            np.concatenate([g_x_hat, x]), np.concatenate([indptr, indptr[1:] + n]),
            np.concatenate([units, units]), np.concatenate([values, g_z]), num_rows=len(self.W))
        return loss, [both, (units, g_z), g_x_hat.sum(0)], units

    def step(self, grads):
        (w_rows, w_values), (units, g_b), g_c = grads
        if self.dense:
            g_w = np.zeros_like(self.W)
            g_w[w_rows] = w_values
            self.opts[0].step(self.all_units, g_w)
            self.opts[1].step(self.all_units, np.bincount(units, g_b, len(self.b)).astype(np.float32))
        else:
            self.opts[0].step(w_rows, w_values)
            self.opts[1].step(units, g_b)
        self.opts[2].step(self.all_pixels, g_c)

    def flush(self):
        for opt in self.opts:
            if opt.exact:
                opt.flush()

    def codes(self, x, batch=1000):
        """Dense (n, hidden) codes and the test reconstruction error (mean squared, per pixel)."""
        z = np.zeros((len(x), len(self.W)), np.float32)
        sq = 0.0
        for s in range(0, len(x), batch):
            xb = x[s:s + batch]
            indptr, units, values = self.encode(xb)
            bag = np.repeat(np.arange(len(xb)), np.diff(indptr))
            z[s + bag, units] = values
            r = self.decode(indptr, units, values) - xb
            sq += float(np.einsum("bd,bd->", r, r))
        return z, sq / x.size


def train(data, cfg, optimizer, lr, steps, *, lr_change=None, lifetime=0.0, clip=None, seed=1):
    """One run: the per-step loss, grad norm and touched-row fraction, and the wall time."""
    model = KSparseAE(data["x_train"].shape[1], cfg.hidden, cfg.k, optimizer, lr, seed,
                      lifetime=lifetime, clip=clip)
    rng = np.random.default_rng(seed + 1)  # the same batches for every run
    n = len(data["x_train"])
    order = rng.permutation(n)
    losses, norms, touched, clipped = [], [], [], 0
    elapsed = 0.0
    for step in range(steps):
        if lr_change is not None and step == steps // 2:
            model.set_lr(lr * lr_change)
        start = (step * cfg.batch) % (n - cfg.batch + 1)
        x = data["x_train"][order[start:start + cfg.batch]]
        t0 = time.perf_counter()
        # exact mode catches untouched rows up when they are next touched; the forward reads
        # every row, so they are brought up to date first (or it would be lazy Adam's forward)
        model.flush()
        loss, grads, units = model.grads(x)
        norm = sparseopt.grad_norm(grads)
        if clip is not None:
            sparseopt.clip_grad_norm(grads, clip)
            clipped += norm > clip
        model.step(grads)
        elapsed += time.perf_counter() - t0
        losses.append(loss)
        norms.append(norm)
        touched.append(len(grads[0][0]) / cfg.hidden)
    model.flush()
    return model, dict(loss=losses, grad_norm=norms, touched=touched,
                       s_per_epoch=elapsed / steps * n / cfg.batch,
                       clipped_fraction=clipped / steps if clip is not None else None)


def probe_accuracy(z_train, y_train, z_test, y_test, epochs, seed=1):
    """Logistic regression (softmax) on the codes, minibatch Adam; test accuracy in %."""
    rng = np.random.default_rng(seed)
    V = np.zeros((z_train.shape[1] + 1, 10), np.float32)  # last row: the bias
    opt = Adam(V, lr=1e-3)
    rows = np.arange(len(V), dtype=np.int64)
    ones = np.ones((len(z_train), 1), np.float32)
    zt = np.hstack([z_train, ones])
    for _ in range(epochs):
        shuffled = rng.permutation(len(zt))
        for s in range(0, len(zt), 200):
            pick = shuffled[s:s + 200]
            logits = zt[pick] @ V
            logits -= logits.max(1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(1, keepdims=True)
            p[np.arange(len(p)), y_train[pick]] -= 1
            opt.step(rows, (zt[pick].T @ p / np.float32(len(p))).astype(np.float32))
    pred = np.argmax(np.hstack([z_test, np.ones((len(z_test), 1), np.float32)]) @ V, 1)
    return 100.0 * float(np.mean(pred == y_test))


def mean(xs):
    return float(np.mean(xs)) if len(xs) else float("nan")


def study(data, cfg):
    x_test = data["x_test"]
    probe_n = min(cfg.probe_train, len(data["x_train"]))
    results = {"main": {}, "sweep": {}, "lr_change": {}}
    curves = {}
    for name in OPTIMIZERS:
        lr = cfg.lr if name != "Adagrad" else cfg.adagrad_lr
        model, run = train(data, cfg, name, lr, cfg.steps)
        z_tr, _ = model.codes(data["x_train"][:probe_n])
        z_te, err = model.codes(x_test)
        acc = probe_accuracy(z_tr, data["y_train"][:probe_n], z_te, data["y_test"], cfg.probe_epochs)
        results["main"][name] = dict(lr=lr, test_mse=err, probe_acc=acc, s_per_epoch=run["s_per_epoch"],
                                     touched=mean(run["touched"]),
                                     final_train_loss=mean(run["loss"][-50:]),
                                     median_grad_norm=float(np.median(run["grad_norm"])))
        curves[name] = run
        if name == "dense Adam":
            dense_W = model.W.copy()
        if name == "exact Adam":
            results["exact_vs_dense_max_abs_W"] = float(np.max(np.abs(model.W - dense_W)))
        print(f"{name:10s} lr {lr:g}: test mse {err:.5f}, probe {acc:.2f} %, "
              f"{run['s_per_epoch']:.1f} s/epoch, rows touched {mean(run['touched']):.1%}", flush=True)

    # lifetime sparsity: how many rows does a step touch then?
    _, run = train(data, cfg, "exact Adam", cfg.lr, cfg.aux_steps, lifetime=cfg.lifetime)
    results["lifetime"] = dict(fraction=cfg.lifetime, touched=mean(run["touched"]),
                               touched_min=float(np.min(run["touched"])),
                               s_per_epoch=run["s_per_epoch"])
    curves["lifetime"] = run
    print(f"lifetime {cfg.lifetime}: rows touched {mean(run['touched']):.1%} "
          f"(min {np.min(run['touched']):.1%})", flush=True)

    # one clipped run, at half the median norm of the unclipped exact-Adam run
    max_norm = 0.5 * results["main"]["exact Adam"]["median_grad_norm"]
    model, run = train(data, cfg, "exact Adam", cfg.lr, cfg.steps, clip=max_norm)
    _, err = model.codes(x_test)
    results["clipped"] = dict(max_norm=max_norm, test_mse=err, clipped_fraction=run["clipped_fraction"],
                              final_train_loss=mean(run["loss"][-50:]))
    curves["clipped"] = run
    print(f"clipped at {max_norm:.4g}: test mse {err:.5f}, {run['clipped_fraction']:.0%} of steps clipped",
          flush=True)

    x_small = x_test[:cfg.eval_n]
    for name in ADAM_NAMES:
        for lr in cfg.sweep_lrs:
            model, run = train(data, cfg, name, lr, cfg.aux_steps)
            results["sweep"][f"{name} @ {lr:g}"] = dict(optimizer=name, lr=lr,
                                                        test_mse=model.codes(x_small)[1])
        for factor in (10.0, 0.1):
            model, run = train(data, cfg, name, cfg.lr, cfg.aux_steps, lr_change=factor)
            half, w = cfg.aux_steps // 2, max(5, cfg.aux_steps // 10)
            before, after = mean(run["loss"][half - w:half]), mean(run["loss"][-w:])
            results["lr_change"][f"{name} x{factor:g}"] = dict(
                optimizer=name, factor=factor, loss_before=before, loss_end=after,
                response=after / before, test_mse=model.codes(x_small)[1])
            curves[f"{name} x{factor:g}"] = run
        print(f"{name}: sweep and lr changes done", flush=True)
    return results, curves


def observations(r):
    """The report's four claims beside the measured numbers."""
    main, change = r["main"], r["lr_change"]
    resp = {n: (change[f"{n} x10"]["response"], change[f"{n} x0.1"]["response"]) for n in ADAM_NAMES}
    lazy_react = abs(math.log(resp["lazy Adam"][0])) + abs(math.log(resp["lazy Adam"][1]))
    dense_react = abs(math.log(resp["dense Adam"][0])) + abs(math.log(resp["dense Adam"][1]))
    faster = main["lazy Adam"]["s_per_epoch"] < main["dense Adam"]["s_per_epoch"]
    no_better = main["lazy Adam"]["probe_acc"] <= max(main["dense Adam"]["probe_acc"],
                                                      main["exact Adam"]["probe_acc"]) + 0.5
    return [
        ("(1) Adam reacts poorly to lr changes with sparse gradients",
         "loss(end)/loss(at change), x10 / x0.1: " + "; ".join(
             f"{n} {a:.3f} / {b:.3f}" for n, (a, b) in resp.items()),
         "not confirmed" if abs(lazy_react - dense_react) < 0.25 * max(dense_react, 1e-9)
         else "confirmed for lazy Adam only" if lazy_react < dense_react else "not confirmed"),
        ("(2) LazyAdam trains faster but classifies no better",
         f"s/epoch lazy {main['lazy Adam']['s_per_epoch']:.1f}, dense {main['dense Adam']['s_per_epoch']:.1f}, "
         f"exact {main['exact Adam']['s_per_epoch']:.1f}; probe acc lazy {main['lazy Adam']['probe_acc']:.2f}, "
         f"dense {main['dense Adam']['probe_acc']:.2f}, exact {main['exact Adam']['probe_acc']:.2f} %",
         "confirmed" if faster and no_better else "not confirmed"),
        ("(3) lifetime sparsity makes every unit active in each batch",
         f"rows touched per step: {main['exact Adam']['touched']:.1%} without, "
         f"{r['lifetime']['touched']:.1%} with lifetime {r['lifetime']['fraction']}",
         "confirmed" if r["lifetime"]["touched_min"] >= 0.999 else "not confirmed"),
        ("(4) the top-k mask must be re-applied after the gather",
         f"encoder gradient without the mask: relative error {r['unmasked_rel_error']:.3f}",
         "confirmed" if r["unmasked_rel_error"] > 1e-3 else "not confirmed"),
    ]


def unmasked_error(data, cfg):
    """Observation (4): W's gradient with g_z taken at every unit (no mask after the gather)
    against the masked one, on one batch."""
    model = KSparseAE(data["x_train"].shape[1], cfg.hidden, cfg.k, "exact Adam", cfg.lr, 1)
    x = data["x_train"][:cfg.batch]
    _, grads, _ = model.grads(x)
    masked = np.zeros_like(model.W)
    masked[grads[0][0]] = grads[0][1]
    indptr, units, values = model.encode(x)
    g_x_hat = (model.decode(indptr, units, values) - x) / np.float32(len(x))
    z = np.zeros((len(x), len(model.W)), np.float32)
    z[np.repeat(np.arange(len(x)), np.diff(indptr)), units] = values
    unmasked = z.T @ g_x_hat + (g_x_hat @ model.W.T).T @ x  # every unit's code gradient kept
    return float(np.linalg.norm(unmasked - masked) / np.linalg.norm(masked))


def table(r):
    lines = ["| optimizer | lr | test MSE | probe acc (%) | s / epoch | rows touched / step |",
             "|---|---|---|---|---|---|"]
    for name, m in r["main"].items():
        lines.append(f"| {name} | {m['lr']:g} | {m['test_mse']:.5f} | {m['probe_acc']:.2f} | "
                     f"{m['s_per_epoch']:.1f} | {m['touched']:.1%} |")
    c = r["clipped"]
    lines += ["", f"Clipped exact Adam (max_norm {c['max_norm']:.4g}, {c['clipped_fraction']:.0%} of "
              f"steps clipped): test MSE {c['test_mse']:.5f} (unclipped {r['main']['exact Adam']['test_mse']:.5f}).",
              f"Lifetime sparsity {r['lifetime']['fraction']}: {r['lifetime']['touched']:.1%} of rows touched per "
              f"step (min {r['lifetime']['touched_min']:.1%}), against {r['main']['exact Adam']['touched']:.1%}.",
              f"Exact against dense Adam after {r['meta']['steps']} steps: max |W difference| "
              f"{r['exact_vs_dense_max_abs_W']:.2e}.", "",
              "| lr sweep: test MSE | " + " | ".join(f"{lr:g}" for lr in r["meta"]["sweep_lrs"]) + " |",
              "|---|" + "---|" * len(r["meta"]["sweep_lrs"])]
    for name in ADAM_NAMES:
        lines.append(f"| {name} | " + " | ".join(
            f"{r['sweep'][f'{name} @ {lr:g}']['test_mse']:.5f}" for lr in r["meta"]["sweep_lrs"]) + " |")
    lines += ["", "| lr x10 / x0.1 at mid-run | loss at change | loss at end | end / change |",
              "|---|---|---|---|"]
    for key, c in r["lr_change"].items():
        lines.append(f"| {key} | {c['loss_before']:.3f} | {c['loss_end']:.3f} | {c['response']:.3f} |")
    lines += ["", "| the report said | measured here | verdict |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {v} |" for a, b, v in r["observations"]]
    return "\n".join(lines)


def summary(r):
    """The README's digest of the study: the four optimizers, and the report's observations
    with their verdicts (docs/ksparse.md has every table)."""
    m = r["meta"]
    lines = [f"| {m['steps']} steps, batch {m['batch']}, k = {m['k']} of {m['hidden']} | test MSE | "
             "probe acc (%) | rows touched / step |", "|---|---|---|---|"]
    for name, row in r["main"].items():
        lines.append(f"| {name} (lr {row['lr']:g}) | {row['test_mse']:.5f} | {row['probe_acc']:.2f} | "
                     f"{row['touched']:.1%} |")
    lines += ["", "| the report said | measured here |", "|---|---|"]
    lines += [f"| {said} | {verdict} |" for said, _, verdict in r["observations"]]
    return "\n".join(lines)


def update_readme(results):
    """Rewrites the study's tables: the digest in README.md, every table in docs/ksparse.md."""
    sys.path.insert(0, str(REPO / "bench"))
    import harness
    changed = harness.splice_readme(NAME, summary(results), REPO / "README.md")
    print(f"{'updated' if changed else 'unchanged'}: README.md [{NAME}]")
    text = DOCS.read_text()
    begin, end = "<!-- ksparse table begin -->", "<!-- ksparse table end -->"
    head, rest = text.split(begin)
    DOCS.write_text(head + begin + "\n" + table(results) + "\n" + end + rest.split(end)[1])
    print(f"updated: {DOCS.relative_to(REPO)}")


def plot(curves, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; no plot", file=sys.stderr)
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    smooth = lambda y: np.convolve(y, np.ones(20) / 20, mode="valid")  # noqa: E731
    for name in OPTIMIZERS:
        axes[0].plot(smooth(curves[name]["loss"]), label=name)
        axes[2].plot(smooth(curves[name]["grad_norm"]), label=name)
    axes[2].plot(smooth(curves["clipped"]["grad_norm"]), label="exact Adam, clipped (norm before)")
    for key in curves:
        if " x" in key:
            axes[1].plot(smooth(curves[key]["loss"]), label=key)
    axes[0].set(title="training loss (20-step mean)", xlabel="step", yscale="log")
    axes[1].set(title="lr x10 / x0.1 at mid-run", xlabel="step", yscale="log")
    axes[2].set(title="grad norm (sparseopt.grad_norm)", xlabel="step", yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--hidden", type=int, default=1000)
    ap.add_argument("--k", type=int, default=25, help="active units per example (10 to 100)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3, help="Adam's lr in the main runs")
    ap.add_argument("--adagrad-lr", type=float, default=1e-2)
    ap.add_argument("--steps", type=int, default=600, help="steps of each main run")
    ap.add_argument("--aux-steps", type=int, default=200, help="steps of each sweep / lr-change run")
    ap.add_argument("--lifetime", type=float, default=0.05)
    ap.add_argument("--probe-train", type=int, default=10000)
    ap.add_argument("--probe-epochs", type=int, default=5)
    ap.add_argument("--eval-n", type=int, default=2000, help="test images for the sweep runs")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="a smoke run for the test suite")
    ap.add_argument("--update-readme", action="store_true",
                    help=f"rewrite the study's tables in README.md and {DOCS.relative_to(REPO)}")
    ap.add_argument("--tables-from", type=Path, default=None, metavar="JSON",
                    help="no training: the tables from a saved run's ksparse_autoencoder.json")
    cfg = ap.parse_args(argv)
    if cfg.update_readme and cfg.quick:
        ap.error("--update-readme needs the full study (no --quick)")
    if cfg.tables_from:
        results = json.loads(cfg.tables_from.read_text())["results"]
        if results["meta"]["quick"]:
            ap.error(f"{cfg.tables_from} is a --quick run's; the tables come from the full study")
        print(table(results))
        if cfg.update_readme:
            update_readme(results)
        return
    if cfg.quick:
        cfg.steps, cfg.aux_steps, cfg.max_train = 30, 16, cfg.max_train or 3000
        cfg.probe_train, cfg.probe_epochs, cfg.eval_n = 1000, 2, 500
    if not 1 <= cfg.k <= cfg.hidden:
        ap.error("--k must be in [1, --hidden]")
    cfg.sweep_lrs = (1e-4, 1e-3, 1e-2)
    rng = np.random.default_rng(0)
    data, source = load_data(cfg.data, np.float32, rng)
    if cfg.max_train:
        data["x_train"], data["y_train"] = data["x_train"][:cfg.max_train], data["y_train"][:cfg.max_train]
    if cfg.quick:
        data["x_test"], data["y_test"] = data["x_test"][:1000], data["y_test"][:1000]
    out = cfg.out or (Path(tempfile.mkdtemp(prefix="ksparse-")) if cfg.quick else DEFAULT_OUT)
    out.mkdir(parents=True, exist_ok=True)
    cfg.batch = min(cfg.batch, len(data["x_train"]))
    cfg.hidden = max(cfg.hidden, cfg.k)
    print(f"data: {source}; {len(data['x_train'])} train, {len(data['x_test'])} test images; "
          f"hidden {cfg.hidden}, k {cfg.k}, batch {cfg.batch}", flush=True)
    t0 = time.perf_counter()
    results, curves = study(data, cfg)
    results["unmasked_rel_error"] = unmasked_error(data, cfg)
    results["meta"] = dict(data=source, hidden=cfg.hidden, k=cfg.k, batch=cfg.batch, steps=cfg.steps,
                           aux_steps=cfg.aux_steps, sweep_lrs=list(cfg.sweep_lrs), quick=cfg.quick,
                           threads=sparseopt.info()["max_threads"],
                           command="python examples/ksparse_autoencoder.py" + (" --quick" if cfg.quick else ""))
    results["observations"] = observations(results)
    results["meta"]["wall_s"] = time.perf_counter() - t0
    md = table(results)
    print(md)
    (out / f"{NAME}.json").write_text(json.dumps({"results": results, "curves": {
        k: {m: v[m] for m in ("loss", "grad_norm", "touched")} for k, v in curves.items()}}, indent=1))
    (out / f"{NAME}.md").write_text(
        f"<!-- {results['meta']['command']}: {source}, {results['meta']['wall_s'] / 60:.1f} min -->\n" + md + "\n")
    plot(curves, out / f"{NAME}.png")
    if cfg.update_readme:
        update_readme(results)
    print(f"wrote {out}/{NAME}.{{json,md,png}} in {results['meta']['wall_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
