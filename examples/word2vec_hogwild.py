#!/usr/bin/env python
"""Word embeddings with sparseopt, Hogwild-style on 1 and 2 workers, measured against gensim.

Skip-gram with negative sampling (word2vec) built from sparseopt's pieces:

* ``sparseopt.sampled.context_pairs`` -- each batch's (center, context) pairs: frequent words
  dropped at random (word2vec's ``sample``), then a window shrunk at random for every center;
* ``sparseopt.sampled.NegativeSampler`` -- 5 negatives per pair from unigram counts^0.75;
* ``sparseopt.sampled.logistic_sgd`` -- the fused SGD pass over the input vectors (anchor rows:
  the context words) and the output vectors (candidates: the center word and its negatives), in
  word2vec's update order, with the learning rate decaying linearly from 0.025 to 0.0001 over
  the run as gensim's does;
* ``sparseopt.hogwild.run`` -- the workers (threads by default: the kernels release the GIL)
  updating both tables at once without locks, with a progress display.

A second variant trains with the same pairs and negatives through the composable path:
``sparseopt.sampled.logistic_grad`` (both tables' gradients, coalesced) stepped by
``sparseopt.optim.Adagrad`` -- any sparseopt optimizer would do -- each worker with its own
replica of the optimizers over the shared tables and state.

In the same run, and interleaved with it, ``gensim.models.Word2Vec`` trains with the same
settings (skip-gram, vector size 100, window 5, 5 negatives, min_count 5, sample 1e-3, 5 epochs)
on the same sentences with ``workers=1`` and ``workers=2``. The script reports, side by side:

* words per second (training words x epochs / training time; medians over repeated runs) and
  the scaling from 1 to 2 workers;
* quality: the overlap of the 10 nearest neighbours (cosine) of the 200 most frequent words with
  gensim's single-worker runs of other seeds -- for gensim's own runs, the same number is the
  calibration: how much two gensim runs that differ only in the seed agree -- and the
  negative-sampling loss on held-out sentences (every 50th paragraph, never trained on);
* the nearest neighbours of a few words.

    python examples/word2vec_hogwild.py                 # full comparison (a few minutes)
    python examples/word2vec_hogwild.py --quick         # smoke run, under a minute
    python examples/word2vec_hogwild.py --data my.txt   # your own text (see --help)
    python examples/word2vec_hogwild.py --update-readme # also the table in bench/README.md

Writes DIR/word2vec_hogwild.md (the table, also printed) and DIR/word2vec_hogwild.json (every
number), DIR = examples/output/ unless --out says otherwise. Needs numpy, sparseopt and, for the
comparison, gensim (``pip install ".[examples]"``; ``--no-gensim`` runs without it).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import math
import re
import statistics
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _corpus, also when loaded by path
from _corpus import DEFAULT_DATA, DEFAULT_OUT, output_folder, resolve_corpus  # noqa: E402
README_MARKER = "word2vec"

TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*")
MAX_SENTENCE = 10_000      # longer paragraphs are cut, as gensim cuts sentences at 10,000 words
BATCH_WORDS = 10_000       # words per batch (gensim's batch_words)
HELD_OUT_EVERY = 50        # every 50th paragraph is held out
NEIGHBOUR_WORDS = ("king", "love", "death", "lord", "good", "night")
TOP_WORDS, TOP_K = 200, 10

ADAGRAD_LR = 0.1           # the Adagrad variant's learning rate (constant; Adagrad decays it)
IMPL_OF = {"sgd": "sparseopt", "adagrad": "sparseopt-adagrad"}
SETTINGS = dict(vector_size=100, window=5, negative=5, min_count=5, epochs=5, sample=1e-3,
                alpha=0.025, min_alpha=0.0001, ns_exponent=0.75)


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def read_paragraphs(path: Path) -> list[list[str]]:
    """Lower-cased word lists, one per paragraph (blank-line separated) of every text: a .tar /
    .tar.gz of text files, a directory of .txt files, or one text file."""
    if path.is_dir():
        texts = [p.read_text("utf-8", errors="replace") for p in sorted(path.glob("*.txt"))]
    elif tarfile.is_tarfile(path):
        texts = []
        with tarfile.open(path) as tar:
            for member in sorted(tar.getmembers(), key=lambda m: m.name):
                if member.isfile() and not Path(member.name).name.startswith("."):
                    texts.append(tar.extractfile(member).read().decode("utf-8", errors="replace"))
    else:
        texts = [path.read_text("utf-8", errors="replace")]
    sentences = []
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            words = TOKEN.findall(paragraph.lower())
            sentences.extend(words[i:i + MAX_SENTENCE] for i in range(0, len(words), MAX_SENTENCE))
    return sentences


@dataclass
class Vocabulary:
    words: list[str]            # by falling count (ties: alphabetical)
    counts: np.ndarray          # float64
    index: dict[str, int]
    keep_probability: np.ndarray  # word2vec's subsampling, as gensim computes it

    @classmethod
    def build(cls, sentences, min_count: int, sample: float) -> Vocabulary:
        counts = Counter(w for s in sentences for w in s)
        words = sorted((w for w, c in counts.items() if c >= min_count),
                       key=lambda w: (-counts[w], w))
        c = np.array([counts[w] for w in words], np.float64)
        # gensim's prepare_vocab: threshold = sample * (words kept by min_count)
        threshold = sample * c.sum()
        keep = np.minimum((np.sqrt(c / threshold) + 1.0) * threshold / c, 1.0)
        return cls(words, c, {w: i for i, w in enumerate(words)}, keep)

    def encode(self, sentences) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int32, offsets int64): the sentences' in-vocabulary words as ids."""
        lengths = np.fromiter(map(len, sentences), np.int64, len(sentences))
        ids = np.fromiter(map(self.index.get, itertools.chain.from_iterable(sentences),
                              itertools.repeat(-1)), np.int64, int(lengths.sum()))
        known = ids >= 0  # words below min_count are dropped, as gensim drops them
        sentence = np.repeat(np.arange(len(sentences)), lengths)
        kept = np.bincount(sentence[known], minlength=len(sentences))
        return ids[known].astype(np.int32), np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)


def batch_bounds(offsets: np.ndarray, words: int) -> np.ndarray:
    """Sentence indices where batches of about `words` tokens (whole sentences) start."""
    bounds, start_token = [0], 0
    for s in range(1, len(offsets)):
        if offsets[s] - start_token >= words:
            bounds.append(s)
            start_token = offsets[s]
    if bounds[-1] != len(offsets) - 1:
        bounds.append(len(offsets) - 1)
    return np.array(bounds, np.int64)


# --------------------------------------------------------------------------------------------
# sparseopt word2vec
# --------------------------------------------------------------------------------------------
@dataclass
class Job:
    """Everything a worker needs (picklable, for the process backends)."""

    input_vectors: np.ndarray    # anchor table: one row per word (what gets evaluated)
    output_vectors: np.ndarray   # candidate table (gensim's syn1neg)
    tokens: np.ndarray
    offsets: np.ndarray
    bounds: np.ndarray
    keep_probability: np.ndarray
    sampler: object
    window: int
    negative: int
    epochs: int
    alpha: float
    min_alpha: float
    seed: int


def my_batches(rank: int, workers: int, epoch: int, num_batches: int) -> range:
    """The batches worker `rank` takes in `epoch`: every workers-th, starting one further each
    epoch, so that no worker is left with the odd batch of every epoch."""
    return range((rank + epoch) % workers, num_batches, workers)


def train_worker(worker, optimizers: tuple, job: Job, workers: int) -> int:
    """One worker: its share of every epoch's batches, Hogwild-style on the shared tables.

    No optimizers: the fused SGD pass (``logistic_sgd``) with gensim's learning-rate schedule.
    ``(opt_in, opt_out)``: the coalesced gradients (``logistic_grad``) stepped by these
    optimizers of the two tables (this worker's replicas, made by ``hogwild.run``)."""
    from sparseopt import sampled

    tokens, offsets, bounds = job.tokens, job.offsets, job.bounds
    num_batches = len(bounds) - 1
    per_epoch = int(offsets[-1])
    total = job.epochs * per_epoch
    worker.set_total(sum(int(offsets[bounds[b + 1]] - offsets[bounds[b]])
                         for epoch in range(job.epochs)
                         for b in my_batches(worker.rank, workers, epoch, num_batches)))
    pairs = 0
    for epoch in range(job.epochs):
        for b in my_batches(worker.rank, workers, epoch, num_batches):
            s0, s1 = int(bounds[b]), int(bounds[b + 1])
            t0, t1 = int(offsets[s0]), int(offsets[s1])
            # gensim's schedule: linear in the words all workers have done
            lr = job.alpha - (job.alpha - job.min_alpha) * min(worker.done_all / total, 1.0)
            # a batch's draws depend on (seed, epoch, batch) only, whichever worker takes it
            seed = (job.seed * 1_000_003 + epoch * num_batches + b) % 2**64
            centers, contexts = sampled.context_pairs(
                tokens[t0:t1], job.window, offsets=offsets[s0:s1 + 1] - t0,
                keep_probability=job.keep_probability, seed=seed)
            candidates = job.sampler.draw(centers, job.negative, seed=seed, num_threads=1)
            if optimizers:
                g = sampled.logistic_grad(job.input_vectors, job.output_vectors, contexts,
                                          candidates, num_threads=1)
                optimizers[0].step(g.anchor_rows, g.anchor_grad)
                optimizers[1].step(g.candidate_rows, g.candidate_grad)
            else:
                sampled.logistic_sgd(job.input_vectors, job.output_vectors, contexts, candidates,
                                     lr=max(lr, job.min_alpha), compute_loss=False)
            pairs += len(centers)
            worker.progress(t1 - t0)
    return pairs


def train_sparseopt(vocab: Vocabulary, sentences, workers: int, seed: int, backend: str,
                    progress: bool | None, s: dict, update: str = "sgd") -> dict:
    """Train with settings `s`; returns the tables and the timed seconds (encoding included).
    update: "sgd" (the fused pass) or "adagrad" (gradients + sparseopt.optim.Adagrad)."""
    from sparseopt import hogwild, sampled
    from sparseopt.optim import Adagrad

    t0 = time.perf_counter()
    tokens, offsets = vocab.encode(sentences)
    rng = np.random.default_rng(seed)
    V, d = len(vocab.words), s["vector_size"]
    input_vectors = ((rng.random((V, d), dtype=np.float32) * 2 - 1) / d).astype(np.float32)
    output_vectors = np.zeros((V, d), np.float32)
    if backend != "thread":
        input_vectors, output_vectors = hogwild.share(input_vectors), hogwild.share(output_vectors)
    bounds = batch_bounds(offsets, BATCH_WORDS)
    job = Job(input_vectors, output_vectors, tokens, offsets, bounds, vocab.keep_probability,
              sampled.NegativeSampler(vocab.counts ** s["ns_exponent"]), s["window"],
              s["negative"], s["epochs"], s["alpha"], s["min_alpha"], seed)
    optimizers: tuple = ()
    if update == "adagrad":
        optimizers = (Adagrad(input_vectors, lr=ADAGRAD_LR), Adagrad(output_vectors, lr=ADAGRAD_LR))
        if backend != "thread":
            optimizers = tuple(o.share_memory() for o in optimizers)
    pairs = hogwild.run(train_worker, workers, backend=backend, args=(optimizers, job, workers),
                        progress=progress,
                        desc=f"sparseopt ({update}), {workers} worker(s)", unit="words")
    seconds = time.perf_counter() - t0
    return dict(input=np.array(input_vectors), output=np.array(output_vectors), seconds=seconds,
                pairs=int(sum(pairs)))


# --------------------------------------------------------------------------------------------
# gensim
# --------------------------------------------------------------------------------------------
def train_gensim(vocab: Vocabulary, sentences, workers: int, seed: int, s: dict) -> dict:
    from gensim.models import Word2Vec

    model = Word2Vec(vector_size=s["vector_size"], window=s["window"], negative=s["negative"],
                     min_count=s["min_count"], epochs=s["epochs"], sample=s["sample"],
                     alpha=s["alpha"], min_alpha=s["min_alpha"], ns_exponent=s["ns_exponent"],
                     sg=1, hs=0, workers=workers, seed=seed, batch_words=BATCH_WORDS)
    model.build_vocab(sentences)
    t0 = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=model.epochs)
    seconds = time.perf_counter() - t0
    missing = [w for w in vocab.words if w not in model.wv.key_to_index]
    if missing or len(model.wv.key_to_index) != len(vocab.words):
        raise RuntimeError(f"gensim's vocabulary differs from ours ({len(model.wv)} vs "
                           f"{len(vocab.words)} words; e.g. missing {missing[:5]})")
    order = np.array([model.wv.key_to_index[w] for w in vocab.words])
    return dict(input=np.ascontiguousarray(model.wv.vectors[order]),
                output=np.ascontiguousarray(model.syn1neg[order]), seconds=seconds)


# --------------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------------
def neighbours(vectors: np.ndarray, ids, k: int) -> np.ndarray:
    """The k nearest rows (cosine) of each row in ids, itself excluded, nearest first."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    sims = unit[ids] @ unit.T
    sims[np.arange(len(ids)), ids] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean fraction of shared neighbours per word."""
    return float(np.mean([len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b)]))


def held_out_set(vocab: Vocabulary, sentences, seed: int, s: dict) -> tuple[np.ndarray, np.ndarray]:
    """Every (context, center) pair of the held-out sentences within the window (no subsampling,
    no shrinking), with 5 negatives each (fixed seed)."""
    from sparseopt import sampled

    tokens, offsets = vocab.encode(sentences)
    centers, contexts = sampled.context_pairs(tokens, s["window"], offsets=offsets,
                                              shrink_window=False, seed=seed)
    sampler = sampled.NegativeSampler(vocab.counts ** s["ns_exponent"])
    return contexts, sampler.draw(centers, s["negative"], seed=seed)


def held_out_loss(model: dict, contexts, candidates) -> float:
    """Mean negative-sampling loss per term (log 2 = 0.693 for an untrained model)."""
    from sparseopt import sampled

    if len(contexts) == 0:
        return float("nan")
    loss = sampled.logistic_loss(model["input"], model["output"], contexts, candidates)
    return loss / candidates.size


# --------------------------------------------------------------------------------------------
# the comparison
# --------------------------------------------------------------------------------------------
def bench_harness():
    """bench/harness.py (machine load, README splicing), or None outside the repository."""
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import harness
        return harness
    except ImportError:  # pragma: no cover - the script copied out of the repository
        return None
    finally:
        sys.path.pop(0)


def run_comparison(args) -> dict:
    import sparseopt

    t_start = time.perf_counter()
    paragraphs = read_paragraphs(args.data)
    if args.max_words:
        kept, n = [], 0
        for p in paragraphs:
            if n >= args.max_words:
                break
            kept.append(p)
            n += len(p)
        paragraphs = kept
    held = paragraphs[::HELD_OUT_EVERY]
    train = [p for i, p in enumerate(paragraphs) if i % HELD_OUT_EVERY]
    train_words = sum(map(len, train))
    settings = dict(SETTINGS, epochs=args.epochs or SETTINGS["epochs"])
    vocab = Vocabulary.build(train, settings["min_count"], settings["sample"])
    if len(vocab.words) < TOP_K + 2:
        sys.exit(f"error: the corpus has only {len(vocab.words)} words that occur at least "
                 f"{settings['min_count']} times; pass a larger text with --data")
    top = np.arange(min(TOP_WORDS, len(vocab.words)))
    held_contexts, held_candidates = held_out_set(vocab, held, 12345, settings)
    print(f"data: {args.data.name}: {len(train):,} training paragraphs, {train_words:,} words; "
          f"vocabulary {len(vocab.words):,} (min_count {settings['min_count']}); held out: "
          f"{len(held):,} paragraphs, {len(held_contexts):,} pairs", flush=True)

    harness = bench_harness()
    have_gensim = not args.no_gensim and importlib.util.find_spec("gensim") is not None
    if not args.no_gensim and not have_gensim:
        print("note: gensim is not installed (pip install gensim); running sparseopt only",
              flush=True)
    impls = (["gensim"] if have_gensim else []) + [IMPL_OF[v] for v in args.variants]
    runs = []
    for r in range(args.repeats):
        seed = args.seed + r
        order = impls if r % 2 == 0 else impls[::-1]  # alternate who goes first
        for workers in args.workers:
            for impl in order:
                quiet = None
                if harness and args.wait > 0:  # other processes would skew the timing
                    quiet = harness.wait_for_quiet(max_other_cores=0.3, quiet_s=3.0,
                                                   timeout_s=args.wait, poll_s=1.0)["quiet"]
                monitor = harness.CpuMonitor() if harness else None
                own0, children0 = _own_cpu(), _children_cpu()
                gc.collect()
                gc.disable()  # as bench/harness.py times: no collector pauses in either
                try:
                    if impl == "gensim":
                        model = train_gensim(vocab, train, workers, seed, settings)
                    else:
                        model = train_sparseopt(vocab, train, workers, seed, args.backend,
                                                args.progress, settings,
                                                "adagrad" if impl == "sparseopt-adagrad" else "sgd")
                finally:
                    gc.enable()
                load = monitor.read() if monitor else None
                if load:  # worker processes (fork/spawn backends) are not "other processes"
                    children = (_children_cpu() - children0) / load["wall_s"]
                    load["other_cores"] = max(load["other_cores"] - children, 0.0)
                    load["own_cores"] = (_own_cpu() - own0) / load["wall_s"] + children
                run = dict(impl=impl, workers=workers, seed=seed, repeat=r,
                           seconds=model["seconds"],
                           words_per_s=train_words * settings["epochs"] / model["seconds"],
                           other_cores=load["other_cores"] if load else None,
                           steal_cores=load["steal_cores"] if load else None,
                           own_cores=load["own_cores"] if load else None, quiet_before=quiet,
                           held_out_loss=held_out_loss(model, held_contexts, held_candidates),
                           top_neighbours=neighbours(model["input"], top, TOP_K))
                if r == 0:
                    run["lists"] = {w: [vocab.words[i] for i in
                                        neighbours(model["input"], [vocab.index[w]], 8)[0]]
                                    for w in NEIGHBOUR_WORDS if w in vocab.index}
                runs.append(run)
                print(f"repeat {r + 1}/{args.repeats}  {impl:<9} {workers} worker(s): "
                      f"{run['words_per_s']:>9,.0f} words/s ({model['seconds']:.2f} s), held-out "
                      f"loss {run['held_out_loss']:.4f}"
                      + (f"; cores used: {load['own_cores']:.2f} by this run, "
                         f"{load['other_cores']:.2f} by other processes, "
                         f"{load['steal_cores']:.2f} stolen" if load else ""),
                      flush=True)

    # quality: overlap with gensim's single-worker runs of other seeds
    reference = [x for x in runs if x["impl"] == "gensim" and x["workers"] == min(args.workers)]
    for x in runs:
        others = [g for g in reference if g["seed"] != x["seed"]]
        x["overlap_gensim"] = (float(np.mean([overlap(x["top_neighbours"], g["top_neighbours"])
                                              for g in others])) if others else None)
        x["overlap_same_impl"] = None
    for x in runs:  # calibration for our own runs: ours vs ours, other seeds
        same = [y for y in runs if y["impl"] == x["impl"] and y["workers"] == x["workers"]
                and y["seed"] != x["seed"]]
        if same:
            x["overlap_same_impl"] = float(np.mean([overlap(x["top_neighbours"],
                                                            y["top_neighbours"]) for y in same]))
    meta = dict(data=args.data.name, train_paragraphs=len(train), train_words=train_words,
                vocabulary=len(vocab.words), held_out_paragraphs=len(held),
                held_out_pairs=int(len(held_contexts)), settings=settings,
                repeats=args.repeats, workers=list(args.workers), backend=args.backend,
                wait=args.wait,
                seed=args.seed, quick=args.quick, have_gensim=have_gensim,
                gensim=_version("gensim") if have_gensim else None,
                sparseopt=sparseopt.info(), machine=_machine(),
                total_seconds=time.perf_counter() - t_start)
    return dict(meta=meta, runs=runs)


def _own_cpu() -> float:
    """CPU seconds of this process (all its threads)."""
    import os
    t = os.times()
    return t.user + t.system


def _children_cpu() -> float:
    """CPU seconds of this process's finished child processes."""
    import os
    t = os.times()
    return t.children_user + t.children_system


def _version(name):
    import importlib.metadata
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _machine() -> dict:
    harness = bench_harness()
    if harness is None:  # pragma: no cover
        return {}
    m = harness.machine_info()
    return dict(description=harness.describe_machine(m), **m)


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def _median(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else None


DISTURBED_CORES = 0.3  # a run during which other processes kept more cores busy is "disturbed"


def _disturbed(run: dict) -> bool:
    """Whether other processes (or the hypervisor, stealing time) took a share of the CPUs."""
    if run.get("other_cores") is None:
        return True
    return run["other_cores"] + (run.get("steal_cores") or 0.0) >= DISTURBED_CORES


def summarize(result: dict) -> dict:
    """Per (implementation, workers): words/s over the undisturbed runs (all runs when none
    was), quality over all runs."""
    runs, meta = result["runs"], result["meta"]
    rows = {}
    for impl in ("sparseopt", "sparseopt-adagrad", "gensim"):
        for w in meta["workers"]:
            rs = [x for x in runs if x["impl"] == impl and x["workers"] == w]
            if not rs:
                continue
            calm = [x for x in rs if not _disturbed(x)]
            timed = calm or rs
            wps = [x["words_per_s"] for x in timed]
            rows[(impl, w)] = dict(
                words_per_s=_median(wps), min=min(wps), max=max(wps), n=len(rs),
                undisturbed=len(calm), all_disturbed=not calm,
                held_out_loss=_median([x["held_out_loss"] for x in rs]),
                overlap_gensim=_median([x["overlap_gensim"] for x in rs]),
                overlap_same_impl=_median([x["overlap_same_impl"] for x in rs]),
                other_cores=_median([x["other_cores"] for x in timed]))
    return rows


def to_markdown(result: dict) -> str:
    meta, runs = result["meta"], result["runs"]
    rows = summarize(result)
    ws = meta["workers"]
    lo, hi = min(ws), max(ws)

    def scaling(impl):
        a, b = rows.get((impl, lo)), rows.get((impl, hi))
        if not a or not b or lo == hi:
            return None
        return b["words_per_s"] / a["words_per_s"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.0f}%"

    names = {"sparseopt": "sparseopt: fused SGD (`sampled.logistic_sgd`)",
             "sparseopt-adagrad": f"sparseopt: `sampled.logistic_grad` + `optim.Adagrad` "
                                  f"(lr {ADAGRAD_LR})",
             "gensim": f"gensim {meta['gensim']} `Word2Vec`"}
    header = ["implementation", "workers", "words/s (median, min–max; runs)"]
    header += [f"scaling {lo}→{hi}"] if lo != hi else []
    header += ["held-out loss", "neighbour overlap@10 with gensim", "overlap@10 with itself"]
    lines = ["| " + " | ".join(header) + " |", "|:---|" + "---:|" * (len(header) - 1)]
    for (impl, w), row in rows.items():
        s = scaling(impl) if w == hi else None
        cells = [names[impl], str(w),
                 f"{row['words_per_s']:,.0f} ({row['min']:,.0f}–{row['max']:,.0f}; "
                 f"{row['undisturbed']} of {row['n']} runs)"
                 + (" (all runs disturbed)" if row["all_disturbed"] else "")]
        cells += [f"{s:.2f}x" if s else ""] if lo != hi else []
        cells += [f"{row['held_out_loss']:.4f}", pct(row["overlap_gensim"]),
                  pct(row["overlap_same_impl"])]
        lines.append("| " + " | ".join(cells) + " |")

    s = meta["settings"]
    out = ["\n".join(lines), ""]
    ours, theirs = rows.get(("sparseopt", hi)), rows.get(("gensim", hi))
    targets = []
    sc = scaling("sparseopt")
    if sc:
        targets.append(f"scaling {lo}→{hi} workers ≥ 1.7x: {sc:.2f}x "
                       f"({'met' if sc >= 1.7 else 'missed'})")
    if ours and theirs:
        ratio = ours["words_per_s"] / theirs["words_per_s"]
        targets.append(f"words/s at {hi} workers ≥ gensim's: {ratio:.2f}x gensim "
                       f"({'met' if ratio >= 1 else 'missed'})")
    if targets:
        out += ["Targets: " + "; ".join(targets) + ".", ""]
    out.append(
        f"Skip-gram with negative sampling on {meta['data']} ({meta['train_words']:,} training "
        f"words in {meta['train_paragraphs']:,} paragraphs, vocabulary {meta['vocabulary']:,}), "
        f"both with vector size {s['vector_size']}, window {s['window']} (shrunk at random), "
        f"{s['negative']} negatives (counts^{s['ns_exponent']}), min_count {s['min_count']}, "
        f"sample {s['sample']:g}, {s['epochs']} epochs, lr {s['alpha']} → {s['min_alpha']} "
        f"linearly (fused SGD), batches of {BATCH_WORDS:,} words. **sparseopt, Adagrad**: the same "
        f"pairs and negatives, but each batch's gradients (`logistic_grad`, coalesced) are "
        f"stepped by `sparseopt.optim.Adagrad` (lr {ADAGRAD_LR}) on both tables, each worker "
        f"with its own replica of the optimizers over the shared tables and state. "
        f"sparseopt's workers are `sparseopt.hogwild` {meta['backend']}s. **words/s**: training words × epochs / "
        f"training time (gensim: `train()`; sparseopt: encoding the sentences as ids, "
        f"initialising the tables and training), median (min–max) over the runs during which "
        f"other processes (and hypervisor steal) used < {DISTURBED_CORES} cores (of {meta['repeats']} runs with seeds "
        f"{meta['seed']}..{meta['seed'] + meta['repeats'] - 1}, the two implementations and "
        f"worker counts interleaved, each started once the machine had been quiet for 3 s or "
        f"after waiting {meta['wait']:g} s; the garbage collector paused during each run); "
        f"**scaling**: the ratio of those medians, "
        f"{hi} workers / {lo}. **held-out loss**: mean negative-sampling loss per "
        f"term (log 2 = 0.693 untrained) of every pair within the window in "
        f"{meta['held_out_paragraphs']:,} held-out paragraphs (every {HELD_OUT_EVERY}th; "
        f"{meta['held_out_pairs']:,} pairs, 5 fixed negatives each). **overlap@10**: the 10 "
        f"nearest neighbours (cosine of input vectors) of the {TOP_WORDS} most frequent words, "
        f"the fraction shared with each gensim {lo}-worker run of another seed (mean over those "
        f"runs; median over runs in the row) -- on gensim's own row this is the calibration, "
        f"how much two gensim runs differing only in the seed agree; **with itself**: the same "
        f"against the row's own runs of other seeds.")
    others = [x["other_cores"] for x in runs if x.get("other_cores") is not None]
    if others:
        calm = sum(not _disturbed(x) for x in runs)
        out += ["", f"Machine load: other processes used {statistics.mean(others):.2f} cores on "
                f"average during the timed runs (max {max(others):.2f}); {calm} of {len(others)} "
                f"runs were undisturbed. The machine is shared, hence the medians."]
    if meta["machine"].get("description"):
        out += ["", meta["machine"]["description"]]
    lists = [x for x in runs if "lists" in x and x["workers"] == lo]
    if lists:
        out += ["", f"Nearest neighbours ({lo} worker, seed {meta['seed']}):", ""]
        short = {"sparseopt": "sparseopt (fused SGD)", "sparseopt-adagrad": "sparseopt (Adagrad)",
                 "gensim": f"gensim {meta['gensim']}"}
        header = ["word"] + [short[x["impl"]] for x in lists]
        out.append("| " + " | ".join(header) + " |")
        out.append("|:---|" + "|".join([":---"] * len(lists)) + "|")
        for w in NEIGHBOUR_WORDS:
            if all(w in x["lists"] for x in lists):
                out.append(f"| {w} | " + " | ".join(", ".join(x["lists"][w]) for x in lists) + " |")
    return "\n".join(out) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None,
                    help="a .tar.gz/.tar of text files, a directory of .txt files, or one text "
                         f"file (paragraphs = sentences); default: {DEFAULT_DATA}")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: the first 200,000 words, 2 epochs, one repeat")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output folder (default: {DEFAULT_OUT} for the full run on the "
                         f"default corpus, else a new temporary folder)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed runs per (implementation, workers) (default 5; --quick 1)")
    ap.add_argument("--epochs", type=int, default=None, help="default 5 (--quick: 2)")
    ap.add_argument("--max-words", type=int, default=None,
                    help="use only the first paragraphs, about this many words")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--backend", choices=("thread", "fork", "spawn"), default="thread",
                    help="sparseopt.hogwild backend (default: threads)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-gensim", action="store_true", help="skip the gensim runs")
    ap.add_argument("--variants", nargs="+", choices=sorted(IMPL_OF), default=["sgd", "adagrad"],
                    help="sparseopt trainings: sgd (the fused pass: logistic_sgd) and/or adagrad "
                         "(logistic_grad + optim.Adagrad)")
    ap.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                    help="before each timed run, wait up to this long for other processes to "
                         "leave the CPUs idle (0: don't wait; default 60; --quick: 0)")
    ap.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                    default=None, help="no progress display")
    ap.add_argument("--update-readme", action="store_true",
                    help=f"splice the table into bench/README.md between <!-- bench:{README_MARKER} --> "
                         "markers")
    args = ap.parse_args(argv)
    if args.quick:
        args.max_words = args.max_words or 200_000
        args.epochs = args.epochs or 2
        args.repeats = args.repeats or 1
    args.repeats = args.repeats or 5
    if args.wait is None:
        args.wait = 0.0 if args.quick else 60.0
    args.data = resolve_corpus(args.data)
    full_run = not args.quick and not args.max_words and args.data == DEFAULT_DATA
    args.out = output_folder(args.out, full_run, "word2vec_")
    if args.update_readme and (args.quick or args.no_gensim):
        sys.exit("error: --update-readme needs a full run with gensim (no --quick/--no-gensim)")
    return args


def run(args: argparse.Namespace) -> tuple[dict, str]:
    """The comparison: (every number, JSON-ready; the markdown report)."""
    result = run_comparison(args)
    md = to_markdown(result)
    runs = [{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in x.items()
             if k != "top_neighbours"} for x in result["runs"]]
    summary = [dict(impl=k[0], workers=k[1], **v) for k, v in summarize(result).items()]
    return dict(meta=result["meta"], summary=summary, runs=runs), md


def main(argv=None):
    args = parse_args(argv)
    data, md = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    mdp, jsp = args.out / "word2vec_hogwild.md", args.out / "word2vec_hogwild.json"
    mdp.write_text(md)
    jsp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print()
    print(md)
    print(f"wrote {mdp}\nwrote {jsp}")
    if args.update_readme:
        harness = bench_harness()
        changed = harness.splice_readme(README_MARKER, md, REPO_ROOT / "bench" / "README.md")
        print(f"{'updated' if changed else 'unchanged'}: bench/README.md [{README_MARKER}]")


if __name__ == "__main__":
    main()
