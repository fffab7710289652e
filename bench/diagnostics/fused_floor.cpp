// Where the fused step's time goes: is its row loop as fast as the same loop written by hand,
// and how close to issue 18's bar (step_bags >= 1.5x gather_sum_backward + step) can it get
// with the grouping both paths share as it is?
//
// For uniform and Zipf lookups (numpy's zipf(1.1) tail, clipped to the table and spread over a
// random permutation of its rows drawn for each batch, as bench_fused.py's), 8 batches of 512
// bags x 32 int64 lookups into a ROWS x 64 float32 table, each with a grad_out of its own,
// THREADS threads, SGD and row-wise Adagrad. Timed alternately, over the batches:
//   plan      GatherPlan::build_by_row: the fused step's grouping (the lookups' rows, each row's
//             terms and their bags), the one gather_sum_backward builds too
//   fused     sgd_step / rowwise_adagrad_step with a BagGradient (what step_bags calls)
//   two       gather_sum_backward, then the step on its coalesced rows
//   by hand   the fused step's row loop written plainly, on the batch's plan (built untimed):
//             each row's terms summed in order (a row of one term read in place), then
//             p -= 0.01 * g, with sparseopt's prefetch hints (batched as the library's), split
//             of rows between threads and AVX2 copy; row-wise Adagrad's turn also reads and
//             writes its one-float sum, without its arithmetic. On SGD's turn it must leave the
//             fused step's table to the bit.
// Each path has a table (and state) of its own. From the medians:
//   slack     fused - plan - by hand: the fused step beyond its plan and the loop by hand (its
//             call's setup included). The two calls run the same row loops (the backward's
//             sums, the step's updates), so this time is taken as in both paths.
//   ceiling   (two - slack) / (fused - slack): the ratio with both paths' row loops as fast as
//             the loop by hand and the grouping as timed. Where it is below 1.5x, the bar needs
//             a faster grouping (bench/diagnostics/grouping_floor.cpp: the plan already beats a
//             bare radix sort), which speeds up the two calls too.
//
// Build and run from the repository root:
//   g++ -O3 -std=c++17 -fopenmp -fno-math-errno -I cpp/include bench/diagnostics/fused_floor.cpp -o /tmp/fused_floor
//   /tmp/fused_floor [THREADS [REPS [ROWS]]]   (defaults: all cores, 60, 1000000)
#include <sparseopt/sparseopt.hpp>

#include "rows_common.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <vector>

namespace {

constexpr std::int64_t width = 64, num_bags = 512, bag_len = 32, lookups = num_bags * bag_len, batches = 8;
using diagnostics::Block;
using diagnostics::median;

struct Batch {
  std::vector<std::int64_t> indices, unique;
  std::vector<float> grad_out;  // num_bags x width
};

std::vector<Batch> make_batches(bool zipf, std::int64_t rows, std::mt19937_64& random) {
  std::vector<std::int64_t> permutation(static_cast<std::size_t>(rows));
  std::vector<Batch> out(batches);
  for (auto& batch : out) {
    // a permutation of its own per batch, as bench_fused.py draws one
    std::iota(permutation.begin(), permutation.end(), std::int64_t(0));
    std::shuffle(permutation.begin(), permutation.end(), random);
    batch.grad_out.resize(num_bags * width);
    for (auto& g : batch.grad_out) g = float(double(random() >> 40) * 0x1.0p-24 - 0.5);
    batch.indices.resize(lookups);
    for (auto& x : batch.indices) {
      if (!zipf) {
        x = static_cast<std::int64_t>(random() % std::uint64_t(rows));
      } else {
        x = permutation[static_cast<std::size_t>(diagnostics::zipf_rank(random, rows))];
      }
    }
    batch.unique = batch.indices;
    std::sort(batch.unique.begin(), batch.unique.end());
    batch.unique.erase(std::unique(batch.unique.begin(), batch.unique.end()), batch.unique.end());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 60;
  const std::int64_t rows = argc > 3 ? std::atoll(argv[3]) : 1000000;
  if (threads < 0 || reps < 1 || rows < 2) {
    std::fprintf(stderr, "usage: fused_floor [THREADS [REPS [ROWS]]]\n");
    return 2;
  }
  const int team = sparseopt::detail::resolve_threads(threads);
  const auto size = static_cast<std::size_t>(rows * width);
  Block fused_table(size), two_table(size), floor_table(size), fused_sum(rows), two_sum(rows), floor_sum(rows);
  std::mt19937_64 random(7);
  std::vector<std::int64_t> indptr(num_bags + 1), out_rows(lookups);
  std::vector<float> values(lookups * width);
  for (std::int64_t b = 0; b <= num_bags; ++b) indptr[b] = b * bag_len;
  std::printf("%lld x %lld float32 table, %lld bags x %lld lookups, %d threads, %d rounds; us: medians\n",
              (long long)rows, (long long)width, (long long)num_bags, (long long)bag_len, team, reps);
  std::printf("%-8s %-15s %7s %7s %7s %8s %7s %10s %9s\n", "indices", "optimizer", "plan", "fused", "two", "by hand",
              "slack", "two/fused", "ceiling");
  for (const bool zipf : {false, true}) {
    const std::vector<Batch> data = make_batches(zipf, rows, random);
    for (const bool rowwise : {false, true}) {
      const sparseopt::Table<float> fused_param{fused_table.data, rows, width}, two_param{two_table.data, rows, width};
      sparseopt::SgdState<float> sgd_state;
      sparseopt::SgdOptions sgd;
      sgd.lr = 0.01;
      sparseopt::RowWiseAdagradState<float> fused_state, two_state;
      fused_state.sum = fused_sum.data;
      two_state.sum = two_sum.data;
      sparseopt::RowWiseAdagradOptions adagrad;
      adagrad.lr = 0.01;
      std::int64_t fused_steps = 0, two_steps = 0;
      sparseopt::GatherPlan<std::int64_t> plan, two_plan;
      auto bags = [&](std::size_t b) {
        return sparseopt::Bags<float, std::int64_t>{indptr.data(), data[b].indices.data(), nullptr, num_bags, lookups};
      };
      // The loop by hand reads each batch's plan, built once here, and sums into a row per thread.
      std::vector<sparseopt::GatherPlan<std::int64_t>> plans(batches);
      for (std::size_t b = 0; b < batches; ++b)
        plans[b].build_by_row(bags(b), rows, sparseopt::BagReduction::sum, {}, threads);
      sparseopt::detail::ThreadRows<float> scratch(team, width);
      auto step = [&](const sparseopt::Table<float>& param, const auto& grad, auto& state, std::int64_t& steps) {
        if (rowwise)
          sparseopt::rowwise_adagrad_step(param, grad, state, adagrad, threads);
        else
          sparseopt::sgd_step(param, grad, sgd_state, sgd, ++steps, threads);
      };
      std::vector<std::function<void(std::size_t)>> loops = {
          [&](std::size_t b) { plan.build_by_row(bags(b), rows, sparseopt::BagReduction::sum, {}, threads); },
          [&](std::size_t b) {
            const sparseopt::BagGradient<float, std::int64_t> grad{
                {data[b].grad_out.data(), num_bags, width}, bags(b), {}};
            step(fused_param, grad, fused_state, fused_steps);
          },
          [&](std::size_t b) {
            const std::int64_t u = sparseopt::gather_sum_backward<float>(
                {data[b].grad_out.data(), num_bags, width}, bags(b), rows, two_plan, out_rows.data(), values.data(),
                lookups,
                sparseopt::BagReduction::sum, threads);
            step(two_param, sparseopt::RowSparse<float, std::int64_t>{out_rows.data(), values.data(), u, width},
                 two_state, two_steps);
          },
          [&](std::size_t b) {  // the fused loop by hand: each row's terms summed, its row updated
            const sparseopt::CoalescePlan<std::int64_t>& by_row = plans[b].by_row();
            const std::int64_t* bag = plans[b].bag_of_sorted();
            const std::int64_t* offsets = by_row.offsets.data();
            const std::int64_t* unique = by_row.rows.data();
            const std::int64_t n = by_row.size();
            const float* const g = data[b].grad_out.data();
            float* const p = floor_table.data;
            float* const s = floor_sum.data;
            // far hints in batches where the rows spread as far as the library batches them
            const std::int64_t batch = sparseopt::detail::far_batch(
                sparseopt::detail::row_spread_bytes(unique, n, width * std::int64_t(sizeof(float))));
            sparseopt::detail::parallel_for(
                n, team, (lookups + n) * width,
                [&](std::int64_t u, int slot) {
                  sparseopt::detail::prefetch_ahead(u, n, [&](std::int64_t ahead, auto level) {
                    sparseopt::detail::prefetch_row(p + unique[ahead] * width, width, level);
                    if (rowwise) sparseopt::detail::prefetch_row(s + unique[ahead], 1, level);
                  }, batch);
                  // the AVX2 copy where the CPU has it, as the library's sums and updates
                  sparseopt::detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
                    const float* term = g + bag[offsets[u]] * width;
                    if (offsets[u + 1] - offsets[u] > 1) {
                      float* acc = scratch.row(slot);
                      std::copy(term, term + width, acc);
                      for (std::int64_t k = offsets[u] + 1; k < offsets[u + 1]; ++k) {
                        const float* more = g + bag[k] * width;
                        for (std::int64_t j = 0; j < width; ++j) acc[j] += more[j];
                      }
                      term = acc;
                    }
                    float* row = p + unique[u] * width;
                    for (std::int64_t j = 0; j < width; ++j) row[j] -= 0.01f * term[j];
                    if (rowwise) s[unique[u]] += term[0];
                  });
                },
                [offsets](std::int64_t u) { return offsets[u] + 32 * u; });
          }};
      // The loop by hand starts from the fused step's table, which its SGD run must match.
      if (!rowwise) std::memcpy(floor_table.data, fused_table.data, size * sizeof(float));
      std::vector<std::vector<double>> us(loops.size());
      for (int r = -20; r < reps; ++r) {  // 20 rounds of warm-up
        for (std::size_t i = 0; i < loops.size(); ++i) {
          const std::size_t loop = (r & 1) ? loops.size() - 1 - i : i;  // alternate the order
          const auto t0 = std::chrono::steady_clock::now();
          for (std::size_t b = 0; b < batches; ++b) loops[loop](b);
          const double t = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
          if (r >= 0) us[loop].push_back(t / batches);
        }
      }
      // Same bits, or the times compare different work. The loop by hand does SGD's arithmetic
      // (on row-wise Adagrad's turn, the tables have parted already).
      if (!std::equal(fused_table.data, fused_table.data + size, two_table.data) ||
          (!rowwise && !std::equal(fused_table.data, fused_table.data + size, floor_table.data))) {
        std::fprintf(stderr, "the fused step, the two calls and the loop by hand left different tables\n");
        return 1;
      }
      double m[4];
      for (std::size_t i = 0; i < 4; ++i) m[i] = median(us[i]);
      const double plan_us = m[0], fused = m[1], two = m[2], by_hand = m[3];
      const double slack = fused - plan_us - by_hand;
      std::printf("%-8s %-15s %7.1f %7.1f %7.1f %8.1f %7.1f %9.2fx %8.2fx\n", zipf ? "zipf" : "uniform",
                  rowwise ? "RowWiseAdagrad" : "SGD", plan_us, fused, two, by_hand, slack, two / fused,
                  (two - slack) / (fused - slack));
    }
  }
  return 0;
}
