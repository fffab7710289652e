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

inline int bit_width(std::uint64_t x) noexcept {
  int bits = 0;
  while (bits < 64 && (x >> bits) != 0) ++bits;
  return bits;
}

// Sorts (index, position) pairs packed into one word each, index in the high bits, so that
// equal indices stay in input order. Least-significant-digit radix sort over the index bits
// only (a comparison sort for short inputs); the words ping-pong between two buffers.
inline void sort_packed(std::vector<std::uint64_t>& keys, int shift, int key_bits) {
  const std::size_t n = keys.size();
  if (n < 256) {
    std::sort(keys.begin(), keys.end());
    return;
  }
  constexpr int digit_bits = 11;
  constexpr std::uint64_t buckets = std::uint64_t(1) << digit_bits;
  std::vector<std::uint64_t> tmp(n);
  std::array<std::size_t, buckets> start;
  for (int d = 0; d < key_bits; d += digit_bits) {
    const int s = shift + d;
    start.fill(0);
    for (const std::uint64_t k : keys) ++start[(k >> s) & (buckets - 1)];
    std::size_t sum = 0;
    for (auto& c : start) sum += std::exchange(c, sum);
    for (const std::uint64_t k : keys) tmp[start[(k >> s) & (buckets - 1)]++] = k;
    keys.swap(tmp);
  }
}

// Input positions in order of index, equal indices in input order.
template <class I>
void sort_positions(const I* indices, std::int64_t n, std::int64_t max_index,
                    std::vector<std::int64_t>& order) {
  order.resize(static_cast<std::size_t>(n));
  const int position_bits = bit_width(std::uint64_t(n > 0 ? n - 1 : 0));
  const int index_bits = bit_width(std::uint64_t(max_index > 0 ? max_index : 0));
  if (position_bits + index_bits <= 64) {
    std::vector<std::uint64_t> keys(static_cast<std::size_t>(n));
    for (std::int64_t k = 0; k < n; ++k)
      keys[k] = (std::uint64_t(indices[k]) << position_bits) | std::uint64_t(k);
    sort_packed(keys, position_bits, index_bits);
    const std::uint64_t mask = position_bits ? (~std::uint64_t(0) >> (64 - position_bits)) : 0;
    for (std::int64_t k = 0; k < n; ++k) order[k] = std::int64_t(keys[k] & mask);
    return;
  }
  for (std::int64_t k = 0; k < n; ++k) order[k] = k;  // indices too large to pack
  std::stable_sort(order.begin(), order.end(),
                   [indices](std::int64_t a, std::int64_t b) { return indices[a] < indices[b]; });
}

}  // namespace detail

// Checks every index against [0, num_rows) (pass num_rows < 0 for no upper bound) and groups
// the positions of each row. Throws index_error before anything is written.
template <class I>
CoalescePlan<I> plan_coalesce(const I* indices, std::int64_t n, std::int64_t num_rows) {
  CoalescePlan<I> plan;
  const std::int64_t max_index = detail::check_indices(indices, n, num_rows);
  detail::sort_positions(indices, n, max_index, plan.order);
  plan.rows.reserve(static_cast<std::size_t>(n));
  plan.offsets.reserve(static_cast<std::size_t>(n) + 1);
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
  constexpr std::int64_t ahead = 32;
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
