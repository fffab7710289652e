#!/usr/bin/env python
"""Learning-rate responsiveness of lazy and exact sparse Adam on a real text classifier.

Lazy sparse Adam (``mode="lazy"``, the algorithm of ``torch.optim.SparseAdam`` and TensorFlow's
LazyAdam) changes a row only on the steps whose batch touches it. Dense Adam keeps moving every
row after it was touched: its moments decay and the row drifts along ``m / sqrt(v)`` for
roughly ``1 / (1 - beta1)`` further steps. For rows that a batch touches every step the two are
the same algorithm; for rare rows (most words of a vocabulary) lazy Adam takes about one step
of size ``lr`` per touch where dense Adam takes many, so the two optimizers give rare and
frequent rows different effective learning rates, and their final loss responds to ``lr``
differently. ``mode="exact"`` is meant to give dense Adam's result at sparse cost.

This script trains one model per (optimizer, learning rate) and plots the final loss against
the learning rate for these optimizers of the embedding table:

* dense Adam -- the reference: ``torch.optim.Adam``'s formula on the whole table, fed the
  gradient densified with zeros (plain NumPy; ``--reference torch`` uses torch.optim.Adam);
* sparseopt ``Adam(mode="lazy")``;
* sparseopt ``Adam(mode="exact")``, used as a training loop should: exact mode catches a row
  up when a step touches it or when ``flush`` asks for it, so before each forward pass
  ``opt.flush(batch_indices)`` brings the batch's rows to where dense Adam has them (at the
  cost of the batch), and ``opt.flush()`` brings every row up before evaluation;
* sparseopt ``Adam(mode="exact")`` without the per-batch flush (``--no-stale-variant`` skips
  it): the optimizer is still exact, but the forward pass reads the batch's rows as they were
  at their last touch, so the gradients it is fed differ slightly from dense Adam's.

Exact mode is shown as unavailable when the installed sparseopt does not have it yet.

Task: which work of a corpus a passage of 30 words comes from (Shakespeare: 42 plays and poems),
from the mean of the passage's word embeddings followed by a linear layer and a softmax. Word
frequencies are Zipf-distributed, so each batch's embedding gradient is row-sparse and touches
many rare rows. The gradient is computed in NumPy and handed to the optimizer as
``(indices, values)``: one index per word of the batch, repeats summed by the optimizer. The
small linear layer is trained by the same dense NumPy Adam in every run, so the embedding
optimizer is the only difference between the curves.

    python examples/lazy_vs_exact_lr.py               # full study (about 2.5 minutes on 2 cores)
    python examples/lazy_vs_exact_lr.py --quick       # smaller run, under a minute
    python examples/lazy_vs_exact_lr.py --data my.txt # your own text (see --help)

Writes DIR/lazy_vs_exact_lr.png (the plot), DIR/lazy_vs_exact_lr.md (the table, also printed)
and DIR/lazy_vs_exact_lr.json (every number), DIR = examples/output/ unless --out says otherwise.
Needs numpy, matplotlib and sparseopt; everything is seeded and deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tarfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _corpus, also when loaded by path
from _corpus import DEFAULT_DATA, DEFAULT_OUT, output_folder, resolve_corpus  # noqa: E402

TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")
BETAS = (0.9, 0.999)
EPS = 1e-8

FULL = dict(lrs=[1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], epochs=10, batch=64,
            passage=30, dim=32, held_out=0.15, max_train=None)
QUICK = dict(lrs=[1e-4, 1e-3, 1e-2, 1e-1], epochs=4, batch=64,
             passage=30, dim=32, held_out=0.15, max_train=8000)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def read_texts(path: Path, parts: int = 8) -> tuple[list[str], list[str]]:
    """(names, texts): one class per text.

    A .tar / .tar.gz / .tgz archive or a directory: every text file (``*.txt`` in a directory)
    is one class. A single text file is cut into ``parts`` contiguous parts of equal length,
    each part one class (the task becomes "which part of the text is this passage from").
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix == ".txt")
        return [p.stem for p in files], [p.read_text("utf-8", errors="replace") for p in files]
    if tarfile.is_tarfile(path):
        names, texts = [], []
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if not member.isfile() or Path(member.name).name.startswith("."):
                    continue
                raw = tar.extractfile(member).read()
                names.append(Path(member.name).stem)
                texts.append(raw.decode("utf-8", errors="replace"))
        return names, texts
    words = path.read_text("utf-8", errors="replace").split()
    bounds = np.linspace(0, len(words), parts + 1).astype(int)
    return ([f"part {i + 1}" for i in range(parts)],
            [" ".join(words[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])


def make_dataset(names, texts, cfg, rng):
    """Passages of cfg['passage'] consecutive words, their work as the label, a held-out split,
    and a vocabulary of the training passages' words (ids by falling frequency)."""
    L = cfg["passage"]
    passages, labels = [], []
    for label, text in enumerate(texts):
        words = TOKEN.findall(text.lower())
        n = len(words) // L
        passages.extend(words[i * L:(i + 1) * L] for i in range(n))
        labels.extend([label] * n)
    keep = [c for c in range(len(texts)) if labels.count(c) >= 2]
    if len(keep) < 2:
        sys.exit(f"error: the data has fewer than two texts with at least {2 * L} words; "
                 f"pass a larger corpus with --data")
    labels = np.array(labels)
    order = rng.permutation(len(passages))
    n_test = int(round(cfg["held_out"] * len(passages)))
    test_idx, train_idx = order[:n_test], order[n_test:]
    if cfg["max_train"] is not None:
        train_idx = train_idx[:cfg["max_train"]]
        test_idx = test_idx[:max(cfg["max_train"] // 4, 1)]
    counts: dict[str, int] = {}
    for i in train_idx:
        for w in passages[i]:
            counts[w] = counts.get(w, 0) + 1
    vocab = sorted(counts, key=lambda w: (-counts[w], w))
    word_id = {w: i for i, w in enumerate(vocab)}
    V = len(vocab)

    def encode(idx):  # words outside the training vocabulary -> V (a zero row at evaluation)
        return np.array([[word_id.get(w, V) for w in passages[i]] for i in idx], dtype=np.int64)

    return dict(names=names, V=V, C=len(texts), train_counts=np.array([counts[w] for w in vocab]),
                x_train=encode(train_idx), y_train=labels[train_idx],
                x_test=encode(test_idx), y_test=labels[test_idx])


# --------------------------------------------------------------------------------------------
# model pieces (NumPy)
# --------------------------------------------------------------------------------------------
class DenseAdam:
    """torch.optim.Adam's update (eps added to the bias-corrected sqrt(v)), over whole arrays."""

    def __init__(self, params, lr):
        self.params, self.lr, self.t = params, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.tmp = [np.empty_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        b1, b2 = BETAS
        step_size = self.lr / (1 - b1 ** self.t)
        bc2_sqrt = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v, tmp in zip(self.params, grads, self.m, self.v, self.tmp):
            m *= b1
            np.multiply(g, 1 - b1, out=tmp)
            m += tmp
            v *= b2
            np.multiply(g, g, out=tmp)
            tmp *= 1 - b2
            v += tmp
            np.sqrt(v, out=tmp)
            tmp /= bc2_sqrt
            tmp += EPS
            np.divide(m, tmp, out=tmp)
            tmp *= step_size
            p -= tmp


class TorchAdam:
    """The dense reference through torch.optim.Adam (``--reference torch``)."""

    def __init__(self, param, lr):
        import torch
        self.torch = torch
        self.param = torch.nn.Parameter(torch.from_numpy(param))  # shares memory with param
        self.opt = torch.optim.Adam([self.param], lr=lr, betas=BETAS, eps=EPS)

    def step(self, grads):
        self.param.grad = self.torch.from_numpy(grads[0])
        self.opt.step()


def forward(E, W, b, x):
    """Mean embedding of each passage (ids == len(E) are unknown words, left out), then logits."""
    known = x < len(E)
    n = np.maximum(known.sum(1, keepdims=True), 1).astype(E.dtype)
    h = np.where(known[..., None], E[np.minimum(x, len(E) - 1)], 0).sum(1) / n
    return h, h @ W + b


def softmax_xent(logits, y):
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean(), logp


def evaluate(E, W, b, x, y, chunk=4096):
    loss = correct = 0.0
    for a in range(0, len(x), chunk):
        _, logits = forward(E, W, b, x[a:a + chunk])
        l, _ = softmax_xent(logits, y[a:a + chunk])
        loss += float(l) * len(logits)
        correct += float((logits.argmax(1) == y[a:a + chunk]).sum())
    return loss / len(x), correct / len(x)


# --------------------------------------------------------------------------------------------
# one training run
# --------------------------------------------------------------------------------------------
def exact_available() -> tuple[bool, str]:
    import sparseopt
    try:
        sparseopt.optim.Adam(np.zeros((2, 2), np.float32), mode="exact")
    except Exception as e:  # ValueError "not available yet" until exact mode lands
        return False, f"{type(e).__name__}: {e}"
    return True, ""


METHODS = ("dense", "lazy", "exact", "exact_stale")
LABELS = {"dense": "dense Adam", "lazy": "lazy", "exact": "exact",
          "exact_stale": "exact, no flush(batch)"}


def flush_takes_indices() -> bool:
    import inspect
    import sparseopt
    return "indices" in inspect.signature(sparseopt.optim.Adam.flush).parameters


def train(method, lr, data, cfg, seed, dtype, reference, num_threads):
    """Train one model; ``method`` picks the embedding table's optimizer (see METHODS)."""
    import sparseopt
    rng = np.random.default_rng(seed)            # same initial model for every run
    V, C, d, B, L = data["V"], data["C"], cfg["dim"], cfg["batch"], cfg["passage"]
    E = (0.1 * rng.standard_normal((V, d))).astype(dtype)
    W = (rng.standard_normal((d, C)) / math.sqrt(d)).astype(dtype)
    b = np.zeros(C, dtype)
    E0 = E.copy()
    head = DenseAdam([W, b], lr)
    if method == "dense":
        emb = TorchAdam(E, lr) if reference == "torch" else DenseAdam([E], lr)
        G = np.zeros_like(E)
    else:
        emb = sparseopt.optim.Adam(E, lr=lr, betas=BETAS, eps=EPS,
                                   mode="lazy" if method == "lazy" else "exact",
                                   num_threads=num_threads)
        by_rows = flush_takes_indices()
    x, y = data["x_train"], data["y_train"]
    order_rng = np.random.default_rng(seed + 1)  # same batches in the same order for every run
    epoch_loss = []
    t0 = time.perf_counter()
    for _ in range(cfg["epochs"]):
        perm = order_rng.permutation(len(x))
        losses = []
        for a in range(0, len(perm) - B + 1, B):
            xb, yb = x[perm[a:a + B]], y[perm[a:a + B]]
            if method == "exact":
                # Catch the batch's rows up before the forward pass reads them, so the model
                # sees what dense Adam has (older builds: flush() every row, O(table)).
                if by_rows:
                    emb.flush(xb.ravel())
                else:
                    emb.flush()
            h, logits = forward(E, W, b, xb)
            loss, logp = softmax_xent(logits, yb)
            dlogits = np.exp(logp)
            dlogits[np.arange(B), yb] -= 1
            dlogits /= B
            dW, db, dh = h.T @ dlogits, dlogits.sum(0), dlogits @ W.T
            indices = xb.ravel()                           # one row per word of the batch
            values = np.repeat(dh / L, L, axis=0)          # d loss / d E[word] of each word
            if method == "dense":
                G.fill(0)
                np.add.at(G, indices, values)              # the gradient densified with zeros
                emb.step([G])
            else:
                emb.step(indices, values)                  # repeats are summed by the optimizer
            head.step([dW, db])
            losses.append(float(loss))
        epoch_loss.append(float(np.mean(losses)))
    if method != "dense":
        emb.flush()                        # exact mode: every row up to date for evaluation
    seconds = time.perf_counter() - t0
    test_loss, test_acc = evaluate(E, W, b, data["x_test"], data["y_test"])
    train_loss, train_acc = evaluate(E, W, b, x, y)
    if not all(map(math.isfinite, (test_loss, train_loss))):
        test_loss = train_loss = float("nan")
    # How far rows moved from their initial value: rare words vs frequent words.
    moved = np.linalg.norm((E - E0).astype(np.float64), axis=1)
    counts = data["train_counts"]
    rare, frequent = counts <= 2, counts >= np.quantile(counts, 0.99)
    return dict(method=method, lr=lr, test_loss=test_loss, test_acc=test_acc,
                train_loss=train_loss, train_acc=train_acc, epoch_train_loss=epoch_loss,
                seconds=seconds, moved_rare=float(moved[rare].mean()),
                moved_frequent=float(moved[frequent].mean()), E=E)


# --------------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------------
def fmt(x, spec=".3f"):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _table(header, rows):
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---:"] * len(header)) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def to_markdown(res, meta):
    methods, ran, lrs = meta["methods"], meta["ran"], meta["lrs"]

    def cells(key, spec):
        return [[fmt(res[(m, lr)][key], spec) if (m, lr) in res else "not available"
                 for m in methods] for lr in lrs]

    loss, acc = cells("test_loss", ".3f"), cells("test_acc", ".1%")
    train_loss = cells("train_loss", ".3f")
    main = _table(["lr"] + [f"held-out loss: {LABELS[m]}" for m in methods]
                  + [f"held-out acc.: {LABELS[m]}" for m in methods],
                  [[f"{lr:g}"] + l + a for lr, l, a in zip(lrs, loss, acc)])
    diff_methods = [m for m in ran if m != "dense"]
    second = _table(["lr"] + [f"train loss: {LABELS[m]}" for m in methods]
                    + [f"max abs(E - E_dense): {LABELS[m]}" for m in diff_methods],
                    [[f"{lr:g}"] + t
                     + [fmt(meta["diff_to_dense"][m][i], ".1e") for m in diff_methods]
                     for i, (lr, t) in enumerate(zip(lrs, train_loss))])
    best = []
    for m in ran:
        ok = [(res[(m, lr)]["test_loss"], lr) for lr in lrs
              if not math.isnan(res[(m, lr)]["test_loss"])]
        if ok:
            best.append(f"{LABELS[m]} {min(ok)[0]:.3f} at lr={min(ok)[1]:g}")
    secs = "; ".join(f"{LABELS[m]} {np.mean([res[(m, lr)]['seconds'] for lr in lrs]):.1f} s"
                     for m in ran)
    d, cfg = meta["data"], meta["cfg"]
    out = [
        f"Final loss (mean cross-entropy, nats) after {cfg['epochs']} epochs against the learning "
        f"rate of the embedding table's Adam (betas {BETAS}, eps {EPS:g}); the linear layer is "
        f"trained by dense Adam with the same lr in every run, so only the embedding optimizer "
        f"differs. Task: which of {d['C']} works a {cfg['passage']}-word passage comes from; "
        f"{d['n_train']:,} training and {d['n_test']:,} held-out passages of "
        f"`{meta['data_name']}`, vocabulary {d['V']:,} words ({d['rare_frac']:.0%} of them seen "
        f"at most twice in training), "
        f"embeddings of width {cfg['dim']}, {meta['dtype']}, batch {cfg['batch']} "
        f"({meta['steps']:,} steps per run, about {meta['unique_rows_per_step']:,.0f} distinct "
        f"rows per step). Chance level: ln {d['C']} = {math.log(d['C']):.3f}.",
        "",
        "Variants of the embedding optimizer: **dense Adam** = " + meta["reference_desc"]
        + '; **lazy** = `sparseopt.optim.Adam(mode="lazy")`; **exact** = '
        '`Adam(mode="exact")` with `opt.flush(batch_indices)` before every forward pass, so the '
        "model reads the batch's rows where dense Adam has them"
        + ("" if meta["flush_by_rows"] else
           " (this sparseopt's flush() takes no indices: every row is flushed, O(table))")
        + '; **exact, no flush(batch)** = the same without that flush: rows are caught up only '
        "when a step touches them, so the forward pass reads a batch's rows as they were at "
        "their last touch. Both are flushed before evaluation.",
        "",
    ] + main + ["", "Best held-out loss: " + "; ".join(best) + ".", ""] + second + [
        "",
        "max abs(E - E_dense): largest difference between the final embedding table of a variant "
        "and dense Adam's (same initial model, same batches).",
    ]
    if meta["exact_error"]:
        out += ["", f"Exact mode: not available in this sparseopt build ({meta['exact_error']})."]
    out += ["", "Mean distance a row moved from its initial value (rare: words seen at most twice "
                "in training; frequent: the top 1% of words), rare / frequent:", ""]
    out += _table(["lr"] + [LABELS[m] for m in ran],
                  [[f"{lr:g}"] + [f"{res[(m, lr)]['moved_rare']:.3g} / "
                                  f"{res[(m, lr)]['moved_frequent']:.3g}" for m in ran]
                   for lr in lrs])
    out += ["", f"Mean time per training run: {secs}."]
    return "\n".join(out) + "\n"


def plot(res, meta, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    style = {"dense": dict(color="black", lw=5, alpha=0.3, marker="o", ms=10,
                           label="dense Adam (reference)"),
             "lazy": dict(color="tab:red", lw=1.8, marker="s", ms=5,
                          label='sparseopt Adam, mode="lazy"'),
             "exact": dict(color="tab:blue", lw=1.8, ls="--", marker="^", ms=6,
                           label='sparseopt Adam, mode="exact"'),
             "exact_stale": dict(color="tab:green", lw=1.2, ls=":", marker="x", ms=7,
                                 label='mode="exact" without flush(batch) before the forward')}
    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    axes = axes.ravel()
    panels = (("test_loss", "held-out loss (cross-entropy)", "log"),
              ("train_loss", "training loss (cross-entropy)", "log"),
              ("test_acc", "held-out accuracy", "linear"),
              ("moved_rare", "how far rare-word rows moved\n(mean distance from their initial "
                             "value; words seen at most twice)", "log"))
    lrs = meta["lrs"]
    for ax, (key, title, yscale) in zip(axes, panels):
        for m in meta["ran"]:
            ax.plot(lrs, [res[(m, lr)][key] for lr in lrs], **style[m])
        if key in ("test_loss", "train_loss"):
            ax.axhline(math.log(meta["data"]["C"]), color="gray", lw=0.8, ls=":")
            ax.text(lrs[0], math.log(meta["data"]["C"]), " chance", va="bottom", fontsize=8,
                    color="gray")
        ax.set_xscale("log")
        ax.set_yscale(yscale)
        if key == "test_loss":  # plain numbers on a log axis
            values = [res[(m, lr)][key] for m in meta["ran"] for lr in lrs]
            values = [v for v in values if math.isfinite(v)]
            if values:
                lo, hi = min(values), max(values)
                ticks = [t for t in (0.1, 0.2, 0.3, 0.5, 0.7, 1, 1.2, 1.5, 2, 3, 4, 6, 8, 10,
                                     15, 20, 30, 50) if lo * 0.9 <= t <= hi * 1.1]
                ax.yaxis.set_major_locator(matplotlib.ticker.FixedLocator(ticks))
                ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
                ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("learning rate")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    if meta["exact_error"]:
        axes[2].plot([], [], " ", label='mode="exact": not available in this build')
    axes[2].legend(fontsize=8, loc="lower right")
    d = meta["data"]
    fig.suptitle(f"Embedding-bag classifier on {meta['data_name']} ({d['C']} classes, vocabulary "
                 f"{d['V']:,}): final loss after {meta['cfg']['epochs']} epochs vs learning rate",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="a .tar.gz/.tar of text files or a directory of .txt files (one class "
                         "per text), or one text file (cut into 8 parts, one class per part); "
                         f"default: {DEFAULT_DATA} when it exists")
    ap.add_argument("--quick", action="store_true", help="small run (4 learning rates, "
                    "8,000 training passages, 4 epochs): under a minute")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output folder (default: {DEFAULT_OUT} for the full run on the "
                         f"default corpus, else a new temporary folder)")
    ap.add_argument("--lrs", type=float, nargs="+", default=None, help="learning rates to try")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--reference", choices=("numpy", "torch"), default="numpy",
                    help="dense reference: NumPy Adam (default) or torch.optim.Adam")
    ap.add_argument("--no-stale-variant", action="store_true",
                    help='skip the fourth variant, mode="exact" without flush(batch) before '
                         "the forward pass")
    ap.add_argument("--threads", type=int, default=1,
                    help="sparseopt num_threads (default 1: a step touches ~800 small rows, too "
                         "little work to share; 0 = all cores)")
    args = ap.parse_args(argv)

    data_path = resolve_corpus(args.data)
    args.out = output_folder(args.out, not args.quick and data_path == DEFAULT_DATA,
                             "lazy_vs_exact_")

    import sparseopt
    cfg = dict(QUICK if args.quick else FULL)
    if args.lrs:
        cfg["lrs"] = sorted(args.lrs)
    if args.epochs:
        cfg["epochs"] = args.epochs
    dtype = np.dtype(args.dtype)

    t0 = time.perf_counter()
    names, texts = read_texts(data_path)
    data = make_dataset(names, texts, cfg, np.random.default_rng(args.seed))
    n_train, n_test = len(data["x_train"]), len(data["x_test"])
    steps = cfg["epochs"] * (n_train // cfg["batch"])
    uniq = np.mean([np.unique(data["x_train"][a:a + cfg["batch"]]).size
                    for a in range(0, min(n_train, 200 * cfg["batch"]), cfg["batch"])])
    print(f"data: {data_path.name}: {data['C']} classes, {n_train:,} training / {n_test:,} "
          f"held-out passages of {cfg['passage']} words, vocabulary {data['V']:,}; "
          f"{steps:,} steps per run, ~{uniq:.0f} distinct rows per step "
          f"({time.perf_counter() - t0:.1f} s)", flush=True)

    have_exact, exact_error = exact_available()
    methods = [m for m in METHODS if m != "exact_stale" or not args.no_stale_variant]
    ran = methods if have_exact else ["dense", "lazy"]
    if not have_exact:
        print(f'note: sparseopt {sparseopt.__version__} has no Adam(mode="exact") yet '
              f"({exact_error}); running dense and lazy only", flush=True)

    res = {}
    diff_to_dense = {m: [] for m in ran if m != "dense"}
    for lr in cfg["lrs"]:
        tables = {}
        for m in ran:
            r = train(m, lr, data, cfg, args.seed, dtype, args.reference, args.threads)
            tables[m] = r.pop("E").astype(np.float64)
            res[(m, lr)] = r
            print(f"lr={lr:<7g} {LABELS[m]:<25} held-out loss {r['test_loss']:.4f}  acc "
                  f"{r['test_acc']:.1%}  train loss {r['train_loss']:.4f}  "
                  f"({r['seconds']:.1f} s)", flush=True)
        for m in diff_to_dense:
            diff_to_dense[m].append(float(np.max(np.abs(tables[m] - tables["dense"]))))

    ref_desc = ("`torch.optim.Adam` on the whole table, fed the gradient densified with zeros"
                if args.reference == "torch" else
                "NumPy Adam with `torch.optim.Adam`'s formula on the whole table, fed the "
                "gradient densified with zeros")
    meta = dict(cfg=cfg, lrs=cfg["lrs"], methods=methods, ran=ran, exact_error=exact_error,
                diff_to_dense=diff_to_dense, steps=steps, unique_rows_per_step=uniq,
                reference_desc=ref_desc, data_name=data_path.name, dtype=args.dtype,
                flush_by_rows=bool(have_exact and flush_takes_indices()),
                data=dict(C=data["C"], V=data["V"], n_train=n_train, n_test=n_test,
                          rare_frac=float(np.mean(data["train_counts"] <= 2))))
    md = to_markdown(res, meta)
    args.out.mkdir(parents=True, exist_ok=True)
    png, mdp, jsp = (args.out / f"lazy_vs_exact_lr.{ext}" for ext in ("png", "md", "json"))
    try:
        plot(res, meta, png)
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)")
        png = None
    mdp.write_text(md)
    jsp.write_text(json.dumps(dict(
        meta=meta, dtype=args.dtype, seed=args.seed, quick=args.quick,
        sparseopt=sparseopt.info(), classes=data["names"],
        runs=[dict(r) for r in res.values()]), indent=2, default=float) + "\n")
    print()
    print(md)
    print("".join(f"wrote {p}\n" for p in (png, mdp, jsp) if p is not None)
          + f"(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
