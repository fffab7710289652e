"""The showcase behind ``python -m sparseopt demo``.

A recommender-style model -- a user table and an item table whose dot products predict
ratings -- is trained with sparse Adam on a rating log with Zipf-distributed item popularity,
so every batch touches a few thousand rows, many of them repeatedly. Then one optimizer step is
timed against the alternatives a NumPy user has: a dense Adam step over the whole table and,
when PyTorch is installed, ``torch.optim.SparseAdam`` on the same gradient.
"""

from __future__ import annotations

import time

import numpy as np

import sparseopt
from sparseopt.optim import Adam


def _ratings(rng: np.random.Generator, num_users: int, num_items: int, num_ratings: int,
             rank: int, noise: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A rating log from planted rank-`rank` factors, item popularity ~ 1/r^1.1."""
    true_users = rng.standard_normal((num_users, rank)) / rank**0.25
    true_items = rng.standard_normal((num_items, rank)) / rank**0.25
    popularity = 1.0 / np.arange(1, num_items + 1) ** 1.1
    items = rng.permutation(num_items)[
        np.searchsorted(np.cumsum(popularity / popularity.sum()), rng.random(num_ratings))
        .clip(max=num_items - 1)]
    users = rng.integers(0, num_users, num_ratings)
    ratings = np.einsum("ij,ij->i", true_users[users], true_items[items])
    ratings += noise * rng.standard_normal(num_ratings)
    return users, items, ratings.astype(np.float32)


def _rmse(user_table, item_table, users, items, ratings) -> float:
    pred = np.einsum("ij,ij->i", user_table[users], item_table[items])
    return float(np.sqrt(np.mean((pred - ratings) ** 2)))


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def _dense_numpy_adam(param, m, v, grad, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8, t=1):
    """What a NumPy user without sparse support does: Adam over every row of the table."""
    m *= b1
    m += (1 - b1) * grad
    v *= b2
    v += (1 - b2) * grad * grad
    param -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)


def run(quick: bool = False, seed: int = 0) -> None:
    info = sparseopt.info()
    print(f"sparseopt {info['version']}  (OpenMP: {info['openmp']}, threads: {info['max_threads']})")
    rng = np.random.default_rng(seed)
    num_users, num_items, dim = (20_000, 2_000, 16) if quick else (100_000, 10_000, 32)
    num_ratings = 400_000 if quick else 2_000_000
    epochs, batch = (3, 4096) if quick else (4, 8192)
    noise = 0.1

    users, items, ratings = _ratings(rng, num_users, num_items, num_ratings, rank=8, noise=noise)
    held_out = rng.random(num_ratings) < 0.05
    train = np.flatnonzero(~held_out)
    test = np.flatnonzero(held_out)

    user_table = (0.1 * rng.standard_normal((num_users, dim))).astype(np.float32)
    item_table = (0.1 * rng.standard_normal((num_items, dim))).astype(np.float32)
    user_opt = Adam(user_table, lr=0.02)
    item_opt = Adam(item_table, lr=0.02)

    print(f"\n1) Matrix factorisation: {num_users:,} users x {num_items:,} items, {dim}-dim "
          f"embeddings, {len(train):,} training ratings\n   (Zipf item popularity, noise "
          f"floor RMSE {noise}), lazy Adam on row-sparse gradients, batch {batch}")
    print(f"   {'epoch':>5}  {'train RMSE':>10}  {'held-out RMSE':>13}  {'optimizer time':>14}")
    print(f"   {0:>5}  {_rmse(user_table, item_table, users[train], items[train], ratings[train]):>10.4f}"
          f"  {_rmse(user_table, item_table, users[test], items[test], ratings[test]):>13.4f}")
    for epoch in range(1, epochs + 1):
        order = rng.permutation(train)
        opt_seconds = 0.0
        for start in range(0, len(order), batch):
            b = order[start:start + batch]
            u, i = users[b], items[b]
            eu, ei = user_table[u], item_table[i]
            err = (np.einsum("ij,ij->i", eu, ei) - ratings[b]) * (2.0 / len(b))
            grad_users = np.ascontiguousarray(err[:, None] * ei, dtype=np.float32)
            grad_items = np.ascontiguousarray(err[:, None] * eu, dtype=np.float32)
            t0 = time.perf_counter()
            user_opt.step(u, grad_users)
            item_opt.step(i, grad_items)
            opt_seconds += time.perf_counter() - t0
        print(f"   {epoch:>5}  {_rmse(user_table, item_table, users[train], items[train], ratings[train]):>10.4f}"
              f"  {_rmse(user_table, item_table, users[test], items[test], ratings[test]):>13.4f}"
              f"  {opt_seconds:>12.2f} s")

    rows, width, lookups = (200_000, 64, 16_384) if quick else (1_000_000, 64, 16_384)
    print(f"\n2) One Adam step on a {rows:,} x {width} float32 table, {lookups:,} Zipf-distributed "
          f"lookups\n   (the same batch repeated, so caches are warm: bench/ times fresh batches)")
    table = sparseopt.zeros((rows, width))  # rows on cache-line boundaries (see sparseopt.zeros)
    table[...] = rng.standard_normal((rows, width), dtype=np.float32)
    popularity = 1.0 / np.arange(1, rows + 1) ** 1.1
    idx = np.searchsorted(np.cumsum(popularity / popularity.sum()), rng.random(lookups))
    idx = rng.permutation(rows)[idx.clip(max=rows - 1)].astype(np.int64)
    vals = rng.standard_normal((lookups, width), dtype=np.float32)
    print(f"   {len(np.unique(idx)):,} distinct rows touched")
    opt = Adam(table, lr=1e-3)
    ours = _median_ms(lambda: opt.step(idx, vals), 30)
    print(f"   sparseopt.optim.Adam (lazy)        {ours:9.2f} ms   (torch.optim.SparseAdam's result)")
    exact_table = sparseopt.zeros(table.shape)
    exact_table[...] = table
    exact = Adam(exact_table, lr=1e-3, mode="exact")
    rests = rng.integers(0, rows, (20, lookups))
    for rest in rests:  # earlier steps, so that rows have something to catch up
        exact.step(rest, vals)
    exact_ms = _median_ms(lambda: exact.step(idx, vals), 30)
    print(f"   sparseopt.optim.Adam (exact)       {exact_ms:9.2f} ms   (torch.optim.Adam's result)")

    dense_grad = np.zeros_like(table)
    np.add.at(dense_grad, idx, vals)
    m, v = np.zeros_like(table), np.zeros_like(table)
    dense = _median_ms(lambda: _dense_numpy_adam(table, m, v, dense_grad), 3)
    print(f"   dense NumPy Adam over every row    {dense:9.2f} ms   ({dense / ours:,.0f}x slower)")
    try:
        import torch
    except ImportError:
        print("   torch.optim.SparseAdam             (PyTorch not installed)")
    else:
        weight = torch.nn.Parameter(torch.from_numpy(table).clone())
        torch_opt = torch.optim.SparseAdam([weight], lr=1e-3)
        with torch.sparse.check_sparse_tensor_invariants(False):
            grad = torch.sparse_coo_tensor(torch.from_numpy(idx)[None], torch.from_numpy(vals),
                                           (rows, width))

            def torch_step():
                weight.grad = grad
                torch_opt.step()

            theirs = _median_ms(torch_step, 10)
        print(f"   torch.optim.SparseAdam             {theirs:9.2f} ms   ({theirs / ours:,.1f}x slower than lazy)")
        dense_weight = torch.nn.Parameter(torch.from_numpy(table).clone())
        dense_opt = torch.optim.Adam([dense_weight], lr=1e-3, fused=True)
        dense_weight.grad = torch.from_numpy(dense_grad)
        theirs = _median_ms(dense_opt.step, 5)
        print(f"   torch.optim.Adam(fused=True), dense {theirs:8.2f} ms   ({theirs / exact_ms:,.1f}x slower than exact)")
    _meprop_demo(rng, quick)
    print("\nLazy mode gives torch.optim.SparseAdam's numbers, exact mode torch.optim.Adam's (both "
          "tested against torch); see README.md for the API and benchmarks.")


def _meprop_demo(rng: np.random.Generator, quick: bool) -> None:
    """meProp on a hidden layer of the paper's MNIST shape (minibatch 50, 784 -> 500 -> 10),
    on synthetic 10-class data: accuracy and backward time, dense NumPy against k = 20."""
    from sparseopt.nn import MePropLinear

    n_in, hidden, classes, batch, k = 784, 500, 10, 50, 20
    steps = 150 if quick else 400
    print(f"\n3) meProp: a {n_in}-{hidden}-{classes} MLP, minibatch {batch}, {steps} Adam steps on "
          f"synthetic 10-class data;\n   the hidden layer's backward keeps the top-{k} of its "
          f"{hidden} output gradients per example")
    centers = rng.standard_normal((classes, n_in)).astype(np.float32)
    labels = rng.integers(0, classes, 20_000)
    x_all = centers[labels] + 12.0 * rng.standard_normal((len(labels), n_in), dtype=np.float32)
    w1 = (rng.standard_normal((hidden, n_in)) * np.sqrt(2 / (n_in + hidden))).astype(np.float32)
    w2 = (rng.standard_normal((classes, hidden)) * np.sqrt(2 / (hidden + classes))).astype(np.float32)

    def train(use_meprop: bool) -> tuple[float, float]:
        # One thread each: a minibatch of 50 is too little work to share, and an OpenMP team
        # beside NumPy's BLAS threads makes both spin against each other on a small machine.
        make = lambda p: Adam(p, lr=1e-3, num_threads=1)  # noqa: E731
        layer = MePropLinear.from_arrays(w1.copy(), np.zeros(hidden, np.float32), k,
                                         optimizer=make, num_threads=1)
        out_w, out_b = w2.copy(), np.zeros(classes, np.float32)
        opts = make(layer.weight), make(layer.bias), make(out_w), make(out_b)
        all_h, all_c = np.arange(hidden), np.arange(classes)
        order = np.random.default_rng(1).integers(0, len(labels) - 2000, (steps, batch))
        backward = 0.0
        for idx in order:
            x, y = x_all[idx], labels[idx]
            h = np.maximum(layer.forward(x), 0)
            logits = h @ out_w.T + out_b
            g = np.exp(logits - logits.max(1, keepdims=True))
            g /= g.sum(1, keepdims=True)
            g[np.arange(batch), y] -= 1
            g /= batch
            t0 = time.perf_counter()
            gh = (g @ out_w) * (h > 0)
            g_out_w, g_out_b = g.T @ h, g.sum(0)
            if use_meprop:
                layer.backward(gh, need_grad_x=False)
            else:
                g_w1, g_b1 = gh.T @ x, gh.sum(0)
            backward += time.perf_counter() - t0
            if use_meprop:
                layer.step()
            else:
                opts[0].step(all_h, g_w1)
                opts[1].step(all_h, g_b1)
            opts[2].step(all_c, g_out_w)
            opts[3].step(all_c, g_out_b)
        x, y = x_all[-2000:], labels[-2000:]
        pred = (np.maximum(layer.forward(x), 0) @ out_w.T + out_b).argmax(1)
        return float((pred == y).mean() * 100), backward / steps * 1e3

    dense_acc, dense_ms = train(False)
    me_acc, me_ms = train(True)
    print(f"   dense backward (NumPy BLAS)        {dense_ms:9.3f} ms/step   held-out accuracy "
          f"{dense_acc:.1f}%")
    print(f"   meProp backward, k={k}             {me_ms:9.3f} ms/step   held-out accuracy "
          f"{me_acc:.1f}%   ({dense_ms / me_ms:.1f}x faster backward)")
    print("   examples/meprop_mnist.py runs the paper's full MNIST experiment.")
