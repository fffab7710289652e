// detail::index_range (coalesce.hpp), the check every step and gather makes of its indices:
// {min(0, smallest), max(-1, largest)} for every signed index type a C++ caller may use (the
// vector rounds take 4- and 8-byte types, long long and int16_t the scalar loop or not), on
// both SIMD paths, for lengths around the rounds' sizes, with negatives, INT_MIN and INT_MAX
// anywhere. Against a plain loop. Prints "index range ok" on success.
#include <sparseopt/sparseopt.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "expect.hpp"

template <class I>
void check(std::mt19937_64& random, const char* type) {
  for (const auto path : {sparseopt::SimdPath::generic, sparseopt::SimdPath::best}) {
    sparseopt::set_simd_path(path);
    for (std::int64_t n = 0; n <= 70; ++n) {
      for (int trial = 0; trial < 20; ++trial) {
        std::vector<I> x(static_cast<std::size_t>(n));
        for (auto& v : x) v = static_cast<I>(std::int64_t(random() % 100) - (trial % 4 == 0 ? 50 : 0));
        if (n > 0 && trial % 3 == 1) x[random() % std::uint64_t(n)] = std::numeric_limits<I>::max();
        if (n > 0 && trial % 5 == 2) x[random() % std::uint64_t(n)] = std::numeric_limits<I>::min();
        std::int64_t lo = 0, hi = -1;
        for (const I v : x) {
          lo = std::min<std::int64_t>(lo, v);
          hi = std::max<std::int64_t>(hi, v);
        }
        const auto got = sparseopt::detail::index_range(x.data(), n);
        if (got.first != lo || got.second != hi) {
          std::printf("%s, n = %lld: got {%lld, %lld}, expected {%lld, %lld}\n", type, (long long)n,
                      (long long)got.first, (long long)got.second, (long long)lo, (long long)hi);
          expect(false, "index_range");
          return;
        }
      }
    }
  }
  sparseopt::set_simd_path(sparseopt::SimdPath::best);
}

int main() {
  std::mt19937_64 random(5);
  check<std::int8_t>(random, "int8_t");
  check<std::int16_t>(random, "int16_t");
  check<std::int32_t>(random, "int32_t");
  check<std::int64_t>(random, "int64_t");
  check<int>(random, "int");
  check<long>(random, "long");
  check<long long>(random, "long long");
  if (failures == 0) std::printf("index range ok\n");
  return failures > 0;
}
