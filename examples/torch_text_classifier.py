"""A PyTorch text classifier trained with sparseopt.torch: which kind of Shakespeare play -- comedy,
tragedy or history -- is a speech from?

The model is a mask-weighted bag of word embeddings, ``h = mean_w E(w) * M(w)`` (an
``nn.EmbeddingBag`` over the speech's words and hashed word pairs, weighted per word by a
learned one-column ``nn.Embedding`` M), then ``nn.Linear`` and a softmax over the three genres.
Most of its parameters are the embedding rows, and a batch of speeches touches few of them:
the case sparseopt is for. It is trained four ways, same initial weights, same batches:

  * torch dense Adam   -- ``sparse=False`` embeddings, ``torch.optim.Adam``;
  * SparseAdam + Adam  -- ``sparse=True``, ``torch.optim.SparseAdam`` for the embeddings and
                          ``torch.optim.Adam`` for the Linear;
  * sparseopt lazy     -- ``sparseopt.torch.Adam(mode="lazy")`` for everything (the same
                          update as SparseAdam + Adam, one optimizer);
  * sparseopt exact    -- ``sparseopt.torch.Adam(mode="exact")`` with ``attach(model)``: the
                          dense Adam's result at the cost of the touched rows.

and reports the time per epoch and the held-out accuracy after each epoch.

Data: the 37 plays of ``../shared/data/shakespeare/plays_modern.tar.gz`` (or ``--data FILE``),
genres as the First Folio groups them (Pericles, absent from it, as a comedy; Cymbeline and
Troilus and Cressida as tragedies); the poems are left out. A speech is the text after a
speaker's name up to the next blank line; speeches of fewer than 8 words are dropped; 20 % of
the speeches, drawn at random, are held out. Without the corpus the example trains on the
six plays shipped in examples/data/ (two of each kind) and says so in its output.

    python examples/torch_text_classifier.py            # full run (a few minutes)
    python examples/torch_text_classifier.py --quick    # smoke run, seconds
    python examples/torch_text_classifier.py --update-readme   # also the table in examples/README.md

Writes DIR/torch_text_classifier.{json,md,png}; DIR is --out, else examples/output/ for the
full run on the default corpus, else a new temporary folder.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tarfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch

import sparseopt
import sparseopt.torch as st

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _corpus, also when loaded by path
from _corpus import DEFAULT_DATA, SAMPLE_DATA, output_folder, resolve_corpus  # noqa: E402
GENRES = ("comedy", "tragedy", "history")
HISTORY = {"john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v",
           "henry_vi_part_1", "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"}
TRAGEDY = {"antony_and_cleopatra", "coriolanus", "cymbeline", "hamlet", "julius_caesar", "lear",
           "macbeth", "othello", "romeo_and_juliet", "timon_of_athens",
           "tragedy_of_titus_andronicus", "troilus_and_cressida"}
POEMS = {"lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece",
         "sonnets"}
METHODS = ("torch dense Adam", "SparseAdam + Adam", "sparseopt lazy", "sparseopt exact")
SPEAKER = re.compile(r"^([A-Z][A-Z .'\-]+)\.\s*$")
WORD = re.compile(r"[a-z']+")


def genre_of(play: str) -> str | None:
    if play in POEMS:
        return None
    return "history" if play in HISTORY else "tragedy" if play in TRAGEDY else "comedy"


def speeches_of(text: str) -> list[str]:
    out, current = [], None
    for line in text.splitlines():
        if SPEAKER.match(line.strip()):
            if current:
                out.append(" ".join(current))
            current = []
        elif not line.strip():
            if current:
                out.append(" ".join(current))
            current = None
        elif current is not None and not line.lstrip().startswith("["):
            current.append(line.strip())
    if current:
        out.append(" ".join(current))
    return out


def load_corpus(path: Path) -> list[tuple[list[str], int]]:
    docs = []
    with tarfile.open(path) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            play = Path(member.name).name.replace("_gut.txt", "")
            genre = genre_of(play)
            if genre is None or not member.isfile():
                continue
            text = tar.extractfile(member).read().decode("utf-8", errors="replace")
            for speech in speeches_of(text):
                words = WORD.findall(speech.lower())
                if len(words) >= 8:
                    docs.append((words, GENRES.index(genre)))
    return docs


def featurize(docs, buckets: int):
    """Token ids: each word, and each adjacent word pair hashed into `buckets` extra rows."""
    vocab: dict[str, int] = {}
    for words, _ in docs:
        for w in words:
            vocab.setdefault(w, len(vocab))
    ids = []
    for words, _ in docs:
        unigrams = [vocab[w] for w in words]
        pairs = [len(vocab) + zlib.crc32(f"{a} {b}".encode()) % buckets
                 for a, b in zip(words, words[1:])]
        ids.append(np.array(unigrams + pairs, dtype=np.int64))
    labels = np.array([label for _, label in docs], dtype=np.int64)
    return ids, labels, len(vocab) + buckets


class BagModel(torch.nn.Module):
    def __init__(self, num_rows: int, dim: int, sparse: bool, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        self.E = torch.nn.EmbeddingBag(num_rows, dim, mode="sum", sparse=sparse)
        torch.nn.init.normal_(self.E.weight, std=0.1)
        self.M = torch.nn.Embedding(num_rows, 1, sparse=sparse)
        torch.nn.init.ones_(self.M.weight)
        self.out = torch.nn.Linear(dim, len(GENRES))

    def forward(self, ids, offsets, inv_len):
        weights = self.M(ids).squeeze(1) * inv_len  # mean over the speech, weighted by M
        return self.out(self.E(ids, offsets, per_sample_weights=weights))


def batches_of(ids, labels, order, batch_size):
    for start in range(0, len(order), batch_size):
        chosen = order[start:start + batch_size]
        lengths = [len(ids[i]) for i in chosen]
        flat = torch.from_numpy(np.concatenate([ids[i] for i in chosen]))
        offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
        inv_len = torch.from_numpy(np.repeat(1.0 / np.array(lengths, np.float32), lengths))
        yield flat, offsets, inv_len, torch.from_numpy(labels[chosen])


def make_method(name: str, num_rows: int, dim: int, lr: float, seed: int):
    sparse = name != "torch dense Adam"
    model = BagModel(num_rows, dim, sparse, seed)
    if name == "torch dense Adam":
        opts = [torch.optim.Adam(model.parameters(), lr=lr)]
    elif name == "SparseAdam + Adam":
        opts = [torch.optim.SparseAdam(list(model.E.parameters()) + list(model.M.parameters()), lr=lr),
                torch.optim.Adam(model.out.parameters(), lr=lr)]
    else:
        mode = "exact" if name.endswith("exact") else "lazy"
        opt = st.Adam(model.parameters(), lr=lr, mode=mode)
        opt.attach(model)
        opts = [opt]
    return model, opts


def accuracy(model, opts, ids, labels, order, batch_size) -> float:
    for o in opts:  # exact mode: every row up to date before reading the whole table
        if isinstance(o, st.Adam):
            o.flush()
    correct = 0
    with torch.no_grad():
        for flat, offsets, inv_len, y in batches_of(ids, labels, order, batch_size):
            correct += int((model(flat, offsets, inv_len).argmax(1) == y).sum())
    return correct / max(1, len(order))


def run(args) -> dict:
    rng = np.random.default_rng(args.seed)
    source = args.data
    docs = load_corpus(source)
    data_note = (f"SAMPLE of six plays ({source.name})" if source == SAMPLE_DATA
                 else f"Shakespeare's plays ({source.name})")
    if args.quick:
        docs = [docs[i] for i in rng.permutation(len(docs))[: min(len(docs), 3000)]]
    ids, labels, num_rows = featurize(docs, args.buckets)
    order = rng.permutation(len(ids))
    n_test = len(order) // 5
    test, train = order[:n_test], order[n_test:]
    print(f"{len(ids)} speeches ({len(train)} train, {len(test)} held out), {num_rows:,} "
          f"embedding rows of {args.dim}; genre shares "
          f"{np.bincount(labels, minlength=3) / len(labels)}", file=sys.stderr)
    results = {}
    for name in METHODS:
        model, opts = make_method(name, num_rows, args.dim, args.lr, args.seed)
        loss_fn = torch.nn.CrossEntropyLoss()
        curve = []
        for epoch in range(1, args.epochs + 1):
            epoch_order = np.random.default_rng(args.seed + epoch).permutation(train)
            t0 = time.perf_counter()
            for flat, offsets, inv_len, y in batches_of(ids, labels, epoch_order, args.batch):
                for o in opts:
                    o.zero_grad()
                loss_fn(model(flat, offsets, inv_len), y).backward()
                for o in opts:
                    o.step()
            seconds = time.perf_counter() - t0
            acc = accuracy(model, opts, ids, labels, test, 512)
            curve.append({"epoch": epoch, "seconds": seconds, "test_acc": acc})
            print(f"{name:>20}  epoch {epoch}: {seconds:6.2f} s  held-out accuracy {acc:.4f}",
                  file=sys.stderr)
        results[name] = curve
    return {"data": data_note, "speeches": len(ids), "train": len(train), "test": len(test),
            "embedding_rows": num_rows, "dim": args.dim, "epochs": args.epochs,
            "batch": args.batch, "lr": args.lr, "quick": args.quick, "results": results,
            "sparseopt": sparseopt.__version__, "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def table(data: dict) -> str:
    dense = np.median([c["seconds"] for c in data["results"]["torch dense Adam"]])
    lines = ["| optimizer | time per epoch | vs torch dense Adam | held-out accuracy |",
             "|:---|---:|---:|---:|"]
    for name, curve in data["results"].items():
        sec = float(np.median([c["seconds"] for c in curve]))
        lines.append(f"| {name} | {sec:.2f} s | {dense / sec:.1f}x | "
                     f"{curve[-1]['test_acc'] * 100:.2f} % |")
    lines += ["", f"{data['data']}: {data['speeches']:,} speeches ({data['test']:,} held out), "
                  f"{data['embedding_rows']:,} x {data['dim']} embedding, {data['epochs']} epochs "
                  f"of batches of {data['batch']}, Adam lr {data['lr']}, median epoch time, "
                  f"torch {data['torch']} on {data['threads']} threads. Regenerate: "
                  f"`python examples/torch_text_classifier.py --update-readme`."]
    if data["quick"]:
        lines.insert(0, "**Quick smoke run -- not representative.**\n")
    return "\n".join(lines) + "\n"


def plot(data: dict, path: Path) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib)", file=sys.stderr)
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in data["results"].items():
        epochs = [c["epoch"] for c in curve]
        ax1.plot(epochs, [c["test_acc"] for c in curve], marker="o", label=name)
        ax2.bar(name.replace(" + ", "+\n").replace("sparseopt ", "sparseopt\n"),
                float(np.median([c["seconds"] for c in curve])))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("held-out accuracy")
    ax1.legend()
    ax2.set_ylabel("seconds per epoch")
    fig.suptitle("Shakespeare genre from a speech: a bag of embeddings trained four ways")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="plays_modern.tar.gz")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--buckets", type=int, default=1 << 20, help="rows for hashed word pairs")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="3,000 speeches, 1 epoch, small table")
    ap.add_argument("--update-readme", action="store_true",
                    help="write the table into examples/README.md between its markers")
    args = ap.parse_args(argv)
    if args.update_readme and args.quick:
        ap.error("--update-readme needs a full run (no --quick)")
    if args.quick:
        args.buckets = min(args.buckets, 1 << 14)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 4
    args.data = resolve_corpus(args.data)
    full_run = not args.quick and args.data == DEFAULT_DATA  # only its results go in output/
    if args.update_readme and not full_run:
        ap.error("--update-readme needs the full run on the default corpus")
    out = output_folder(args.out, full_run, "torch_text_")
    out.mkdir(parents=True, exist_ok=True)
    data = run(args)
    md = table(data)
    print(md)
    (out / "torch_text_classifier.json").write_text(json.dumps(data, indent=1))
    (out / "torch_text_classifier.md").write_text(md)
    plot(data, out / "torch_text_classifier.png")
    print(f"wrote {out}/torch_text_classifier.{{json,md,png}}", file=sys.stderr)
    if args.update_readme:
        sys.path.insert(0, str(REPO_ROOT / "bench"))
        import harness
        changed = harness.splice_readme("torch_text_classifier", md, HERE / "README.md")
        print(f"{'updated' if changed else 'unchanged'}: examples/README.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
