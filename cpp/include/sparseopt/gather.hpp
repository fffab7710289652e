// Sums of table rows picked by bags of indices, and the row-sparse gradient those sums give
// the table in backpropagation.
//
// A bag is a run of indices, given in CSR form: bag b is indices[indptr[b] : indptr[b + 1]],
// with an optional weight per index. The forward sum
//
//     out[b] = sum over p in bag b of weights[p] * table[indices[p]]     (mode sum)
//     out[b] = (sum over p in bag b of table[indices[p]]) / len(bag b)   (mode mean)
//
// is torch.nn.functional.embedding_bag (offsets = indptr[:-1], or indptr itself with
// include_last_offset=True) and, with weights = the CSR values, the product of a CSR matrix
// (num_bags x num_rows) with the dense table. Its gradient with respect to the table,
//
//     grad_table[r] = sum over p with indices[p] == r of weights[p] * grad_out[bag of p]
//                     (mode mean: grad_out[bag of p] / len(bag of p)),
//
// touches only the rows in `indices`; gather_sum_backward writes it coalesced (rows ascending,
// unique), ready for an optimizer step, without forming the num_indices x row_width array of
// per-index contributions.
//
// Index type: indptr has the type of indices (I), as torch's offsets and SciPy's indptr do.
// Empty bags sum to zeros (mean too). Weights with mode mean are refused, as torch refuses
// per_sample_weights with mode='mean': scale the weights by 1 / len(bag) and use mode sum.
//
// Results never depend on the thread count: every output row is summed by one thread, in the
// order the indices appear (the first term, then each next one added), so any num_threads
// gives the same bits. Every function checks its arguments before it writes anything and
// throws sparseopt::invalid_argument (a bad shape or CSR structure) or sparseopt::index_error
// (an index outside [0, num_rows)).
//
// From C++ (all memory is the caller's; outputs are caller-provided buffers):
//
//   sparseopt::Bags<float, std::int64_t> bags{indptr, indices, weights_or_null, num_bags, n};
//   sparseopt::gather_sum<float>({table, num_rows, width}, bags, {out, num_bags, width});
//
//   sparseopt::GatherPlan<std::int64_t> plan;  // keep it: its buffers are reused
//   std::int64_t u = sparseopt::gather_sum_backward<float>(
//       {grad_out, num_bags, width}, bags, num_rows, plan, rows, values, capacity);
//   // rows[0:u] ascending, values[0:u*width]; capacity >= min(n, num_rows) always suffices.
//
// meProp's linear layer y = x W^T (W of shape (out, in)) with per-example top-k output
// gradients (units, their gradient values g) in CSR form over the batch:
//   grad_x = gather_sum(W, indptr, units, g)                 (batch x in)
//   grad_W = gather_sum_backward(x as grad_out, indptr, units, g)   (touched units x in)
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "coalesce.hpp"
#include "config.hpp"
#include "errors.hpp"
#include "parallel.hpp"
#include "simd.hpp"
#include "view.hpp"

namespace sparseopt {

// How the indices of a bag combine: their (weighted) sum, or the mean (sum / length).
enum class BagReduction { sum, mean };

// Bags of indices in CSR form (non-owning). indptr holds num_bags + 1 offsets: indptr[0] == 0,
// non-decreasing, indptr[num_bags] == size; indices and weights (null: every weight 1) hold
// `size` entries.
template <class T, class I>
struct Bags {
  const I* indptr = nullptr;
  const I* indices = nullptr;
  const T* weights = nullptr;
  std::int64_t num_bags = 0;
  std::int64_t size = 0;

  std::int64_t begin(std::int64_t b) const noexcept { return static_cast<std::int64_t>(indptr[b]); }
  std::int64_t end(std::int64_t b) const noexcept { return static_cast<std::int64_t>(indptr[b + 1]); }
};

namespace detail {

// Names the arrays in messages: "indptr", "indices" by default; the CSR product passes
// "x.indptr", "x.indices".
struct BagNames {
  const char* indptr = "indptr";
  const char* indices = "indices";
  const char* weights = "weights";
};

// Throws unless `bags` is well-formed CSR over a table of num_rows rows (see Bags); returns
// the largest index (-1 when there are none).
template <class T, class I>
std::int64_t check_bags(const Bags<T, I>& bags, std::int64_t num_rows, BagReduction mode,
                        const BagNames& names) {
  require(bags.num_bags >= 0, "the number of bags must be >= 0, got ", bags.num_bags);
  require(bags.size >= 0, "the number of indices must be >= 0, got ", bags.size);
  require(bags.indptr != nullptr, names.indptr, " is null; it needs num_bags + 1 entries");
  require(bags.indices != nullptr || bags.size == 0, names.indices, " is null");
  require(mode == BagReduction::sum || bags.weights == nullptr, names.weights,
          " are only supported with mode=\"sum\" (as torch.nn.functional.embedding_bag's "
          "per_sample_weights); for a mean, pass weights / bag length with mode=\"sum\"");
  require(bags.indptr[0] == 0, names.indptr, "[0] must be 0, got ", std::int64_t(bags.indptr[0]));
  bool decreasing = false;
  for (std::int64_t b = 0; b < bags.num_bags; ++b) decreasing |= bags.indptr[b] > bags.indptr[b + 1];
  if (decreasing) {
    for (std::int64_t b = 0; b < bags.num_bags; ++b)
      require(bags.indptr[b] <= bags.indptr[b + 1], names.indptr, " must be non-decreasing, got ",
              names.indptr, "[", b, "] = ", std::int64_t(bags.indptr[b]), " > ", names.indptr, "[",
              b + 1, "] = ", std::int64_t(bags.indptr[b + 1]));
  }
  require(static_cast<std::int64_t>(bags.indptr[bags.num_bags]) == bags.size, names.indptr,
          "[-1] = ", std::int64_t(bags.indptr[bags.num_bags]), " must equal len(", names.indices,
          ") = ", bags.size, "; ", names.indptr, " holds num_bags + 1 offsets, the last one len(",
          names.indices, ") (torch's include_last_offset=True layout): torch's offsets (one per bag) "
          "become it with len(", names.indices, ") appended");
  // (A table has at least 0 rows: check_indices reads a negative count as "no upper bound".)
  return check_indices(bags.indices, bags.size, std::max<std::int64_t>(num_rows, 0), names.indices);
}

// The sum of terms begin..end-1 (end > begin) into out (w elements): out = term(begin), then
// out += term(k) for each next k, in that order, term(k) = scale(k) * row(k) (Scaled) or
// row(k). The row is produced in chunks held in registers (up to MaxVecs vectors of 32 bytes):
// per chunk, acc = its part of term(begin), acc += its part of each next term, one store --
// each element sees the same additions in the same order as a row at a time would, so the
// bits do not depend on the chunking, and out is written once instead of once per term.
// As the first chunk reaches term k, the rows and scales of later terms are requested from
// memory: ahead_row(k) and ahead_scale(k) give their addresses (null: nothing to fetch) -- one
// term at a time when the bag is long (more than gather_ahead terms), so that it does not
// flood the memory queues with its hints at once.
// The hints are issued in these bodies (SPARSEOPT_FETCH_TERM), not in a helper of their own:
// GCC finds that a function which only prefetches has no effect and deletes the calls to it.
// Kept in one place so that the forward and backward sums round alike.
// Rows read ahead of their use: far enough to hide a DRAM round trip behind the sums of the
// rows in between.
inline constexpr std::int64_t gather_ahead = 16;
// Arrays up to this size are read without hints: they stay in L2 between their uses (the
// hints would only cost instructions and, measured on meProp's weight gradient, time).
inline constexpr std::int64_t cache_resident_bytes = std::int64_t(256) << 10;

// Whether a forward's rows are mostly cached: the fraction of the first lookups (up to
// repeat_sample of them) whose row came up earlier among them, as a 2^16-bit filter of hashed
// rows sees it, is at least repeat_min_fraction. Zipf-like lookups repeat their hot rows, which
// stay in cache; there a row's far and near hints (eight prefetches for a 256-byte row) cost more
// than the misses they hide, and one hint per row, prefetch_far_rows ahead into L1, is faster
// (bench/README.md: 1M x 64 float32, 131K Zipf(1.1) lookups, 2 threads, 0.69 -> 0.55 ms on an
// Intel Xeon; uniform lookups need the two hints: 1.77 ms with them, 2.15 ms with the one).
// About two microseconds; hints never change results, so neither does this guess.
inline constexpr std::int64_t repeat_sample = 2048;
inline constexpr double repeat_min_fraction = 0.25;

template <class I>
bool mostly_repeats(const I* indices, std::int64_t n) noexcept {
  const std::int64_t m = std::min(n, repeat_sample);
  if (m < 64) return false;  // too few to tell
  std::uint64_t seen[1024] = {};  // 2^16 bits: unrelated rows collide in about 1.6% of a full sample
  std::int64_t repeats = 0;
  for (std::int64_t k = 0; k < m; ++k) {
    const std::uint64_t h = (static_cast<std::uint64_t>(indices[k]) * 0x9E3779B97F4A7C15ull) >> 48;
    const std::uint64_t bit = std::uint64_t(1) << (h & 63);
    repeats += (seen[h >> 6] & bit) != 0;
    seen[h >> 6] |= bit;
  }
  return repeats >= static_cast<std::int64_t>(repeat_min_fraction * static_cast<double>(m));
}

#define SPARSEOPT_FETCH_TERM(k)                                   \
  do {                                                            \
    if (const T* r_ = ahead_row(k)) prefetch_row(r_, w);          \
    if constexpr (Scaled)                                         \
      if (const T* s_ = ahead_scale(k)) prefetch_row(s_, 1);      \
  } while (false)

#if SPARSEOPT_HAS_VECTOR_EXT
template <bool Scaled, bool Fetch, int N, class T, class Row, class Scale, class AheadRow, class AheadScale>
SPARSEOPT_ALWAYS_INLINE void sum_chunk_of(T* SPARSEOPT_RESTRICT out, std::int64_t w, std::int64_t j,
                                          std::int64_t begin, std::int64_t end, Row& row, Scale& scale,
                                          AheadRow& ahead_row, AheadScale& ahead_scale) {
  constexpr std::int64_t lanes = std::int64_t(sizeof(Vec<T>) / sizeof(T));
  Vec<T> acc[N], v;
  {
    if constexpr (Fetch) SPARSEOPT_FETCH_TERM(begin);
    const T* x = row(begin) + j;
    if constexpr (Scaled) {
      const T s = scale(begin);
      for (int i = 0; i < N; ++i) {
        load_vec(v, x + i * lanes);
        acc[i] = s * v;
      }
    } else {
      for (int i = 0; i < N; ++i) load_vec(acc[i], x + i * lanes);
    }
  }
  for (std::int64_t k = begin + 1; k < end; ++k) {
    if constexpr (Fetch) SPARSEOPT_FETCH_TERM(k);
    const T* x = row(k) + j;
    if constexpr (Scaled) {
      const T s = scale(k);
      for (int i = 0; i < N; ++i) {
        load_vec(v, x + i * lanes);
        acc[i] += s * v;
      }
    } else {
      for (int i = 0; i < N; ++i) {
        load_vec(v, x + i * lanes);
        acc[i] += v;
      }
    }
  }
  for (int i = 0; i < N; ++i) store_vec(out + j + i * lanes, acc[i]);
}

#endif

// Rolling: the hints go out one term at a time, from the first chunk's loop (long bags);
// otherwise all together before the sums (fewer registers in the loops). Two compiled copies,
// so that the short bags' loops carry nothing for the long ones.
template <bool Scaled, int MaxVecs, bool Rolling, class T, class Row, class Scale, class AheadRow, class AheadScale>
SPARSEOPT_ALWAYS_INLINE void sum_terms_body(T* SPARSEOPT_RESTRICT out, std::int64_t w, std::int64_t begin,
                                            std::int64_t end, Row& row, Scale& scale, AheadRow& ahead_row,
                                            AheadScale& ahead_scale) {
  if constexpr (!Rolling)
    for (std::int64_t k = begin; k < end; ++k) SPARSEOPT_FETCH_TERM(k);
  std::int64_t j = 0;
#if SPARSEOPT_HAS_VECTOR_EXT
#define SPARSEOPT_SUM_CHUNK(N)                                                                        \
  do {                                                                                                \
    if (Rolling && j == 0)                                                                            \
      sum_chunk_of<Scaled, Rolling, N>(out, w, j, begin, end, row, scale, ahead_row, ahead_scale);    \
    else                                                                                              \
      sum_chunk_of<Scaled, false, N>(out, w, j, begin, end, row, scale, ahead_row, ahead_scale);      \
    j += N * lanes;                                                                                   \
  } while (false)
  constexpr std::int64_t lanes = std::int64_t(sizeof(Vec<T>) / sizeof(T));
  while (j + MaxVecs * lanes <= w) SPARSEOPT_SUM_CHUNK(MaxVecs);
  if constexpr (MaxVecs > 4)
    if (j + 4 * lanes <= w) SPARSEOPT_SUM_CHUNK(4);
  if (j + 2 * lanes <= w) SPARSEOPT_SUM_CHUNK(2);
  if (j + lanes <= w) SPARSEOPT_SUM_CHUNK(1);
#undef SPARSEOPT_SUM_CHUNK
#endif
  // The rest (or, without vector types, the whole row): a term at a time.
  if (j == w) return;
  const bool fetch = Rolling && j == 0;
  {
    if (fetch) SPARSEOPT_FETCH_TERM(begin);
    const T* SPARSEOPT_RESTRICT x = row(begin);
    if constexpr (Scaled) {
      const T s = scale(begin);
      for (std::int64_t e = j; e < w; ++e) out[e] = s * x[e];
    } else {
      for (std::int64_t e = j; e < w; ++e) out[e] = x[e];
    }
  }
  for (std::int64_t k = begin + 1; k < end; ++k) {
    if (fetch) SPARSEOPT_FETCH_TERM(k);
    const T* SPARSEOPT_RESTRICT x = row(k);
    if constexpr (Scaled) {
      const T s = scale(k);
      for (std::int64_t e = j; e < w; ++e) out[e] += s * x[e];
    } else {
      for (std::int64_t e = j; e < w; ++e) out[e] += x[e];
    }
  }
}

// The same sum a whole row at a time: out = term(begin), then out += term(k) for each next k,
// each a loop over the row -- the same additions in the same order for every element, so the
// same bits as sum_terms_body. For rows wider than the chunks with only a few terms each (the
// weight gradient of a meProp layer: ~2 terms per row of 500-800 elements), where
// sum_terms_body would look up every term's row and scale once per chunk and finish each row
// with a short tail: faster there. The hints (when the caller gives any) go out for all the
// terms first.
template <bool Scaled, class T, class Row, class Scale, class AheadRow, class AheadScale>
SPARSEOPT_ALWAYS_INLINE void sum_terms_by_term(T* SPARSEOPT_RESTRICT out, std::int64_t w, std::int64_t begin,
                                               std::int64_t end, Row& row, Scale& scale, AheadRow& ahead_row,
                                               AheadScale& ahead_scale) {
  for (std::int64_t k = begin; k < end; ++k) SPARSEOPT_FETCH_TERM(k);
  {
    const T* SPARSEOPT_RESTRICT x = row(begin);
    if constexpr (Scaled) {
      const T s = scale(begin);
      for (std::int64_t e = 0; e < w; ++e) out[e] = s * x[e];
    } else {
      for (std::int64_t e = 0; e < w; ++e) out[e] = x[e];
    }
  }
  for (std::int64_t k = begin + 1; k < end; ++k) {
    const T* SPARSEOPT_RESTRICT x = row(k);
    if constexpr (Scaled) {
      const T s = scale(k);
      for (std::int64_t e = 0; e < w; ++e) out[e] += s * x[e];
    } else {
      for (std::int64_t e = 0; e < w; ++e) out[e] += x[e];
    }
  }
}
#undef SPARSEOPT_FETCH_TERM

// gather_sum's checks (also gather_sum_half's, whose table has another element type than the
// weights and out): out's shape, bags well-formed over the table, out apart from every input.
template <class TableT, class T, class I>
void require_gather_sum_args(Table<const TableT> table, const Bags<T, I>& bags, Table<T> out, BagReduction mode,
                             const BagNames& names) {
  const std::int64_t w = table.row_width, nb = bags.num_bags;
  require(out.num_rows == nb && out.row_width == w, "out must have ", nb, " rows (one per bag) of ", w,
          " elements (the table's row shape), got ", out.num_rows, " rows of ", out.row_width);
  require(table.data != nullptr || table.num_rows * w == 0, "table is null");
  require(out.data != nullptr || nb * w == 0, "out is null");
  check_bags(bags, table.num_rows, mode, names);
  const std::int64_t out_bytes = byte_size(out);
  require_disjoint(out.data, out_bytes, "out", table.data, byte_size(table), "table");
  require_disjoint(out.data, out_bytes, "out", bags.weights, bags.size * std::int64_t(sizeof(T)), names.weights);
  require_disjoint(out.data, out_bytes, "out", bags.indices, bags.size * std::int64_t(sizeof(I)), names.indices);
  require_disjoint(out.data, out_bytes, "out", bags.indptr, (nb + 1) * std::int64_t(sizeof(I)), names.indptr);
}

// Below this many terms per output row on average, rows wider than sum_terms_body's widest
// chunk are summed a whole row at a time (sum_terms_by_term).
inline constexpr std::int64_t by_term_max_terms = 4;

// Output rows [first, last): out_row(u) is where row u goes, bounds(u) its terms {begin, end}
// (rows without terms are skipped: the caller fills them), `terms` their total. One dispatch
// for the whole range, not one per row (short rows, as an embedding's backward has, would pay
// for it); the rolling hints when the rows average more than gather_ahead terms; whole rows a
// term at a time when wide rows average fewer than by_term_max_terms.
template <bool Scaled, class T, class OutRow, class Bounds, class Row, class Scale, class AheadRow, class AheadScale>
void sum_rows(std::int64_t first, std::int64_t last, std::int64_t terms, std::int64_t w, OutRow&& out_row,
              Bounds&& bounds, Row&& row, Scale&& scale, AheadRow&& ahead_row, AheadScale&& ahead_scale) {
  if (w * std::int64_t(sizeof(T)) > 8 * 32 && terms < by_term_max_terms * (last - first)) {
    simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
      for (std::int64_t u = first; u < last; ++u) {
        const auto [begin, end] = bounds(u);
        if (begin < end) sum_terms_by_term<Scaled, T>(out_row(u), w, begin, end, row, scale, ahead_row, ahead_scale);
      }
    });
    return;
  }
  // 8 accumulators of 32 bytes fill half the AVX registers; on the baseline path each is two
  // of the 16 SSE registers, so 4.
  auto run = [&](auto rolling) {
    simd_dispatch([&](auto avx2) SPARSEOPT_INLINE_BODY {
      for (std::int64_t u = first; u < last; ++u) {
        const auto [begin, end] = bounds(u);
        if (begin < end)
          sum_terms_body<Scaled, decltype(avx2)::value ? 8 : 4, decltype(rolling)::value>(
              out_row(u), w, begin, end, row, scale, ahead_row, ahead_scale);
      }
    });
  };
  if (terms > gather_ahead * (last - first))
    run(std::true_type{});
  else
    run(std::false_type{});
}

// Calls tile(first, last) for consecutive ranges of items [0, n) of about tile_cost each
// (cost_before(i): the cost of items [0, i), non-decreasing, 0 at 0; a multiple of the thread
// count of them), the tiles shared among threads as parallel_for shares items.
template <class CostBefore, class Tile>
void for_each_tile(std::int64_t n, int threads, std::int64_t work, std::int64_t tile_cost, CostBefore&& cost_before,
                   Tile&& tile) {
  if (n <= 0) return;
  const std::int64_t total = cost_before(n);
  const std::int64_t per_thread = (std::max<std::int64_t>(1, total / tile_cost) + threads - 1) / threads;
  const std::int64_t tiles = std::min(n, per_thread * threads);
  auto start = [&](std::int64_t t) {  // the first item whose preceding cost reaches t tiles' share
    if (t >= tiles) return n;
    std::int64_t lo = 0, hi = n;
    while (lo < hi) {
      const std::int64_t mid = lo + (hi - lo) / 2;
      if (cost_before(mid) * tiles < total * t) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
  parallel_for(tiles, threads, work, [&](std::int64_t t, int) {
    const std::int64_t first = start(t), last = start(t + 1);
    if (first < last) tile(first, last);
  });
}

// Terms (plus rows) per tile of for_each_tile.
inline constexpr std::int64_t sum_tile_cost = 4096;

}  // namespace detail

// out[b] = the (weighted) sum or mean of table rows indices[indptr[b] : indptr[b + 1]], for
// every bag b (out: num_bags rows of table.row_width elements, caller-allocated, must not
// overlap the inputs). Parallel over bags on num_threads threads (0 = all), ranges cut so that
// each thread gets about the same number of indices.
template <class T, class I>
void gather_sum(Table<const T> table, const Bags<T, I>& bags, Table<T> out,
                BagReduction mode = BagReduction::sum, int num_threads = 0,
                const detail::BagNames& names = {}) {
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t w = table.row_width, nb = bags.num_bags;
  detail::require_gather_sum_args(table, bags, out, mode, names);
  if (w == 0) return;

  const I* SPARSEOPT_RESTRICT indices = bags.indices;
  const T* SPARSEOPT_RESTRICT weights = bags.weights;
  const std::int64_t n = bags.size;
  const bool hot = detail::mostly_repeats(indices, n);
  detail::for_each_tile(
      nb, threads, (n + nb) * w, detail::sum_tile_cost, [&](std::int64_t b) { return bags.begin(b) + b; },
      [&](std::int64_t first, std::int64_t last) {
        for (std::int64_t b = first; b < last; ++b)
          if (bags.begin(b) == bags.end(b)) std::memset(out.row(b), 0, sizeof(T) * static_cast<std::size_t>(w));
        // Captured by value, so that they stay in registers: a lambda capturing by reference
        // reloads them for every term, the prefetch's under its branch (measured: the
        // bench's forward 4% faster).
        T* const out_data = out.data;
        const T* const data = table.data;
        const I* const indptr = bags.indptr;
        auto out_row = [=](std::int64_t b) { return out_data + b * w; };
        auto bounds = [=](std::int64_t b) {
          return std::pair<std::int64_t, std::int64_t>(static_cast<std::int64_t>(indptr[b]),
                                                       static_cast<std::int64_t>(indptr[b + 1]));
        };
        auto row = [=](std::int64_t p) { return data + static_cast<std::int64_t>(indices[p]) * w; };
        // The hints at term p: the row prefetch_far_rows terms on to L2, here; the one
        // prefetch_near_rows on to L1, returned for the sums to ask for (view.hpp). Where the
        // rows are mostly cached (hot), only the row prefetch_far_rows on, to L1.
        auto ahead = [=](std::int64_t p) -> const T* {
          if (p + detail::prefetch_far_rows < n)
            detail::prefetch_row(data + static_cast<std::int64_t>(indices[p + detail::prefetch_far_rows]) * w, w,
                                 detail::PrefetchFar{});
          return p + detail::prefetch_near_rows < n
                     ? data + static_cast<std::int64_t>(indices[p + detail::prefetch_near_rows]) * w
                     : nullptr;
        };
        auto ahead_hot = [=](std::int64_t p) -> const T* {
          return p + detail::prefetch_far_rows < n
                     ? data + static_cast<std::int64_t>(indices[p + detail::prefetch_far_rows]) * w
                     : nullptr;
        };
        auto none = [](std::int64_t) -> const T* { return nullptr; };
        const std::int64_t terms = bags.begin(last) - bags.begin(first);
        auto sum = [&](auto hints) {
          if (weights)
            detail::sum_rows<true, T>(first, last, terms, w, out_row, bounds, row,
                                      [=](std::int64_t p) { return weights[p]; }, hints, none);
          else
            detail::sum_rows<false, T>(first, last, terms, w, out_row, bounds, row,
                                       [](std::int64_t) { return T(1); }, hints, none);
        };
        if (hot)
          sum(ahead_hot);
        else
          sum(ahead);
        if (mode == BagReduction::mean) {
          for (std::int64_t b = first; b < last; ++b) {
            const std::int64_t len = bags.end(b) - bags.begin(b);
            if (len == 0) continue;
            const T l = static_cast<T>(len);
            T* o = out.row(b);
            for (std::int64_t j = 0; j < w; ++j) o[j] /= l;
          }
        }
      });
}

// How GatherPlan lays out the backward pass's terms (see GatherPlan); `automatic` chooses.
enum class GatherLayout { automatic, sorted, blocked };

namespace detail {
// The layout every GatherPlan::build uses from now on (automatic: its own choice). A testing
// hook, so that both layouts can be checked on small inputs: see set_gather_layout.
inline std::atomic<int>& forced_gather_layout() noexcept {
  static std::atomic<int> layout{static_cast<int>(GatherLayout::automatic)};
  return layout;
}
}  // namespace detail

// Makes every later GatherPlan::build use `layout` where it applies (blocked needs
// num_rows <= number of indices < 2^32), automatic restoring the plan's own choice. For tests
// and measurements: the results are the same bits either way.
inline void set_gather_layout(GatherLayout layout) noexcept {
  detail::forced_gather_layout().store(static_cast<int>(layout), std::memory_order_relaxed);
}

// Where the backward pass's terms go: the table rows the bags touch (ascending, unique) and
// how to visit each row's terms in the order they appear. Build it once per batch (rebuilding
// reuses its buffers), then call gather_sum_backward with the same bags.
//
// Two layouts, giving the same bits:
//  - sorted: the CoalescePlan of the indices (each row's positions grouped, in order), with
//    the bag of every position; every output row is then summed once, in registers, from its
//    terms (detail::sum_rows) and written once;
//  - blocked: a row -> output slot map and the positions partitioned by blocks of rows (one
//    radix pass), so that the backward walks the positions in order, adding each term to its
//    output row while the block's rows stay in cache.
// build() picks blocked only for very many indices (> blocked_min_indices) into narrow rows
// (<= blocked_max_row_bytes) with no more rows than indices: there grouping the positions by
// row (a sort that leaves the cache) costs more than the blocked walk's read-modify-writes of
// short rows (the CSR @ dense case of bench/bench_gather.py, 2M indices into 100,000 rows of
// 64 floats: blocked ~1.15x faster on one thread). Everywhere else measured -- meProp's
// shapes (1,000 indices into 500 rows of 500-784 floats: sorted 1.3-2x faster), embeddings,
// CSR up to 1M indices or with wider rows -- sorted is as fast or faster.
template <class I>
class GatherPlan {
 public:
  // Checks `bags` against a table of num_rows rows (throwing before anything is written, the
  // plan left empty) and lays out the terms, on num_threads threads (0 = all; the plan is the
  // same for any count). row_width (elements per table row) sizes the blocks of rows that stay
  // in cache.
  template <class T>
  void build(const Bags<T, I>& bags, std::int64_t num_rows, std::int64_t row_width,
             BagReduction mode = BagReduction::sum, const detail::BagNames& names = {}, int num_threads = 0) {
    lay_out(bags, num_rows, row_width, mode, names, false, num_threads);
  }

  // As build(), always in the sorted layout: each touched row's terms together, as a fused
  // optimizer step (BagGradient) needs them to sum a row and update it at once.
  template <class T>
  void build_by_row(const Bags<T, I>& bags, std::int64_t num_rows, BagReduction mode = BagReduction::sum,
                    const detail::BagNames& names = {}, int num_threads = 0) {
    lay_out(bags, num_rows, 0, mode, names, true, num_threads);
  }

  // Where build() picks the blocked layout (see above).
  static constexpr std::int64_t blocked_min_indices = std::int64_t(1) << 20, blocked_max_row_bytes = 256;

  // The layout the last build() chose: GatherLayout::sorted or GatherLayout::blocked.
  GatherLayout layout() const noexcept { return dense_ ? GatherLayout::blocked : GatherLayout::sorted; }

  // The sorted layout (after build_by_row, or a build() that chose it): the positions of each
  // touched row, grouped in order of appearance, and the bag of each position in that order.
  const CoalescePlan<I>& by_row() const noexcept { return coalesce_; }
  const std::int64_t* bag_of_sorted() const noexcept { return bag_sorted_.data(); }

 private:
  template <class T>
  void lay_out(const Bags<T, I>& bags, std::int64_t num_rows, std::int64_t row_width, BagReduction mode,
               const detail::BagNames& names, bool by_row, int num_threads) {
    num_bags_ = -1;
    num_indices_ = -1;
    rows_.clear();
    std::int64_t max_index = -1;
    try {
      max_index = detail::check_bags(bags, num_rows, mode, names);
      detail::require(row_width >= 0, "row_width must be >= 0, got ", row_width);
    } catch (...) {  // a rejected call leaves the plan empty
      coalesce_.clear();
      bag_sorted_.clear();
      throw;
    }
    const std::int64_t n = bags.size;
    // (Below 2^32 indices the block and position bits of a key fit in one 64-bit word.)
    const bool blocked_fits = n > 0 && num_rows <= n && n < (std::int64_t(1) << 32);
    const auto forced = static_cast<GatherLayout>(detail::forced_gather_layout().load(std::memory_order_relaxed));
    if (by_row)
      dense_ = false;
    else if (forced == GatherLayout::automatic)
      dense_ = blocked_fits && n > blocked_min_indices &&
               row_width * std::int64_t(sizeof(T)) <= blocked_max_row_bytes;
    else
      dense_ = blocked_fits && forced == GatherLayout::blocked;
    // The sorted build overwrites the plan without clearing it first (CoalescePlan::group
    // empties it when a build fails), so its buffers are not zero-filled again.
    if (dense_) {
      coalesce_.clear();
      build_blocks(bags, num_rows, row_width);
    } else {
      build_sorted(bags, num_rows, max_index, num_threads);
    }
    num_bags_ = bags.num_bags;
    num_indices_ = n;
  }

 public:

  // The number of rows the bags touch (rows of the gradient).
  std::int64_t size() const noexcept { return static_cast<std::int64_t>(rows().size()); }
  // The touched rows, ascending.
  const std::vector<I>& rows() const noexcept { return dense_ ? rows_ : coalesce_.rows; }
  std::int64_t num_bags() const noexcept { return num_bags_; }
  std::int64_t num_indices() const noexcept { return num_indices_; }

 private:
  template <class T2, class I2>
  friend void gather_sum_backward(Table<const T2>, const Bags<T2, I2>&, const GatherPlan<I2>&, I2*,
                                  Table<T2>, BagReduction, int, const detail::BagNames&);

  bool dense_ = false;
  std::int64_t num_bags_ = -1, num_indices_ = -1;
  // Sorted layout: positions grouped by row, and the bag of each (in that order).
  CoalescePlan<I> coalesce_;
  detail::Scratch<std::int64_t> bag_sorted_;
  // Blocked layout: rows_ (ascending), slot_[r] = where row r is in rows_ (for touched r);
  // keys_ = (block << position_bits | position), grouped by block of 2^block_shift_ rows and
  // in input order within a block; block_keys_ and block_slots_ bound each block's keys and
  // output rows.
  std::vector<I> rows_, slot_;
  detail::Scratch<std::uint64_t> keys_, tmp_;
  std::vector<std::int64_t> block_keys_, block_slots_;
  int position_bits_ = 0, block_shift_ = 0;

  template <class T>
  void build_sorted(const Bags<T, I>& bags, std::int64_t num_rows, std::int64_t max_index, int num_threads) {
    // The indices were checked with the bags: the plan is told their largest, not to check again.
    coalesce_.group(bags.indices, bags.size, num_rows, bags.indptr, bags.num_bags, &bag_sorted_, num_threads,
                    &max_index);
  }

  template <class T>
  void build_blocks(const Bags<T, I>& bags, std::int64_t num_rows, std::int64_t row_width) {
    const std::int64_t n = bags.size;
    const I* SPARSEOPT_RESTRICT indices = bags.indices;
    // Blocks of about 1 MB of output rows (cache-sized), and at least 16 blocks where there
    // are enough rows, so that threads can share them.
    constexpr std::int64_t block_bytes = std::int64_t(1) << 20, min_block_rows = 64, min_blocks = 16;
    const std::int64_t row_bytes = std::max<std::int64_t>(1, row_width) * std::int64_t(sizeof(T));
    std::int64_t block_rows = std::max<std::int64_t>(1, block_bytes / row_bytes);
    block_rows = std::min(block_rows, std::max(min_block_rows, num_rows / min_blocks));
    block_shift_ = detail::bit_width(std::uint64_t(block_rows)) - 1;  // rows per block: 2^shift
    const std::int64_t num_blocks = ((num_rows - 1) >> block_shift_) + 1;
    position_bits_ = detail::bit_width(std::uint64_t(n - 1));
    const int block_bits = detail::bit_width(std::uint64_t(num_blocks - 1));
    // position_bits_ + block_bits <= 64: n <= 2^32 and num_blocks <= num_rows <= n.
    for (auto* v : {&block_keys_, &block_slots_}) detail::fit(*v, static_cast<std::size_t>(num_blocks + 1));
    detail::fit(slot_, static_cast<std::size_t>(num_rows));
    detail::fit(rows_, static_cast<std::size_t>(num_rows));
    detail::fit(keys_, static_cast<std::size_t>(n));
    detail::fit(tmp_, static_cast<std::size_t>(n));

    // Touched rows and their slots: mark, then number in ascending order.
    slot_.assign(static_cast<std::size_t>(num_rows), I(0));
    I* SPARSEOPT_RESTRICT slot = slot_.data();
    for (std::int64_t p = 0; p < n; ++p) slot[indices[p]] = I(1);
    block_slots_.assign(static_cast<std::size_t>(num_blocks + 1), 0);
    rows_.clear();
    for (std::int64_t r = 0; r < num_rows; ++r) {
      if ((r & ((std::int64_t(1) << block_shift_) - 1)) == 0)
        block_slots_[r >> block_shift_] = static_cast<std::int64_t>(rows_.size());
      if (slot[r]) {
        slot[r] = static_cast<I>(rows_.size());
        rows_.push_back(static_cast<I>(r));
      }
    }
    block_slots_[num_blocks] = static_cast<std::int64_t>(rows_.size());

    // Positions grouped by block, in input order within each: one stable radix pass.
    keys_.resize(static_cast<std::size_t>(n));
    block_keys_.assign(static_cast<std::size_t>(num_blocks + 1), 0);
    std::int64_t* SPARSEOPT_RESTRICT count = block_keys_.data() + 1;
    for (std::int64_t p = 0; p < n; ++p) {
      const std::int64_t block = static_cast<std::int64_t>(indices[p]) >> block_shift_;
      ++count[block];
      keys_[p] = (std::uint64_t(block) << position_bits_) | std::uint64_t(p);
    }
    for (std::int64_t j = 0; j < num_blocks; ++j) block_keys_[j + 1] += block_keys_[j];
    if (block_bits > 0) detail::sort_packed(keys_, tmp_, position_bits_, block_bits);
  }
};

namespace detail {

// The row each term of bag b adds to the table's gradient: grad_out[b] (mode sum; the weight
// is applied per term), or grad_out[b] / len(b) (mode mean), divided once per bag into
// `divided`, not once per term. Returns where those rows start (num_bags rows of row_width).
// Allocates before any parallel region, so that nothing in one can fail half-way through.
template <class T, class I>
const T* bag_terms(Table<const T> grad_out, const Bags<T, I>& bags, BagReduction mode, int threads,
                   std::vector<T>& divided) {
  if (mode != BagReduction::mean) return grad_out.data;
  const std::int64_t w = grad_out.row_width, nb = bags.num_bags;
  divided.resize(static_cast<std::size_t>(nb * w));
  parallel_for(nb, threads, nb * w, [&](std::int64_t b, int) {
    const std::int64_t len = bags.end(b) - bags.begin(b);
    if (len == 0) return;
    const T l = static_cast<T>(len);
    const T* g = grad_out.row(b);
    T* d = divided.data() + b * w;
    for (std::int64_t j = 0; j < w; ++j) d[j] = g[j] / l;
  });
  return divided.data();
}

// The terms of the sorted layout (GatherPlan::by_row): the k-th sorted position adds
// scale(k) * row(k), row(k) the bag_terms row of its bag and scale(k) its weight, and
// ahead_row(k) / ahead_scale(k) give the addresses of a later term's row and weight to request
// from memory (null: nothing to fetch; arrays small enough to stay in cache between uses get no
// hints). gather_sum_backward and the fused optimizer step both sum through it, so alike.
template <class T>
struct SortedTerms {
  const T* source;             // bag_terms' rows, num_bags x w
  const std::int64_t* bag;     // the bag of each sorted position
  const std::int64_t* order;   // the input position of each sorted position
  const T* weights;            // per input position, or null
  std::int64_t n, w;
  bool fetch_rows, fetch_weights;

  SortedTerms(const T* source_rows, const std::int64_t* bags_sorted, const std::int64_t* positions,
              const T* weights_or_null, std::int64_t num_bags, std::int64_t size, std::int64_t width) noexcept
      : source(source_rows), bag(bags_sorted), order(positions), weights(weights_or_null), n(size), w(width),
        fetch_rows(num_bags * width * std::int64_t(sizeof(T)) > cache_resident_bytes),
        fetch_weights(weights_or_null && size * std::int64_t(sizeof(T)) > cache_resident_bytes) {}

  const T* row(std::int64_t k) const noexcept { return source + bag[k] * w; }
  T scale(std::int64_t k) const noexcept { return weights[order[k]]; }
  const T* ahead_row(std::int64_t k) const noexcept {
    return fetch_rows && k + gather_ahead < n ? row(k + gather_ahead) : nullptr;
  }
  // the weights are read in the order of the sorted positions: scattered, fetched early
  const T* ahead_scale(std::int64_t k) const noexcept {
    constexpr std::int64_t far = 4 * gather_ahead;
    return fetch_weights && k + far < n ? weights + order[k + far] : nullptr;
  }
};

}  // namespace detail

// The gradient of the table for out = gather_sum(table, bags, mode), given grad_out (num_bags
// rows): rows_out[u] = plan.rows()[u] and values_out row u = the sum over that row's positions
// p (in order of appearance) of weights[p] * grad_out[bag of p] (mode mean: grad_out[bag of p]
// / len(bag of p)). `plan` must have been built from the same bags; values_out has plan.size()
// rows of grad_out.row_width elements (rows_out may be null to skip it). Parallel over rows
// (or blocks of rows), ranges cut by the number of terms.
template <class T, class I>
void gather_sum_backward(Table<const T> grad_out, const Bags<T, I>& bags, const GatherPlan<I>& plan,
                         I* rows_out, Table<T> values_out, BagReduction mode = BagReduction::sum,
                         int num_threads = 0, const detail::BagNames& names = {}) {
  const int threads = detail::resolve_threads(num_threads);
  const std::int64_t w = grad_out.row_width, nb = bags.num_bags, n = bags.size;
  detail::require(plan.num_bags() == nb && plan.num_indices() == n,
                  "the plan was built for other bags (", plan.num_bags(), " bags of ", plan.num_indices(),
                  " indices, these have ", nb, " and ", n, "); build it from these bags first");
  detail::require(grad_out.num_rows == nb, "grad_out must have ", nb, " rows (one per bag), got ",
                  grad_out.num_rows);
  detail::require(mode == BagReduction::sum || bags.weights == nullptr, names.weights,
                  " are only supported with mode=\"sum\"");
  detail::require(values_out.num_rows == plan.size() && values_out.row_width == w, "values must have ",
                  plan.size(), " rows (one per touched row) of ", w, " elements, got ", values_out.num_rows,
                  " rows of ", values_out.row_width);
  detail::require(grad_out.data != nullptr || nb * w == 0, "grad_out is null");
  detail::require(values_out.data != nullptr || plan.size() * w == 0, "values is null");
  const std::int64_t values_bytes = detail::byte_size(values_out);
  detail::require_disjoint(values_out.data, values_bytes, "values", grad_out.data,
                           nb * w * std::int64_t(sizeof(T)), "grad_out");
  detail::require_disjoint(values_out.data, values_bytes, "values", bags.weights,
                           n * std::int64_t(sizeof(T)), names.weights);
  detail::require_disjoint(values_out.data, values_bytes, "values", rows_out,
                           plan.size() * std::int64_t(sizeof(I)), "rows");

  const std::int64_t nu = plan.size();
  if (rows_out && nu > 0) std::memcpy(rows_out, plan.rows().data(), sizeof(I) * static_cast<std::size_t>(nu));
  if (w == 0 || nu == 0) return;

  std::vector<T> divided;
  const T* source = detail::bag_terms(grad_out, bags, mode, threads, divided);
  const T* SPARSEOPT_RESTRICT weights = bags.weights;

  if (plan.dense_) {
    // Each block of rows: its output rows start at -0.0, the one value that adding a first
    // term leaves bit for bit equal to that term (-0 + x == x for every x, -0 and NaN
    // included), then every term is added in the order of its position -- the same bits as
    // the sorted layout's "first term, then add the next".
    const I* SPARSEOPT_RESTRICT indices = bags.indices;
    const I* SPARSEOPT_RESTRICT slot = plan.slot_.data();
    const std::uint64_t* SPARSEOPT_RESTRICT keys = plan.keys_.data();
    const std::int64_t* block_keys = plan.block_keys_.data();
    const std::int64_t* block_slots = plan.block_slots_.data();
    const std::uint64_t mask = plan.position_bits_ ? ~std::uint64_t(0) >> (64 - plan.position_bits_) : 0;
    const std::int64_t num_blocks = static_cast<std::int64_t>(plan.block_keys_.size()) - 1;
    detail::parallel_for(
        num_blocks, threads, (n + nu) * w,
        [&](std::int64_t blk, int) {
          T* SPARSEOPT_RESTRICT first = values_out.row(block_slots[blk]);
          const std::int64_t count = (block_slots[blk + 1] - block_slots[blk]) * w;
          for (std::int64_t e = 0; e < count; ++e) first[e] = T(-0.0);
          const std::int64_t begin = block_keys[blk], end = block_keys[blk + 1];
          std::int64_t b = 0;  // the bag of the current position: positions only grow here
          // Positions only grow within a block, but sparsely: their index and weight are a cache
          // miss each, so they are fetched far ahead, and the output row they lead to nearer.
          // The walk runs on the AVX2 copy of this loop where the CPU has it (simd.hpp).
          constexpr std::int64_t far = 4 * detail::gather_ahead;
          detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
            for (std::int64_t k = begin; k < end; ++k) {
              if (k + far < end) {
                const auto q = static_cast<std::int64_t>(keys[k + far] & mask);
                detail::prefetch_row(indices + q, 1);
                if (weights) detail::prefetch_row(weights + q, 1);
              }
              if (k + detail::gather_ahead < end) {
                const auto q = static_cast<std::int64_t>(keys[k + detail::gather_ahead] & mask);
                detail::prefetch_row(values_out.row(static_cast<std::int64_t>(slot[indices[q]])), w);
              }
              const auto p = static_cast<std::int64_t>(keys[k] & mask);
              if (p >= bags.end(b))  // the next bag with this position (skips empty bags)
                b = std::upper_bound(bags.indptr + b + 1, bags.indptr + nb + 1, static_cast<I>(p)) -
                    bags.indptr - 1;
              T* SPARSEOPT_RESTRICT o = values_out.row(static_cast<std::int64_t>(slot[indices[p]]));
              const T* SPARSEOPT_RESTRICT g = source + b * w;
              if (weights) {
                const T s = weights[p];
                for (std::int64_t j = 0; j < w; ++j) o[j] += s * g[j];
              } else {
                for (std::int64_t j = 0; j < w; ++j) o[j] += g[j];
              }
            }
          });
        },
        [&](std::int64_t blk) { return block_keys[blk] + block_slots[blk]; });
    return;
  }

  const std::int64_t* SPARSEOPT_RESTRICT offsets = plan.coalesce_.offsets.data();
  const detail::SortedTerms<T> sorted(source, plan.bag_sorted_.data(), plan.coalesce_.order.data(), weights, nb, n, w);
  detail::for_each_tile(
      nu, threads, (n + nu) * w, detail::sum_tile_cost, [&](std::int64_t u) { return offsets[u] + u; },
      [&](std::int64_t first, std::int64_t last) {
        auto out_row = [&](std::int64_t u) { return values_out.row(u); };
        auto bounds = [&](std::int64_t u) { return std::pair<std::int64_t, std::int64_t>(offsets[u], offsets[u + 1]); };
        auto row = [&](std::int64_t k) { return sorted.row(k); };
        auto scale = [&](std::int64_t k) { return sorted.scale(k); };
        auto ahead_row = [&](std::int64_t k) { return sorted.ahead_row(k); };
        auto ahead_scale = [&](std::int64_t k) { return sorted.ahead_scale(k); };
        const std::int64_t terms = offsets[last] - offsets[first];
        if (weights)
          detail::sum_rows<true, T>(first, last, terms, w, out_row, bounds, row, scale, ahead_row, ahead_scale);
        else
          detail::sum_rows<false, T>(first, last, terms, w, out_row, bounds, row, scale, ahead_row, ahead_scale);
      });
}

// One call for C++ trainers: builds `plan` (keep it between calls: its buffers are reused),
// then writes the touched rows to rows_out and their gradient to values_out, which hold
// `capacity` rows (min(bags.size, num_rows) always suffices). Returns the number of rows
// written. Throws, writing nothing, when the bags are malformed or capacity is too small.
template <class T, class I>
std::int64_t gather_sum_backward(Table<const T> grad_out, const Bags<T, I>& bags, std::int64_t num_rows,
                                 GatherPlan<I>& plan, I* rows_out, T* values_out, std::int64_t capacity,
                                 BagReduction mode = BagReduction::sum, int num_threads = 0) {
  detail::resolve_threads(num_threads);
  detail::require(grad_out.num_rows == bags.num_bags, "grad_out must have ", bags.num_bags,
                  " rows (one per bag), got ", grad_out.num_rows);
  plan.build(bags, num_rows, grad_out.row_width, mode, {}, num_threads);
  detail::require(capacity >= plan.size(), "the output holds ", capacity, " rows but the bags touch ",
                  plan.size(), "; pass capacity >= min(number of indices, num_rows)");
  gather_sum_backward(grad_out, bags, plan, rows_out, Table<T>{values_out, plan.size(), grad_out.row_width},
                      mode, num_threads);
  return plan.size();
}

// The gradient of the table for out = gather_sum(table, bags, mode) given grad_out, as an
// optimizer step takes it: every optimizer's step accepts a BagGradient where it accepts a
// RowSparse gradient, and then sums each touched row's terms (in registers, as
// gather_sum_backward does: the first term, then each next one added in order of appearance)
// and applies its update at once -- the fused backward and step, which never writes the
// gradient rows to memory. The result is the bits of gather_sum_backward followed by the step
// on its (rows, values), for any thread count.
template <class T, class I>
struct BagGradient {
  Table<const T> grad_out;  // num_bags rows of the table's row width
  Bags<T, I> bags;
  BagReduction mode = BagReduction::sum;
};

namespace detail {

// Calls update(row, g) for every row the bags touch, g that row's gradient: what
// for_each_row(RowSparse, CoalescePlan, ...) does for a row-sparse gradient, with `plan` built
// by GatherPlan::build_by_row from grad.bags. A row that one unweighted term touches reads
// that term's row of grad_out in place; the others are summed into a per-thread row.
template <class T, class I, class Update, class Prefetch>
void for_each_row(const BagGradient<T, I>& grad, const GatherPlan<I>& plan, int num_threads, Update&& update,
                  Prefetch&& prefetch) {
  // Splitting rows between threads by cost: a term (one grad_out row from cache, w additions)
  // counts 1, a row's update 32 (its rows of the table and state from memory, the optimizer's
  // arithmetic). At 4, as for a row-sparse gradient's value rows, the thread with a Zipf batch's
  // hot row (a quarter of the terms) got too few updates: the fused steps on Zipf rows ran
  // 4-9% slower (exact Adam most, SGD 1%; uniform rows, about a term a row, split alike).
  constexpr std::int64_t update_cost = 32;
  const int threads = resolve_threads(num_threads);
  const CoalescePlan<I>& cp = plan.by_row();
  const std::int64_t nu = cp.size(), n = grad.bags.size, w = grad.grad_out.row_width;
  if (nu == 0) return;
  std::vector<T> divided;
  const T* source = bag_terms(grad.grad_out, grad.bags, grad.mode, threads, divided);
  ThreadRows<T> scratch(threads, w);
  const bool weighted = grad.bags.weights != nullptr;
  const SortedTerms<T> sorted(source, plan.bag_of_sorted(), cp.order.data(), grad.bags.weights, grad.bags.num_bags,
                              n, w);
  // A row with several terms (or weighted ones) is summed out of line: with the sums inlined
  // into the loop, the common row of one term ran 4-7% slower (more registers live, its
  // pointers reloaded through the closure).
  auto summed = [&](std::int64_t begin, std::int64_t end, int slot) SPARSEOPT_NOINLINE_BODY {
    auto term = [&](std::int64_t k) { return sorted.row(k); };
    auto scale = [&](std::int64_t k) { return sorted.scale(k); };
    auto ahead_term = [&](std::int64_t k) { return sorted.ahead_row(k); };
    auto ahead_scale = [&](std::int64_t k) { return sorted.ahead_scale(k); };
    T* own = scratch.row(slot);
    auto sum = [&](auto scaled, auto rolling) SPARSEOPT_INLINE_BODY {
      simd_dispatch([&](auto avx2) SPARSEOPT_INLINE_BODY {
        sum_terms_body<decltype(scaled)::value, decltype(avx2)::value ? 8 : 4, decltype(rolling)::value>(
            own, w, begin, end, term, scale, ahead_term, ahead_scale);
      });
    };
    const bool long_row = end - begin > gather_ahead;
    if (weighted)
      long_row ? sum(std::true_type{}, std::true_type{}) : sum(std::true_type{}, std::false_type{});
    else
      long_row ? sum(std::false_type{}, std::true_type{}) : sum(std::false_type{}, std::false_type{});
    return static_cast<const T*>(own);
  };
  // The loop's arrays by value, so that they stay in registers (see gather_sum's loop).
  const std::int64_t* offsets = cp.offsets.data();
  const I* rows = cp.rows.data();
  const std::int64_t* bag = plan.bag_of_sorted();
  const std::int64_t batch = far_batch(row_spread_bytes(rows, nu, w * std::int64_t(sizeof(T))));
  parallel_for(
      nu, threads, (n + nu) * w,
      [offsets, rows, bag, source, w, nu, batch, weighted, &update, &prefetch, &summed](std::int64_t u, int slot) {
        prefetch_ahead(u, nu, [&](std::int64_t v, auto level) SPARSEOPT_INLINE_BODY {
          prefetch(static_cast<std::int64_t>(rows[v]), level);
        }, batch);
        const std::int64_t begin = offsets[u], end = offsets[u + 1];
        // One unweighted term: its row of grad_out in place (sorted.row(begin)).
        const T* g = SPARSEOPT_LIKELY(end - begin == 1 && !weighted) ? source + bag[begin] * w
                                                                      : summed(begin, end, slot);
        update(static_cast<std::int64_t>(rows[u]), g);
      },
      [offsets](std::int64_t u) { return offsets[u] + update_cost * u; });
}

}  // namespace detail

}  // namespace sparseopt
