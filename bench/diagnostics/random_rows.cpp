// What memory lets a kernel do with scattered table rows on this machine, beside what
// sparseopt's row kernels do. It backs the closing note of issue 18, whose bars are fractions
// of the copy bandwidth: a step that touches 16,384 random rows of a 1,000,000 x 64 float32
// table (256-byte rows) cannot stream, and this measures how far below the copy rate the
// simplest possible loops over such rows already are.
//
// Every array is 2 MB-page backed (madvise, as NumPy does for large arrays) and first touched
// before timing. Rows: `rows` x 64 float32; every timed loop gets freshly drawn uniform
// indices, so that none finds rows another left in cache.
// Reported as median milliseconds over interleaved repetitions, and GB/s counting the bytes
// each loop must move at the least (rows read, plus rows written back for read-modify-write):
//   copy          memcpy of one whole table on one thread (read + write): the copy
//                 bandwidth bench/ divides by (np.copyto, one thread)
//   read floor    out[b] = sum of 32 random rows, 4,096 bags (the gather_sum forward's shape),
//                 plain loop with sparseopt's two hints per lookup (detail::prefetch_ahead:
//                 the row 32 lookups ahead into L2, the one 8 ahead into L1)
//   gather_sum    sparseopt::gather_sum on the same bags
//   rmw floor xN  x[r] += 1 over 16,384 sorted unique random rows of N tables (no compute:
//                 the least a lazy optimizer step with N state/parameter arrays must move),
//                 with the same two hints
//   adam lazy     sparseopt::adam_step (lazy) with the coalesced gradient of those rows
//   adam fused    sparseopt::adam_step with a BagGradient: 512 bags of 32 lookups, same rows'
//                 distribution (backward fused with the step)
//   adam 2-call   gather_sum_backward, then adam_step on its (rows, values)
//   sgd fused / sgd 2-call   the same for plain SGD (one array)
//
// Build and run from the repository root (no Python needed):
//   g++ -O3 -std=c++17 -fopenmp -fno-math-errno -I cpp/include bench/diagnostics/random_rows.cpp -o /tmp/random_rows
//   /tmp/random_rows [THREADS [ROWS [REPS]]]   (defaults: all cores, 1000000, 30)
#include <sparseopt/sparseopt.hpp>

#include "rows_common.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using clk = std::chrono::steady_clock;
using diagnostics::Block;
using diagnostics::median;

namespace {

constexpr std::int64_t width = 64, lookups = 16384, fwd_bags = 4096, fwd_len = 32, bwd_bags = 512;

struct Case {
  std::string name;
  double bytes;                 // the least the loop must move, per repetition
  std::function<void()> run;
  std::vector<double> ms;
};

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const std::int64_t rows = argc > 2 ? std::atoll(argv[2]) : 1000000;
  const int reps = argc > 3 ? std::atoi(argv[3]) : 30;
  const int nthreads = sparseopt::detail::resolve_threads(threads);
  const std::size_t table_size = static_cast<std::size_t>(rows * width);
  Block p(table_size), m(table_size), v(table_size), copy_to(table_size);
  std::vector<float> out(fwd_bags * width), grad_out(bwd_bags * width, 0.01f), values(lookups * width);
  std::vector<std::int64_t> fwd_indptr(fwd_bags + 1), bwd_indptr(bwd_bags + 1), fwd_idx(fwd_bags * fwd_len),
      bwd_idx(lookups), unique_rows, out_rows(lookups);
  for (std::int64_t b = 0; b <= fwd_bags; ++b) fwd_indptr[b] = b * fwd_len;
  for (std::int64_t b = 0; b <= bwd_bags; ++b) bwd_indptr[b] = b * (lookups / bwd_bags);
  std::mt19937_64 rng(1);
  auto draw = [&] {
    for (auto& x : fwd_idx) x = static_cast<std::int64_t>(rng() % std::uint64_t(rows));
    for (auto& x : bwd_idx) x = static_cast<std::int64_t>(rng() % std::uint64_t(rows));
    unique_rows = bwd_idx;
    std::sort(unique_rows.begin(), unique_rows.end());
    unique_rows.erase(std::unique(unique_rows.begin(), unique_rows.end()), unique_rows.end());
  };
  draw();
  const double row_bytes = width * sizeof(float);
  const double uniq = static_cast<double>(unique_rows.size());  // about the same every draw
  const sparseopt::Table<float> tp{p.data, rows, width};
  sparseopt::AdamState<float> adam;
  adam.exp_avg = {m.data, rows, width};
  adam.exp_avg_sq = {v.data, rows, width};
  sparseopt::AdamOptions adam_options;
  sparseopt::SgdState<float> sgd;
  sparseopt::SgdOptions sgd_options;
  sparseopt::GatherPlan<std::int64_t> plan;
  std::int64_t adam_step = 0, sgd_step = 0;
  const sparseopt::Bags<float, std::int64_t> fwd{fwd_indptr.data(), fwd_idx.data(), nullptr, fwd_bags,
                                                 fwd_bags * fwd_len};
  const sparseopt::Bags<float, std::int64_t> bwd{bwd_indptr.data(), bwd_idx.data(), nullptr, bwd_bags, lookups};
  const sparseopt::BagGradient<float, std::int64_t> bag_grad{{grad_out.data(), bwd_bags, width}, bwd, {}};
  auto two_call = [&](auto&& step) {
    const std::int64_t u = sparseopt::gather_sum_backward<float>({grad_out.data(), bwd_bags, width}, bwd, rows, plan,
                                                                 out_rows.data(), values.data(), lookups,
                                                                 sparseopt::BagReduction::sum, threads);
    step(sparseopt::RowSparse<float, std::int64_t>{out_rows.data(), values.data(), u, width});
  };
  auto rmw = [&](int arrays) {
    float* tables[3] = {p.data, m.data, v.data};
    const std::int64_t n = static_cast<std::int64_t>(unique_rows.size());
    sparseopt::detail::parallel_for(n, nthreads, n * width, [&](std::int64_t u, int) {
      sparseopt::detail::prefetch_ahead(u, n, [&](std::int64_t ahead, auto level) {
        for (int a = 0; a < arrays; ++a)
          sparseopt::detail::prefetch_row(tables[a] + unique_rows[ahead] * width, width, level);
      });
      for (int a = 0; a < arrays; ++a) {
        float* r = tables[a] + unique_rows[u] * width;
        for (std::int64_t j = 0; j < width; ++j) r[j] += 1.0f;
      }
    });
  };
  const double fwd_bytes = fwd_bags * fwd_len * row_bytes;
  std::vector<Case> cases;
  cases.push_back({"copy", 2.0 * table_size * sizeof(float),
                   [&] { std::memcpy(copy_to.data, p.data, table_size * sizeof(float)); }, {}});
  cases.push_back({"read floor", fwd_bytes, [&] {
                     const std::int64_t n = fwd_bags * fwd_len;
                     sparseopt::detail::parallel_for(fwd_bags, nthreads, n * width, [&](std::int64_t b, int) {
                       float acc[width] = {};
                       for (std::int64_t k = b * fwd_len; k < (b + 1) * fwd_len; ++k) {
                         sparseopt::detail::prefetch_ahead(k, n, [&](std::int64_t ahead, auto level) {
                           sparseopt::detail::prefetch_row(p.data + fwd_idx[ahead] * width, width, level);
                         });
                         const float* r = p.data + fwd_idx[k] * width;
                         for (std::int64_t j = 0; j < width; ++j) acc[j] += r[j];
                       }
                       std::memcpy(out.data() + b * width, acc, sizeof acc);
                     });
                   }, {}});
  cases.push_back({"gather_sum", fwd_bytes, [&] {
                     sparseopt::gather_sum<float>({p.data, rows, width}, fwd, {out.data(), fwd_bags, width},
                                                  sparseopt::BagReduction::sum, threads);
                   }, {}});
  cases.push_back({"rmw floor x1", 2 * uniq * row_bytes, [&] { rmw(1); }, {}});
  cases.push_back({"rmw floor x3", 6 * uniq * row_bytes, [&] { rmw(3); }, {}});
  cases.push_back({"adam lazy", 6 * uniq * row_bytes, [&] {
                     sparseopt::adam_step(tp, sparseopt::RowSparse<float, std::int64_t>{
                                                  unique_rows.data(), values.data(),
                                                  static_cast<std::int64_t>(unique_rows.size()), width},
                                          adam, adam_options, ++adam_step, threads);
                   }, {}});
  cases.push_back({"adam fused", 6 * uniq * row_bytes, [&] {
                     sparseopt::adam_step(tp, bag_grad, adam, adam_options, ++adam_step, threads);
                   }, {}});
  cases.push_back({"adam 2-call", 6 * uniq * row_bytes, [&] {
                     two_call([&](const auto& g) { sparseopt::adam_step(tp, g, adam, adam_options, ++adam_step, threads); });
                   }, {}});
  cases.push_back({"sgd fused", 2 * uniq * row_bytes, [&] {
                     sparseopt::sgd_step(tp, bag_grad, sgd, sgd_options, ++sgd_step, threads);
                   }, {}});
  cases.push_back({"sgd 2-call", 2 * uniq * row_bytes, [&] {
                     two_call([&](const auto& g) { sparseopt::sgd_step(tp, g, sgd, sgd_options, ++sgd_step, threads); });
                   }, {}});
  for (int rep = 0; rep < reps + 2; ++rep) {  // the first two warm up
    for (Case& c : cases) {
      draw();  // fresh rows for every loop: none finds another's rows in cache
      const auto t0 = clk::now();
      c.run();
      const auto t1 = clk::now();
      if (rep >= 2) c.ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  std::printf("%lld x %lld float32 rows, %d threads, %d repetitions; %.0f unique rows of %lld lookups\n",
              static_cast<long long>(rows), static_cast<long long>(width), nthreads, reps, uniq,
              static_cast<long long>(lookups));
  std::printf("%-14s %9s %8s %8s\n", "loop", "ms", "GB/s", "of copy");
  const double copy_gbs = cases[0].bytes / median(cases[0].ms) / 1e6;
  for (const Case& c : cases) {
    const double ms = median(c.ms), gbs = c.bytes / ms / 1e6;
    std::printf("%-14s %9.3f %8.1f %7.0f%%\n", c.name.c_str(), ms, gbs, 100.0 * gbs / copy_gbs);
  }
  return 0;
}
