// Top-k along rows of a half-precision array (float16, bfloat16; half.hpp). Widening is exact
// and monotone, so each row is widened into this thread's scratch (n floats, allocated before
// the parallel region) and ranked there by topk.hpp's kernel with its rules (ties to the lower
// index, NaN above every number, -0.0 == 0.0); the returned values are the row's own half
// elements, bits kept. The result equals topk_rows over the widened array, narrowed back.
// Each row runs on one thread (a long row is not split between threads as topk_rows may do;
// the selected set and the sorted order are the same either way).
#pragma once

#include <cstdint>
#include <vector>

#include "half.hpp"
#include "simd.hpp"
#include "topk.hpp"

namespace sparseopt {

template <class H>
void topk_rows_half(const H* x, std::int64_t rows, std::int64_t n, std::int64_t k, H* values,
                    std::int64_t* indices, const TopkOptions& options = {}, int num_threads = 0) {
  static_assert(is_half_v<H>, "topk_rows_half: float16 or bfloat16 rows");
  detail::require(rows >= 0, "rows must be >= 0, got ", rows);
  detail::require_topk_k(n, k);
  const int threads = detail::resolve_threads(num_threads);
  if (rows == 0) return;
  detail::require(x != nullptr && values != nullptr && indices != nullptr,
                  "topk_rows_half: x, values and indices must not be null");
  const std::int64_t x_bytes = rows * n * std::int64_t(sizeof(H));
  const std::int64_t v_bytes = rows * k * std::int64_t(sizeof(H)), i_bytes = rows * k * std::int64_t(sizeof(std::int64_t));
  detail::require_disjoint(values, v_bytes, "values", indices, i_bytes, "indices");
  detail::require_disjoint(values, v_bytes, "values", x, x_bytes, "x");
  detail::require_disjoint(indices, i_bytes, "indices", x, x_bytes, "x");
  // Allocated before the parallel region, so nothing in it can fail half-way through: a
  // widened row and k float slots for the kernel's keys, per thread.
  detail::ThreadRows<float> scratch(threads, n + k);
  detail::parallel_for(rows, threads, rows * n * topk_work_per_element, [&](std::int64_t r, int slot) {
    float* wide = scratch.row(slot);
    float* keys = wide + n;
    const H* row = x + r * n;
    detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
      for (std::int64_t j = 0; j < n; ++j) wide[j] = widen(row[j]);
    });
    std::int64_t* ix = indices + r * k;
    detail::topk_row_unchecked(wide, n, k, options, keys, ix);
    for (std::int64_t j = 0; j < k; ++j) values[r * k + j] = row[ix[j]];
  });
}

}  // namespace sparseopt
