"""What sharing the tables costs two Hogwild workers of the word2vec example.

Backs the closing note of issue 5 (scaling from 1 to 2 workers). The example's fused SGD pass
(``sampled.logistic_sgd``) runs on the example's own batches (the Shakespeare corpus, the
example's pairs and negatives), timed in interleaved rounds as:

* ``1 thread``: every batch on one thread;
* ``2 threads, one table``: two threads share the batches and update the same tables, as
  Hogwild training does;
* ``2 threads, two tables``: the same, each thread on its own copy of the tables (no row is
  shared, so no cache line passes between the cores; not a training method, a yardstick).

Printed: the median seconds of each and the scaling of each 2-thread variant (the 1-thread
median over its median; and the median of the per-round ratios). The gap between the two
2-thread variants is the cost of the cores passing the frequent words' rows back and forth.

    python bench/diagnostics/hogwild_sharing.py [--rounds 20] [--batches 30]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import word2vec_hogwild as w2v  # noqa: E402

from sparseopt import sampled  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--batches", type=int, default=30, help="batches of 10,000 words per run")
    ap.add_argument("--data", type=Path, default=w2v.DEFAULT_DATA)
    args = ap.parse_args()

    paragraphs = w2v.read_paragraphs(args.data)
    train = [p for i, p in enumerate(paragraphs) if i % w2v.HELD_OUT_EVERY]
    s = w2v.SETTINGS
    vocab = w2v.Vocabulary.build(train, s["min_count"], s["sample"])
    tokens, offsets = vocab.encode(train)
    bounds = w2v.batch_bounds(offsets, w2v.BATCH_WORDS)
    sampler = sampled.NegativeSampler(vocab.counts ** s["ns_exponent"])
    batches = []
    for b in range(min(args.batches, len(bounds) - 1)):
        s0, s1 = int(bounds[b]), int(bounds[b + 1])
        t0, t1 = int(offsets[s0]), int(offsets[s1])
        centers, contexts = sampled.context_pairs(
            tokens[t0:t1], s["window"], offsets=offsets[s0:s1 + 1] - t0,
            keep_probability=vocab.keep_probability, seed=b)
        batches.append((contexts, sampler.draw(centers, s["negative"], seed=b, num_threads=1)))

    rng = np.random.default_rng(0)
    V, d = len(vocab.words), s["vector_size"]

    def tables():
        return ((rng.random((V, d), dtype=np.float32) * 2 - 1) / d, np.zeros((V, d), np.float32))

    first, second = tables(), tables()

    def work(tabs, which):
        for i in which:
            sampled.logistic_sgd(tabs[0], tabs[1], *batches[i], lr=0.01, compute_loss=False)

    def run(variant: str) -> float:
        t = time.perf_counter()
        if variant == "1 thread":
            work(first, range(len(batches)))
        else:
            own = (first, first) if variant == "2 threads, one table" else (first, second)
            threads = [threading.Thread(target=work, args=(own[r], range(r, len(batches), 2)))
                       for r in range(2)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        return time.perf_counter() - t

    variants = ["1 thread", "2 threads, one table", "2 threads, two tables"]
    times = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants if r % 2 == 0 else variants[::-1]:
            times[v].append(run(v))
    one = statistics.median(times["1 thread"])
    print(f"{len(batches)} batches ({sum(len(c) for c, _ in batches):,} pairs), {args.rounds} rounds")
    print(f"{'variant':<24}{'median s':>10}{'scaling':>10}{'paired (quartiles)':>28}")
    for v in variants:
        med = statistics.median(times[v])
        line = f"{v:<24}{med:>10.3f}"
        if v != "1 thread":
            paired = [a / b for a, b in zip(times["1 thread"], times[v])]
            q = statistics.quantiles(paired, n=4)
            line += f"{one / med:>9.2f}x{q[1]:>10.2f}x ({q[0]:.2f}-{q[2]:.2f})"
        print(line)


if __name__ == "__main__":
    main()
