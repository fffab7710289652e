"""Genre of a Shakespeare speech from its words, in PyTorch, with four optimizers.

Task: each paragraph (a speech or stage direction, blank-line separated) of the 37 plays in
``../shared/data/shakespeare/plays_modern.tar.gz`` is labelled with its play's genre in the First
Folio's grouping -- comedy, history or tragedy (Pericles, absent from the Folio, counts as a
comedy; the poems are left out) -- and a model predicts the genre from the words. Paragraphs are
split at random into 80 % training and 20 % held out (so one play's speeches sit on both sides:
the model may learn character names; the task is a workload, not a literary claim).

Model: a mask-weighted bag of word embeddings, ``h = sum_w E(w) * M(w)`` (``E`` an
``nn.EmbeddingBag(V, dim)``, ``M`` an ``nn.Embedding(V, 1)``, both ``sparse=True`` where the
optimizer takes sparse gradients), then ``nn.Linear(dim, 3)`` and a softmax. It is trained with

- ``torch.optim.Adam`` (dense embeddings),
- ``torch.optim.SparseAdam`` on the embeddings + ``torch.optim.Adam`` on the linear layer,
- ``sparseopt.torch.Adam(mode="lazy")`` (the SparseAdam + Adam algorithm, one optimizer),
- ``sparseopt.torch.Adam(mode="exact")`` with ``attach`` (the dense Adam algorithm),

from the same initial weights on the same batches; the table gives seconds per epoch and
held-out accuracy, the plot held-out accuracy per epoch.

Without the corpus (a user who has not got ../shared/data) the example trains on a small
SYNTHETIC corpus -- three "genres" drawing words from overlapping Zipf vocabularies -- and says
so in its output. ``--quick`` (the test suite's run) trains a small model for 2 epochs and writes
to a temporary folder unless ``--out`` is given; a full run writes examples/output/.

    python examples/torch_text_classifier.py [--quick] [--out DIR] [--data PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sparseopt.torch as so

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "shakespeare" / "plays_modern.tar.gz"
GENRES = ("comedy", "history", "tragedy")
HISTORIES = ("henry_", "john", "richard_")
TRAGEDIES = ("antony", "coriolanus", "cymbeline", "hamlet", "julius", "lear", "macbeth",
             "othello", "romeo", "timon", "tragedy_of_titus", "troilus")
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix", "rape_of_lucrece", "sonnets")


def genre_of(filename: str) -> int | None:
    name = Path(filename).name
    if name.startswith(POEMS):
        return None
    if name.startswith(HISTORIES):
        return 1
    return 2 if name.startswith(TRAGEDIES) else 0


def read_corpus(path: Path) -> tuple[list[list[str]], np.ndarray]:
    """(word lists, genre labels) of every paragraph of at least 5 words."""
    docs, labels = [], []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            label = genre_of(member.name) if member.isfile() else None
            if label is None:
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            for para in re.split(r"\n\s*\n", text):
                words = re.findall(r"[a-z']+", para.lower())
                if len(words) >= 5:
                    docs.append(words)
                    labels.append(label)
    return docs, np.array(labels, np.int64)


def synthetic_corpus(num_docs: int, seed: int) -> tuple[list[list[str]], np.ndarray]:
    """SYNTHETIC: three genres drawing words from shifted Zipf vocabularies over 5,000 words."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=num_docs)
    docs = []
    for label in labels:
        ranks = np.minimum(rng.zipf(1.3, size=int(rng.integers(5, 40))) - 1, 4999)
        docs.append([f"w{(r + 1700 * label * (r % 3 == 0)) % 5000}" for r in ranks])
    return docs, labels.astype(np.int64)


def encode(docs, min_count: int) -> tuple[list[np.ndarray], int]:
    counts: dict[str, int] = {}
    for d in docs:
        for w in d:
            counts[w] = counts.get(w, 0) + 1
    vocab = {w: i for i, w in enumerate(sorted(w for w, c in counts.items() if c >= min_count))}
    ids = [np.array([vocab[w] for w in d if w in vocab] or [0], np.int64) for d in docs]
    return ids, len(vocab) or 1


class BagModel(nn.Module):
    def __init__(self, vocab: int, dim: int, sparse: bool, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.emb = nn.EmbeddingBag(vocab, dim, mode="sum", sparse=sparse)
        self.mask = nn.Embedding(vocab, 1, sparse=sparse)
        nn.init.constant_(self.mask.weight, 1.0 / 16)
        self.out = nn.Linear(dim, len(GENRES))

    def forward(self, ids, offsets):
        return self.out(self.emb(ids, offsets, per_sample_weights=self.mask(ids).reshape(-1)))


def batch_tensors(ids: list[np.ndarray], order: np.ndarray):
    lengths = np.array([len(ids[i]) for i in order])
    flat = np.concatenate([ids[i] for i in order])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return torch.from_numpy(flat), torch.from_numpy(offsets)


def optimizers(name: str, model: BagModel, lr: float):
    if name == "torch Adam (dense)":
        return [torch.optim.Adam(model.parameters(), lr=lr)]
    if name == "torch SparseAdam + Adam":
        return [torch.optim.SparseAdam([model.emb.weight, model.mask.weight], lr=lr),
                torch.optim.Adam(model.out.parameters(), lr=lr)]
    mode = "lazy" if "lazy" in name else "exact"
    return [so.Adam(model.parameters(), lr=lr, mode=mode).attach(model)]


RUNS = ("torch Adam (dense)", "torch SparseAdam + Adam", "sparseopt.torch Adam lazy",
        "sparseopt.torch Adam exact")


def accuracy(model, opts, ids, labels, idx) -> float:
    for o in opts:
        if isinstance(o, so.Optimizer):
            o.flush()
    with torch.no_grad():
        flat, offsets = batch_tensors(ids, idx)
        return float((model(flat, offsets).argmax(1).numpy() == labels[idx]).mean())


def train(name, ids, labels, train_idx, test_idx, vocab, args) -> dict:
    model = BagModel(vocab, args.dim, sparse=name != RUNS[0], seed=args.seed)
    opts = optimizers(name, model, args.lr)
    rng = np.random.default_rng(args.seed)
    epoch_s, acc = [], []
    for _ in range(args.epochs):
        order = rng.permutation(train_idx)
        t0 = time.perf_counter()
        for start in range(0, len(order), args.batch):
            flat, offsets = batch_tensors(ids, order[start:start + args.batch])
            for o in opts:
                o.zero_grad()
            target = torch.from_numpy(labels[order[start:start + args.batch]])
            nn.functional.cross_entropy(model(flat, offsets), target).backward()
            for o in opts:
                o.step()
        epoch_s.append(time.perf_counter() - t0)
        acc.append(accuracy(model, opts, ids, labels, test_idx))
    return {"seconds_per_epoch": float(np.median(epoch_s)), "held_out_accuracy": acc}


def to_markdown(result: dict) -> str:
    lines = [f"Data: {result['data']}; vocabulary {result['vocab']:,}, dim {result['dim']}, "
             f"{result['train']:,} training / {result['test']:,} held-out paragraphs, "
             f"{result['epochs']} epochs, batch {result['batch']}, lr {result['lr']}.", "",
             "| optimizer | s / epoch (median) | held-out accuracy (last epoch) |",
             "|---|---:|---:|"]
    for name, r in result["runs"].items():
        lines.append(f"| {name} | {r['seconds_per_epoch']:.3f} | "
                     f"{r['held_out_accuracy'][-1]:.3f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: no plot (pip install matplotlib)"
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, r in result["runs"].items():
        ax.plot(range(1, len(r["held_out_accuracy"]) + 1), r["held_out_accuracy"], label=name,
                marker="o")
    ax.set_xlabel("epoch")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Shakespeare genre from a paragraph's words")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return f"wrote {path}"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small, 2 epochs (the test's run)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: examples/output/, or a temporary folder "
                         "with --quick)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else 10
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.data.exists():
        docs, labels = read_corpus(args.data)
        data = f"Shakespeare plays ({args.data.name})"
    else:
        docs, labels = synthetic_corpus(3000, args.seed)
        data = f"SYNTHETIC corpus ({args.data} not found)"
        print(f"note: {args.data} not found; training on a SYNTHETIC corpus")
    rng = np.random.default_rng(args.seed)
    if args.quick:
        keep = rng.permutation(len(docs))[:3000]
        docs, labels = [docs[i] for i in keep], labels[keep]
    ids, vocab = encode(docs, min_count=1 if args.quick else 2)
    perm = rng.permutation(len(docs))
    split = int(0.8 * len(docs))
    train_idx, test_idx = perm[:split], perm[split:]
    result = dict(data=data, vocab=vocab, dim=args.dim, train=len(train_idx),
                  test=len(test_idx), epochs=args.epochs, batch=args.batch, lr=args.lr,
                  runs={name: train(name, ids, labels, train_idx, test_idx, vocab, args)
                        for name in RUNS})
    out = args.out or (Path(tempfile.mkdtemp(prefix="torch_text_")) if args.quick
                       else REPO_ROOT / "examples" / "output")
    out.mkdir(parents=True, exist_ok=True)
    md = to_markdown(result)
    (out / "torch_text_classifier.json").write_text(json.dumps(result, indent=1))
    (out / "torch_text_classifier.md").write_text(md)
    print(md)
    print(plot(result, out / "torch_text_classifier.png"))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
