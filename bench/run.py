#!/usr/bin/env python
"""Run sparseopt's benchmarks.

    python bench/run.py [--quick] [--update-readme] [--only NAME ...]
    python bench/run.py --from-results --only cuda    # splice a table measured elsewhere

Writes bench/results/<name>.json and <name>.md for every benchmark below.
With --update-readme, splices each benchmark's markdown table into
bench/README.md between the lines

    <!-- bench:NAME -->
    <!-- /bench:NAME -->

(everything else in bench/README.md is left untouched; it is an error if
the markers are missing). The top-level README.md quotes a few headline
ratios from these tables by hand and links to them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

# name -> module (in bench/) exposing run(quick=..., bandwidth=..., machine=...)
BENCHMARKS = {
    "sparse_adam": "bench_sparse_adam",
    "exact": "bench_exact",
    "hogwild": "bench_hogwild",
    "topk": "bench_topk",
    "gather": "bench_gather",
    "word2vec": "bench_word2vec",
    "torch_step": "bench_torch_step",
    "fused": "bench_fused",
    "tbe": "bench_tbe",
    "size_curve": "bench_size_curve",
    "half": "bench_half",
    "cuda": "bench_cuda",  # skipped (tables kept) without a CUDA device
}


def splice_from_results(names: list[str], results_dir: Path, readme: str) -> int:
    """--from-results: every table file and marker checked first, then each stored table
    spliced (so a missing one changes nothing)."""
    try:
        tables = {name: (results_dir / f"{name}.md").read_text() for name in names}
        for name in names:
            harness.check_markers(name, readme)
    except (OSError, harness.MarkerError) as e:
        harness.log(f"error: {e}")
        return 2
    for name, md in tables.items():
        changed = harness.splice_readme(name, md, readme)
        harness.log(f"{'updated' if changed else 'unchanged'}: {readme} [{name}]")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Run sparseopt benchmarks.")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run with few repetitions (numbers not representative)")
    ap.add_argument("--update-readme", action="store_true",
                    help="splice each table into bench/README.md between its markers")
    ap.add_argument("--readme", default=str(harness.REPO_ROOT / "bench" / "README.md"),
                    help="README to update (default: bench/README.md)")
    ap.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                    help=f"run only these benchmarks ({', '.join(BENCHMARKS)})")
    ap.add_argument("--results-dir", default=None,
                    help="where to write <name>.json/.md (default bench/results/, "
                         "or bench/results/quick/ with --quick)")
    ap.add_argument("--from-results", action="store_true",
                    help="measure nothing: splice the stored bench/results/<name>.md into the README "
                         "(for a table measured elsewhere, e.g. bench_cuda.py on a GPU machine)")
    ap.add_argument("--wait", type=float, default=120.0, metavar="SECONDS",
                    help="first wait up to this long for other processes to leave "
                         "the CPUs idle (0: don't wait; default 120)")
    args = ap.parse_args(argv)

    names = args.only or list(BENCHMARKS)
    if args.results_dir is None:
        args.results_dir = str(harness.RESULTS_DIR / "quick" if args.quick else harness.RESULTS_DIR)
    if args.from_results:  # before machine_info(): nothing is measured
        if args.quick:
            harness.log("refusing --from-results with --quick (smoke numbers are not representative)")
            return 2
        return splice_from_results(names, Path(args.results_dir), args.readme)
    if args.quick and args.update_readme:
        harness.log("refusing --update-readme with --quick (smoke numbers are not representative)")
        return 2
    machine = harness.machine_info()
    if machine["sparseopt"] is None:
        harness.log("WARNING: `import sparseopt` fails; sparseopt columns will be n/a")
        if args.update_readme:
            harness.log("refusing --update-readme without sparseopt")
            return 2
    if args.update_readme:
        # check the markers before spending minutes on the benchmarks
        try:
            for n in names:
                harness.check_markers(n, args.readme)
        except harness.MarkerError as e:
            harness.log(f"error: {e}")
            return 2

    if args.wait > 0:
        q = harness.wait_for_quiet(timeout_s=args.wait)
        machine["quiet_at_start"] = q
    t0 = time.perf_counter()
    harness.log("measuring copy bandwidth ...")
    bw = harness.copy_bandwidth(repeat=3 if args.quick else 7, threads=2)
    harness.log(f"copy bandwidth: {bw['gbps']['median']:.1f} GB/s (1 thread)")

    failed = []
    for name in names:
        harness.log(f"=== {name} ===")
        mod = importlib.import_module(BENCHMARKS[name])
        try:
            data = mod.run(quick=args.quick, bandwidth=bw, machine=machine)
        except Exception as e:
            import traceback
            traceback.print_exc()
            harness.log(f"benchmark {name} FAILED: {e!r}")
            failed.append(name)
            continue
        md = data["markdown"]
        print(f"## {name}\n\n{md}")
        if data.get("skipped"):  # a peer that cannot run here: keep the last real table
            harness.log(f"{name} skipped ({data['skipped']}); results and README left as they were")
            continue
        for p in harness.write_results(name, data, md, args.results_dir):
            harness.log(f"wrote {p}")
        if args.update_readme:
            changed = harness.splice_readme(name, md, args.readme)
            harness.log(f"{'updated' if changed else 'unchanged'}: {args.readme} [{name}]")
    harness.log(f"total {time.perf_counter() - t0:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
