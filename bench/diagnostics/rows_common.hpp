// What the scattered-row diagnostics (random_rows.cpp, size_floor.cpp, grouping_floor.cpp,
// fused_floor.cpp) share: float arrays on 2 MB pages, as NumPy puts large arrays, the median of
// their timings, and bench_fused.py's Zipf ranks. Header-only, next to the programs that
// include it, so that each still builds from its one source file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace diagnostics {

struct Block {  // a zeroed float array on 2 MB pages where the system has them
  float* data = nullptr;
  std::size_t n = 0;
  explicit Block(std::size_t count) : n(count) {
    void* p = nullptr;
    if (posix_memalign(&p, std::size_t(2) << 20, count * sizeof(float)) != 0) std::abort();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, count * sizeof(float), MADV_HUGEPAGE);
#endif
    data = static_cast<float*>(p);
    std::memset(data, 0, count * sizeof(float));
  }
  ~Block() { std::free(data); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
};

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// A rank in [0, rows) from numpy's zipf(1.1) clipped to the table, as bench_fused.py draws
// them (before its permutation of the rows): P(X >= k) ~ k^-(a - 1), by inversion.
inline std::int64_t zipf_rank(std::mt19937_64& random, std::int64_t rows) {
  const double uniform = (double(random() >> 11) + 0.5) * 0x1.0p-53;
  const double k = std::pow(uniform, -1.0 / 0.1);
  return k >= double(rows) ? rows - 1 : static_cast<std::int64_t>(k) - 1;
}

}  // namespace diagnostics
