#!/usr/bin/env python
"""meProp on MNIST: sparsified backprop with sparse optimizers, against dense backprop.

meProp (Sun et al., ICML 2017, "meProp: Sparsified Back Propagation for Accelerated Deep
Learning with Reduced Overfitting") keeps, for every example, only the k largest-magnitude
entries of each hidden linear layer's output gradient. The backward pass then touches k of the
layer's units per example instead of all of them, and the weight gradient is row-sparse over
output units: ``(rows, values)``, which a sparse optimizer step applies directly.

This script trains the paper's MLP (784-500-500-10, ReLU, dropout 0.1 after each hidden layer,
softmax cross-entropy, minibatch 50, weights and biases uniform in +-1/sqrt(fan_out), 5,000 of
the training images held out as a dev set, as in the authors' PyTorch code) on MNIST with

* dense backprop: NumPy matrix products (BLAS) for every gradient, and the same sparseopt
  optimizer stepping every row;
* meProp for k in {10, 20, 40, 80}: ``sparseopt.nn.MePropLinear`` for the two hidden layers
  (``sparseopt.meprop.linear_backward`` + a sparseopt optimizer on the touched rows), a dense
  output layer as in the paper's code;

for Adam (lr 1e-3) and Adagrad (lr 1e-2), from the same initial weights and the same batches.
The authors step every weight with dense ``torch.optim.Adam``, so rows that meProp left out
still move with their momentum; sparseopt's exact-mode Adam (the default here, ``--adam-mode``)
is that algorithm at the cost of the touched rows. (Adagrad leaves a row with a zero gradient
where it is, so its sparse step is the dense algorithm already.)
It reports test accuracy (at the epoch of best dev accuracy, the paper's protocol), backward time (the whole backward pass of the network: softmax
gradient to the first layer's weight gradient, excluding the optimizer), the backward speedup
against the dense run, and the total training-time speedup (forward, backward and optimizer
steps; evaluation excluded).

    python examples/meprop_mnist.py                 # the full study (~10 min on 2 cores)
    python examples/meprop_mnist.py --quick         # a smoke run: 1 epoch on 6,000 images
    python examples/meprop_mnist.py --data DIR      # MNIST IDX files (.gz or not) in DIR

Writes DIR/meprop_mnist.md (the table, also printed), DIR/meprop_mnist.json (every number) and
DIR/meprop_mnist.png (learning curves), DIR = examples/output/ unless --out says otherwise
(meprop_mnist_unified.* with --unified).
Without MNIST (neither --data nor ../shared/data/mnist), it falls back to scikit-learn's bundled
8x8 digits (``pip install scikit-learn``) and says so; the numbers are then not the paper's task.
Needs numpy, sparseopt, threadpoolctl (to hold BLAS to 1 thread while sparseopt's kernels use
the cores in the meProp runs) and, for the plot, matplotlib: ``pip install ".[examples]"``.
Seeded; BLAS timings vary run to run.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

try:  # holds BLAS to 1 thread during the meProp runs (see blas_threads)
    import threadpoolctl
except ImportError:
    threadpoolctl = None

import sparseopt
from sparseopt._progress import Progress
from sparseopt.nn import MePropLinear
from sparseopt.optim import Adagrad, Adam

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "mnist"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _corpus, also when loaded by path
from _corpus import DEFAULT_OUT, output_folder  # noqa: E402

OPTIMIZERS = {
    # name: (factory, the paper's dense backprop time / test acc, paper's meProp k, time, acc)
    "adam": (lambda p, t, mode: Adam(p, lr=1e-3, mode=mode, num_threads=t), "170 s / 98.20",
             "k=80: 29 s (5.9x) / 98.27"),
    # Adagrad leaves a row with a zero gradient unchanged: lazy is already the dense algorithm
    "adagrad": (lambda p, t, mode: Adagrad(p, lr=1e-2, eps=1e-6, num_threads=t), "171 s / 97.52",
                "k=10: 4 s (41.7x) / 98.00"),
}
PAPER_NAME = {"adam": "Adam", "adagrad": "AdaGrad"}


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzip-compressed): big-endian magic, dims, then uint8 data."""
    raw = (gzip.open if path.suffix == ".gz" else open)(path, "rb").read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, ">u4", count=ndim, offset=4).astype(np.int64)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace(".idx", "-idx"),
                 stem.replace(".idx", "-idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_data(path: Path | None, dtype, rng) -> tuple[dict, str]:
    """(data, description). MNIST from ``path`` (or the shared data folder); else sklearn digits."""
    folder = path if path is not None else DEFAULT_DATA
    stems = ("train-images.idx3-ubyte", "train-labels.idx1-ubyte",
             "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte")
    files = [find_idx(folder, s) for s in stems] if folder.is_dir() else [None]
    if all(f is not None for f in files):
        xtr, ytr, xte, yte = (read_idx(f) for f in files)
        xtr = xtr.reshape(len(xtr), -1).astype(dtype) / 255
        xte = xte.reshape(len(xte), -1).astype(dtype) / 255
        return (dict(x_train=xtr, y_train=ytr.astype(np.int64), x_test=xte,
                     y_test=yte.astype(np.int64)), f"MNIST ({folder})")
    if path is not None:
        sys.exit(f"error: {path} does not hold the four MNIST IDX files "
                 f"({', '.join(stems)}, optionally .gz)")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit(f"error: no MNIST at {DEFAULT_DATA} and scikit-learn is not installed: pass "
                 f"--data DIR with the MNIST IDX files, or `pip install scikit-learn` to fall "
                 f"back to its bundled 8x8 digits")
    print(f"note: no MNIST at {DEFAULT_DATA}; falling back to scikit-learn's 8x8 digits "
          f"(1,797 images): not the paper's task", file=sys.stderr)
    digits = load_digits()
    x = (digits.data / 16).astype(dtype)
    y = digits.target.astype(np.int64)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    tr, te = order[:cut], order[cut:]
    return dict(x_train=x[tr], y_train=y[tr], x_test=x[te], y_test=y[te]), "scikit-learn digits"


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------
class DenseLinear:
    """y = x @ W.T + b with the dense NumPy (BLAS) backward, and a sparseopt optimizer stepping
    every row: the dense baseline, and the output layer of every run."""

    def __init__(self, weight, bias, make_optimizer):
        self.weight, self.bias = weight, bias
        self.opt_weight, self.opt_bias = make_optimizer(weight), make_optimizer(bias)
        self.all_rows = np.arange(len(weight), dtype=np.int64)

    def forward(self, x):
        self.x = x
        return x @ self.weight.T + self.bias

    def backward(self, grad_out, need_grad_x=True):
        self.grad_weight = grad_out.T @ self.x
        self.grad_bias = grad_out.sum(0)
        return grad_out @ self.weight if need_grad_x else None

    def step(self):
        self.opt_weight.step(self.all_rows, self.grad_weight)
        self.opt_bias.step(self.all_rows, self.grad_bias)


def blas_threads(limit: int | None):
    """A context in which NumPy's BLAS uses at most `limit` threads (threadpoolctl); None: as
    it is. Each run gives the cores to the library doing its heavy work: BLAS for dense, sparseopt
    (OpenMP) for meProp. Two thread pools busy at once on a few cores spin against each other."""
    if limit is None or threadpoolctl is None:
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(limit, user_api="blas")


def thread_plan(meprop_threads: int) -> str:
    """The threads of each run, as the table's caption says them."""
    if meprop_threads == 1:
        return "sparseopt threads 1, NumPy BLAS on its own threads"
    return (f"dense runs: NumPy BLAS on its own threads and sparseopt on 1; meProp runs: "
            f"sparseopt on {meprop_threads} threads and BLAS held to 1 (threadpoolctl)")


def reference_init(rng, fan_out, fan_in, dtype):
    """The authors' PyTorch code's initialisation: weight and bias uniform in
    +-1/sqrt(fan_out)."""
    bound = 1.0 / np.sqrt(fan_out)
    return (rng.uniform(-bound, bound, (fan_out, fan_in)).astype(dtype),
            rng.uniform(-bound, bound, fan_out).astype(dtype))


class MLP:
    """in -> hidden -> hidden -> classes with ReLU; hidden layers dense or meProp(k).

    ``make_optimizer(array, sparse)``: ``sparse`` is True for a meProp layer's weight, the one
    array whose steps leave rows out (biases and dense layers step every row, where lazy and
    exact modes are the same algorithm and lazy is cheaper)."""

    def __init__(self, init, make_optimizer, k=None, unified=False, num_threads=0,
                 dropout=0.0, seed=0):
        self.dropout = dropout
        self.rng = np.random.default_rng(seed)  # dropout masks: the same stream in every run
        layers = []
        for i, (w, b) in enumerate(init):
            w, b = w.copy(), b.copy()
            if k is not None and i < len(init) - 1:
                layers.append(MePropLinear.from_arrays(
                    w, b, k, optimizer=lambda p: make_optimizer(p, sparse=p.ndim == 2),
                    unified=unified, num_threads=num_threads))
            else:
                layers.append(DenseLinear(w, b, lambda p: make_optimizer(p, sparse=False)))
        self.layers = layers

    def forward(self, x, train=False):
        """Logits; with ``train``, dropout after each hidden ReLU (inverted: kept units are
        scaled by 1 / (1 - p)), as in the reference code."""
        self.acts = []
        h = x
        for i, layer in enumerate(self.layers):
            h = layer.forward(h)
            if i < len(self.layers) - 1:
                np.maximum(h, 0, out=h)
                if train and self.dropout > 0:
                    keep = self.rng.random(h.shape, dtype=np.float32) >= self.dropout
                    h *= keep
                    h *= h.dtype.type(1 / (1 - self.dropout))
                self.acts.append(h)
        return h

    def backward(self, logits, y):
        """Softmax cross-entropy gradient (mean over the batch) back to the first layer."""
        g = np.exp(logits - logits.max(1, keepdims=True))
        g /= g.sum(1, keepdims=True)
        g[np.arange(len(y)), y] -= 1
        g /= len(y)
        for i in range(len(self.layers) - 1, -1, -1):
            g = self.layers[i].backward(g, need_grad_x=i > 0)
            if i > 0:  # ReLU and dropout: h > 0 exactly where both let the gradient through
                g *= self.acts[i - 1] > 0
                if self.dropout > 0:
                    g *= g.dtype.type(1 / (1 - self.dropout))

    def step(self):
        for layer in self.layers:
            layer.step()


def evaluate(model, x, y, chunk=5000):
    loss, correct = 0.0, 0
    for s in range(0, len(x), chunk):
        logits = model.forward(x[s:s + chunk]).astype(np.float64)
        z = logits - logits.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        yy = y[s:s + chunk]
        loss -= logp[np.arange(len(yy)), yy].sum()
        correct += int((logits.argmax(1) == yy).sum())
    return loss / len(x), 100.0 * correct / len(x)


def train(name, model, data, epochs, batch, seed):
    """Train; returns per-epoch curves and the summed backward / total step times."""
    x, y = data["x_train"], data["y_train"]
    rng = np.random.default_rng(seed)  # the same batches for every run
    steps_per_epoch = len(x) // batch
    t_backward = t_total = 0.0
    curve = []
    for epoch in range(epochs):
        bar = Progress([f"{name}, epoch {epoch + 1}/{epochs}"], unit="step")
        order = rng.permutation(len(x))
        train_loss = 0.0
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            xb, yb = x[idx], y[idx]
            t0 = time.perf_counter()
            logits = model.forward(xb, train=True)
            t1 = time.perf_counter()
            model.backward(logits, yb)
            t2 = time.perf_counter()
            model.step()
            t3 = time.perf_counter()
            t_backward += t2 - t1
            t_total += t3 - t0
            z = logits[np.arange(len(yb)), yb] - logits.max(1)
            train_loss += float(np.mean(np.log(np.exp(logits - logits.max(1, keepdims=True))
                                               .sum(1)) - z))
            bar.update([s + 1], [steps_per_epoch])
        bar.close()
        test_loss, test_acc = evaluate(model, data["x_test"], data["y_test"])
        dev_acc = evaluate(model, data["x_dev"], data["y_dev"])[1] if len(data["x_dev"]) else None
        curve.append(dict(epoch=epoch + 1, train_loss=train_loss / steps_per_epoch,
                          test_loss=test_loss, test_acc=test_acc, dev_acc=dev_acc))
        print(f"{name}, epoch {epoch + 1}/{epochs}: train loss {curve[-1]['train_loss']:.4f}, "
              + (f"dev acc {dev_acc:.2f}%, " if dev_acc is not None else "")
              + f"test acc {test_acc:.2f}% (backward so far {t_backward:.1f} s)", flush=True)
    # the paper's protocol: the test accuracy of the epoch with the best dev accuracy (the
    # first such epoch); without a dev set, the last epoch's
    best = max(curve, key=lambda c: c["dev_acc"]) if curve[0]["dev_acc"] is not None else curve[-1]
    return dict(curve=curve, backward_s=t_backward, total_s=t_total,
                test_acc=curve[-1]["test_acc"], best_dev_epoch=best["epoch"],
                test_acc_at_best_dev=best["test_acc"])


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _secs(s: float) -> str:
    return f"{s:.1f} s" if s >= 10 else f"{s:.2f} s"


def make_table(results, meta):
    mode = "unified (one set of k units per minibatch)" if meta["unified"] else "per example"
    selection = (f"at the epoch with the best accuracy on {meta['n_dev']:,} dev images held out "
                 f"of the training set (the paper's protocol)" if meta["n_dev"]
                 else "after the last epoch")
    lines = [f"meProp ({mode}) on {meta['data']}: MLP {meta['shape']}, dropout {meta['dropout']}, "
             f"minibatch {meta['batch']}, {meta['epochs']} epochs, {meta['dtype']}, "
             f"{meta['threads']}. Backward time: the network's "
             f"whole backward pass (softmax gradient to the first layer's weight gradient, "
             f"optimizer excluded), summed over training; total: forward + backward + optimizer "
             f"steps (evaluation excluded). Test accuracy: {selection}; in brackets, after the "
             f"last epoch. Adam: {meta['adam_mode']} mode on the meProp layers' weights.", "",
             "| optimizer | backprop | test acc (%) | backward time | backward speedup "
             "| total train time | total speedup | paper |",
             "|---|---|---|---|---|---|---|---|"]
    for opt_name, runs in results.items():
        dense = runs["dense"]
        for key, r in runs.items():
            what = "dense (NumPy BLAS)" if key == "dense" else f"meProp k={key.split('=')[1]}"
            paper = ""
            if key == "dense":
                paper = f"dense: {OPTIMIZERS[opt_name][1]}"
            elif key == "k=" + OPTIMIZERS[opt_name][2].split(":")[0].split("=")[1]:
                paper = f"meProp {OPTIMIZERS[opt_name][2]}"
            lines.append(
                f"| {PAPER_NAME[opt_name]} | {what} | {r['test_acc_at_best_dev']:.2f} "
                f"({r['test_acc']:.2f}) "
                f"| {_secs(r['backward_s'])} | {dense['backward_s'] / r['backward_s']:.1f}x "
                f"| {_secs(r['total_s'])} | {dense['total_s'] / r['total_s']:.1f}x | {paper} |")
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.2), squeeze=False)
    for ax, (opt_name, runs) in zip(axes[0], results.items()):
        for key, r in runs.items():
            epochs = [c["epoch"] for c in r["curve"]]
            ax.plot(epochs, [c["test_acc"] for c in r["curve"]], marker="o", ms=3,
                    label="dense" if key == "dense" else f"meProp {key}",
                    color="black" if key == "dense" else None,
                    lw=2 if key == "dense" else 1.2)
        ax.set_title(f"{PAPER_NAME[opt_name]}: test accuracy")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help=f"folder with the MNIST IDX files (default: {DEFAULT_DATA})")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output folder (default: {DEFAULT_OUT} for the full run on MNIST, "
                         f"else a new temporary folder)")
    ap.add_argument("--epochs", type=int, default=20, help="the paper's 20 by default")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--hidden", type=int, default=500)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 20, 40, 80])
    ap.add_argument("--optimizers", nargs="+", choices=sorted(OPTIMIZERS),
                    default=["adam", "adagrad"])
    ap.add_argument("--unified", action="store_true",
                    help="one shared set of k units per minibatch (the paper code's GPU mode)")
    ap.add_argument("--dropout", type=float, default=0.1,
                    help="dropout after each hidden layer, as in the reference code (0.1); "
                         "meProp needs it: without, its accuracy lags far behind")
    ap.add_argument("--adam-mode", choices=("exact", "lazy"), default="exact",
                    help="exact (default): sparseopt's exact-mode Adam, the dense torch.optim.Adam "
                         "fed the masked gradient, as the reference code trains; lazy: "
                         "SparseAdam's update of the touched rows only")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for sparseopt's kernels and optimizer steps in the meProp runs "
                         "(0 = all, the default), with NumPy's BLAS held to 1 thread meanwhile "
                         "(threadpoolctl). The dense runs give BLAS every thread and sparseopt 1. "
                         "An OpenMP team beside BLAS's threads makes both spin against each other "
                         "(measured on 2 cores: the forward pass 0.9 -> 4.5 ms per step)")
    ap.add_argument("--dev", type=int, default=5000,
                    help="training images held out as a dev set (the first N, as the reference "
                         "code's 5,000): each run reports the test accuracy of its best dev epoch. 0: none, "
                         "the last epoch's")
    ap.add_argument("--max-train", type=int, default=None, help="use only the first N images")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 1 epoch on 6,000 training images")
    ap.add_argument("--update-readme", action="store_true",
                    help="splice the table into examples/README.md between "
                         "<!-- bench:meprop_mnist --> "
                         "markers (<!-- bench:meprop_mnist_unified --> with --unified; "
                         "a run on MNIST only)")
    args = ap.parse_args(argv)
    if args.update_readme and (args.quick or args.max_train or args.data is not None):
        sys.exit("error: --update-readme needs a run on the full MNIST (no --quick/--max-train/--data)")
    if args.out is None:  # examples/output/ holds the full run's results: only it goes there
        full_run = not (args.quick or args.max_train or args.data) and DEFAULT_DATA.exists()
        args.out = output_folder(None, full_run, "meprop_")
    if args.quick:
        args.epochs, args.max_train = 1, args.max_train or 6000
    dtype = np.dtype(args.dtype)
    rng = np.random.default_rng(args.seed)
    data, data_name = load_data(args.data, dtype, rng)
    n_dev = min(max(args.dev, 0), len(data["x_train"]) // 2)
    data["x_dev"], data["y_dev"] = data["x_train"][:n_dev], data["y_train"][:n_dev]
    data["x_train"], data["y_train"] = data["x_train"][n_dev:], data["y_train"][n_dev:]
    if args.max_train:
        data["x_train"], data["y_train"] = (data["x_train"][:args.max_train],
                                            data["y_train"][:args.max_train])
    n_in = data["x_train"].shape[1]
    sizes = [n_in, args.hidden, args.hidden, 10]
    ks = [k for k in args.ks if 1 <= k <= args.hidden]
    init = [reference_init(rng, o, i, dtype) for i, o in zip(sizes, sizes[1:])]
    meprop_threads = args.threads if args.threads > 0 else sparseopt.info()["max_threads"]
    if meprop_threads > 1 and threadpoolctl is None:
        print("note: threadpoolctl is not installed (pip install threadpoolctl), so NumPy's BLAS "
              "cannot be held to 1 thread during the meProp runs: sparseopt runs on 1 thread "
              "there too", file=sys.stderr)
        meprop_threads = 1
    meta = dict(data=data_name, shape="-".join(map(str, sizes)), batch=args.batch,
                dropout=args.dropout, adam_mode=args.adam_mode,
                epochs=args.epochs, dtype=args.dtype, unified=args.unified,
                threads=thread_plan(meprop_threads),
                n_train=len(data["x_train"]), n_dev=n_dev, n_test=len(data["x_test"]),
                sparseopt=sparseopt.__version__)
    print(f"{data_name}: {meta['n_train']} train / {meta['n_test']} test images, "
          f"MLP {meta['shape']}, minibatch {args.batch}, {args.epochs} epoch(s)")
    results: dict[str, dict] = {}
    for opt_name in args.optimizers:
        factory = OPTIMIZERS[opt_name][0]
        results[opt_name] = {}
        for k in [None] + ks:
            key = "dense" if k is None else f"k={k}"
            threads = 1 if k is None else meprop_threads

            def make_opt(p, sparse):  # called while MLP builds its layers, in this iteration
                return factory(p, threads, args.adam_mode if sparse else "lazy")

            model = MLP(init, make_opt, k=k, unified=args.unified, num_threads=threads,
                        dropout=args.dropout, seed=args.seed)
            with blas_threads(1 if threads > 1 else None):
                results[opt_name][key] = train(f"{PAPER_NAME[opt_name]} {key}", model, data,
                                               args.epochs, args.batch, args.seed)
    table = make_table(results, meta)
    print()
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "meprop_mnist_unified" if args.unified else "meprop_mnist"
    (args.out / f"{stem}.md").write_text(table)
    (args.out / f"{stem}.json").write_text(json.dumps(dict(meta=meta, results=results), indent=1))
    try:
        plot(results, args.out / f"{stem}.png")
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
    print(f"wrote {args.out / stem}.md, .json and .png")
    if args.update_readme:
        sys.path.insert(0, str(REPO_ROOT / "bench"))
        import harness
        marker = "meprop_mnist_unified" if args.unified else "meprop_mnist"
        changed = harness.splice_readme(marker, table, REPO_ROOT / "examples" / "README.md")
        print(f"{'updated' if changed else 'unchanged'}: examples/README.md [{marker}]")
    return results


if __name__ == "__main__":
    main()
