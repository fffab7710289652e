// Sampling for sampled losses over embedding tables, seeded and deterministic:
//  - RandomStream: a splitmix64 stream (one seed, one sequence, on every platform);
//  - AliasTable: draws rows with probability proportional to given weights in O(1) per draw
//    (Vose's alias method), e.g. negatives from word counts^0.75 as word2vec does;
//  - draw_negatives: a positive row per item plus num_negatives rows drawn from an AliasTable;
//  - context_pairs: (center, context) pairs of token sequences within a (randomly shrunk)
//    window after dropping frequent tokens at random (word2vec's skip-gram, DeepWalk, item2vec).
// Every result is a function of the inputs and the seed alone: the same bits for any thread
// count. Inputs are checked before anything is written.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "errors.hpp"
#include "parallel.hpp"

namespace sparseopt {

namespace detail {

// splitmix64's output function: a bijective mix of 64 bits.
inline std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The high and low 64 bits of a * b.
inline void mul_wide(std::uint64_t a, std::uint64_t b, std::uint64_t& hi, std::uint64_t& lo) noexcept {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  const u128 p = u128(a) * u128(b);
  hi = std::uint64_t(p >> 64);
  lo = std::uint64_t(p);
#else
  const std::uint64_t a_lo = a & 0xffffffffULL, a_hi = a >> 32;
  const std::uint64_t b_lo = b & 0xffffffffULL, b_hi = b >> 32;
  const std::uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi, hl = a_hi * b_lo, hh = a_hi * b_hi;
  const std::uint64_t mid = (ll >> 32) + (lh & 0xffffffffULL) + (hl & 0xffffffffULL);
  hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
  lo = (mid << 32) | (ll & 0xffffffffULL);
#endif
}

}  // namespace detail

// A stream of 64-bit random numbers (splitmix64) started from `seed`; two seeds give unrelated
// streams. Not for cryptography.
class RandomStream {
 public:
  explicit RandomStream(std::uint64_t seed) noexcept : state_(detail::mix64(seed + 0x9e3779b97f4a7c15ULL)) {}

  std::uint64_t next() noexcept { return detail::mix64(state_ += 0x9e3779b97f4a7c15ULL); }

  // Uniform in [0, n) for n >= 1 (the high word of next() * n: bias below n / 2^64).
  std::uint64_t below(std::uint64_t n) noexcept {
    std::uint64_t hi, lo;
    detail::mul_wide(next(), n, hi, lo);
    return hi;
  }

  // Uniform in [0, 1), 53 random bits.
  double uniform() noexcept { return double(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

// Draws i in [0, size) with probability weights[i] / sum(weights), O(1) per draw.
class AliasTable {
 public:
  AliasTable() = default;

  // weights: n finite, non-negative numbers with a positive sum (checked: invalid_argument).
  AliasTable(const double* weights, std::int64_t n) {
    detail::require(n >= 1, "weights must hold at least one value");
    double total = 0.0;
    for (std::int64_t i = 0; i < n; ++i) {
      detail::require(std::isfinite(weights[i]) && weights[i] >= 0.0, "weights[", i, "] = ",
                      weights[i], "; weights must be finite and >= 0");
      total += weights[i];
    }
    detail::require(total > 0.0 && std::isfinite(total),
                    "weights must have a positive, finite sum, got ", total);
    weights_.assign(weights, weights + n);
    build(total);
  }

  std::int64_t size() const noexcept { return static_cast<std::int64_t>(columns_.size()); }
  const std::vector<double>& weights() const noexcept { return weights_; }
  // Column i draws i with probability probability(i), else alias(i).
  double probability(std::int64_t i) const noexcept { return columns_[i].probability; }
  std::int64_t alias(std::int64_t i) const noexcept { return columns_[i].alias; }

  // One draw: a column uniformly (the high word of r * size) and a coin against its
  // probability (the low word, the fraction left over), from a single random number.
  std::int64_t draw(RandomStream& rng) const noexcept {
    std::uint64_t column, fraction;
    detail::mul_wide(rng.next(), std::uint64_t(columns_.size()), column, fraction);
    const double coin = double(fraction >> 11) * 0x1.0p-53;
    const Column& c = columns_[column];
    return coin < c.probability ? std::int64_t(column) : c.alias;
  }

 private:
  struct Column {  // together, so that a draw reads one place in memory
    double probability;  // of keeping the column's own index
    std::int64_t alias;  // the other index of the column
  };
  std::vector<double> weights_;  // as given (kept so the table can be saved and rebuilt)
  std::vector<Column> columns_;

  // Vose's alias method; the work lists are processed in index order, so the table depends on
  // the weights alone.
  void build(double total) {
    const std::int64_t n = static_cast<std::int64_t>(weights_.size());
    columns_.resize(static_cast<std::size_t>(n));
    std::vector<double> scaled(static_cast<std::size_t>(n));
    std::vector<std::int64_t> small, large;
    for (std::int64_t i = 0; i < n; ++i) {
      columns_[i] = Column{1.0, i};
      scaled[i] = weights_[i] * (double(n) / total);
      (scaled[i] < 1.0 ? small : large).push_back(i);
    }
    std::reverse(small.begin(), small.end());  // pop_back takes the lowest index first
    std::reverse(large.begin(), large.end());
    std::int64_t last_large = 0;
    while (!small.empty() && !large.empty()) {
      const std::int64_t s = small.back(), l = large.back();
      small.pop_back();
      columns_[s] = Column{scaled[s], l};
      last_large = l;
      scaled[l] = (scaled[l] + scaled[s]) - 1.0;
      if (scaled[l] < 1.0) {
        large.pop_back();
        small.push_back(l);
      }
    }
    // Whatever is left holds (up to rounding) probability 1 of itself, as initialised -- except
    // a row of weight 0 left over by rounding, which must never be drawn.
    for (const std::int64_t s : small)
      if (weights_[s] == 0.0) columns_[s] = Column{0.0, last_large};
  }
};

namespace detail {

// Throws index_error naming `name`[k] for the first value outside [0, num_rows).
template <class I>
void check_rows(const I* rows, std::int64_t n, std::int64_t num_rows, const char* name,
                const char* table_name, std::int64_t columns = 0) {
  for (std::int64_t k = 0; k < n; ++k) {
    const auto r = static_cast<std::int64_t>(rows[k]);
    if (r >= 0 && r < num_rows) continue;
    const std::string where = columns > 0 ? concat(k / columns, ", ", k % columns) : concat(k);
    throw index_error(concat(name, "[", where, "] = ", r, " is out of range for ", table_name,
                             " of ", num_rows, " rows; it must be in [0, ", num_rows, ")"));
  }
}

// The stream of item `item` of a call with `seed`: items are independent of one another, so
// a parallel loop over items gives the same draws for any thread count.
inline RandomStream item_stream(std::uint64_t seed, std::int64_t item) noexcept {
  return RandomStream(mix64(seed) ^ mix64(std::uint64_t(item) + 0x632be59bd9b4e019ULL));
}

// The candidates of n items fill n x (1 + num_negatives) ids of `id_bytes` each: checks that
// this count (and its byte size, which array strides need) fits in a signed 64-bit integer.
inline void require_draw_size(std::int64_t n, std::int64_t num_negatives, std::size_t id_bytes) {
  require(num_negatives >= 0, "num_negatives must be >= 0, got ", num_negatives);
  constexpr std::int64_t most = std::numeric_limits<std::int64_t>::max();
  // 8 bytes at least: the kernel's work estimate counts 8 units per id.
  const std::int64_t unit = std::max<std::int64_t>(std::int64_t(id_bytes), 8);
  const std::int64_t per_item_limit = most / unit / std::max<std::int64_t>(n, 1);
  require(num_negatives < per_item_limit, "num_negatives = ", num_negatives,
          " is too large: ", n, " items x (1 + num_negatives) candidates do not fit in "
          "memory; pass a num_negatives below ", per_item_limit);
}

}  // namespace detail

// Draws the sampled candidates of n items: out[b * (1 + num_negatives)] = positives[b], then
// num_negatives rows drawn from `table` (with exclude_positive, a draw equal to the positive
// is drawn again, up to 64 times). positives must be in [0, table.size()). Item b's draws
// depend on (seed, b) only.
template <class I>
void draw_negatives(const AliasTable& table, const I* positives, std::int64_t n,
                    std::int64_t num_negatives, std::uint64_t seed, bool exclude_positive,
                    I* out, int num_threads = 0) {
  const int threads = detail::resolve_threads(num_threads);
  detail::require(n >= 0, "the number of positives must be >= 0, got ", n);
  detail::require_draw_size(n, num_negatives, sizeof(I));
  detail::require(table.size() >= 1, "the sampler is empty");
  detail::check_rows(positives, n, table.size(), "positives", "the sampler's table");
  const std::int64_t k = 1 + num_negatives;
  constexpr int max_redraws = 64;
  detail::parallel_for(n, threads, n * k * 8, [&](std::int64_t b, int) {
    RandomStream rng = detail::item_stream(seed, b);
    I* row = out + b * k;
    const I positive = positives[b];
    row[0] = positive;
    for (std::int64_t j = 1; j < k; ++j) {
      std::int64_t r = table.draw(rng);
      for (int t = 0; exclude_positive && r == std::int64_t(positive) && t < max_redraws; ++t)
        r = table.draw(rng);
      row[j] = static_cast<I>(r);
    }
  });
}

// Options of context_pairs.
struct ContextOptions {
  std::int64_t window = 5;      // pairs up to `window` positions apart
  bool shrink_window = true;    // each center draws its window uniformly from 1..window
  std::uint64_t seed = 0;

  void validate() const { detail::require(window >= 0, "window must be >= 0, got ", window); }
};

// (center, context) pairs of token sequences, word2vec's skip-gram sampling:
//  1. each token t is kept with probability keep_probability[t] (null: all kept; >= 1 always,
//     <= 0 or NaN never), as word2vec's and gensim's `sample` do; dropped tokens are removed,
//     so the window reaches further;
//  2. each kept token i of a sentence is a center; with shrink_window it draws b uniformly in
//     [0, window) and pairs with the kept tokens j != i of its sentence at distance at most
//     window - b (without: at most window), in order of j.
// Sentences are tokens[offsets[s], offsets[s + 1]) (offsets: num_sentences + 1 values, 0 first,
// n last, non-decreasing; null: one sentence). Tokens must be >= 0, and < vocab_size when
// keep_probability (vocab_size values) is given. The random draws are one stream: first the
// keep draws in token order, then the window draws in center order.
template <class I>
void context_pairs(const I* tokens, std::int64_t n, const std::int64_t* offsets,
                   std::int64_t num_sentences, const double* keep_probability,
                   std::int64_t vocab_size, const ContextOptions& options, std::vector<I>& centers,
                   std::vector<I>& contexts) {
  options.validate();
  detail::require(n >= 0, "the number of tokens must be >= 0, got ", n);
  if (offsets) {
    detail::require(num_sentences >= 0, "offsets must hold at least one value");
    detail::require(offsets[0] == 0 && offsets[num_sentences] == n,
                    "offsets must start at 0 and end at len(tokens) = ", n, ", got ", offsets[0],
                    " and ", offsets[num_sentences]);
    for (std::int64_t s = 0; s < num_sentences; ++s)
      detail::require(offsets[s] <= offsets[s + 1], "offsets must be non-decreasing, but offsets[",
                      s, "] = ", offsets[s], " > offsets[", s + 1, "] = ", offsets[s + 1]);
  }
  if (keep_probability) {
    detail::check_rows(tokens, n, vocab_size, "tokens", "keep_probability");
  } else {
    for (std::int64_t k = 0; k < n; ++k)
      if (tokens[k] < 0)
        throw index_error(detail::concat("tokens[", k, "] = ", std::int64_t(tokens[k]),
                                         " is negative; tokens must be >= 0"));
  }

  RandomStream rng(options.seed);
  std::vector<I> kept;
  std::vector<std::int64_t> kept_offsets{0};
  kept.reserve(static_cast<std::size_t>(n));
  const std::int64_t sentences = offsets ? num_sentences : 1;
  for (std::int64_t s = 0; s < sentences; ++s) {
    const std::int64_t begin = offsets ? offsets[s] : 0, end = offsets ? offsets[s + 1] : n;
    for (std::int64_t k = begin; k < end; ++k)
      if (!keep_probability || rng.uniform() < keep_probability[tokens[k]]) kept.push_back(tokens[k]);
    kept_offsets.push_back(static_cast<std::int64_t>(kept.size()));
  }
  const std::int64_t window = options.window;
  centers.clear();
  contexts.clear();
  if (window == 0) return;
  // Two passes over the same random draws: the first counts the pairs, so the output is
  // allocated once at its exact size (a bound such as len(kept) * 2 * window can be far larger
  // than what exists, or overflow); the second writes them.
  auto each_center = [&](RandomStream stream, auto&& visit) {
    for (std::int64_t s = 0; s < sentences; ++s) {
      const std::int64_t begin = kept_offsets[s], end = kept_offsets[s + 1];
      for (std::int64_t i = begin; i < end; ++i) {
        std::int64_t reach =
            options.shrink_window ? window - std::int64_t(stream.below(std::uint64_t(window))) : window;
        reach = std::min(reach, end - begin);  // no farther than the sentence: no overflow
        visit(i, std::max(begin, i - reach), std::min(end, i + reach + 1));
      }
    }
  };
  std::size_t total = 0;
  each_center(rng, [&](std::int64_t, std::int64_t lo, std::int64_t hi) {
    total += static_cast<std::size_t>(hi - lo - 1);
  });
  centers.reserve(total);
  contexts.reserve(total);
  each_center(rng, [&](std::int64_t i, std::int64_t lo, std::int64_t hi) {
    for (std::int64_t j = lo; j < hi; ++j) {
      if (j == i) continue;
      centers.push_back(kept[i]);
      contexts.push_back(kept[j]);
    }
  });
}

}  // namespace sparseopt
