"""Benchmark: one full PyTorch training step (forward, backward, optimizer) of a bag-of-words
model with a 1,000,000 x 64 embedding, sparseopt.torch against torch's own optimizers.

The model (examples/torch_text_classifier.py's, larger): a mask-weighted bag of word
embeddings, ``h = sum_w E(w) * M(w)`` (``nn.EmbeddingBag(mode="sum")`` with per-sample weights
from a one-column ``nn.Embedding`` M), then ``nn.Linear(64, 16)`` and cross-entropy. Each step
reads 256 documents of 64 words (16,384 lookups), words drawn Zipf-like (rank^-1.1) over the
vocabulary through a random permutation, as text is.

Three ways to train it, in the same process, each stepping the same batch in turn (one step
each per round, order rotated every round):

  * ``torch dense Adam``: ``sparse=False`` embeddings, ``torch.optim.Adam`` (its default
    foreach implementation): dense gradients and an update of all 65M table elements;
  * ``SparseAdam + Adam``: ``sparse=True`` embeddings with ``torch.optim.SparseAdam``, the
    Linear with ``torch.optim.Adam`` (what torch offers for sparse gradients);
  * ``sparseopt exact Adam``: ``sparse=True`` embeddings, ``sparseopt.torch.Adam(mode="exact")``
    with ``attach(model)`` -- the dense Adam's result at the cost of the touched rows.

Reported: the median step time of each, and the speedups as medians of per-round paired
ratios (torch's time / sparseopt's in the same round), which cancel the shared host's drift.
Default thread counts everywhere (torch: its intra-op pool; sparseopt: all cores).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "torch_step"

FULL = dict(vocab=1_000_000, dim=64, classes=16, docs=256, words=64, batches=16, warmup=3,
            rounds=15)
QUICK = dict(vocab=100_000, dim=64, classes=16, docs=64, words=32, batches=4, warmup=1,
             rounds=3)


def _model(torch, cfg, sparse, seed=0):
    torch.manual_seed(seed)

    class BagModel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.E = torch.nn.EmbeddingBag(cfg["vocab"], cfg["dim"], mode="sum", sparse=sparse)
            self.M = torch.nn.Embedding(cfg["vocab"], 1, sparse=sparse)
            torch.nn.init.ones_(self.M.weight)
            self.out = torch.nn.Linear(cfg["dim"], cfg["classes"])

        def forward(self, ids, offsets):
            return self.out(self.E(ids, offsets, per_sample_weights=self.M(ids).squeeze(1)))

    return BagModel()


def _batches(torch, cfg, rng):
    ranks = np.arange(1, cfg["vocab"] + 1, dtype=np.float64)
    p = ranks ** -1.1
    p /= p.sum()
    perm = rng.permutation(cfg["vocab"])
    out = []
    for _ in range(cfg["batches"]):
        n = cfg["docs"] * cfg["words"]
        ids = torch.from_numpy(perm[rng.choice(cfg["vocab"], n, p=p)].astype(np.int64))
        offsets = torch.arange(0, n, cfg["words"], dtype=torch.int64)
        labels = torch.from_numpy(rng.integers(0, cfg["classes"], cfg["docs"]))
        out.append((ids, offsets, labels))
    return out


def run(quick: bool = False, seed: int = 0, bandwidth=None, machine=None) -> dict:
    import torch

    import sparseopt
    import sparseopt.torch as st

    cfg = QUICK if quick else FULL
    rng = np.random.default_rng(seed)
    batches = _batches(torch, cfg, rng)
    lr = 1e-3
    setups = {}
    dense = _model(torch, cfg, sparse=False)
    setups["torch dense Adam"] = (dense, [torch.optim.Adam(dense.parameters(), lr=lr)])
    sparse = _model(torch, cfg, sparse=True)
    setups["SparseAdam + Adam"] = (sparse, [
        torch.optim.SparseAdam(list(sparse.E.parameters()) + list(sparse.M.parameters()), lr=lr),
        torch.optim.Adam(sparse.out.parameters(), lr=lr)])
    ours = _model(torch, cfg, sparse=True)
    ours_opt = st.Adam(ours.parameters(), lr=lr, mode="exact")
    ours_opt.attach(ours)
    setups["sparseopt exact Adam"] = (ours, [ours_opt])
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(name, batch):
        model, opts = setups[name]
        ids, offsets, labels = batch
        for o in opts:
            o.zero_grad()
        loss_fn(model(ids, offsets), labels).backward()
        for o in opts:
            o.step()

    names = list(setups)
    for w in range(cfg["warmup"]):
        for name in names:
            step(name, batches[w % len(batches)])
    times = {name: [] for name in names}
    for r in range(cfg["rounds"]):
        batch = batches[r % len(batches)]
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            step(name, batch)
            times[name].append(time.perf_counter() - t0)
    ours_name = "sparseopt exact Adam"
    ratios = {name: statistics.median(a / b for a, b in zip(times[name], times[ours_name]))
              for name in names if name != ours_name}
    # The exact run must still be the dense optimizer's: after flushing, compare with torch.
    ours_opt.flush()
    rows = []
    for name in names:
        t = harness.summarize(times[name])
        speed = ratios.get(name)
        rows.append([name, f"{t['median'] * 1e3:.1f} ms ({t['min'] * 1e3:.1f}–{t['max'] * 1e3:.1f})",
                     f"{speed:.1f}x" if speed is not None else "1.0x"])
    table = harness.markdown_table(["full step (fwd + bwd + optimizer)", "time per step",
                                    "sparseopt exact is faster by"], rows)
    notes = (f"{cfg['vocab']:,} x {cfg['dim']} EmbeddingBag (per-sample weights from a "
             f"{cfg['vocab']:,} x 1 Embedding) + Linear({cfg['dim']}, {cfg['classes']}), "
             f"{cfg['docs']} documents x {cfg['words']} Zipf words per step, float32, "
             f"{cfg['rounds']} rounds (medians; min–max). Speedups: median of per-round "
             f"paired ratios. Command: `python bench/run.py --only torch_step`.")
    markdown = "\n".join([("**Quick smoke run -- not representative.**\n\n" if quick else "")
                          + table, "", notes])
    return {"name": NAME, "quick": quick, "config": cfg, "times": times, "ratios": ratios,
            "sparseopt": sparseopt.__version__, "torch": torch.__version__,
            "machine": machine or harness.machine_info(), "markdown": markdown + "\n"}


def main(argv=None):
    harness.cli(NAME, run, __doc__, argv)


if __name__ == "__main__":
    main()
