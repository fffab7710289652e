// Gradient norms and clipping. The norm of a row-sparse gradient is that of its coalesced form
// (repeated rows summed first, as coalesce.hpp sums them): squaring the uncoalesced values
// would miss the cross terms of repeated rows. Sums are taken in double, per row (or per fixed
// block of a dense array) in parallel, then added in row order on one thread, so the result is
// the same bits for any thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "coalesce.hpp"
#include "errors.hpp"
#include "parallel.hpp"
#include "view.hpp"

namespace sparseopt {

namespace detail {

// max that keeps a NaN once seen (std::max drops it depending on argument order).
inline double nan_max(double a, double b) noexcept {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<double>::quiet_NaN();
  return a < b ? b : a;
}

}  // namespace detail

// Sum of squares and largest magnitude of a gradient (NaN when any element is NaN).
struct NormParts {
  double sum_squares = 0.0;
  double max_abs = 0.0;

  void add(const NormParts& other) noexcept {
    sum_squares += other.sum_squares;
    max_abs = detail::nan_max(max_abs, other.max_abs);
  }
};

namespace detail {

template <class T>
NormParts parts_of(const T* x, std::int64_t n) noexcept {
  NormParts p;
  for (std::int64_t j = 0; j < n; ++j) {
    const double v = static_cast<double>(x[j]);
    p.sum_squares += v * v;
    p.max_abs = nan_max(p.max_abs, std::fabs(v));
  }
  return p;
}

// Adds the per-item parts in item order: the fixed reduction order behind the bit-identity.
inline NormParts sum_in_order(const std::vector<NormParts>& items) noexcept {
  NormParts total;
  for (const NormParts& p : items) total.add(p);
  return total;
}

}  // namespace detail

// Parts of the coalesced row-sparse gradient whose rows are grouped by `plan`.
template <class T, class I>
NormParts norm_parts(const RowSparse<T, I>& grad, const CoalescePlan<I>& plan, int num_threads = 0) {
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t w = grad.row_width;
  std::vector<NormParts> rows(static_cast<std::size_t>(plan.size()));
  detail::ThreadRows<T> scratch(threads, w);
  detail::parallel_for(plan.size(), threads, (grad.size + plan.size()) * w, [&](std::int64_t u, int slot) {
    T* own = scratch.row(slot);
    rows[static_cast<std::size_t>(u)] = detail::parts_of(detail::summed_row(grad, plan, u, own), w);
  });
  return detail::sum_in_order(rows);
}

// Parts of a dense gradient of n elements, summed in blocks of a fixed size (not one per
// thread), so the order of additions does not depend on the thread count.
template <class T>
NormParts norm_parts(const T* x, std::int64_t n, int num_threads = 0) {
  constexpr std::int64_t block = 4096;
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t blocks = (n + block - 1) / block;
  std::vector<NormParts> parts(static_cast<std::size_t>(blocks));
  detail::parallel_for(blocks, threads, n, [&](std::int64_t b, int) {
    const std::int64_t begin = b * block;
    parts[static_cast<std::size_t>(b)] = detail::parts_of(x + begin, std::min(block, n - begin));
  });
  return detail::sum_in_order(parts);
}

// The total norm of several gradients from their summed parts: ord 2 (Euclidean) or
// infinity (largest magnitude), as torch.nn.utils.get_total_norm takes it.
inline double total_norm(const NormParts& parts, double ord) {
  detail::require(ord == 2.0 || (std::isinf(ord) && ord > 0),
                  "ord must be 2 or inf (float('inf')), got ", ord);
  return ord == 2.0 ? std::sqrt(parts.sum_squares) : parts.max_abs;
}

// torch.nn.utils.clip_grad_norm_'s factor: max_norm / (total + 1e-6), clamped to at most 1.
inline double clip_coefficient(double total, double max_norm) noexcept {
  const double coefficient = max_norm / (total + 1e-6);
  return coefficient < 1.0 ? coefficient : (std::isnan(coefficient) ? coefficient : 1.0);
}

// x[i] *= factor for n elements, in T as torch multiplies a gradient by its coefficient.
template <class T>
void scale_in_place(T* x, std::int64_t n, double factor, int num_threads = 0) {
  const T f = static_cast<T>(factor);
  constexpr std::int64_t block = 4096;
  const std::int64_t blocks = (n + block - 1) / block;
  detail::parallel_for(blocks, detail::resolve_threads(num_threads), n, [&](std::int64_t b, int) {
    const std::int64_t end = std::min(n, (b + 1) * block);
    for (std::int64_t i = b * block; i < end; ++i) x[i] *= f;
  });
}

}  // namespace sparseopt
