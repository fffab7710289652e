// The schedule of detail::prefetch_ahead's hints (view.hpp), as the row loops use it: for every
// batch size, each item from prefetch_far_rows on gets exactly one far hint and each from
// prefetch_near_rows on exactly one near hint, no hint names an item outside the loop, and a far
// hint comes at least prefetch_far_rows items (and at most prefetch_far_rows + batch - 1) before
// its item. Also far_batch()'s threshold, and mostly_repeats(), which picks a forward's hints:
// the guess of "rows mostly cached" from the repeats among the first lookups. Prints
// "prefetch hints ok" on success.
#include <sparseopt/sparseopt.hpp>

#include <cstdint>
#include <cstdio>
#include <string>
#include <type_traits>
#include <vector>

#include "expect.hpp"

int main() {
  namespace d = sparseopt::detail;
  const std::int64_t batches[] = {1, 2, d::prefetch_far_batch};
  const std::int64_t sizes[] = {0, 1, 7, 8, 9, 31, 32, 33, 39, 40, 41, 100, 1003};
  for (const std::int64_t batch : batches) {
    for (const std::int64_t n : sizes) {
      std::vector<int> far(static_cast<std::size_t>(n)), near(static_cast<std::size_t>(n));
      bool in_range = true, far_in_time = true;
      for (std::int64_t u = 0; u < n; ++u) {
        d::prefetch_ahead(u, n, [&](std::int64_t v, auto level) {
          if (v <= u || v >= n) {
            in_range = false;
            return;
          }
          if constexpr (std::is_same_v<decltype(level), d::PrefetchFar>) {
            ++far[static_cast<std::size_t>(v)];
            far_in_time = far_in_time && v - u >= d::prefetch_far_rows && v - u < d::prefetch_far_rows + batch;
          } else {
            ++near[static_cast<std::size_t>(v)];
          }
        }, batch);
      }
      bool far_once = true, near_once = true;
      for (std::int64_t v = 0; v < n; ++v) {
        far_once = far_once && far[static_cast<std::size_t>(v)] == (v >= d::prefetch_far_rows ? 1 : 0);
        near_once = near_once && near[static_cast<std::size_t>(v)] == (v >= d::prefetch_near_rows ? 1 : 0);
      }
      char what[96];
      std::snprintf(what, sizeof what, "batch %lld, %lld items: ", static_cast<long long>(batch),
                    static_cast<long long>(n));
      expect(in_range, (std::string(what) + "a hint outside the loop or not ahead").c_str());
      expect(far_once, (std::string(what) + "each item one far hint").c_str());
      expect(near_once, (std::string(what) + "each item one near hint").c_str());
      expect(far_in_time, (std::string(what) + "far hints prefetch_far_rows ahead").c_str());
    }
  }
  expect(d::far_batch(0) == 1, "far_batch: no batches for an empty loop");
  expect(d::far_batch(d::prefetch_batch_min_bytes - 1) == 1, "far_batch: no batches below the threshold");
  expect(d::far_batch(d::prefetch_batch_min_bytes) == d::prefetch_far_batch, "far_batch: batches from the threshold");
  const std::int64_t rows[] = {5, 9, 4000};
  expect(d::row_spread_bytes(rows, 3, 256) == 3996 * 256, "row_spread_bytes: first to last row");
  expect(d::row_spread_bytes(rows, 0, 256) == 0, "row_spread_bytes: no rows");
  // mostly_repeats: a quarter or more of the first repeat_sample lookups repeat an earlier one.
  {
    std::vector<std::int64_t> lookups(4 * d::repeat_sample);
    std::uint64_t state = 12345;
    auto next = [&] { return (state = state * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
    for (auto& x : lookups) x = static_cast<std::int64_t>(next() % 1000000);  // distinct, almost
    const auto n = static_cast<std::int64_t>(lookups.size());
    expect(!d::mostly_repeats(lookups.data(), n), "mostly_repeats: uniform lookups over 1M rows");
    // Consecutive rows: no two of the first thousands share a hash (Fibonacci hashing spreads
    // them evenly), so the repeats below are the only ones.
    for (std::int64_t k = 0; k < n; ++k) lookups[k] = 1000 + k;
    expect(!d::mostly_repeats(lookups.data(), n), "mostly_repeats: distinct rows");
    const std::int64_t sample = d::repeat_sample;
    const auto needed = static_cast<std::int64_t>(d::repeat_min_fraction * double(sample));
    for (std::int64_t k = 1; k <= needed; ++k) lookups[k] = lookups[0];  // `needed` repeats of one row
    expect(d::mostly_repeats(lookups.data(), n), "mostly_repeats: a quarter of the sample repeats");
    lookups[needed] = 2000001;  // one repeat fewer (a row no other lookup names)
    expect(!d::mostly_repeats(lookups.data(), n), "mostly_repeats: just under a quarter");
    for (std::int64_t k = sample; k < n; ++k) lookups[k] = 7;  // lookups past the sample: not read
    expect(!d::mostly_repeats(lookups.data(), n), "mostly_repeats: only the first lookups count");
    for (auto& x : lookups) x = 3;
    expect(d::mostly_repeats(lookups.data(), n), "mostly_repeats: one row");
    expect(!d::mostly_repeats(lookups.data(), 63), "mostly_repeats: too few lookups to tell");
    expect(!d::mostly_repeats(lookups.data(), 0), "mostly_repeats: no lookups");
  }
  if (failures == 0) std::printf("prefetch hints ok\n");
  return failures == 0 ? 0 : 1;
}
