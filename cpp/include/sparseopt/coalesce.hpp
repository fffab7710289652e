// Coalescing a row-sparse gradient: group the positions of repeated indices so that each row's
// gradient is the sum of its values, added in the order they appear (so the result does not
// depend on the thread count). The plan is built once per step and shared by every kernel.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "parallel.hpp"
#include "view.hpp"

namespace sparseopt {

// The rows a gradient touches, ascending, and where each row's values are.
template <class I>
struct CoalescePlan {
  std::vector<I> rows;                // unique indices, ascending
  std::vector<std::int64_t> offsets;  // rows.size() + 1 bounds into `order`
  std::vector<std::int64_t> order;    // input positions grouped by row, in input order per row

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(rows.size()); }
  std::int64_t count(std::int64_t u) const noexcept { return offsets[u + 1] - offsets[u]; }
};

namespace detail {

// Throws index_error naming the first index outside [0, num_rows) (num_rows < 0: no upper
// bound); returns the largest index (or -1 when there are none).
template <class I>
std::int64_t check_indices(const I* indices, std::int64_t n, std::int64_t num_rows) {
  static_assert(std::is_integral_v<I> && std::is_signed_v<I>, "indices must be signed integers");
  std::int64_t lo = 0, hi = -1;
  for (std::int64_t k = 0; k < n; ++k) {
    const auto r = static_cast<std::int64_t>(indices[k]);
    lo = std::min(lo, r);
    hi = std::max(hi, r);
  }
  const bool too_big = num_rows >= 0 && hi >= num_rows;
  if (lo < 0 || too_big) {
    for (std::int64_t k = 0; k < n; ++k) {
      const auto r = static_cast<std::int64_t>(indices[k]);
      if (r < 0 || (num_rows >= 0 && r >= num_rows)) {
        if (num_rows >= 0)
          throw index_error(concat("indices[", k, "] = ", r, " is out of range for a table of ",
                                   num_rows, " rows; indices must be in [0, ", num_rows, ")"));
        throw index_error(concat("indices[", k, "] = ", r, " is negative; indices must be >= 0"));
      }
    }
  }
  return hi;
}

// Stable sort of input positions by index: least-significant-digit radix sort on the bits the
// largest index needs (a plain comparison sort for short inputs).
template <class I>
void sort_positions(const I* indices, std::int64_t n, std::int64_t max_index,
                    std::vector<std::int64_t>& order) {
  order.resize(static_cast<std::size_t>(n));
  if (n < 256) {
    for (std::int64_t k = 0; k < n; ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(),
                     [indices](std::int64_t a, std::int64_t b) { return indices[a] < indices[b]; });
    return;
  }
  constexpr int digit_bits = 11;
  constexpr std::size_t buckets = std::size_t(1) << digit_bits;
  int key_bits = 0;
  while (key_bits < 63 && (std::uint64_t(max_index) >> key_bits) != 0) ++key_bits;

  std::vector<std::uint64_t> keys(n), keys_tmp(n);
  std::vector<std::int64_t> order_tmp(n);
  for (std::int64_t k = 0; k < n; ++k) {
    keys[k] = static_cast<std::uint64_t>(indices[k]);
    order[k] = k;
  }
  std::array<std::int64_t, buckets> start;
  for (int shift = 0; shift < key_bits; shift += digit_bits) {
    start.fill(0);
    for (std::int64_t k = 0; k < n; ++k) ++start[(keys[k] >> shift) & (buckets - 1)];
    std::int64_t sum = 0;
    for (auto& s : start) sum += std::exchange(s, sum);
    for (std::int64_t k = 0; k < n; ++k) {
      const std::int64_t dst = start[(keys[k] >> shift) & (buckets - 1)]++;
      keys_tmp[dst] = keys[k];
      order_tmp[dst] = order[k];
    }
    keys.swap(keys_tmp);
    order.swap(order_tmp);
  }
}

}  // namespace detail

// Checks every index against [0, num_rows) (pass num_rows < 0 for no upper bound) and groups
// the positions of each row. Throws index_error before anything is written.
template <class I>
CoalescePlan<I> plan_coalesce(const I* indices, std::int64_t n, std::int64_t num_rows) {
  CoalescePlan<I> plan;
  const std::int64_t max_index = detail::check_indices(indices, n, num_rows);
  detail::sort_positions(indices, n, max_index, plan.order);
  plan.offsets.push_back(0);
  for (std::int64_t k = 0; k < n; ++k) {
    const I r = indices[plan.order[k]];
    if (plan.rows.empty() || plan.rows.back() != r) {
      if (!plan.rows.empty()) plan.offsets.push_back(k);
      plan.rows.push_back(r);
    }
  }
  if (n > 0) plan.offsets.push_back(n);
  return plan;
}

namespace detail {

// The summed gradient of unique row u: a pointer into grad.values when the row appears once,
// else the sum (in input order) written to scratch (row_width elements).
template <class T, class I>
const T* summed_row(const RowSparse<T, I>& grad, const CoalescePlan<I>& plan, std::int64_t u,
                    T* scratch) noexcept {
  const std::int64_t begin = plan.offsets[u], end = plan.offsets[u + 1];
  const T* first = grad.value_row(plan.order[begin]);
  if (end - begin == 1) return first;
  const std::int64_t w = grad.row_width;
  std::memcpy(scratch, first, sizeof(T) * static_cast<std::size_t>(w));
  for (std::int64_t k = begin + 1; k < end; ++k) {
    const T* v = grad.value_row(plan.order[k]);
    for (std::int64_t j = 0; j < w; ++j) scratch[j] += v[j];
  }
  return scratch;
}

// Calls update(row, g) for every row the gradient touches, g being that row's summed gradient,
// in parallel over rows. Each row is handled by exactly one thread, so any update that reads
// and writes only its own row gives the same bits for every thread count.
//
// Touched rows are scattered over a large table, so each one costs a memory round trip per
// state array; prefetch(row) is called a few rows ahead so those trips overlap.
template <class T, class I, class Update, class Prefetch>
void for_each_row(const RowSparse<T, I>& grad, const CoalescePlan<I>& plan, int num_threads,
                  Update&& update, Prefetch&& prefetch) {
  constexpr std::int64_t ahead = 8;
  const int threads = resolve_threads(num_threads);
  const std::int64_t w = grad.row_width;
  const std::int64_t n = plan.size();
  // Allocated before the parallel region so nothing in it can fail half-way through.
  std::vector<T> scratch(static_cast<std::size_t>(w) * static_cast<std::size_t>(threads));
  parallel_for(n, threads, n * w, [&](std::int64_t u, int slot) {
    if (u + ahead < n) {
      prefetch(static_cast<std::int64_t>(plan.rows[u + ahead]));
      prefetch_row(grad.value_row(plan.order[plan.offsets[u + ahead]]), w);
    }
    const T* g = summed_row(grad, plan, u, scratch.data() + static_cast<std::size_t>(slot) * w);
    update(static_cast<std::int64_t>(plan.rows[u]), g);
  });
}

}  // namespace detail

// Writes the coalesced gradient: rows_out[u] the u-th touched row (ascending), values_out its
// summed values (plan.size() x row_width), counts_out how often it appeared. Any output may be
// null to skip it.
template <class T, class I>
void write_coalesced(const RowSparse<T, I>& grad, const CoalescePlan<I>& plan, I* rows_out,
                     T* values_out, std::int64_t* counts_out, int num_threads = 0) {
  const std::int64_t w = grad.row_width;
  for (std::int64_t u = 0; u < plan.size(); ++u) {
    if (rows_out) rows_out[u] = plan.rows[u];
    if (counts_out) counts_out[u] = plan.count(u);
  }
  if (!values_out || w == 0) return;
  const int threads = detail::resolve_threads(num_threads);
  detail::parallel_for(plan.size(), threads, plan.size() * w, [&](std::int64_t u, int) {
    T* out = values_out + u * w;
    const T* g = detail::summed_row(grad, plan, u, out);
    if (g != out) std::memcpy(out, g, sizeof(T) * static_cast<std::size_t>(w));
  });
}

}  // namespace sparseopt
