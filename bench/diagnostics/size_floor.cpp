// The floor under the size curve's bar (bench_size_curve.py: exact Adam's step within 1.3x
// from 1M to 16M rows): how much slower does the least traffic of an Adam step get when the
// same number of touched rows is spread over a larger table, on this machine?
//
// For each table size, three float32 arrays of ROWS x 64 (a parameter and two moments, 2 MB
// pages as NumPy's, first touched before timing) and 8 batches of 16,384 uniform lookups
// (sorted, repeats dropped, as a step's plan has them). Timed, alternately, over the batches:
//   floor, two hints   x[r] += 1 over the touched rows of the three arrays, with sparseopt's
//                      hints (detail::prefetch_ahead: the row 32 ahead into L2, 8 ahead into L1;
//                      the far ones in batches of 8 rows from 1 GiB an array, as the library's)
//   floor, L1 hint     the same with one L1 hint 16 rows ahead (the library's hints before)
//   adam lazy          sparseopt::adam_step on those rows (the arithmetic on top)
// and reports the median milliseconds and each loop's time over its time at the first size.
// No arithmetic, no grouping: if the floor itself grows past 1.3x, no step reaches the bar.
//
// Build and run from the repository root (at 16M rows it needs 12 GB of memory):
//   g++ -O3 -std=c++17 -fopenmp -fno-math-errno -I cpp/include bench/diagnostics/size_floor.cpp -o /tmp/size_floor
//   /tmp/size_floor [THREADS [REPS [ROWS...]]]   (defaults: all cores, 200, 1000000 16000000)
#include <sparseopt/sparseopt.hpp>

#include "rows_common.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr std::int64_t width = 64, lookups = 16384, batches = 8;
using diagnostics::Block;
using diagnostics::median;

// Median ms of each loop at a table of `rows` rows: {two hints, L1 hint, adam lazy}.
std::vector<double> measure(std::int64_t rows, int threads, int reps) {
  const auto size = static_cast<std::size_t>(rows * width);
  Block p(size), m(size), v(size);
  float* arrays[3] = {p.data, m.data, v.data};
  std::mt19937_64 rng(1);
  std::vector<std::vector<std::int64_t>> touched(batches);
  for (auto& b : touched) {
    b.resize(lookups);
    for (auto& r : b) r = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(rows));
    std::sort(b.begin(), b.end());
    b.erase(std::unique(b.begin(), b.end()), b.end());
  }
  std::vector<float> values(lookups * width, 1e-3f);
  const sparseopt::Table<float> param{p.data, rows, width};
  sparseopt::AdamState<float> state;
  state.exp_avg = {m.data, rows, width};
  state.exp_avg_sq = {v.data, rows, width};
  const sparseopt::AdamOptions options;
  std::int64_t step = 0;
  std::vector<double> ms[3];
  for (int rep = 0; rep < reps + 8; ++rep) {  // the first 8 warm up
    for (int loop = 0; loop < 3; ++loop) {
      const std::vector<std::int64_t>& b = touched[static_cast<std::size_t>((rep * 3 + loop) % batches)];
      const std::int64_t n = static_cast<std::int64_t>(b.size());
      const std::int64_t batch = sparseopt::detail::far_batch(sparseopt::detail::row_spread_bytes(b.data(), n, width * 4));
      const auto t0 = std::chrono::steady_clock::now();
      if (loop == 2) {
        sparseopt::adam_step(param, sparseopt::RowSparse<float, std::int64_t>{b.data(), values.data(), n, width},
                             state, options, ++step, threads);
      } else {
        sparseopt::detail::parallel_for(n, threads, n * width, [&](std::int64_t u, int) {
          if (loop == 0) {
            sparseopt::detail::prefetch_ahead(u, n, [&](std::int64_t ahead, auto level) {
              for (float* a : arrays) sparseopt::detail::prefetch_row(a + b[ahead] * width, width, level);
            }, batch);
          } else if (u + 16 < n) {
            for (float* a : arrays) sparseopt::detail::prefetch_row(a + b[u + 16] * width, width);
          }
          for (float* a : arrays) {
            float* r = a + b[u] * width;
            for (std::int64_t j = 0; j < width; ++j) r[j] += 1.0f;
          }
        });
      }
      const auto t1 = std::chrono::steady_clock::now();
      if (rep >= 8) ms[loop].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  return {median(ms[0]), median(ms[1]), median(ms[2])};
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 200;
  std::vector<std::int64_t> sizes;
  for (int a = 3; a < argc; ++a) sizes.push_back(std::atoll(argv[a]));
  if (sizes.empty()) sizes = {1000000, 16000000};
  if (reps < 1 || threads < 0) {
    std::fprintf(stderr, "usage: size_floor [THREADS [REPS [ROWS...]]]\n");
    return 2;
  }
  const int nthreads = sparseopt::detail::resolve_threads(threads);
  std::printf("3 float32 arrays of ROWS x %lld, %lld lookups per batch, %d threads, %d repetitions\n",
              static_cast<long long>(width), static_cast<long long>(lookups), nthreads, reps);
  std::printf("%-10s %-18s %9s %9s\n", "rows", "loop", "ms", "vs first");
  const char* names[3] = {"floor, two hints", "floor, L1 hint", "adam lazy"};
  std::vector<double> first;
  for (std::int64_t rows : sizes) {
    const std::vector<double> ms = measure(rows, nthreads, reps);
    if (first.empty()) first = ms;
    for (int loop = 0; loop < 3; ++loop)
      std::printf("%-10lld %-18s %9.3f %8.2fx\n", static_cast<long long>(rows), names[loop], ms[loop],
                  ms[loop] / first[loop]);
  }
  return 0;
}
