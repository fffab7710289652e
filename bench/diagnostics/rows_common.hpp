// What the scattered-row diagnostics (random_rows.cpp, size_floor.cpp) share: float arrays on
// 2 MB pages, as NumPy puts large arrays, and the median of their timings. Header-only, next to
// the programs that include it, so that each still builds from its one source file.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
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

}  // namespace diagnostics
