// detail::ThreadRows (parallel.hpp), the per-thread scratch rows the row loops sum into: each
// thread's block starts on a 64-byte line of its own, holds `width` elements, is zero-filled,
// and shares no cache line with another thread's block (two threads writing one line in turn
// slowed the bag sums 1.3x). For float and double, several widths and thread counts. Prints
// "thread rows ok" on success.
#include <sparseopt/sparseopt.hpp>

#include <cstdint>
#include <cstdio>

#include "expect.hpp"

template <class T>
void check(int threads, std::int64_t width) {
  const sparseopt::detail::ThreadRows<T> rows(threads, width);
  const std::int64_t w = width > 0 ? width : 1;
  bool aligned = true, zero = true, apart = true;
  for (int t = 0; t < threads; ++t) {
    T* row = rows.row(t);
    const auto first = reinterpret_cast<std::uintptr_t>(row);
    aligned = aligned && first % 64 == 0;
    for (std::int64_t j = 0; j < w; ++j) zero = zero && row[j] == T(0);
    for (std::int64_t j = 0; j < w; ++j) row[j] = T(t + 1);  // writable, and inside the buffer (ASan)
    if (t + 1 < threads) {
      const auto last_line = (first + std::uintptr_t(w) * sizeof(T) - 1) / 64;
      apart = apart && reinterpret_cast<std::uintptr_t>(rows.row(t + 1)) / 64 > last_line;
    }
  }
  bool kept = true;  // no block wrote over another
  for (int t = 0; t < threads; ++t)
    for (std::int64_t j = 0; j < w; ++j) kept = kept && rows.row(t)[j] == T(t + 1);
  expect(aligned, "every block starts on a 64-byte line");
  expect(zero, "blocks start zero-filled");
  expect(apart, "no two blocks share a cache line");
  expect(kept, "each block keeps its own values");
}

int main() {
  for (int threads : {1, 2, 3, 8})
    for (std::int64_t width : {0, 1, 3, 15, 16, 17, 64, 100}) {
      check<float>(threads, width);
      check<double>(threads, width);
    }
  if (failures == 0) std::printf("thread rows ok\n");
  return failures > 0;
}
