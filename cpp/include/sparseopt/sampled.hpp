// Sampled logistic losses over embedding tables: the shape shared by skip-gram with negative
// sampling (word2vec), item2vec, DeepWalk and contrastive or triplet-style training with
// sampled negatives. A batch holds n items; item b pairs the anchor row anchors[b] of table A
// with k candidate rows candidates[b, j] of table B (A and B may be one table), each with a
// label y in [0, 1] (no labels: column 0 is the positive, y = 1, the others negatives, y = 0):
//
//   f = <A[anchors[b]], B[candidates[b, j]]>,   loss = sum over (b, j) of
//   softplus(f) - y f  (the sigmoid cross-entropy -y log s(f) - (1 - y) log(1 - s(f)))
//   d loss / d f = s(f) - y,  so the gradient of A's row is (s(f) - y) B's row and vice versa.
//
// Two ways to train with it:
//  - sampled_logistic_loss / SampledLogisticGrad: the loss and the gradients of both tables at
//    the current parameters, coalesced (unique rows ascending, repeats summed in input order)
//    to feed any optimizer step; the same bits for any thread count.
//  - sampled_logistic_sgd: a fused, in-place SGD pass as word2vec makes it: items in order;
//    for each, every candidate row is updated as soon as its term is computed and the anchor
//    row once after its k terms. One call runs on the calling thread and is deterministic.
//    Hogwild: several threads may run it on the same tables at once without locks (as word2vec
//    and gensim do); a row two threads update at the same moment may then lose one update or
//    read a half-updated row, and the results depend on timing. See sampled_logistic_sgd.
//
// Dot products add 8 interleaved partial sums in an order fixed by the row width (vectorised,
// no reassociation by the compiler); s(f) and the loss are computed in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "coalesce.hpp"
#include "errors.hpp"
#include "parallel.hpp"
#include "sampling.hpp"
#include "view.hpp"

namespace sparseopt {

// The items of one batch (see above). labels: n x k values in [0, 1], or null.
template <class T, class I>
struct SampledBatch {
  const I* anchors = nullptr;
  const I* candidates = nullptr;  // n x k, row-major
  const T* labels = nullptr;      // n x k, row-major, or null
  std::int64_t size = 0;          // n
  std::int64_t num_candidates = 0;  // k

  T label(std::int64_t b, std::int64_t j) const noexcept {
    return labels ? labels[b * num_candidates + j] : T(j == 0 ? 1 : 0);
  }
};

namespace detail {

// <a, b> over w elements with 8 interleaved partial sums combined pairwise.
template <class T>
inline T dot_lanes(const T* a, const T* b, std::int64_t w) noexcept {
  constexpr std::int64_t lanes = 8;
  T part[lanes] = {};
  std::int64_t j = 0;
  for (; j + lanes <= w; j += lanes)
    for (std::int64_t l = 0; l < lanes; ++l) part[l] += a[j + l] * b[j + l];
  for (std::int64_t l = 0; j < w; ++j, ++l) part[l] += a[j] * b[j];
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// s(f) and softplus(f) - y f for one term, from one exp.
struct LogisticTerm {
  double sigmoid;
  double loss;
};

inline LogisticTerm logistic_term(double f, double y) noexcept {
  const double e = std::exp(-std::fabs(f));
  const double s = f >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
  return {s, std::max(f, 0.0) + std::log1p(e) - y * f};
}

inline double logistic_sigmoid(double f) noexcept {
  const double e = std::exp(-std::fabs(f));
  return f >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}

template <class T>
std::int64_t table_bytes(const Table<T>& t) noexcept {
  return t.num_rows * t.row_width * std::int64_t(sizeof(T));
}

// Every check of a sampled-loss call, before anything is written. `writes`: the call updates
// the tables, which must then not share memory with the batch's arrays.
template <class T, class I>
void check_sampled(const Table<const T>& a, const Table<const T>& b,
                   const SampledBatch<T, I>& batch, bool writes) {
  require(batch.size >= 0, "the number of anchors must be >= 0, got ", batch.size);
  require(batch.num_candidates >= 0, "the number of candidates per anchor must be >= 0, got ",
          batch.num_candidates);
  require(a.row_width == b.row_width,
          "candidate_table must have rows of anchor_table's width ", a.row_width, ", got ",
          b.row_width);
  require(a.data != nullptr || a.num_rows * a.row_width == 0, "anchor_table is null");
  require(b.data != nullptr || b.num_rows * b.row_width == 0, "candidate_table is null");
  const bool same_table = a.data == b.data && a.num_rows == b.num_rows;
  if (!same_table)
    require_disjoint(a.data, table_bytes(a), "anchor_table", b.data, table_bytes(b),
                     "candidate_table");
  const std::int64_t n = batch.size, terms = batch.size * batch.num_candidates;
  check_rows(batch.anchors, n, a.num_rows, "anchors", "anchor_table");
  check_rows(batch.candidates, terms, b.num_rows, "candidates", "candidate_table",
             batch.num_candidates);
  if (batch.labels)
    for (std::int64_t t = 0; t < terms; ++t)
      require(batch.labels[t] >= T(0) && batch.labels[t] <= T(1), "labels[",
              t / batch.num_candidates, ", ", t % batch.num_candidates, "] = ", batch.labels[t],
              "; labels must be in [0, 1]");
  if (!writes) return;
  for (const Table<const T>* t : {&a, &b}) {
    const char* name = t == &a ? "anchor_table" : "candidate_table";
    require_disjoint(t->data, table_bytes(*t), name, batch.anchors,
                     n * std::int64_t(sizeof(I)), "anchors");
    require_disjoint(t->data, table_bytes(*t), name, batch.candidates,
                     terms * std::int64_t(sizeof(I)), "candidates");
    if (batch.labels)
      require_disjoint(t->data, table_bytes(*t), name, batch.labels,
                       terms * std::int64_t(sizeof(T)), "labels");
  }
}

// Loss of every term (summed per item into item_loss[b]) and, when coefficients is given,
// d loss / d f of every term; parallel over items.
template <class T, class I>
void sampled_terms(const Table<const T>& a, const Table<const T>& b,
                   const SampledBatch<T, I>& batch, int threads, double* item_loss,
                   T* coefficients) {
  const std::int64_t k = batch.num_candidates, w = a.row_width;
  parallel_for(batch.size, threads, batch.size * k * w, [&](std::int64_t i, int) {
    const T* x = a.row(static_cast<std::int64_t>(batch.anchors[i]));
    double sum = 0.0;
    for (std::int64_t j = 0; j < k; ++j) {
      const T* c = b.row(static_cast<std::int64_t>(batch.candidates[i * k + j]));
      const LogisticTerm term = logistic_term(double(dot_lanes(x, c, w)), double(batch.label(i, j)));
      sum += term.loss;
      if (coefficients) coefficients[i * k + j] = T(term.sigmoid - double(batch.label(i, j)));
    }
    item_loss[i] = sum;
  });
}

inline double sum_in_order(const std::vector<double>& values) noexcept {
  double total = 0.0;
  for (const double v : values) total += v;
  return total;
}

}  // namespace detail

// The batch's loss (sum over all terms) at the current parameters. Nothing is written.
template <class T, class I>
double sampled_logistic_loss(const Table<const T>& anchor_table,
                             const Table<const T>& candidate_table,
                             const SampledBatch<T, I>& batch, int num_threads = 0) {
  const int threads = detail::resolve_threads(num_threads);
  detail::check_sampled(anchor_table, candidate_table, batch, false);
  std::vector<double> item_loss(static_cast<std::size_t>(batch.size));
  detail::sampled_terms<T, I>(anchor_table, candidate_table, batch, threads, item_loss.data(),
                              nullptr);
  return detail::sum_in_order(item_loss);
}

// The loss and both tables' gradients, coalesced. compute() checks everything, evaluates the
// terms and groups the rows; write() then fills caller-owned outputs of the sizes compute()
// reports (anchor_rows() rows of A, candidate_rows() rows of B):
//   grad_A[r] = sum over items b with anchors[b] == r, in input order, of
//               sum over j of (s(f_bj) - y_bj) B[candidates[b, j]]
//   grad_B[r] = sum over terms (b, j) with candidates[b, j] == r, in input (row-major) order,
//               of (s(f_bj) - y_bj) A[anchors[b]]
// each accumulated from zero in the table's dtype. The same bits for any thread count.
template <class T, class I>
class SampledLogisticGrad {
 public:
  double compute(const Table<const T>& anchor_table, const Table<const T>& candidate_table,
                 const SampledBatch<T, I>& batch, int num_threads = 0) {
    const int threads = detail::resolve_threads(num_threads);
    detail::check_sampled(anchor_table, candidate_table, batch, false);
    a_ = anchor_table;
    b_ = candidate_table;
    batch_ = batch;
    const std::size_t terms = static_cast<std::size_t>(batch.size * batch.num_candidates);
    coefficients_.resize(terms);
    std::vector<double> item_loss(static_cast<std::size_t>(batch.size));
    detail::sampled_terms<T, I>(a_, b_, batch, threads, item_loss.data(), coefficients_.data());
    anchor_plan_.build(batch.anchors, batch.size, a_.num_rows, threads);
    candidate_plan_.build(batch.candidates, batch.size * batch.num_candidates, b_.num_rows, threads);
    return detail::sum_in_order(item_loss);
  }

  std::int64_t anchor_rows() const noexcept { return anchor_plan_.size(); }
  std::int64_t candidate_rows() const noexcept { return candidate_plan_.size(); }

  // Any output may be null to skip it.
  void write(I* anchor_rows_out, T* anchor_grad_out, I* candidate_rows_out,
             T* candidate_grad_out, int num_threads = 0) const {
    const int threads = detail::resolve_threads(num_threads);
    const std::int64_t w = a_.row_width, k = batch_.num_candidates;
    for (std::int64_t u = 0; anchor_rows_out && u < anchor_plan_.size(); ++u)
      anchor_rows_out[u] = anchor_plan_.rows[u];
    for (std::int64_t u = 0; candidate_rows_out && u < candidate_plan_.size(); ++u)
      candidate_rows_out[u] = candidate_plan_.rows[u];
    if (anchor_grad_out)
      detail::parallel_for(
          anchor_plan_.size(), threads, (batch_.size * k + anchor_plan_.size()) * w,
          [&](std::int64_t u, int) {
            T* g = anchor_grad_out + u * w;
            std::fill(g, g + w, T(0));
            for (std::int64_t p = anchor_plan_.offsets[u]; p < anchor_plan_.offsets[u + 1]; ++p) {
              const std::int64_t i = anchor_plan_.order[p];
              for (std::int64_t j = 0; j < k; ++j) {
                const T coef = coefficients_[i * k + j];
                const T* c = b_.row(static_cast<std::int64_t>(batch_.candidates[i * k + j]));
                for (std::int64_t e = 0; e < w; ++e) g[e] += coef * c[e];
              }
            }
          },
          [&](std::int64_t u) { return k * anchor_plan_.offsets[u] + u; });
    if (candidate_grad_out)
      detail::parallel_for(
          candidate_plan_.size(), threads, (batch_.size * k + candidate_plan_.size()) * w,
          [&](std::int64_t u, int) {
            T* g = candidate_grad_out + u * w;
            std::fill(g, g + w, T(0));
            for (std::int64_t p = candidate_plan_.offsets[u]; p < candidate_plan_.offsets[u + 1];
                 ++p) {
              const std::int64_t t = candidate_plan_.order[p];
              const T coef = coefficients_[t];
              const T* x = a_.row(static_cast<std::int64_t>(batch_.anchors[t / k]));
              for (std::int64_t e = 0; e < w; ++e) g[e] += coef * x[e];
            }
          },
          [&](std::int64_t u) { return candidate_plan_.offsets[u] + u; });
  }

 private:
  Table<const T> a_, b_;
  SampledBatch<T, I> batch_;
  std::vector<T> coefficients_;  // d loss / d f per term
  CoalescePlan<I> anchor_plan_, candidate_plan_;
};

namespace detail {

// Whether the k rows are all different and none is `anchor`: then no term of the item reads a
// row another term of the item writes, and the terms' dot products can all be taken first.
template <class T>
bool rows_independent(T* const* rows, std::int64_t k, const T* anchor) noexcept {
  for (std::int64_t j = 0; j < k; ++j) {
    if (rows[j] == anchor) return false;
    for (std::int64_t i = 0; i < j; ++i)
      if (rows[i] == rows[j]) return false;
  }
  return true;
}

// e += g c, then c += g x, in one pass over the row (c and e read once).
template <class T>
inline void update_candidate(T* SPARSEOPT_RESTRICT e, T* SPARSEOPT_RESTRICT c,
                             const T* SPARSEOPT_RESTRICT x, T g, std::int64_t w) noexcept {
  for (std::int64_t d = 0; d < w; ++d) {
    const T cd = c[d];
    e[d] += g * cd;
    c[d] = cd + g * x[d];
  }
}

}  // namespace detail

// One fused SGD pass over the batch, in place, word2vec's update order. For each item b in
// order, with x = A[anchors[b]] and a zeroed buffer e of the row width:
//   for j = 0 .. k-1:  c = B[candidates[b, j]];  g = lr * (y_bj - s(<x, c>))
//                      e += g c;   c += g x
//   x += e
// so a candidate row's later terms see its earlier updates, and the anchor row is updated once
// per item (with every term of the item computed at its value from before the item). g is
// computed in double and rounded to T. Returns the sum of the terms' losses, each at the
// values it was computed with (0 when compute_loss is false, which saves a log per term).
//
// Speed: when an item's candidate rows are all different (and, with one shared table, not
// its anchor row), no term reads what another writes, so the item's k dot products are taken
// first, side by side, then its k updates: the same arithmetic in the same order, the same
// bits, without waiting on each dot product in turn. Other items go term by term.
//
// Runs on the calling thread; the same inputs give the same bits. Hogwild (Niu et al., 2011):
// threads may call it concurrently on the same tables with different batches, without locks.
// Each element update is then a plain read-modify-write racing with the other thread's: an
// update of a row both threads touch at that moment can be lost or applied to a row the other
// thread is halfway through updating, and dot products may read half-updated rows. With many
// rows and few threads such collisions are rare and SGD tolerates them; the result is no longer
// deterministic.
template <class T, class I>
double sampled_logistic_sgd(const Table<T>& anchor_table, const Table<T>& candidate_table,
                            const SampledBatch<T, I>& batch, double lr, bool compute_loss = true) {
  detail::require(std::isfinite(lr) && lr >= 0.0, "lr must be a finite number >= 0, got ", lr);
  detail::check_sampled(Table<const T>{anchor_table.data, anchor_table.num_rows, anchor_table.row_width},
                        Table<const T>{candidate_table.data, candidate_table.num_rows, candidate_table.row_width},
                        batch, true);
  const std::int64_t n = batch.size, k = batch.num_candidates, w = anchor_table.row_width;
  constexpr std::int64_t max_side_by_side = 32;  // items with more candidates go term by term
  std::vector<T> buffer(static_cast<std::size_t>(w));
  std::vector<T*> rows(static_cast<std::size_t>(k));
  std::vector<double> dots(static_cast<std::size_t>(k));
  T* SPARSEOPT_RESTRICT e = buffer.data();
  double loss = 0.0;
  // g for a term with dot product f and label y (and its loss, when asked).
  auto step_of = [&](double f, double y) {
    double s;
    if (compute_loss) {
      const detail::LogisticTerm term = detail::logistic_term(f, y);
      s = term.sigmoid;
      loss += term.loss;
    } else {
      s = detail::logistic_sigmoid(f);
    }
    return T(lr * (y - s));
  };
  constexpr std::int64_t ahead = 2;  // items whose rows are prefetched
  for (std::int64_t i = 0; i < n; ++i) {
    if (i + ahead < n) {
      const std::int64_t next = i + ahead;
      detail::prefetch_row(anchor_table.row(static_cast<std::int64_t>(batch.anchors[next])), w);
      for (std::int64_t j = 0; j < k; ++j)
        detail::prefetch_row(candidate_table.row(static_cast<std::int64_t>(batch.candidates[next * k + j])), w);
    }
    T* x = anchor_table.row(static_cast<std::int64_t>(batch.anchors[i]));
    for (std::int64_t j = 0; j < k; ++j)
      rows[j] = candidate_table.row(static_cast<std::int64_t>(batch.candidates[i * k + j]));
    std::fill(buffer.begin(), buffer.end(), T(0));
    if (k <= max_side_by_side && detail::rows_independent(rows.data(), k, x)) {
      for (std::int64_t j = 0; j < k; ++j) dots[j] = double(detail::dot_lanes(x, rows[j], w));
      for (std::int64_t j = 0; j < k; ++j)  // rows[j] is neither x nor another term's row
        detail::update_candidate(e, rows[j], x, step_of(dots[j], double(batch.label(i, j))), w);
    } else {
      for (std::int64_t j = 0; j < k; ++j) {
        T* c = rows[j];
        const T g = step_of(double(detail::dot_lanes(x, c, w)), double(batch.label(i, j)));
        for (std::int64_t d = 0; d < w; ++d) e[d] += g * c[d];
        for (std::int64_t d = 0; d < w; ++d) c[d] += g * x[d];
      }
    }
    for (std::int64_t d = 0; d < w; ++d) x[d] += e[d];
  }
  return loss;
}

}  // namespace sparseopt
