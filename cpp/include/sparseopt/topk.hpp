// Top-k along rows: the k best-ranked elements of each row and their positions, as meProp
// needs them (the k largest |gradients| of each output row) and as torch.topk gives them.
//
//   sparseopt::TopkOptions options;            // largest = true, magnitude = false, sorted = true
//   options.magnitude = true;                  // rank by |x|, return the signed values
//   sparseopt::topk_rows(x, rows, n, k, values, indices, options, /*num_threads=*/0);
//   sparseopt::topk_row(x_row, n, k, values_row, indices_row, options);   // inside your own loop
//
// Ranking (the same for every thread count, and a total order, so the selected set is unique):
//   - an element ranks ahead of another when its key is better, or the keys are equal and its
//     index is lower (ties: the lower index wins, and comes first in sorted output);
//   - the key is x, or |x| with magnitude; "better" is larger, or smaller with largest = false;
//   - NaN (of any sign or payload) is larger than every number, as in torch.topk: it is chosen
//     first with largest = true and last with largest = false; |NaN| is NaN;
//   - -0.0 and 0.0 are equal (their index decides), as in IEEE comparison and torch.
// Returned values are the input elements themselves (sign of zero and NaN payload kept).
//
// Output order:
//   - sorted = true: best first (descending key for largest, ascending for smallest), ties by
//     ascending index;
//   - sorted = false: the same k elements in the array order of the bounded heap that selected
//     them (worst-ranked first). It depends only on the row, k and the options, never on
//     num_threads. Rows of topk_split_min_n elements or more are always returned sorted
//     (those may be split across threads; sorting keeps them thread-count independent).
//
// Cost: a first pass over the start of each row finds a bar that at least k elements reach
// (k <= 128), then one pass with vectorised compares against the current k-th best skips
// every element that cannot enter the bounded heap; for random data only a little more than
// k elements ever touch it (a heap filled from the first k elements would let in about
// k (1 + ln(n / k))). O(n log k) time at worst, O(k) memory: the heap lives in the caller's
// output buffers and nothing is allocated per row.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "config.hpp"
#include "errors.hpp"
#include "parallel.hpp"
#include "view.hpp"

#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#include <emmintrin.h>
#define SPARSEOPT_TOPK_SSE2 1
#else
#define SPARSEOPT_TOPK_SSE2 0
#endif

namespace sparseopt {

struct TopkOptions {
  bool largest = true;     // the k largest keys (false: the k smallest)
  bool magnitude = false;  // rank by |x|; the signed values are returned
  bool sorted = true;      // best first; false: heap order (see the top of this header)
};

// parallel_for's work unit is one streamed element update; an element of a top-k costs about
// three (the pre-pass, the filtered scan and the heap), so rows of ~11k elements in all are
// worth a second thread. Measured on 2 cores, rows of 500, k = 20, 1 -> 2 threads: 50 rows
// 18.8 -> 10.1 us, 20 rows 7.2 -> 4.3 us, 10 rows 3.4 -> 3.6 us (a loss).
inline constexpr std::int64_t topk_work_per_element = 3;

// Rows at least this long may be split across threads (and are therefore always returned in
// sorted order, see above).
inline constexpr std::int64_t topk_split_min_n = std::int64_t(1) << 16;

namespace detail {

template <class T>
using key_bits_t = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// The ranking of one option set: an unsigned key per value whose order is the rank order
// (larger key = ranks ahead), and a cheap conservative filter for the scan.
template <class T, bool Largest, bool Magnitude>
struct TopkRank {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "top-k takes float or double");
  using U = key_bits_t<T>;
  static constexpr bool largest = Largest, magnitude = Magnitude;
  static constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  static constexpr U inf = sizeof(T) == 4 ? U(0x7F800000u) : U(0x7FF0000000000000ull);

  // bits, key and ahead also compile for the device (SPARSEOPT_HD): the CUDA top-k ranks alike.
  SPARSEOPT_HD static U bits(T v) noexcept {
    U u;
    std::memcpy(&u, &v, sizeof u);
    return u;
  }

  // Monotone map to unsigned integers: all NaNs above +inf (one key), -0.0 == 0.0. Branch
  // free for ordinary numbers (random signs would defeat a branch predictor).
  SPARSEOPT_HD static U key(T v) noexcept {
    const U u = bits(v);
    const U a = u & ~sign;
    U k;
    if (Magnitude) {
      k = a > inf ? inf + 1 : a;
    } else {
      const U negative = U(0) - (u >> (8 * sizeof(U) - 1));  // all ones for a set sign bit
      k = u ^ (negative | sign);  // negatives: flip every bit; positives: set the sign bit
      k = a == 0 ? sign : k;
      k = a > inf ? ~U(0) : k;
    }
    return Largest ? k : ~k;
  }

  // The best key there is: once the k-th best has it, nothing later can enter.
  static U best_key() noexcept {
    if (Largest) return key(std::numeric_limits<T>::quiet_NaN());
    return key(Magnitude ? T(0) : -std::numeric_limits<T>::infinity());
  }

  SPARSEOPT_HD static bool ahead(U ka, std::int64_t ia, U kb, std::int64_t ib) noexcept {
    return ka > kb || (ka == kb && ia < ib);
  }

  // What the filter compares: x, or |x|.
  static T score(T v) noexcept {
    if (!Magnitude) return v;
    U u = bits(v) & ~sign;
    std::memcpy(&v, &u, sizeof v);
    return v;
  }

  // True whenever x may rank ahead of an element whose score is t: every element that ranks
  // ahead passes (NaNs may pass too, and are then judged by their key). t = NaN passes all.
  static bool may_beat(T x, T t) noexcept {
    return Largest ? !(score(x) <= t) : !(score(x) >= t);
  }

  // The better of two scores that are not NaN.
  static T better(T a, T b) noexcept { return Largest ? (a > b ? a : b) : (a < b ? a : b); }
  static T worst_score() noexcept {
    return Largest ? -std::numeric_limits<T>::infinity() : std::numeric_limits<T>::infinity();
  }
};

inline int lowest_bit(unsigned m) noexcept {  // m != 0
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_ctz(m);
#else
  int b = 0;
  while (!(m & 1u)) { m >>= 1; ++b; }
  return b;
#endif
}

// --- SIMD helpers (SSE2 is part of x86-64, so no run-time dispatch is needed) ---------------
#if SPARSEOPT_TOPK_SSE2
template <class T> struct TopkSimd;

template <>
struct TopkSimd<float> {
  using V = __m128;
  static constexpr int lanes = 4;
  static V load(const float* p) noexcept { return _mm_loadu_ps(p); }
  static V set1(float t) noexcept { return _mm_set1_ps(t); }
  static V abs(V v) noexcept { return _mm_andnot_ps(_mm_set1_ps(-0.0f), v); }
  static V not_le(V a, V b) noexcept { return _mm_cmpnle_ps(a, b); }
  static V not_ge(V a, V b) noexcept { return _mm_cmpnge_ps(a, b); }
  static V or_(V a, V b) noexcept { return _mm_or_ps(a, b); }
  // a if b is NaN (SSE's max/min return their second operand when either is NaN)
  static V max(V a, V b) noexcept { return _mm_max_ps(b, a); }
  static V min(V a, V b) noexcept { return _mm_min_ps(b, a); }
  static V ge(V a, V b) noexcept { return _mm_cmpge_ps(a, b); }
  static V le(V a, V b) noexcept { return _mm_cmple_ps(a, b); }
  static unsigned mask(V v) noexcept { return unsigned(_mm_movemask_ps(v)); }
  static void store(float* p, V v) noexcept { _mm_storeu_ps(p, v); }
  // Adds the true lanes of a compare mask (all ones = -1) to per-lane counters.
  static __m128i count(__m128i acc, V m) noexcept { return _mm_sub_epi32(acc, _mm_castps_si128(m)); }
  static std::int64_t total(__m128i acc) noexcept {
    std::int32_t c[4];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), acc);
    return std::int64_t(c[0]) + c[1] + c[2] + c[3];
  }
};

template <>
struct TopkSimd<double> {
  using V = __m128d;
  static constexpr int lanes = 2;
  static V load(const double* p) noexcept { return _mm_loadu_pd(p); }
  static V set1(double t) noexcept { return _mm_set1_pd(t); }
  static V abs(V v) noexcept { return _mm_andnot_pd(_mm_set1_pd(-0.0), v); }
  static V not_le(V a, V b) noexcept { return _mm_cmpnle_pd(a, b); }
  static V not_ge(V a, V b) noexcept { return _mm_cmpnge_pd(a, b); }
  static V or_(V a, V b) noexcept { return _mm_or_pd(a, b); }
  static V max(V a, V b) noexcept { return _mm_max_pd(b, a); }
  static V min(V a, V b) noexcept { return _mm_min_pd(b, a); }
  static V ge(V a, V b) noexcept { return _mm_cmpge_pd(a, b); }
  static V le(V a, V b) noexcept { return _mm_cmple_pd(a, b); }
  static unsigned mask(V v) noexcept { return unsigned(_mm_movemask_pd(v)); }
  static void store(double* p, V v) noexcept { _mm_storeu_pd(p, v); }
  static __m128i count(__m128i acc, V m) noexcept { return _mm_sub_epi64(acc, _mm_castpd_si128(m)); }
  static std::int64_t total(__m128i acc) noexcept {
    std::int64_t c[2];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(c), acc);
    return c[0] + c[1];
  }
};
#endif

// A bounded heap of the best elements seen so far, as (key, index) pairs: the keys are kept in
// the bytes of the caller's values buffer (T and its key have the same size; memcpy keeps that
// well-defined) and the indices in the indices buffer, so no scratch memory is needed. The
// root [0] is the worst-ranked entry, the one the next better element evicts.
template <class R>
struct TopkHeap {
  using U = typename R::U;
  unsigned char* keys;
  std::int64_t* indices;
  std::int64_t size;

  U key(std::int64_t j) const noexcept {
    U k;
    std::memcpy(&k, keys + j * std::int64_t(sizeof(U)), sizeof k);
    return k;
  }
  void put(std::int64_t j, U k, std::int64_t i) noexcept {
    std::memcpy(keys + j * std::int64_t(sizeof(U)), &k, sizeof k);
    indices[j] = i;
  }

  // Puts (k, i) at position pos (whose old entry is discarded) and restores the heap below it.
  void sift_down(std::int64_t pos, U k, std::int64_t i) noexcept {
    for (;;) {
      std::int64_t child = 2 * pos + 1;
      if (child >= size) break;
      U kc = key(child);
      std::int64_t ic = indices[child];
      if (child + 1 < size) {
        const U k2 = key(child + 1);
        const std::int64_t i2 = indices[child + 1];
        if (R::ahead(kc, ic, k2, i2)) {  // the right child is the worse one
          ++child;
          kc = k2;
          ic = i2;
        }
      }
      if (!R::ahead(k, i, kc, ic)) break;  // the new entry is worse than both children
      put(pos, kc, ic);
      pos = child;
    }
    put(pos, k, i);
  }

  void build() noexcept {
    for (std::int64_t p = size / 2 - 1; p >= 0; --p) sift_down(p, key(p), indices[p]);
  }

  // Offers (k, i): it replaces the root when it ranks ahead of it.
  void offer(U k, std::int64_t i) noexcept {
    if (R::ahead(k, i, key(0), indices[0])) sift_down(0, k, i);
  }

  // Heap sort in place: best first.
  void sort() noexcept {
    for (std::int64_t last = size - 1; last > 0; --last) {
      const U k = key(last);
      const std::int64_t i = indices[last];
      put(last, key(0), indices[0]);
      --size;
      sift_down(0, k, i);
    }
  }
};

// Most elements of a row never enter the heap; the ones that do cost a mispredicted branch and
// a sift each, and a heap filled from the first k elements of the row lets about
// k (1 + ln(n / k)) of them in. A first pass over the start of the row gives a better
// threshold to fill it with, so that little more than k elements enter:
//   - split the window into buckets of `lanes` strided sub-buckets and take the best score of
//     each sub-bucket (NaNs skipped; one vector max per element, no branches);
//   - every such best is the score of a distinct element, so any tau with at least k of them
//     at least as good is a safe bar: the top-k then holds only elements whose key is
//     >= key(tau). tau is found by bisecting on the values, counting with compares.
// Returns the filter threshold for R::may_beat: the float just worse than tau (NaN, which
// passes everything, when the window is too short or k too large for the stack buffer).
inline constexpr std::int64_t topk_prepass_max_k = 128;

template <class R, class T>
T topk_fill_threshold(const T* SPARSEOPT_RESTRICT x, std::int64_t len, std::int64_t k) noexcept {
  constexpr T pass_all = std::numeric_limits<T>::quiet_NaN();
  constexpr std::int64_t lanes = 32 / std::int64_t(sizeof(T));  // two SSE vectors
  constexpr std::int64_t max_bests = 4 * topk_prepass_max_k + lanes;
  if (k > topk_prepass_max_k) return pass_all;
  // About 4k sub-bucket bests, in a window that stays in L1/L2 for the scan that follows.
  const std::int64_t window = std::min(len, std::max<std::int64_t>(32 * 1024 / sizeof(T), 64 * k));
  const std::int64_t buckets = (4 * k + lanes - 1) / lanes;
  const std::int64_t s = window / buckets / lanes * lanes;
  if (s < 2 * lanes) return pass_all;
  T bests[max_bests];
  const std::int64_t count = buckets * lanes;
#if SPARSEOPT_TOPK_SSE2
  using S = TopkSimd<T>;
  static_assert(2 * S::lanes == lanes, "two vectors per bucket row");
#endif
  for (std::int64_t b = 0; b < buckets; ++b) {
    const T* p = x + b * s;
    T* out = bests + b * lanes;
#if SPARSEOPT_TOPK_SSE2
    typename S::V a0 = S::set1(R::worst_score()), a1 = a0;
    for (std::int64_t j = 0; j < s; j += lanes) {
      typename S::V v0 = S::load(p + j), v1 = S::load(p + j + S::lanes);
      if (R::magnitude) {
        v0 = S::abs(v0);
        v1 = S::abs(v1);
      }
      if (R::largest) {
        a0 = S::max(a0, v0);
        a1 = S::max(a1, v1);
      } else {
        a0 = S::min(a0, v0);
        a1 = S::min(a1, v1);
      }
    }
    S::store(out, a0);
    S::store(out + S::lanes, a1);
#else
    for (std::int64_t l = 0; l < lanes; ++l) out[l] = R::worst_score();
    for (std::int64_t j = 0; j < s; j += lanes)
      for (std::int64_t l = 0; l < lanes; ++l) {
        const T v = R::score(p[j + l]);
        if (R::largest ? v > out[l] : v < out[l]) out[l] = v;  // false for NaN
      }
#endif
  }
  // Bisect for a tau that at least k bests reach (the worst best always qualifies).
  T lo = bests[0], hi = bests[0];
#if SPARSEOPT_TOPK_SSE2
  {
    typename S::V worst = S::load(bests), best = worst;
    for (std::int64_t j = S::lanes; j < count; j += S::lanes) {
      const typename S::V v = S::load(bests + j);
      worst = R::largest ? S::min(worst, v) : S::max(worst, v);
      best = R::largest ? S::max(best, v) : S::min(best, v);
    }
    T w[S::lanes], b[S::lanes];
    S::store(w, worst);
    S::store(b, best);
    for (int l = 0; l < S::lanes; ++l) {
      lo = R::better(lo, w[l]) == lo ? w[l] : lo;
      hi = R::better(hi, b[l]);
    }
  }
#else
  for (std::int64_t j = 1; j < count; ++j) {
    lo = R::better(lo, bests[j]) == lo ? bests[j] : lo;
    hi = R::better(hi, bests[j]);
  }
#endif
  for (int step = 0; step < 12 && std::isfinite(lo) && std::isfinite(hi); ++step) {
    const T mid = lo / 2 + hi / 2;
    if (!(R::largest ? (mid > lo && mid < hi) : (mid < lo && mid > hi))) break;
    std::int64_t reach = 0;
#if SPARSEOPT_TOPK_SSE2
    const typename S::V m = S::set1(mid);
    __m128i acc = _mm_setzero_si128();
    for (std::int64_t j = 0; j < count; j += S::lanes) {
      const typename S::V v = S::load(bests + j);
      acc = S::count(acc, R::largest ? S::ge(v, m) : S::le(v, m));
    }
    reach = S::total(acc);
#else
    for (std::int64_t j = 0; j < count; ++j) reach += R::largest ? bests[j] >= mid : bests[j] <= mid;
#endif
    if (reach < k) {
      hi = mid;
    } else {
      lo = mid;
      if (reach == k) break;  // as good as the k-th best, which is as far as it can go
    }
  }
  if (lo == R::worst_score()) return pass_all;
  return std::nextafter(lo, R::worst_score());
}

// Offers x[begin, end) of a row (indices relative to the row start) to the heap, whose
// capacity is k: elements that pass the threshold t fill it, then each element must beat the
// current k-th best. Blocks whose elements all fail the filter are skipped by a few vector
// compares; each element that passes is checked exactly.
template <class R, class T>
TopkHeap<R> topk_scan(const T* SPARSEOPT_RESTRICT x, std::int64_t begin, std::int64_t end,
                      std::int64_t k, T t, TopkHeap<R> heap) noexcept {
  const typename R::U best = R::best_key();
  bool filling = heap.size < k, done = false;
  auto take = [&](std::int64_t j) {
    const T v = x[j];
    if (!R::may_beat(v, t)) return;
    if (filling) {
      heap.put(heap.size++, R::key(v), j);
      if (heap.size < k) return;
      heap.build();
      filling = false;
    } else {
      heap.offer(R::key(v), j);
    }
    t = R::score(x[heap.indices[0]]);
    done = heap.key(0) == best;
  };
  std::int64_t i = begin;
#if SPARSEOPT_TOPK_SSE2
  using S = TopkSimd<T>;
  constexpr int block = 4 * S::lanes;
  for (; !done && i + block <= end; i += block) {
    const typename S::V tv = S::set1(t);
    auto load = [&](std::int64_t j) {
      const typename S::V v = S::load(x + j);
      return R::magnitude ? S::abs(v) : v;
    };
    const typename S::V v0 = load(i), v1 = load(i + S::lanes), v2 = load(i + 2 * S::lanes),
                        v3 = load(i + 3 * S::lanes);
    typename S::V c0, c1, c2, c3;
    if (R::largest) {  // !(x <= t)
      c0 = S::not_le(v0, tv); c1 = S::not_le(v1, tv); c2 = S::not_le(v2, tv); c3 = S::not_le(v3, tv);
    } else {           // !(x >= t)
      c0 = S::not_ge(v0, tv); c1 = S::not_ge(v1, tv); c2 = S::not_ge(v2, tv); c3 = S::not_ge(v3, tv);
    }
    unsigned m = S::mask(S::or_(S::or_(c0, c1), S::or_(c2, c3)));
    if (m == 0) continue;
    m = S::mask(c0) | (S::mask(c1) << S::lanes) | (S::mask(c2) << (2 * S::lanes)) |
        (S::mask(c3) << (3 * S::lanes));
    // The threshold only rises, so an element that failed it cannot pass a later one.
    while (m != 0 && !done) {
      const int b = lowest_bit(m);
      m &= m - 1;
      take(i + b);
    }
  }
#endif
  for (; !done && i < end; ++i) take(i);
  return heap;
}

// The top-k of x[begin, end) (end - begin >= k) as a full heap in values/indices (keys in the
// values buffer).
template <class R, class T>
TopkHeap<R> topk_range(const T* x, std::int64_t begin, std::int64_t end, std::int64_t k,
                       T* values, std::int64_t* indices) noexcept {
  const T t = topk_fill_threshold<R>(x + begin, end - begin, k);
  return topk_scan(x, begin, end, k, t,
                   TopkHeap<R>{reinterpret_cast<unsigned char*>(values), indices, 0});
}

// Replaces the keys in values[0, k) by the row's elements themselves.
template <class T>
void topk_values_from_indices(const T* x, std::int64_t k, T* values,
                              const std::int64_t* indices) noexcept {
  for (std::int64_t j = 0; j < k; ++j) {
    const T v = x[indices[j]];
    std::memcpy(values + j, &v, sizeof v);
  }
}

template <class R, class T>
void topk_row_ranked(const T* x, std::int64_t n, std::int64_t k, bool sorted, T* values,
                     std::int64_t* indices) noexcept {
  TopkHeap<R> heap = topk_range<R>(x, 0, n, k, values, indices);
  if (sorted || n >= topk_split_min_n) heap.sort();
  topk_values_from_indices(x, k, values, indices);
}

// Calls f(rank_tag) with the TopkRank type of the options.
template <class T, class F>
decltype(auto) with_rank(const TopkOptions& o, F&& f) {
  if (o.largest) {
    if (o.magnitude) return f(TopkRank<T, true, true>{});
    return f(TopkRank<T, true, false>{});
  }
  if (o.magnitude) return f(TopkRank<T, false, true>{});
  return f(TopkRank<T, false, false>{});
}

inline void require_topk_k(std::int64_t n, std::int64_t k) {
  require(n >= 0, "n (elements per row) must be >= 0, got ", n);
  require(k >= 1 && k <= n, "k must be in [1, n] where n = ", n,
          " is the length of the last axis, got k = ", k,
          n == 0 ? " (a row of 0 elements has no top-k)" : "");
}

// Unsafe core of topk_row (arguments already checked).
template <class T>
void topk_row_unchecked(const T* x, std::int64_t n, std::int64_t k, const TopkOptions& o,
                        T* values, std::int64_t* indices) noexcept {
  with_rank<T>(o, [&](auto rank) {
    topk_row_ranked<decltype(rank)>(x, n, k, o.sorted, values, indices);
  });
}

}  // namespace detail

// The top-k of one row x[0, n) into values[0, k) and indices[0, k) (positions in the row), in
// the order the options say (see the top of this header). Runs on the calling thread and
// allocates nothing, so it can be called from inside a parallel loop over rows. Throws
// sparseopt::invalid_argument (before writing) unless 1 <= k <= n, the pointers are set and
// the outputs overlap neither x nor each other.
template <class T>
void topk_row(const T* x, std::int64_t n, std::int64_t k, T* values, std::int64_t* indices,
              const TopkOptions& options = {}) {
  detail::require_topk_k(n, k);
  detail::require(x != nullptr && values != nullptr && indices != nullptr,
                  "topk_row: x, values and indices must not be null");
  const std::int64_t v_bytes = k * std::int64_t(sizeof(T)), i_bytes = k * std::int64_t(sizeof(std::int64_t));
  detail::require_disjoint(values, v_bytes, "values", indices, i_bytes, "indices");
  detail::require_disjoint(values, v_bytes, "values", x, n * std::int64_t(sizeof(T)), "x");
  detail::require_disjoint(indices, i_bytes, "indices", x, n * std::int64_t(sizeof(T)), "x");
  detail::topk_row_unchecked(x, n, k, options, values, indices);
}

// The top-k of each of `rows` rows: row r is x + r * x_stride (n elements) and its results go
// to values + r * out_stride and indices + r * out_stride (k elements each). A stride of 0
// means packed rows (x_stride = n, out_stride = k). Rows run in parallel on num_threads threads
// (0 = all available); a long row with few rows may be split into pieces whose results are
// merged. The result is bit for bit the same for every num_threads and equals topk_row's for
// each row. Throws sparseopt::invalid_argument before writing anything on bad arguments
// (k outside [1, n], strides too small, null pointers, overlapping buffers, num_threads < 0).
template <class T>
void topk_rows(const T* x, std::int64_t rows, std::int64_t n, std::int64_t k, T* values,
               std::int64_t* indices, const TopkOptions& options = {}, int num_threads = 0,
               std::int64_t x_stride = 0, std::int64_t out_stride = 0) {
  detail::require(rows >= 0, "rows must be >= 0, got ", rows);
  detail::require_topk_k(n, k);
  if (x_stride == 0) x_stride = n;
  if (out_stride == 0) out_stride = k;
  detail::require(x_stride >= n, "x_stride must be >= n = ", n, " (or 0 for packed rows), got ",
                  x_stride);
  detail::require(out_stride >= k, "out_stride must be >= k = ", k,
                  " (or 0 for packed rows), got ", out_stride);
  const int threads = detail::resolve_threads(num_threads);
  if (rows == 0) return;
  detail::require(x != nullptr && values != nullptr && indices != nullptr,
                  "topk_rows: x, values and indices must not be null");
  const std::int64_t x_bytes = ((rows - 1) * x_stride + n) * std::int64_t(sizeof(T));
  const std::int64_t v_bytes = ((rows - 1) * out_stride + k) * std::int64_t(sizeof(T));
  const std::int64_t i_bytes = ((rows - 1) * out_stride + k) * std::int64_t(sizeof(std::int64_t));
  detail::require_disjoint(values, v_bytes, "values", indices, i_bytes, "indices");
  detail::require_disjoint(values, v_bytes, "values", x, x_bytes, "x");
  detail::require_disjoint(indices, i_bytes, "indices", x, x_bytes, "x");

  // Pieces per row: 1 unless there are too few rows to keep the threads busy and each row is
  // long. Such rows are sorted whatever the split, so the split may depend on the threads.
  std::int64_t pieces = 1;
  if (threads > 1 && n >= topk_split_min_n && rows < 2 * std::int64_t(threads)) {
    const std::int64_t want = (2 * std::int64_t(threads) + rows - 1) / rows;
    const std::int64_t min_piece = std::max<std::int64_t>(16 * k, topk_split_min_n / 4);
    pieces = std::max<std::int64_t>(1, std::min(want, n / min_piece));
  }

  detail::with_rank<T>(options, [&](auto rank) {
    using R = decltype(rank);
    if (pieces == 1) {
      const std::int64_t work = rows * n * topk_work_per_element;
      detail::parallel_for(rows, threads, work, [&](std::int64_t r, int) {
        detail::topk_row_ranked<R>(x + r * x_stride, n, k, options.sorted,
                                   values + r * out_stride, indices + r * out_stride);
      });
      return;
    }
    // Allocated before the parallel region, so nothing in it can fail half-way through.
    const std::int64_t tasks = rows * pieces;
    std::vector<T> piece_values(static_cast<std::size_t>(tasks * k));
    std::vector<std::int64_t> piece_indices(static_cast<std::size_t>(tasks * k));
    detail::parallel_for(tasks, threads, rows * n, [&](std::int64_t task, int) {
      const std::int64_t r = task / pieces, p = task % pieces;
      const std::int64_t begin = n * p / pieces, end = n * (p + 1) / pieces;
      detail::topk_range<R>(x + r * x_stride, begin, end, k, piece_values.data() + task * k,
                            piece_indices.data() + task * k);
    });
    // Merge: the first piece's heap is a valid heap; offer it the others' entries. The
    // ranking is a total order, so the merged set is the row's top-k whatever the split.
    detail::parallel_for(rows, threads, rows * pieces * k, [&](std::int64_t r, int) {
      T* v = values + r * out_stride;
      std::int64_t* ix = indices + r * out_stride;
      const std::size_t first = static_cast<std::size_t>(r * pieces * k);
      std::memcpy(v, piece_values.data() + first, sizeof(T) * static_cast<std::size_t>(k));
      std::memcpy(ix, piece_indices.data() + first, sizeof(std::int64_t) * static_cast<std::size_t>(k));
      detail::TopkHeap<R> heap{reinterpret_cast<unsigned char*>(v), ix, k};
      const detail::TopkHeap<R> all{reinterpret_cast<unsigned char*>(piece_values.data() + first),
                                    piece_indices.data() + first, pieces * k};
      for (std::int64_t j = k; j < pieces * k; ++j) heap.offer(all.key(j), all.indices[j]);
      heap.sort();
      detail::topk_values_from_indices(x + r * x_stride, k, v, ix);
    });
  });
}

}  // namespace sparseopt
