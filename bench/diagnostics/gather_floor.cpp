// The least time any loop needs to read the rows an EmbeddingBag forward sums, on this
// machine: the floor under issue 18's bar of gather_sum >= 1.3x torch's embedding_bag.
// Loaded by gather_floor.py (which builds it as a shared library with the build line there
// and times it beside torch and sparseopt in one process).
//
// read_rows: for each lookup k (the order the caller gives), read every byte of table row
// order[k] (width floats) and fold it into a per-thread sum, with a software prefetch into L1
// of the row `ahead` lookups later (0: none) and, with far > 0, one into L2 of the row `far`
// lookups later (the two distances of sparseopt's loops over scattered rows, view.hpp). No
// output rows, no bags, no checks: only the reads a forward cannot skip. The lookups are split
// into equal contiguous ranges, one per thread.
// stream: read the same number of bytes from consecutive rows (what the bytes would cost if
// they were not scattered), starting at row `first`.
// Both return a value from what they read, so that the compiler keeps the loads.
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(_OPENMP)
#include <omp.h>
#endif

namespace {
typedef float Lanes __attribute__((vector_size(64)));

inline void fold_row(Lanes& acc, const float* row, std::int64_t width) {
  std::int64_t j = 0;
  for (; j + 16 <= width; j += 16) {
    Lanes v;
    std::memcpy(&v, row + j, sizeof v);
    acc += v;
  }
  for (; j < width; ++j) acc[0] += row[j];
}

// This thread's share of [0, n) inside a parallel region: equal contiguous ranges.
std::pair<std::int64_t, std::int64_t> own_range(std::int64_t n) {
#if defined(_OPENMP)
  const std::int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
  const std::int64_t t = 0, nt = 1;
#endif
  return {n * t / nt, n * (t + 1) / nt};
}

float total(const Lanes& acc) {
  float s = 0;
  for (int l = 0; l < 16; ++l) s += acc[l];
  return s;
}
}  // namespace

extern "C" {

float read_rows(const float* table, std::int64_t width, const std::int64_t* order, std::int64_t n,
                std::int64_t ahead, std::int64_t far, int threads) {
  float result = 0;
#pragma omp parallel num_threads(threads) reduction(+ : result)
  {
    const auto [first, last] = own_range(n);
    const std::int64_t bytes = width * std::int64_t(sizeof(float));
    Lanes acc = {};
    for (std::int64_t k = first; k < last; ++k) {
      if (far > 0 && k + far < last) {
        const char* r = reinterpret_cast<const char*>(table + order[k + far] * width);
        for (std::int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(r + b, 0, 2);
        __builtin_prefetch(r + bytes - 1, 0, 2);
      }
      if (ahead > 0 && k + ahead < last) {
        const char* r = reinterpret_cast<const char*>(table + order[k + ahead] * width);
        for (std::int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(r + b);
        __builtin_prefetch(r + bytes - 1);  // the last line, where the row is not line-aligned
      }
      fold_row(acc, table + order[k] * width, width);
    }
    result += total(acc);
  }
  return result;
}

float stream(const float* table, std::int64_t width, std::int64_t first_row, std::int64_t n, int threads) {
  float result = 0;
#pragma omp parallel num_threads(threads) reduction(+ : result)
  {
    const auto [first, last] = own_range(n);
    Lanes acc = {};
    for (std::int64_t k = first; k < last; ++k) fold_row(acc, table + (first_row + k) * width, width);
    result += total(acc);
  }
  return result;
}
}
