// Exact mode's bookkeeping: the dense optimizer's result at the sparse optimizer's cost.
//
// A row that a step does not touch sees a zero gradient, which makes every optimizer here a
// linear recurrence in its state with per-step scalars that are the same for every row. So a
// row is left alone until it is touched again (or flush() is called) and then caught up over
// the skipped steps in closed form (see shared notes "exact catch-up"). What the closed forms
// need is kept per step, once for all rows:
//
//   history row t (one per step t >= 0, float64):
//     [0] lr_t
//     [1] L_t = sum_{i<=t} log(delta_i)   the log of the cumulative decay of the parameter
//                                          (decoupled or L2 weight decay; delta_i = 1 without)
//     [2 .. 2+aux)                         optimizer-specific per-step scalars
//     [2+aux .. 2+aux+Q)                   S_q(t, t+H): window sums of start step t, frozen
//                                          once they are complete
//     [2+aux+Q .. 2+aux+Q+4)               with pair_products: a 2x2 product of step matrices
//                                          (see "Products of step matrices" below)
//   ring (H x Q): S_q(s, e) for the last H start steps s, e the latest step, where
//     S_q(s, e) = sum_{j=s+1}^{e} f_q(j) r_q^(j-s) prod_{i=j+1}^{e} delta_i
//
// r_q < 1 is a quantity's decay ratio (a momentum, beta1 / sqrt(beta2), ...), f_q(j) its
// per-step factor (lr_j, ...). H is the smallest window with r_q^H < 1e-18 for every q:
// terms further back cannot change a double, so S_q(s, e) for e - s >= H is the frozen
// S_q(s, s+H) times the decay since. Each step costs O(H Q) to advance the ring, whatever
// the number of rows; catching a row up costs O(Q) per element.
//
// Products of step matrices (pair_products): where a zero gradient makes a pair of values per
// element (parameter, buffer) evolve by a 2x2 matrix A_t that depends only on step t's
// scalars (SGD with momentum and coupled weight decay), a range of skipped steps applies
// M(s, e) = A_e ... A_{s+1}. Such decay never fades, so no window suffices: the record keeps
// the products of aligned power-of-two ranges of steps, (j 2^k, (j+1) 2^k] for k >= 1, each
// in the row of its midpoint m = j 2^k + 2^(k-1) (every step m >= 1 is the midpoint of
// exactly one of them, the range (m - lowbit(m), m + lowbit(m)]); single steps (k = 0) are
// recomputed from the step's own scalars. A range is written once, when its last step is
// recorded (O(1) amortised per step, O(log T) at most), and any M(s, e) is a product of at
// most 2 log2(e - s) + 1 of them: forward products only, never an inverse of a prefix
// product (which would be ill-conditioned). Memory: 4 float64 per step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../coalesce.hpp"
#include "../errors.hpp"
#include "../half.hpp"
#include "../parallel.hpp"
#include "../view.hpp"

namespace sparseopt {

// The shape of an optimizer's exact-mode record.
struct ExactLayout {
  std::int64_t window = 1;      // H
  int quantities = 0;           // Q
  int aux = 0;                  // per-step scalars besides lr and L
  bool pair_products = false;   // 4 more columns: products of 2x2 step matrices
  std::int64_t columns() const noexcept { return 2 + aux + quantities + (pair_products ? 4 : 0); }
};

// A 2x2 matrix acting on an element's pair (x, y): x' = a x + b y, y' = c x + d y.
struct Mat2 {
  double a = 1.0, b = 0.0, c = 0.0, d = 1.0;
};

// x y: y's map first, then x's.
inline Mat2 operator*(const Mat2& x, const Mat2& y) noexcept {
  return {x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c,
          x.c * y.b + x.d * y.d};
}

// Caller-owned exact-mode state (NumPy arrays in Python).
//
// Bounded memory: with `first_step` set, history's row i records step *first_step + i, and
// once a step leaves more than exact_record_span steps on record, that step catches every row
// up (last_step = the step for all) and restarts the record at it, so `capacity` never needs
// more than exact_record_span + 1 rows, whatever the number of steps: memory is O(rows +
// window), and the whole-table catch-up costs O(table) once per span steps. Without it
// (null), row i records step i and the caller grows `history` with the steps.
struct ExactState {
  std::int64_t* last_step = nullptr;   // per row: the step through which the row is up to date
  double* history = nullptr;           // capacity x layout.columns()
  std::int64_t capacity = 0;           // rows of `history`
  double* ring = nullptr;              // layout.window x layout.quantities
  std::int64_t* first_step = nullptr;  // one value: the step history's row 0 records (or null)
};

// The most steps a bounded record (ExactState::first_step) holds before it restarts.
inline constexpr std::int64_t exact_record_span = 4096;

namespace detail {

// Longest window exact mode accepts: a ratio so close to 1 that it needs more would make each
// step scan more than this many entries.
inline constexpr std::int64_t max_exact_window = std::int64_t(1) << 17;

// Smallest H with r^H < 1e-18 for every ratio r in [0, 1). `what` names the setting for the
// error raised when a ratio is >= 1 or needs a window longer than max_exact_window.
inline std::int64_t window_for(const std::vector<double>& ratios, const char* what) {
  std::int64_t h = 1;
  for (const double r : ratios) {
    require(r >= 0.0 && r < 1.0, "mode='exact' needs ", what, " < 1, got ", r);
    if (r == 0.0) continue;
    const double need = std::ceil(std::log(1e-18) / std::log(r));
    require(need <= double(max_exact_window), "mode='exact' supports ", what,
            " up to a window of ", max_exact_window, " steps; ", r, " needs ", need);
    h = std::max(h, std::int64_t(need));
  }
  return h;
}

// Read and advance access to an ExactState with its layout.
class ExactBook {
 public:
  ExactBook(const ExactLayout& layout, const ExactState& state) : layout_(layout), state_(state) {}

  // Checks that the record can take step t (1-based) and that the arrays exist.
  void require_step(std::int64_t t, std::int64_t num_rows) const {
    require(state_.last_step != nullptr || num_rows == 0, "exact mode needs last_step");
    const std::int64_t first = first_step();
    require(first >= 0 && first <= t, "exact mode's history starts at step ", first,
            ", after step ", t);
    require(state_.history != nullptr && state_.capacity > t - first, "exact mode's history has room for ",
            state_.capacity, " steps from step ", first, "; step ", t, " needs ", t - first + 1);
    require(state_.ring != nullptr || layout_.quantities == 0, "exact mode needs its window");
  }

  // The step that history's row 0 records.
  std::int64_t first_step() const noexcept { return state_.first_step ? *state_.first_step : 0; }

  double lr(std::int64_t t) const noexcept { return at(t, 0); }
  double log_decay(std::int64_t t) const noexcept { return at(t, 1); }
  double aux(std::int64_t t, int i) const noexcept { return at(t, 2 + i); }

  // prod_{i=s+1}^{e} delta_i.
  double decay(std::int64_t s, std::int64_t e) const noexcept {
    return e > s ? std::exp(log_decay(e) - log_decay(s)) : 1.0;
  }

  // S_q(s, e) where e is the latest step advance() has seen.
  double window_sum(int q, std::int64_t s, std::int64_t e) const noexcept {
    const std::int64_t k = e - s, h = layout_.window;
    if (k <= 0) return 0.0;
    if (k < h) return state_.ring[(s % h) * layout_.quantities + q];
    return at(s, 2 + layout_.aux + q) * decay(s + h, e);
  }

  // Writes step t's lr, decay factor and optimizer scalars (call before advance(t)).
  void record(std::int64_t t, double lr, double delta, const double* aux) const noexcept {
    double* row = state_.history + (t - first_step()) * layout_.columns();
    row[0] = lr;
    row[1] = (t > first_step() ? log_decay(t - 1) : 0.0) + (delta == 1.0 ? 0.0 : std::log(delta));
    for (int i = 0; i < layout_.aux; ++i) row[2 + i] = aux[i];
  }

  // Adds step t to every open window sum: S_q(s, t) = delta_t S_q(s, t-1) + f_q r_q^(t-s), and
  // freezes start step t - H, whose window is now complete.
  void advance(std::int64_t t, double delta, const double* f, const double* ratio) const noexcept {
    const std::int64_t h = layout_.window;
    const int nq = layout_.quantities;
    const std::int64_t open = t - std::max<std::int64_t>(0, t - h);  // start steps t-1, t-2, ...
    for (int q = 0; q < nq; ++q) {
      double power = 1.0;
      // The slot of start step s is s % h: walked down from t - 1 without a division per step
      // (this loop is most of an exact step's fixed cost).
      std::int64_t slot = t >= 1 ? (t - 1) % h : 0;
      for (std::int64_t i = 0; i < open; ++i) {
        power *= ratio[q];
        double& sum = state_.ring[slot * nq + q];
        sum = delta * sum + f[q] * power;
        slot = slot == 0 ? h - 1 : slot - 1;
      }
    }
    if (nq == 0) return;
    const std::int64_t done = t - h;
    double* slot = state_.ring + (t % h) * nq;  // the slot of start step t - H, reused for t
    if (done >= first_step())  // no row starts before the record's first step
      for (int q = 0; q < nq; ++q) state_.history[(done - first_step()) * layout_.columns() + 2 + layout_.aux + q] = slot[q];
    for (int q = 0; q < nq; ++q) slot[q] = 0.0;
  }

  // pair_products: stores the products of the aligned ranges that step t completes,
  // (t - 2^k, t] for k = 1 .. (trailing zeros of t). step_matrix(i) returns A_i from step i's
  // record (call after record(t); steps before t must have been appended already).
  template <class StepMatrix>
  void append_product(std::int64_t t, StepMatrix&& step_matrix) const noexcept {
    if (t <= 0) return;
    Mat2 upper = step_matrix(t);  // the range (t - half, t], half = 1 to start with
    // Ranges that start before the record's first step are never used (no row starts there).
    for (std::int64_t half = 1; (t & (2 * half - 1)) == 0 && t - 2 * half >= first_step(); half *= 2) {
      // its equal-sized predecessor (t - 2 half, t - half], then their product (t - 2 half, t]
      const Mat2 lower = half == 1 ? step_matrix(t - 1) : product(t - half - half / 2);
      upper = upper * lower;
      double* cell = product_cell(t - half);
      cell[0] = upper.a;
      cell[1] = upper.b;
      cell[2] = upper.c;
      cell[3] = upper.d;
    }
  }

  // pair_products: M(s, e) = A_e ... A_{s+1} (the identity when e <= s), e <= the latest
  // appended step, from at most 2 log2(e - s) + 1 stored ranges and single steps.
  template <class StepMatrix>
  Mat2 range_product(std::int64_t s, std::int64_t e, StepMatrix&& step_matrix) const noexcept {
    Mat2 m;
    for (std::int64_t cur = std::max<std::int64_t>(s, 0); cur < e;) {
      // the longest aligned range that starts after cur and ends by e
      std::int64_t size = 1;
      while ((cur & (2 * size - 1)) == 0 && 2 * size <= e - cur) size *= 2;
      m = (size == 1 ? step_matrix(cur + 1) : product(cur + size / 2)) * m;
      cur += size;
    }
    return m;
  }

  const ExactLayout& layout() const noexcept { return layout_; }
  std::int64_t* last_step() const noexcept { return state_.last_step; }

 private:
  double* product_cell(std::int64_t m) const noexcept {
    return state_.history + (m - first_step()) * layout_.columns() + 2 + layout_.aux + layout_.quantities;
  }
  Mat2 product(std::int64_t m) const noexcept {
    const double* cell = product_cell(m);
    return {cell[0], cell[1], cell[2], cell[3]};
  }

  double at(std::int64_t t, int column) const noexcept {
    return state_.history[(t - first_step()) * layout_.columns() + column];
  }

  ExactLayout layout_;
  ExactState state_;
};

// Adds exact mode's arrays to the arrays a step or flush writes.
inline void add_exact_arrays(WrittenArrays& written, const ExactState& s, const ExactLayout& layout,
                             std::int64_t num_rows) {
  constexpr std::int64_t word = 8;
  written.add(s.last_step, num_rows * word, "last_step");
  written.add(s.history, s.capacity * layout.columns() * word, "history");
  written.add(s.ring, layout.window * layout.quantities * word, "window");
  written.add(s.first_step, s.first_step ? word : 0, "history_start");
}

// base^k, tabulated for k < size by repeated multiplication (a relative error of at most k
// roundings of a double, ~1e-13 at k = 1000) and pow() beyond: built once per step or flush,
// so that catching a row up costs no pow() for the gaps most rows have.
class PowerTable {
 public:
  static constexpr std::int64_t default_size = 1024;
  explicit PowerTable(double base, std::int64_t size = default_size)
      : base_(base), powers_(static_cast<std::size_t>(size)) {
    double x = 1.0;
    for (double& y : powers_) {
      y = x;
      x *= base;
    }
  }
  double operator()(std::int64_t k) const noexcept {
    return k < std::int64_t(powers_.size()) ? powers_[static_cast<std::size_t>(k)]
                                            : std::pow(base_, double(k));
  }

 private:
  double base_;
  std::vector<double> powers_;
};

// The record of a heavy-ball momentum buffer (SGD, RMSprop): one window sum of ratio
// `momentum`, the parameter drift sum_j f_j momentum^j; nothing without momentum.
inline ExactLayout momentum_layout(double momentum) {
  ExactLayout layout;
  if (momentum != 0.0) {
    layout.quantities = 1;
    layout.window = window_for({momentum}, "momentum");
  }
  return layout;
}

// A row's momentum buffer over k skipped steps: p -= b * drift (the window sum), b *= fade
// (momentum^k), in double, rounded once.
template <class T>
void momentum_catch_up(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT b, std::int64_t w,
                       double drift, double fade) noexcept {
  for (std::int64_t j = 0; j < w; ++j) {
    const double bj = b[j];
    p[j] = T(double(p[j]) - bj * drift);
    b[j] = T(bj * fade);
  }
}

// Brings rows whose last step is before `step` up to `step` with catch_up(row, last), in
// parallel over rows: every row when indices is null, else the rows in indices[0, n) (checked
// against num_rows before anything is written; repeats are fine). prefetch(row, level) asks
// for a row's state ahead of its catch-up (far and near, as view.hpp's prefetch_ahead; far in
// batches on a table of row_bytes rows too large for the TLB), so that the scattered rows'
// misses overlap. Used by flush().
template <class I, class CatchUp, class Prefetch>
void catch_up_rows(const ExactBook& book, std::int64_t num_rows, std::int64_t row_width,
                   std::int64_t row_bytes, std::int64_t step, int num_threads, const I* indices, std::int64_t n,
                   CatchUp&& catch_up, Prefetch&& prefetch) {
  const int threads = resolve_threads(num_threads);
  std::int64_t* last = book.last_step();
  auto bring = [&](std::int64_t r) {
    if (last[r] < step) {
      catch_up(r, last[r]);
      last[r] = step;
    }
  };
  if (indices == nullptr) {
    parallel_for(num_rows, threads, num_rows * row_width, [&](std::int64_t r, int) { bring(r); });
    return;
  }
  // No coalescing plan (a sort): bringing a row up is idempotent, so the indices are visited as
  // they come, repeats included. Thread `s` of T takes the rows r with r % T == s, so no row is
  // touched by two threads, and each row is caught up once, from its last step, whatever T is.
  check_indices(indices, n, num_rows);  // before anything is written
  const std::int64_t parts = threads > 1 && n * row_width >= parallel_min_work ? threads : 1;
  const std::int64_t batch = far_batch(num_rows * row_bytes);
  parallel_for(parts, int(parts), n * row_width, [&](std::int64_t part, int) {
    for (std::int64_t k = 0; k < n; ++k) {
      prefetch_ahead(k, n, [&](std::int64_t ahead, auto level) SPARSEOPT_INLINE_BODY {
        const std::int64_t next = static_cast<std::int64_t>(indices[ahead]);
        if (next % parts == part) {
          prefetch_row(last + next, 1, level);
          prefetch(next, level);
        }
      }, batch);
      const std::int64_t r = static_cast<std::int64_t>(indices[k]);
      if (r % parts == part) bring(r);
    }
  });
}

// The bytes a row of the widest array a step on `param` touches: the table's, or a half table's
// float state (the type steps compute in, which for_each_row's gradient has too), so that flushes
// and steps batch their far hints (far_batch()) from the same table size.
template <class T>
std::int64_t spread_row_bytes(const Table<T>& param) noexcept {
  using Widest = std::conditional_t<is_half_v<T>, float, T>;
  return param.row_width * std::int64_t(sizeof(Widest));
}

// The body of every optimizer's flush(): checks the record holds `step` and that `indices`
// shares no memory with the arrays the flush writes (`written`, exact mode's included), then
// brings the rows (all, or those in indices[0, n)) up to it with catch_up(book, row, last).
template <class T, class I, class CatchUp, class Prefetch>
void flush_rows(const ExactLayout& layout, const ExactState& exact, const Table<T>& param,
                std::int64_t step, int num_threads, const I* indices, std::int64_t n,
                WrittenArrays written, CatchUp&& catch_up, Prefetch&& prefetch) {
  const ExactBook book(layout, exact);
  book.require_step(step, param.num_rows);
  add_exact_arrays(written, exact, layout, param.num_rows);
  if (indices) written.require_apart_from(indices, n * std::int64_t(sizeof(I)), "indices");
  catch_up_rows(book, param.num_rows, param.row_width, spread_row_bytes(param), step,
                num_threads, indices, n,
                [&](std::int64_t r, std::int64_t last) { catch_up(book, r, last); }, prefetch);
}

// The end of every exact step (bounded record only, ExactState::first_step set): when the record
// holds more than exact_record_span steps, catches every row up to `step` with
// catch_up(book, row, last), then restarts the record at `step`: its row moves to row 0, with
// the decay's log reset to 0 (only differences of it are used), and *first_step = step. Rows
// caught up here are split into two catch-ups instead of one, which rounds differently; when
// that happens depends on the step count only, so the bits stay the same for any thread
// count, on every rerun and after a save and load.
template <class T, class CatchUp>
void restart_record(const ExactLayout& layout, const ExactState& exact, const Table<T>& param,
                    std::int64_t step, int num_threads, CatchUp&& catch_up) {
  if (exact.first_step == nullptr || step - *exact.first_step < exact_record_span) return;
  const ExactBook book(layout, exact);
  catch_up_rows(book, param.num_rows, param.row_width, spread_row_bytes(param), step,
                num_threads, static_cast<const std::int64_t*>(nullptr), 0,
                [&](std::int64_t r, std::int64_t last) { catch_up(book, r, last); },
                [](std::int64_t, auto) {});
  const std::int64_t columns = layout.columns();
  double* latest = exact.history + (step - *exact.first_step) * columns;
  std::copy(latest, latest + columns, exact.history);
  exact.history[1] = 0.0;
  *exact.first_step = step;
}

}  // namespace detail
}  // namespace sparseopt
