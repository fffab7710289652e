// Coalescing a row-sparse gradient: group the positions of repeated indices so that each row's
// gradient is the sum of its values, added in the order they appear (so the result does not
// depend on the thread count). The plan is built once per step and shared by every kernel.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "errors.hpp"
#include "parallel.hpp"
#include "simd.hpp"
#include "view.hpp"

namespace sparseopt {

namespace detail {

// std::vector's allocator, but resize() leaves new elements of trivial types uninitialised
// (construct() with no arguments default-initialises): for scratch that is written in full
// before it is read, where zero-filling a megabyte per build would cost a pass over it.
template <class T>
struct UninitAllocator : std::allocator<T> {
  UninitAllocator() noexcept = default;
  template <class U>
  UninitAllocator(const UninitAllocator<U>&) noexcept {}  // NOLINT: converting, as std::allocator's
  template <class U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    if constexpr (sizeof...(Args) == 0)
      ::new (static_cast<void*>(p)) U;
    else
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
template <class T>
using Scratch = std::vector<T, UninitAllocator<T>>;

#if SPARSEOPT_HAS_VECTOR_EXT
// index_range's whole rounds on the AVX2 path, for index types of 4 or 8 bytes (read as int32
// or int64 lanes, through the vector type that may alias them): four vectors each of the OR and
// of the largest, so that a vector's compare does not wait for the last one's. Folds them into
// `any` and `hi` and returns how many indices the rounds covered.
template <class I>
SPARSEOPT_ALWAYS_INLINE std::int64_t index_range_rounds(const I* indices, std::int64_t n, I& any, I& hi) noexcept {
  using W = std::conditional_t<sizeof(I) == 8, std::int64_t, std::int32_t>;
  using V = Vec<W>;
  using Mask = decltype(V{} > V{});
  constexpr std::int64_t lanes = std::int64_t(sizeof(V) / sizeof(W)), chains = 4;
  const W* const words = reinterpret_cast<const W*>(indices);
  V ors[chains], his[chains];
  for (std::int64_t c = 0; c < chains; ++c) {
    ors[c] = V{};
    his[c] = V{} - 1;
  }
  std::int64_t k = 0;
  for (; k + chains * lanes <= n; k += chains * lanes)
    for (std::int64_t c = 0; c < chains; ++c) {
      V v;
      load_vec(v, words + k + c * lanes);
      ors[c] |= v;
      const Mask above = v > his[c];
      his[c] = above ? v : his[c];
    }
  for (std::int64_t c = 0; c < chains; ++c)
    for (std::int64_t j = 0; j < lanes; ++j) {
      any |= static_cast<I>(ors[c][j]);
      hi = static_cast<I>(his[c][j]) > hi ? static_cast<I>(his[c][j]) : hi;
    }
  return k;
}
#endif

// {min(0, smallest index), max(-1, largest index)} of indices[0, n). One pass takes the largest
// and the OR of all the indices, whose sign bit says whether any is negative; the smallest only
// then, in a second pass (a rejected call). On the AVX2 copy, where the CPU has it, whole rounds
// of vectors (index_range_rounds): 64-bit compares (which the baseline SSE2 lacks, so its loop
// is scalar) chained through one vector, and the smallest with the largest, ran 3x slower on
// indices in cache (6.6 against 2.1 us for 16,384 int64 indices, Intel Xeon; within a step's
// grouping, where this is the first pass over the indices and waits on memory, the two timed
// alike).
template <class I>
std::pair<std::int64_t, std::int64_t> index_range(const I* indices, std::int64_t n) noexcept {
  I any = 0, hi = -1;
  simd_dispatch([&](auto avx2) SPARSEOPT_INLINE_BODY {
    I o = 0, h = -1;
    std::int64_t k = 0;
#if SPARSEOPT_HAS_VECTOR_EXT
    if constexpr (decltype(avx2)::value && (sizeof(I) == 4 || sizeof(I) == 8))
      k = index_range_rounds(indices, n, o, h);
#else
    (void)avx2;
#endif
    for (; k < n; ++k) {
      o |= indices[k];
      h = indices[k] > h ? indices[k] : h;
    }
    any = o;
    hi = h;
  });
  I lo = 0;
  if (any < 0)
    for (std::int64_t k = 0; k < n; ++k) lo = indices[k] < lo ? indices[k] : lo;
  return {static_cast<std::int64_t>(lo), static_cast<std::int64_t>(hi)};
}

// Throws index_error naming (as name[k]) the first index outside [0, num_rows) (num_rows < 0:
// no upper bound); returns the largest index (or -1 when there are none). A vectorised min/max
// first, the position of the culprit only on failure.
template <class I>
std::int64_t check_indices(const I* indices, std::int64_t n, std::int64_t num_rows,
                           const char* name = "indices") {
  static_assert(std::is_integral_v<I> && std::is_signed_v<I>, "indices must be signed integers");
  const auto [lo, hi] = index_range(indices, n);
  const bool too_big = num_rows >= 0 && hi >= num_rows;
  if (lo < 0 || too_big) {
    for (std::int64_t k = 0; k < n; ++k) {
      const auto r = static_cast<std::int64_t>(indices[k]);
      if (r < 0 || (num_rows >= 0 && r >= num_rows)) {
        if (num_rows >= 0)
          throw index_error(concat(name, "[", k, "] = ", r, " is out of range for a table of ",
                                   num_rows, " rows; indices must be in [0, ", num_rows, ")"));
        throw index_error(concat(name, "[", k, "] = ", r, " is negative; indices must be >= 0"));
      }
    }
  }
  return hi;
}

// Whether indices[0, n) rise strictly (n < 2: yes). Blocks of 256 compared without a branch
// (AVX2's 64-bit compares), so that a descent early on costs one block.
template <class I>
bool strictly_ascending(const I* indices, std::int64_t n) noexcept {
  bool ascending = true;
  simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
    constexpr std::int64_t block = 256;
    for (std::int64_t lo = 1; lo < n; lo += block) {
      const std::int64_t hi = std::min(n, lo + block);
      int descents = 0;
      for (std::int64_t k = lo; k < hi; ++k) descents |= indices[k] <= indices[k - 1];
      if (descents != 0) {
        ascending = false;
        return;
      }
    }
  });
  return ascending;
}

inline constexpr int radix_digit_bits = 11;  // the radix sorts' digits (2048 buckets)

inline int bit_width(std::uint64_t x) noexcept {
  int bits = 0;
  while (bits < 64 && (x >> bits) != 0) ++bits;
  return bits;
}

// The counts sort_words needs for key_bits: one bucket array per radix digit (at most 6).
inline constexpr std::size_t sort_counts(int key_bits) noexcept {
  return static_cast<std::size_t>((key_bits + radix_digit_bits - 1) / radix_digit_bits) << radix_digit_bits;
}
inline constexpr std::size_t sort_count_size = sort_counts(64);

// sort_words' radix sort (below), compiled into both SIMD paths.
SPARSEOPT_ALWAYS_INLINE std::uint64_t* radix_sort_words(std::uint64_t* words, std::uint64_t* tmp, std::size_t n,
                                                         int shift, int key_bits, std::size_t* counts) noexcept {
  constexpr int digit_bits = radix_digit_bits;
  constexpr std::uint64_t buckets = std::uint64_t(1) << digit_bits, mask = buckets - 1;
  const int digits = (key_bits + digit_bits - 1) / digit_bits;  // at most 6: shift + key_bits <= 64
  if (digits == 0) return words;
  std::fill(counts, counts + digits * buckets, std::size_t(0));
  {
    const std::uint64_t* SPARSEOPT_RESTRICT in = words;
    std::size_t* SPARSEOPT_RESTRICT c = counts;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t k = in[i] >> shift;
      for (int d = 0; d < digits; ++d) ++c[d * buckets + ((k >> (d * digit_bits)) & mask)];
    }
  }
  std::uint64_t* from = words;
  std::uint64_t* to = tmp;
  for (int d = 0; d < digits; ++d) {
    std::size_t* SPARSEOPT_RESTRICT next = counts + d * buckets;
    std::size_t sum = 0;
    for (std::uint64_t b = 0; b < buckets; ++b) sum += std::exchange(next[b], sum);
    const int s = shift + d * digit_bits;
    const std::uint64_t* SPARSEOPT_RESTRICT f = from;
    std::uint64_t* SPARSEOPT_RESTRICT t = to;
    for (std::size_t i = 0; i < n; ++i) t[next[(f[i] >> s) & mask]++] = f[i];
    std::swap(from, to);
  }
  return from;
}

// Sorts words[0, n) by bits [shift, shift + key_bits) (shift + key_bits <= 64, no bits above
// them): least-significant-digit radix sort (stable), a comparison sort of the whole words for
// short inputs -- the same order where the bits below `shift` rise with the input order, as
// the callers' positions (and bags, which rise with them) do. The words ping-pong with
// tmp[0, n); returns whichever of the two holds them sorted. The counts of every digit come
// from one pass over the words, before the first scatter, into `counts` (sort_counts(key_bits)).
inline std::uint64_t* sort_words(std::uint64_t* words, std::uint64_t* tmp, std::size_t n, int shift, int key_bits,
                                 std::size_t* counts) noexcept {
  if (n < 256) {
    std::sort(words, words + n);
    return words;
  }
  std::uint64_t* sorted = words;
  simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // BMI2's shifts (simd.hpp)
    sorted = radix_sort_words(words, tmp, n, shift, key_bits, counts);
  });
  return sorted;
}

// sort_words on a vector of words, left sorted in `keys` (the two vectors swap buffers).
template <class V>
void sort_packed(V& keys, V& tmp, int shift, int key_bits) {
  tmp.resize(keys.size());
  Scratch<std::size_t> counts(sort_counts(key_bits));
  if (sort_words(keys.data(), tmp.data(), keys.size(), shift, key_bits, counts.data()) != keys.data()) keys.swap(tmp);
}

// Drops a buffer that grew far beyond what is needed now, so one huge step does not pin
// its memory for the rest of the process.
template <class V>
void fit(V& buffer, std::size_t needed) {
  constexpr std::size_t keep_bytes = std::size_t(1) << 20;
  if (buffer.capacity() * sizeof(typename V::value_type) > keep_bytes &&
      buffer.capacity() > 4 * needed)
    V().swap(buffer);
}

}  // namespace detail

// The rows a gradient touches, ascending, and where each row's values are. A plan can be
// rebuilt for every step: its buffers are reused, which spares the page faults of fresh
// allocations on every call.
template <class I>
class GatherPlan;

template <class I>
class CoalescePlan {
 public:
  std::vector<I> rows;                // unique indices, ascending
  std::vector<std::int64_t> offsets;  // rows.size() + 1 bounds into `order`
  std::vector<std::int64_t> order;    // input positions grouped by row, in input order per row

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(rows.size()); }
  std::int64_t count(std::int64_t u) const noexcept { return offsets[u + 1] - offsets[u]; }

  // Checks every index against [0, num_rows) (num_rows < 0: no upper bound) -- throwing
  // index_error, with the plan left empty, before anything is written -- and groups the
  // positions of each row, on num_threads threads (0 = all; the plan is the same for any
  // count).
  void build(const I* indices, std::int64_t n, std::int64_t num_rows, int num_threads = 0) {
    group(indices, n, num_rows, static_cast<const I*>(nullptr), 0, nullptr, num_threads);
  }

  // Empties the plan (no rows), keeping its buffers for the next build.
  void clear() {
    rows.clear();
    offsets.assign(1, 0);
    order.clear();
  }

  // As build(), for positions that fall into bags (bag b: positions indptr[b] to
  // indptr[b + 1] - 1; num_bags + 1 non-decreasing offsets from 0 to n, which the caller has
  // checked), also writing bag_out[k] = the bag of the k-th grouped position (order[k]). The
  // bag rides in the sort's keys where the bits allow, so that it costs no gather. A rejected
  // call leaves bag_out empty too.
  template <class B>
  void build_with_bags(const I* indices, std::int64_t n, std::int64_t num_rows, const B* indptr,
                       std::int64_t num_bags, detail::Scratch<std::int64_t>& bag_out, int num_threads = 0) {
    group(indices, n, num_rows, indptr, num_bags, &bag_out, num_threads);
  }

 private:
  detail::Scratch<std::uint64_t> keys_, tmp_;  // sort scratch
  detail::Scratch<std::int64_t> bag_at_;       // the bag of each position, where no key holds it
  std::vector<std::int64_t> count_;            // counting scratch
  detail::Scratch<std::size_t> team_counts_;   // the parallel sort's bucket counts and starts, per thread
  std::vector<std::int64_t> team_rows_;        // the rows each thread's part of the words starts
  std::vector<std::int64_t> sample_, split_;   // group_by_range's sample of the indices and its ranges

  // How group() shares the packed words among threads (see there). A thread of group_by_range
  // reads every index twice (to count those below its range, then to pack its own), each read
  // about a sixth of what sorting a word costs, besides sorting its range's words: its time
  // goes as (2 + 6 / team) index reads per word, where one thread's goes as 6 and a team of
  // shares' as 6 / team plus the lines its threads pass each other. Up to range_max_team threads
  // the ranges are used; beyond, the team (not measured: these machines have 2 cores).
  // Measured with 2 threads (Intel Xeon, 1M rows; bench/README.md): the ranges group 8,192
  // words 1.2-1.3x faster than one thread, 32,768 1.4-1.7x and 131,072 1.15x faster than the
  // team of shares.
  static constexpr std::int64_t team_min_share = std::int64_t(1) << 14;
  static constexpr std::int64_t range_min_share = std::int64_t(1) << 12;
  static constexpr std::int64_t range_max_team = 4;
  static constexpr std::int64_t range_samples = 256;
  static constexpr double range_max_share = 0.6;

  // Indices below max(counting_min_rows, min(n, counting_max_rows)) are grouped by counting.
  static constexpr std::int64_t counting_min_rows = 2048, counting_max_rows = std::int64_t(1) << 20;

  // GatherPlan groups bags whose indices it has checked already (group's checked_max).
  friend class GatherPlan<I>;

  // build() and build_with_bags(); checked_max: null, or the largest of the indices, which the
  // caller has checked against num_rows (so that they are not read twice).
  template <class B>
  void group(const I* indices, std::int64_t n, std::int64_t num_rows, const B* indptr, std::int64_t num_bags,
             detail::Scratch<std::int64_t>* bag_out, int num_threads, const std::int64_t* checked_max = nullptr) {
    const auto size = static_cast<std::size_t>(n);
    for (auto* buffer : {&offsets, &order}) detail::fit(*buffer, size);
    detail::fit(rows, size);
    detail::fit(keys_, size);
    detail::fit(tmp_, size);
    detail::fit(bag_at_, size);
    detail::fit(count_, size);
    if (bag_out) bag_out->clear();
    try {
      group_checked(indices, n, num_rows, indptr, num_bags, bag_out, num_threads, checked_max);
    } catch (...) {  // a rejected (or failed) call leaves the plan empty
      clear();
      if (bag_out) bag_out->clear();
      throw;
    }
  }

  template <class B>
  void group_checked(const I* indices, std::int64_t n, std::int64_t num_rows, const B* indptr,
                     std::int64_t num_bags, detail::Scratch<std::int64_t>* bag_out, int num_threads,
                     const std::int64_t* checked_max) {
    const auto size = static_cast<std::size_t>(n);
    const int threads = detail::resolve_threads(num_threads);
    const std::int64_t max_index = checked_max ? *checked_max : detail::check_indices(indices, n, num_rows);
    // The buffers keep their sizes from the last build until they are resized below: clear()
    // here would make every resize zero-fill its whole length; only `order` keeps its size from
    // build to build (rows and offsets are cut to the rows found), so it is the fill saved.
    if (bag_out) {
      detail::fit(*bag_out, size);
      bag_out->resize(size);
    }
    // Strictly ascending indices (a coalesced gradient: gather_sum_backward's rows, a coalesced
    // torch tensor's) are grouped already: each row once, at its own position. The test stops
    // at the first block of 256 with a descent, so other indices lose next to nothing.
    if (detail::strictly_ascending(indices, n)) {
      rows.assign(indices, indices + n);
      offsets.resize(size + 1);
      order.resize(size);
      std::iota(offsets.begin(), offsets.end(), std::int64_t(0));
      std::iota(order.begin(), order.end(), std::int64_t(0));
      if (bag_out) bags_by_gather(indptr, num_bags, n, bag_out->data());
      return;
    }
    // Few distinct values among many indices (a small table, meProp's units): one counting
    // pass over the indices does it, without packing keys or a bucket array per radix digit.
    if (n > 0 && max_index < std::max<std::int64_t>(counting_min_rows, std::min(n, counting_max_rows))) {
      count_positions(indices, n, max_index);
      if (bag_out) bags_by_gather(indptr, num_bags, n, bag_out->data());
      return;
    }
    // (index, [bag,] position) packed into one word with the index in the high bits, and
    // radix-sorted on the index bits: equal indices keep their input order.
    const int position_bits = detail::bit_width(std::uint64_t(n > 0 ? n - 1 : 0));
    const int index_bits = detail::bit_width(std::uint64_t(max_index > 0 ? max_index : 0));
    const int bag_bits = bag_out ? detail::bit_width(std::uint64_t(num_bags > 0 ? num_bags - 1 : 0)) : 0;
    const bool bag_in_key = bag_out && position_bits + bag_bits + index_bits <= 64;
    const int low_bits = position_bits + (bag_in_key ? bag_bits : 0);
    rows.resize(size);
    offsets.resize(size + 1);
    order.resize(size);
    // Runs of equal indices: written through plain pointers into buffers of the largest size
    // (push_back's checks cost more than the loop's work), then cut to the rows found.
    std::int64_t u = 0;
    // Words grouped by a team of threads, each on a range of index values (group_by_range): up
    // to range_max_team threads with range_min_share words each, unless one range would hold
    // most of the words (set_ranges); else each on a share of the words (group_by_team) where
    // two or more threads get team_min_share each; else by one thread.
    const int team = static_cast<int>(std::min<std::int64_t>(threads, n / team_min_share));
    const int ranges = static_cast<int>(std::min<std::int64_t>({threads, range_max_team, n / range_min_share}));
    const Words words{position_bits, bag_in_key ? bag_bits : 0};
    std::int64_t* const bag_of = bag_in_key ? bag_out->data() : nullptr;
    const bool packed = low_bits + index_bits <= 64;
    if (packed && team <= range_max_team && ranges > 1 && set_ranges(indices, n, ranges)) {
      u = group_by_range(indices, n, indptr, num_bags, bag_of, words, index_bits, ranges);
    } else if (packed && team > 1) {
      u = group_by_team(indices, n, indptr, num_bags, bag_of, words, index_bits, team);
    } else if (packed) {
      keys_.resize(size);
      std::uint64_t* const out = keys_.data();
      detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // BMI2's shifts (simd.hpp)
        pack_words(words, indices, indptr, num_bags, 0, n,
                   [out](std::int64_t k, std::uint64_t word) SPARSEOPT_INLINE_BODY { out[k] = word; });
      });
      detail::sort_packed(keys_, tmp_, low_bits, index_bits);
      detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY { u = read_words(words, keys_.data(), 0, n, 0, bag_of); });
    } else {  // indices too large to pack
      I* SPARSEOPT_RESTRICT unique = rows.data();
      std::int64_t* SPARSEOPT_RESTRICT bounds = offsets.data();
      for (std::int64_t k = 0; k < n; ++k) order[k] = k;
      std::stable_sort(order.begin(), order.end(),
                       [indices](std::int64_t a, std::int64_t b) { return indices[a] < indices[b]; });
      for (std::int64_t k = 0; k < n; ++k) {
        const I r = indices[order[k]];
        if (u == 0 || unique[u - 1] != r) {
          bounds[u] = k;
          unique[u++] = r;
        }
      }
    }
    offsets[static_cast<std::size_t>(u)] = n;
    rows.resize(static_cast<std::size_t>(u));
    offsets.resize(static_cast<std::size_t>(u + 1));
    if (bag_out && !bag_in_key) bags_by_gather(indptr, num_bags, n, bag_out->data());
  }

  // The layout of group()'s packed words: (index << low, [bag << position_bits,] position).
  struct Words {
    int position_bits, bag_bits;  // bag_bits 0: no bag in the word
    int low() const noexcept { return position_bits + bag_bits; }
  };

  // put(k, word) for the word of each position k in [lo, hi), in order.
  template <class B, class Put>
  SPARSEOPT_ALWAYS_INLINE void pack_words(const Words& layout, const I* indices, const B* indptr,
                                          std::int64_t num_bags, std::int64_t lo, std::int64_t hi,
                                          Put&& put) const noexcept {
    const int low = layout.low(), position_bits = layout.position_bits;
    if (layout.bag_bits == 0) {
      for (std::int64_t k = lo; k < hi; ++k) put(k, (std::uint64_t(indices[k]) << low) | std::uint64_t(k));
      return;
    }
    // The bag of position lo: the last bag that starts at or before it (empty ones skipped).
    auto b = static_cast<std::int64_t>(std::upper_bound(indptr, indptr + num_bags + 1, static_cast<B>(lo)) - indptr) - 1;
    // A bag at a time, so that the words of a bag are packed by a loop without a test of its
    // end per position (a third of a grouping's time when there was one). indptr[num_bags] = n
    // >= hi, so b stays below num_bags while k < hi.
    for (std::int64_t k = lo; k < hi; ++b) {
      const std::int64_t end = std::min(hi, static_cast<std::int64_t>(indptr[b + 1]));
      const std::uint64_t bag = std::uint64_t(b) << position_bits;
      for (; k < end; ++k) put(k, (std::uint64_t(indices[k]) << low) | bag | std::uint64_t(k));
    }
  }

  // How many rows start among sorted words [lo, hi): where the index (the bits from low up)
  // differs from the word before, and at position 0 (or at lo, with row_at_lo), as read_words
  // numbers them, so that a team can number its parts' rows before it reads them.
  SPARSEOPT_ALWAYS_INLINE static std::int64_t row_starts(const std::uint64_t* SPARSEOPT_RESTRICT sorted,
                                                         std::int64_t lo, std::int64_t hi, int low,
                                                         bool row_at_lo) noexcept {
    std::int64_t starts = 0;
    for (std::int64_t k = lo; k < hi; ++k)
      starts += k == 0 || (row_at_lo && k == lo) || (sorted[k] >> low) != (sorted[k - 1] >> low);
    return starts;
  }

  // One pass over sorted words [lo, hi): positions, bags (bag_of: null when the words hold
  // none), and the rows starting there with their bounds, numbered from u. Returns the next
  // row's number. Without a branch on "a new row starts here", which repeats (Zipf-like
  // indices) make unpredictable: a word that starts no row writes its row and bound to a spare
  // slot (the next row's slot would be another thread's first on a team).
  SPARSEOPT_ALWAYS_INLINE std::int64_t read_words(const Words& layout,
                                                  const std::uint64_t* SPARSEOPT_RESTRICT sorted, std::int64_t lo,
                                                  std::int64_t hi, std::int64_t u,
                                                  std::int64_t* SPARSEOPT_RESTRICT bag_of,
                                                  bool row_at_lo = false) noexcept {
    const int low = layout.low(), position_bits = layout.position_bits;
    const std::uint64_t position_mask = position_bits ? (~std::uint64_t(0) >> (64 - position_bits)) : 0;
    const std::uint64_t bag_mask = layout.bag_bits ? (~std::uint64_t(0) >> (64 - layout.bag_bits)) : 0;
    std::int64_t* SPARSEOPT_RESTRICT positions = order.data();
    I* SPARSEOPT_RESTRICT unique = rows.data();
    std::int64_t* SPARSEOPT_RESTRICT bounds = offsets.data();
    I spare_row;
    std::int64_t spare_bound;
    if (lo >= hi) return u;
    std::uint64_t previous = lo == 0 || row_at_lo ? ~(sorted[lo] >> low) : sorted[lo - 1] >> low;
    for (std::int64_t k = lo; k < hi; ++k) {
      const std::uint64_t key = sorted[k];
      positions[k] = std::int64_t(key & position_mask);
      if (bag_of) bag_of[k] = std::int64_t((key >> position_bits) & bag_mask);
      const std::uint64_t r = key >> low;
      const bool starts_row = r != previous;
      *(starts_row ? unique + u : &spare_row) = static_cast<I>(r);
      *(starts_row ? bounds + u : &spare_bound) = k;
      u += starts_row;
      previous = r;
    }
    return u;
  }

  // group()'s packed path on a team of threads (the same plan, word for word): each thread
  // packs the words of its share of the positions; per radix digit, each counts its share's
  // digits, then scatters its share after the shares before it (so equal digits keep their
  // order, as in the one-thread sort); each then reads its share of the sorted words, its rows
  // numbered after those of the shares before it. Returns the number of rows.
  template <class B>
  std::int64_t group_by_team(const I* indices, std::int64_t n, const B* indptr, std::int64_t num_bags,
                             std::int64_t* bag_of, const Words& layout, int index_bits, int threads) {
    constexpr int digit_bits = detail::radix_digit_bits;
    constexpr std::size_t buckets = std::size_t(1) << digit_bits;
    const int low_bits = layout.low();
    const int digits = (index_bits + digit_bits - 1) / digit_bits;
    keys_.resize(static_cast<std::size_t>(n));
    tmp_.resize(static_cast<std::size_t>(n));
    // Each thread's counts and starts a line apart from the last's (2048 counts apart, they all
    // fell in one L1 set).
    constexpr std::size_t stride = buckets + 8;
    team_counts_.resize(2 * static_cast<std::size_t>(threads) * stride);
    team_rows_.assign(static_cast<std::size_t>(threads) + 1, 0);
    std::uint64_t* const words = keys_.data();
    std::uint64_t* const spare = tmp_.data();
    std::size_t* const counts = team_counts_.data();
    std::int64_t* const first_row = team_rows_.data();
    detail::run_team(threads, [&](int t, int team, auto sync) {
      detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // BMI2's shifts (simd.hpp)
        const std::int64_t lo = detail::team_share(n, t, team), hi = detail::team_share(n, t + 1, team);
        pack_words(layout, indices, indptr, num_bags, lo, hi,
                   [words](std::int64_t k, std::uint64_t word) SPARSEOPT_INLINE_BODY { words[k] = word; });
        std::uint64_t* from = words;
        std::uint64_t* to = spare;
        std::size_t* const mine = counts + static_cast<std::size_t>(t) * stride;  // this share's counts
        std::size_t* const next = counts + static_cast<std::size_t>(team + t) * stride;  // and starts
        for (int d = 0; d < digits; ++d) {
          const int shift = low_bits + d * digit_bits;
          {
            std::size_t* SPARSEOPT_RESTRICT c = mine;
            const std::uint64_t* SPARSEOPT_RESTRICT f = from;
            std::fill(c, c + buckets, std::size_t(0));
            for (std::int64_t k = lo; k < hi; ++k) ++c[(f[k] >> shift) & (buckets - 1)];
          }
          sync();
          // Where this share's words of each digit go: after every smaller digit's, and after
          // this digit's words of the shares before it.
          std::size_t start = 0;
          for (std::size_t bucket = 0; bucket < buckets; ++bucket) {
            std::size_t before = 0, all = 0;
            for (int s = 0; s < team; ++s) {
              const std::size_t c = counts[static_cast<std::size_t>(s) * stride + bucket];
              before += s < t ? c : 0;
              all += c;
            }
            next[bucket] = start + before;
            start += all;
          }
          {
            std::size_t* SPARSEOPT_RESTRICT at = next;
            const std::uint64_t* SPARSEOPT_RESTRICT f = from;
            std::uint64_t* SPARSEOPT_RESTRICT out = to;
            for (std::int64_t k = lo; k < hi; ++k) out[at[(f[k] >> shift) & (buckets - 1)]++] = f[k];
          }
          sync();  // every word in place, and every share's counts read, before the next digit
          std::swap(from, to);
        }
        first_row[t + 1] = row_starts(from, lo, hi, low_bits, false);
        sync();
        std::int64_t u = 0;
        for (int s = 0; s < t; ++s) u += first_row[s + 1];
        read_words(layout, from, lo, hi, u, bag_of);
      });
    });
    std::int64_t u = 0;
    for (int s = 0; s < threads; ++s) u += first_row[s + 1];
    return u;
  }

  // group()'s packed path on a team of threads (the same plan, word for word), each thread on
  // the words of one range of index values: the ranges split at quantiles of a sample of the
  // indices (set_ranges, which the caller has run). Each thread reads every index (a read
  // shares its cache lines between the cores; writes to the same lines would move them from
  // core to core, which made the team of group_by_team slower than one thread below 32,768
  // words), counts those below its range (where its words start), packs the words of its
  // range there in input order, sorts
  // them as the one-thread path sorts them all (sort_words) and reads them, its rows numbered
  // after those of the ranges below. Returns the number of rows.
  template <class B>
  std::int64_t group_by_range(const I* indices, std::int64_t n, const B* indptr, std::int64_t num_bags,
                              std::int64_t* bag_of, const Words& layout, int index_bits, int threads) {
    const auto ts = static_cast<std::size_t>(threads);
    // Range r's words at words[first + r, first + r + m) (first: the words of the ranges below,
    // m: its own): a spare word after each range, so that its packing loop can store every word
    // it reads without a branch and keep only those in range.
    keys_.resize(static_cast<std::size_t>(n) + ts);
    tmp_.resize(static_cast<std::size_t>(n) + ts);
    constexpr std::size_t stride = detail::sort_count_size + 8;  // each thread's counts a line apart
    team_counts_.resize(ts * stride);
    // Per range (a line apart): its first word, its words, the rows it starts, whether they
    // ended sorted in tmp_.
    constexpr std::size_t line = 8;
    team_rows_.assign(ts * line, 0);
    const std::int64_t* const split = split_.data();
    std::int64_t* const book = team_rows_.data();
    const int low_bits = layout.low();
    detail::run_team(threads, [&](int t, int team, auto sync) {
      // Thread t takes ranges t, t + team, ... (OpenMP may start fewer threads than asked).
      // AVX2's 64-bit compares count the indices below; BMI2's shifts pack and sort (simd.hpp).
      for (int r = t; r < threads; r += team) detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
        const std::int64_t lo = split[r];
        const auto width = std::uint64_t(split[r + 1] - lo);
        std::int64_t first = 0;
        for (std::int64_t k = 0; k < n; ++k) first += static_cast<std::int64_t>(indices[k]) < lo;
        std::uint64_t* const words = keys_.data() + first + r;
        std::uint64_t* const spare = tmp_.data() + first + r;
        std::int64_t m = 0;
        auto put = [&](std::int64_t k, std::uint64_t word) SPARSEOPT_INLINE_BODY {
          words[m] = word;  // kept when in range, else overwritten by the next
          m += std::uint64_t(static_cast<std::int64_t>(indices[k]) - lo) < width;
        };
        pack_words(layout, indices, indptr, num_bags, 0, n, put);
        std::size_t* counts = team_counts_.data() + static_cast<std::size_t>(t) * stride;
        const std::uint64_t* out = detail::sort_words(words, spare, static_cast<std::size_t>(m), low_bits, index_bits,
                                                      counts);
        // Ranges split between index values: a row starts at each range's first word.
        const std::int64_t starts = row_starts(out, 0, m, low_bits, true);
        std::int64_t* mine = book + static_cast<std::size_t>(r) * line;
        mine[0] = first;
        mine[1] = m;
        mine[2] = starts;
        mine[3] = out != words;
      });
      sync();
      for (int r = t; r < threads; r += team) detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
        const std::int64_t* mine = book + static_cast<std::size_t>(r) * line;
        std::int64_t u = 0;
        for (int q = 0; q < r; ++q) u += book[static_cast<std::size_t>(q) * line + 2];
        // read_words indexes by position in the plan: the range's words sit r words further on.
        const std::uint64_t* sorted = (mine[3] ? tmp_.data() : keys_.data()) + r;
        read_words(layout, sorted, mine[0], mine[0] + mine[1], u, bag_of, true);
      });
    });
    std::int64_t u = 0;
    for (std::size_t r = 0; r < ts; ++r) u += book[r * line + 2];
    return u;
  }

  // split_[1 .. threads - 1]: the index values where group_by_range's ranges start (range r:
  // [split_[r], split_[r + 1])), quantiles of up to range_samples indices spread evenly over
  // the positions; split_[0] = 0, split_[threads] = the largest int64. How the ranges fall does
  // not change the plan, only how evenly the threads share the work. Returns whether the
  // ranges pay: false when one would hold more than range_max_share of the sample (a row can
  // not be split between ranges, so one that most lookups hit leaves its thread nearly all the
  // sorting on top of reading every index: 0.9x one thread's time with 95% on one row).
  bool set_ranges(const I* indices, std::int64_t n, int threads) {
    const std::int64_t samples = std::min(n, range_samples);
    sample_.resize(static_cast<std::size_t>(samples));
    for (std::int64_t q = 0; q < samples; ++q)
      sample_[static_cast<std::size_t>(q)] = static_cast<std::int64_t>(indices[q * n / samples]);
    split_.assign(static_cast<std::size_t>(threads) + 1, 0);
    split_[static_cast<std::size_t>(threads)] = std::numeric_limits<std::int64_t>::max();
    auto from = sample_.begin();
    std::int64_t below_last = 0, most = 0;  // samples below the last split; the most in one range
    for (int r = 1; r < threads; ++r) {
      const std::int64_t target = samples * r / threads;
      const auto at = sample_.begin() + target;
      std::nth_element(from, at, sample_.end());
      from = at;
      // The quantile's copies (a hot row's lookups, a tenth of them under Zipf's law) go to the
      // range below or above it, whichever leaves the ranges more even.
      const std::int64_t v = *at;
      std::int64_t below = 0, upto = 0;
      for (const std::int64_t x : sample_) {
        below += x < v;
        upto += x <= v;
      }
      const bool up = target - below <= upto - target;
      const std::int64_t split = up ? v : v + 1;
      if (split > split_[static_cast<std::size_t>(r) - 1]) {
        const std::int64_t under = up ? below : upto;
        most = std::max(most, under - below_last);
        below_last = under;
      }
      split_[static_cast<std::size_t>(r)] = std::max(split_[static_cast<std::size_t>(r) - 1], split);
    }
    most = std::max(most, samples - below_last);
    return double(most) <= range_max_share * double(samples);
  }

  // bag_of[k] = the bag of position order[k]: each position's bag written in input order, then
  // gathered from scattered positions, prefetched far ahead so that the misses overlap.
  template <class B>
  void bags_by_gather(const B* indptr, std::int64_t num_bags, std::int64_t n, std::int64_t* SPARSEOPT_RESTRICT bag_of) {
    bag_at_.resize(static_cast<std::size_t>(n));
    std::int64_t* SPARSEOPT_RESTRICT at = bag_at_.data();
    for (std::int64_t b = 0; b < num_bags; ++b)
      for (auto p = static_cast<std::int64_t>(indptr[b]); p < static_cast<std::int64_t>(indptr[b + 1]); ++p) at[p] = b;
    const std::int64_t* SPARSEOPT_RESTRICT positions = order.data();
    constexpr std::int64_t ahead = 64;
    for (std::int64_t k = 0; k < n; ++k) {
      if (k + ahead < n) detail::prefetch_row(at + positions[k + ahead], 1);
      bag_of[k] = at[positions[k]];
    }
  }

  // A stable counting sort of the positions by index (all in [0, max_index]).
  void count_positions(const I* indices, std::int64_t n, std::int64_t max_index) {
    const std::int64_t num_values = max_index + 1;
    count_.assign(static_cast<std::size_t>(num_values + 1), 0);
    std::int64_t* SPARSEOPT_RESTRICT start = count_.data();
    for (std::int64_t k = 0; k < n; ++k) ++start[static_cast<std::int64_t>(indices[k]) + 1];
    rows.resize(static_cast<std::size_t>(num_values));
    offsets.resize(static_cast<std::size_t>(num_values + 1));
    I* SPARSEOPT_RESTRICT unique = rows.data();
    std::int64_t* SPARSEOPT_RESTRICT bounds = offsets.data();
    bounds[0] = 0;
    std::int64_t u = 0;
    for (std::int64_t r = 0; r < num_values; ++r) {
      if (start[r + 1] > 0) {
        unique[u] = static_cast<I>(r);
        bounds[u + 1] = bounds[u] + start[r + 1];
        ++u;
      }
      start[r + 1] += start[r];
    }
    rows.resize(static_cast<std::size_t>(u));
    offsets.resize(static_cast<std::size_t>(u + 1));
    order.resize(static_cast<std::size_t>(n));
    std::int64_t* SPARSEOPT_RESTRICT out = order.data();
    for (std::int64_t k = 0; k < n; ++k) out[start[static_cast<std::int64_t>(indices[k])]++] = k;
  }
};

// A new plan for one gradient (see CoalescePlan::build).
template <class I>
CoalescePlan<I> plan_coalesce(const I* indices, std::int64_t n, std::int64_t num_rows, int num_threads = 0) {
  CoalescePlan<I> plan;
  plan.build(indices, n, num_rows, num_threads);
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
  if (w == 0) return first;  // nothing to sum (and memcpy must not see a null scratch)
  std::memcpy(scratch, first, sizeof(T) * static_cast<std::size_t>(w));
  constexpr std::int64_t ahead = 8;  // repeats of a row are scattered over the input
  for (std::int64_t k = begin + 1; k < end; ++k) {
    if (k + ahead < end) prefetch_row(grad.value_row(plan.order[k + ahead]), w);
    const T* v = grad.value_row(plan.order[k]);
    for (std::int64_t j = 0; j < w; ++j) scratch[j] += v[j];
  }
  return scratch;
}

// The bytes of one array that ascending rows[0, n) spread over, at row_bytes a row (for
// far_batch()).
template <class I>
std::int64_t row_spread_bytes(const I* rows, std::int64_t n, std::int64_t row_bytes) noexcept {
  if (n == 0) return 0;
  return (static_cast<std::int64_t>(rows[n - 1]) - static_cast<std::int64_t>(rows[0]) + 1) * row_bytes;
}

// Calls update(row, g) for every row the gradient touches, g being that row's summed gradient,
// in parallel over rows. Each row is handled by exactly one thread, so any update that reads
// and writes only its own row gives the same bits for every thread count.
//
// Touched rows are scattered over a large table, so each one costs a memory round trip per
// state array; prefetch(row, level) asks for a row's arrays ahead of its update, far rows to L2
// and near ones to L1 (view.hpp's prefetch_ahead), so those trips overlap; the far ones in
// batches where the rows spread beyond the TLB's reach.
template <class T, class I, class Update, class Prefetch>
void for_each_row(const RowSparse<T, I>& grad, const CoalescePlan<I>& plan, int num_threads,
                  Update&& update, Prefetch&& prefetch) {
  // The gradient's value rows of a row are requested with its near hint (the first few).
  constexpr std::int64_t value_rows_ahead = 4;
  // Cost model for splitting rows between threads: each value row summed, plus the update of
  // a row (a few state arrays read and written). Zipf-like indices put thousands of repeats
  // on a few rows, so counting rows alone would leave one thread with most of the work.
  // Measured with opt.step on 16,384 raw lookups into 1M rows (uniform and Zipf, SGD, Adagrad,
  // row-wise Adagrad, Adam lazy and exact; Intel Xeon, 2 threads): 4 to 64 all within 2%.
  constexpr std::int64_t update_cost = 4;
  const int threads = resolve_threads(num_threads);
  const std::int64_t w = grad.row_width;
  const std::int64_t n = plan.size();
  // Allocated before the parallel region so nothing in it can fail half-way through.
  ThreadRows<T> scratch(threads, w);
  const std::int64_t batch = far_batch(row_spread_bytes(plan.rows.data(), n, w * std::int64_t(sizeof(T))));
  parallel_for(
      n, threads, (grad.size + n) * w,
      [&](std::int64_t u, int slot) {
        prefetch_ahead(u, n, [&](std::int64_t v, auto level) SPARSEOPT_INLINE_BODY {
          prefetch(static_cast<std::int64_t>(plan.rows[v]), level);
          if constexpr (std::is_same_v<decltype(level), PrefetchNear>) {
            const std::int64_t first = plan.offsets[v];
            const std::int64_t last = std::min(plan.offsets[v + 1], first + value_rows_ahead);
            for (std::int64_t k = first; k < last; ++k) prefetch_row(grad.value_row(plan.order[k]), w);
          }
        }, batch);
        T* own = scratch.row(slot);
        update(static_cast<std::int64_t>(plan.rows[u]), summed_row(grad, plan, u, own));
      },
      [&](std::int64_t u) { return plan.offsets[u] + update_cost * u; });
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
