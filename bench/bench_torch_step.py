"""Benchmark: one full training step (forward, backward, optimizer) of a text-typing model with
a 1,000,000 x 64 word-embedding table, in PyTorch, three ways in the same process:

- ``sparseopt.torch.Adam(mode="exact")`` (attached: each forward first catches up the rows it
  reads), on sparse embedding gradients: the result equals dense ``torch.optim.Adam``;
- dense ``torch.optim.Adam`` with ``sparse=False`` embeddings (the same numbers, every row
  stepped every time);
- ``torch.optim.SparseAdam`` on the sparse embeddings + ``torch.optim.Adam`` on the linear layer
  (another algorithm: untouched rows keep their moments).

The model is a mask-weighted bag of word embeddings, ``sum_w E(w) * M(w)``, then a linear
softmax (the one of examples/torch_text_classifier.py). Timing: rounds of ``steps`` steps per
contestant, the contestants interleaved within a round; the headline is the median over rounds
of the per-round ratio of mean step times.

    python bench/bench_torch_step.py            # or: python bench/run.py --only torch_step
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

NAME = "torch_step"


def _model(torch, rows: int, dim: int, classes: int, sparse: bool):
    nn = torch.nn

    class BagModel(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.emb = nn.EmbeddingBag(rows, dim, mode="sum", sparse=sparse)
            self.mask = nn.Embedding(rows, 1, sparse=sparse)
            self.out = nn.Linear(dim, classes)

        def forward(self, ids, offsets):
            weights = self.mask(ids).reshape(-1)
            return self.out(self.emb(ids, offsets, per_sample_weights=weights))

    return BagModel()


def _batches(torch, cfg: dict, seed: int) -> list:
    """Zipf-distributed word ids (a few hot rows, a long tail), fixed-length documents."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(cfg["num_batches"]):
        ids = np.minimum(rng.zipf(1.2, size=cfg["batch"] * cfg["words"]) - 1, cfg["rows"] - 1)
        offsets = np.arange(0, ids.size, cfg["words"])
        labels = rng.integers(0, cfg["classes"], size=cfg["batch"])
        out.append(tuple(torch.from_numpy(a) for a in (ids, offsets, labels)))
    return out


def _contestants(torch, cfg: dict) -> dict:
    import sparseopt.torch as so

    def build(sparse):
        return _model(torch, cfg["rows"], cfg["dim"], cfg["classes"], sparse)

    ours = build(True)
    exact = so.Adam(ours.parameters(), lr=1e-3, mode="exact").attach(ours)
    dense = build(False)
    dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3)
    mixed = build(True)
    mixed_opts = [torch.optim.SparseAdam([mixed.emb.weight, mixed.mask.weight], lr=1e-3),
                  torch.optim.Adam(mixed.out.parameters(), lr=1e-3)]
    return {"sparseopt.torch exact Adam": (ours, [exact]),
            "torch dense Adam": (dense, [dense_opt]),
            "SparseAdam + Adam": (mixed, mixed_opts)}


def run(quick: bool = False, seed: int = 0, bandwidth: dict | None = None,
        machine: dict | None = None) -> dict:
    import torch

    cfg = dict(rows=1_000_000, dim=64, classes=3, batch=256, words=20, num_batches=16,
               rounds=3 if quick else 7, steps=3 if quick else 10)
    if quick:
        cfg.update(rows=100_000)
    batches = _batches(torch, cfg, seed)
    contestants = _contestants(torch, cfg)
    loss_fn = torch.nn.functional.cross_entropy

    def stepper(model, opts):
        def step(i):
            ids, offsets, labels = batches[i % len(batches)]
            for o in opts:
                o.zero_grad()
            loss_fn(model(ids, offsets), labels).backward()
            for o in opts:
                o.step()
        return step

    steps = {name: stepper(*c) for name, c in contestants.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up: state allocation, first-touch pages
        for i in range(2):
            step(i)
    for r in range(cfg["rounds"]):
        for name, step in steps.items():
            t = harness.time_steps(step, warmup=0, steps=cfg["steps"], repeat=1,
                                   start=r * cfg["steps"])
            times[name].append(t["median"])
    ours = "sparseopt.torch exact Adam"
    rows = []
    for name, ts in times.items():
        ratios = [t / o for t, o in zip(ts, times[ours])]
        rows.append((name, f"{statistics.median(ts) * 1e3:.2f}",
                     f"{min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f}",
                     "1" if name == ours else f"{statistics.median(ratios):.1f}x"))
    md = (f"One training step (forward, backward, optimizer) of a {cfg['rows']:,} x {cfg['dim']} "
          f"mask-weighted EmbeddingBag + Linear({cfg['dim']}, {cfg['classes']}) model, float32, "
          f"batch {cfg['batch']} x {cfg['words']} Zipf(1.2) word ids; median of {cfg['rounds']} "
          f"rounds of {cfg['steps']} steps, contestants interleaved.\n\n"
          + harness.markdown_table(
              ["optimizer", "ms / step (median)", "range over rounds",
               "sparseopt.torch faster by (median paired ratio)"], rows, ["l", "r", "r", "r"])
          + "\n\n" + harness.describe_machine(machine or harness.machine_info(), bandwidth))
    return {"config": cfg, "times_s": times, "markdown": md}


if __name__ == "__main__":
    harness.cli(NAME, run, __doc__)
