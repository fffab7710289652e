// The floor under the grouping every sparse step starts with: how close is sparseopt's plan
// (the lookups grouped by row, CoalescePlan / GatherPlan) to a bare radix sort of the same
// indices, on this machine? Issue 18's fused-step bar (step_bags >= 1.5x gather_sum_backward +
// step) depends on what a grouping costs (bench/diagnostics/fused_grouping.py), so this says
// whether a faster grouping is there to be had.
//
// For uniform and Zipf-like lookups (a = 1.1, clipped to the table, as bench_fused.py's), 8
// batches of LOOKUPS int64 indices into ROWS rows, in bags of 32. Timed, alternately, over the
// batches:
//   plan, with bags     GatherPlan::build_by_row: the fused step's plan (rows, their positions
//                       and each position's bag)
//   plan                CoalescePlan::build: a step's plan of its indices
//   plan, unique rows   CoalescePlan::build of the batch's distinct rows, ascending: the plan
//                       the step of the two calls builds of the backward's coalesced rows
//   bare radix          the same grouping by hand, with nothing else: (index, position) packed
//                       in a word, one counting pass for both 11-bit digits, a stable scatter
//                       per digit, one pass to read rows, bounds and positions. No index check,
//                       no bags, no buffers sized or kept: the algorithm's own cost
//   bare radix, 8 bits  the same with 8-bit digits (three passes for a 1M-row table)
// and reports the median microseconds and each loop's time over the bare radix sort's. The
// bare sorts run on one thread; the plans on THREADS, which they use from 8,192 lookups up (a
// thread per range of index values: CoalescePlan::group_by_range), so with 2 or more threads
// "vs bare" is also the plans' gain from their threads.
//
// Build and run from the repository root:
//   g++ -O3 -std=c++17 -fopenmp -I cpp/include bench/diagnostics/grouping_floor.cpp -o /tmp/grouping_floor
//   /tmp/grouping_floor [THREADS [REPS [ROWS [LOOKUPS]]]]   (defaults: all cores, 400, 1000000, 16384)
#include <sparseopt/sparseopt.hpp>

#include "rows_common.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <utility>
#include <vector>

namespace {

constexpr std::int64_t bag_len = 32, batches = 8;
using diagnostics::median;

// Rows, bounds and positions of the grouped lookups, as a plan holds them.
struct Grouped {
  std::vector<std::uint64_t> words, spare;
  std::vector<std::int64_t> rows, bounds, order;
};

// The bare LSD radix grouping with `Bits`-bit digits (see the header), compiled into both of
// sparseopt's SIMD paths as the plans are (BMI2's shifts on the AVX2 path: simd.hpp) and run on
// the one the plans take.
template <int Bits>
SPARSEOPT_ALWAYS_INLINE std::int64_t bare_radix_body(const std::vector<std::int64_t>& indices, int index_bits,
                                                     Grouped& g) {
  constexpr std::size_t buckets = std::size_t(1) << Bits;
  const auto n = static_cast<std::int64_t>(indices.size());
  int position_bits = 0;
  while ((std::int64_t(1) << position_bits) < n) ++position_bits;
  const int digits = (index_bits + Bits - 1) / Bits;
  std::uint64_t* from = g.words.data();
  std::uint64_t* to = g.spare.data();
  for (std::int64_t k = 0; k < n; ++k) from[k] = (std::uint64_t(indices[k]) << position_bits) | std::uint64_t(k);
  std::array<std::array<std::size_t, buckets>, 5> start{};  // up to 5 digits: index_bits <= 33
  for (std::int64_t k = 0; k < n; ++k) {
    const std::uint64_t key = from[k] >> position_bits;
    for (int d = 0; d < digits; ++d) ++start[d][(key >> (d * Bits)) & (buckets - 1)];
  }
  for (int d = 0; d < digits; ++d) {
    std::size_t sum = 0;
    for (auto& c : start[d]) sum += std::exchange(c, sum);
    const int shift = position_bits + d * Bits;
    std::size_t* next = start[d].data();
    for (std::int64_t k = 0; k < n; ++k) to[next[(from[k] >> shift) & (buckets - 1)]++] = from[k];
    std::swap(from, to);
  }
  const std::uint64_t position_mask = (std::uint64_t(1) << position_bits) - 1;
  std::int64_t u = 0, spare_row = 0, spare_bound = 0;
  std::uint64_t previous = ~std::uint64_t(0);
  for (std::int64_t k = 0; k < n; ++k) {
    const std::uint64_t key = from[k], r = key >> position_bits;
    g.order[k] = std::int64_t(key & position_mask);
    const bool starts = r != previous;
    *(starts ? &g.rows[u] : &spare_row) = std::int64_t(r);
    *(starts ? &g.bounds[u] : &spare_bound) = k;
    u += starts;
    previous = r;
  }
  g.bounds[u] = n;
  return u;
}

template <int Bits>
std::int64_t bare_radix(const std::vector<std::int64_t>& indices, int index_bits, Grouped& g) {
  std::int64_t u = 0;
  sparseopt::detail::simd_dispatch(
      [&](auto) SPARSEOPT_INLINE_BODY { u = bare_radix_body<Bits>(indices, index_bits, g); });
  return u;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int reps = argc > 2 ? std::atoi(argv[2]) : 400;
  const std::int64_t num_rows = argc > 3 ? std::atoll(argv[3]) : 1000000;
  const std::int64_t lookups = argc > 4 ? std::atoll(argv[4]) / bag_len * bag_len : 16384;
  if (threads < 0 || reps < 1 || num_rows < 2 || lookups < bag_len) {
    std::fprintf(stderr, "usage: grouping_floor [THREADS [REPS [ROWS [LOOKUPS]]]]\n");
    return 2;
  }
  int index_bits = 0;
  while ((std::int64_t(1) << index_bits) < num_rows) ++index_bits;
  if (index_bits > 33) {
    std::fprintf(stderr, "ROWS: at most 2^33 (five 8-bit digits)\n");
    return 2;
  }
  const std::int64_t num_bags = lookups / bag_len;
  std::vector<std::int64_t> indptr(static_cast<std::size_t>(num_bags + 1));
  for (std::int64_t b = 0; b <= num_bags; ++b) indptr[b] = b * bag_len;
  std::printf("%lld lookups (%lld bags of %lld) into %lld rows, %d threads, %d rounds; us: medians\n",
              (long long)lookups, (long long)num_bags, (long long)bag_len, (long long)num_rows,
              sparseopt::detail::resolve_threads(threads), reps);
  std::printf("%-8s %-20s %9s %11s\n", "indices", "loop", "us", "vs bare");
  std::mt19937_64 random(7);
  for (const bool zipf : {false, true}) {
    std::vector<std::vector<std::int64_t>> index_batches, unique_batches;
    for (std::int64_t b = 0; b < batches; ++b) {
      std::vector<std::int64_t> indices(static_cast<std::size_t>(lookups));
      for (auto& x : indices) {
        if (!zipf) {
          x = static_cast<std::int64_t>(random() % std::uint64_t(num_rows));
        } else {
          x = diagnostics::zipf_rank(random, num_rows);
        }
      }
      std::vector<std::int64_t> unique = indices;
      std::sort(unique.begin(), unique.end());
      unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
      index_batches.push_back(std::move(indices));
      unique_batches.push_back(std::move(unique));
    }
    sparseopt::GatherPlan<std::int64_t> with_bags;
    sparseopt::CoalescePlan<std::int64_t> plan, unique_plan;
    Grouped bare;
    for (auto* v : {&bare.words, &bare.spare}) v->resize(static_cast<std::size_t>(lookups));
    for (auto* v : {&bare.rows, &bare.bounds, &bare.order}) v->resize(static_cast<std::size_t>(lookups + 1));
    constexpr int loops = 5;
    const char* names[loops] = {"plan, with bags", "plan", "plan, unique rows", "bare radix", "bare radix, 8 bits"};
    std::vector<double> us[loops];
    std::int64_t found[loops] = {};
    for (int r = -20; r < reps; ++r) {  // 20 rounds of warm-up
      const std::size_t b = static_cast<std::size_t>((r + 20) % batches);
      const auto& indices = index_batches[b];
      const auto& unique = unique_batches[b];
      for (int i = 0; i < loops; ++i) {
        const int loop = (r & 1) ? loops - 1 - i : i;  // alternate the order
        const auto t0 = std::chrono::steady_clock::now();
        switch (loop) {
          case 0: {
            const sparseopt::Bags<float, std::int64_t> bags{indptr.data(), indices.data(), nullptr, num_bags, lookups};
            with_bags.build_by_row(bags, num_rows, sparseopt::BagReduction::sum, {}, threads);
            found[loop] = with_bags.size();
            break;
          }
          case 1:
            plan.build(indices.data(), lookups, num_rows, threads);
            found[loop] = plan.size();
            break;
          case 2:
            unique_plan.build(unique.data(), static_cast<std::int64_t>(unique.size()), num_rows, threads);
            found[loop] = unique_plan.size();
            break;
          case 3:
            found[loop] = bare_radix<11>(indices, index_bits, bare);
            break;
          default:
            found[loop] = bare_radix<8>(indices, index_bits, bare);
        }
        const double t = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
        if (r >= 0) us[loop].push_back(t);
      }
      for (int loop = 0; loop < loops; ++loop) {
        if (found[loop] != static_cast<std::int64_t>(unique.size())) {
          std::fprintf(stderr, "%s found %lld rows, not %lld\n", names[loop], (long long)found[loop],
                       (long long)unique.size());
          return 1;
        }
      }
      if (!std::equal(bare.rows.begin(), bare.rows.begin() + found[3], plan.rows.begin()) ||
          !std::equal(bare.order.begin(), bare.order.begin() + lookups, plan.order.begin())) {
        std::fprintf(stderr, "the bare radix sort's grouping differs from the plan's\n");
        return 1;
      }
    }
    const double floor = median(us[3]);
    for (int loop = 0; loop < loops; ++loop) {
      const double t = median(us[loop]);
      std::printf("%-8s %-20s %9.1f %10.2fx\n", zipf ? "zipf" : "uniform", names[loop], t, t / floor);
    }
  }
  return 0;
}
