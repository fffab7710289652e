// gather_sum over a half-precision table (float16, bfloat16; half.hpp): float32 weights,
// float32 output. Each term is widened (exact) and the bag is summed in float, in the order
// gather_sum adds terms (the first term, then each next one added), so the result is bit for
// bit gather_sum over the widened float32 table, with no float32 copy of the table.
//
// The gradient of this forward is float32 (grad_out), so gather_sum_backward's float32 path
// serves half tables too: its row gradients are what a half table's optimizer step takes.
#pragma once

#include <cstdint>
#include <cstring>

#include "gather.hpp"
#include "half.hpp"

namespace sparseopt {

template <class H, class I>
void gather_sum_half(Table<const H> table, const Bags<float, I>& bags, Table<float> out,
                     BagReduction mode = BagReduction::sum, int num_threads = 0,
                     const detail::BagNames& names = {}) {
  static_assert(is_half_v<H>, "gather_sum_half: a float16 or bfloat16 table");
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t w = table.row_width, nb = bags.num_bags;
  detail::require_gather_sum_args(table, bags, out, mode, names);
  if (w == 0) return;
  const std::int64_t n = bags.size;
  const std::int64_t batch = detail::far_batch(table.num_rows * w * std::int64_t(sizeof(H)));
  const bool hot = detail::mostly_repeats(bags.indices, n);
  detail::parallel_for(
      nb, threads, (n + nb) * w,
      [&](std::int64_t b, int) {
        float* SPARSEOPT_RESTRICT o = out.row(b);
        const std::int64_t begin = bags.begin(b), end = bags.end(b);
        if (begin == end) {
          std::memset(o, 0, sizeof(float) * static_cast<std::size_t>(w));
          return;
        }
        for (std::int64_t p = begin; p < end; ++p) {
          // The rows of later lookups, this bag's or the next ones', far and near (view.hpp).
          if (hot) {  // rows mostly cached: one hint per row, to L1 (see detail::mostly_repeats)
            if (p + detail::prefetch_far_rows < n)
              detail::prefetch_row(table.row(static_cast<std::int64_t>(bags.indices[p + detail::prefetch_far_rows])), w);
          } else {
            detail::prefetch_ahead(p, n, [&](std::int64_t q, auto level) SPARSEOPT_INLINE_BODY {
              detail::prefetch_row(table.row(static_cast<std::int64_t>(bags.indices[q])), w, level);
            }, batch);
          }
          const H* SPARSEOPT_RESTRICT x = table.row(static_cast<std::int64_t>(bags.indices[p]));
          if (bags.weights) {
            const float s = bags.weights[p];
            if (p == begin)
              for (std::int64_t j = 0; j < w; ++j) o[j] = s * widen(x[j]);
            else
              for (std::int64_t j = 0; j < w; ++j) o[j] += s * widen(x[j]);
          } else if (p == begin) {
            for (std::int64_t j = 0; j < w; ++j) o[j] = widen(x[j]);
          } else {
            for (std::int64_t j = 0; j < w; ++j) o[j] += widen(x[j]);
          }
        }
        if (mode == BagReduction::mean) {
          const float l = static_cast<float>(end - begin);
          for (std::int64_t j = 0; j < w; ++j) o[j] /= l;
        }
      },
      [&](std::int64_t b) { return bags.begin(b) + b; });
}

}  // namespace sparseopt
