// Sparse SGD with optional (heavy-ball or Nesterov) momentum and L2 weight decay, PyTorch's
// formula:
//   g  += weight_decay * p
//   buf = momentum * buf + (1 - dampening) * g      (buf = g on its first step)
//   d   = g + momentum * buf if nesterov else buf   (d = g without momentum)
//   p  -= lr * d
// Lazy mode: each row follows that formula over only the steps that touch it, so a row's
// buffer starts at its first touch and untouched rows keep parameters and buffers.
// Exact mode: torch.optim.SGD fed zeros for untouched rows (its buffer starts at the global
// first step). Over k skipped steps after step s a zero gradient gives buf = momentum^k buf_s
// and a parameter drift of buf_s * sum_j lr_j momentum^j (times momentum with Nesterov): one
// window sum (exact.hpp). Without momentum, weight decay multiplies p by prod (1 - lr_j wd).
// Momentum and weight decay together: g = wd p couples p and buf, each skipped step maps every
// element's (p, buf) by a 2x2 matrix A_t of lr_t (sgd_step_matrix), and a row skipped over
// (s, e] takes the product A_e ... A_{s+1}, read from exact.hpp's product ranges in
// O(log(e - s)) 2x2 products per row.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "common.hpp"
#include "formulas.hpp"
#include "exact.hpp"

namespace sparseopt {

struct SgdOptions {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  double weight_decay = 0.0;
  Mode mode = Mode::lazy;

  void validate() const;
};

// State: with momentum, the buffer (the parameter's shape) and in lazy mode per-row touch
// counts (a row whose count is 0 has no buffer yet); in exact mode its record.
template <class T>
struct SgdState {
  Table<T> momentum_buffer;
  std::int64_t* row_steps = nullptr;
  ExactState exact;
};

// Exact mode's record: one window sum (the momentum drift) when there is momentum; with
// weight decay too, the products of step matrices instead (no window).
inline ExactLayout sgd_exact_layout(const SgdOptions& o) {
  if (o.momentum != 0.0 && o.weight_decay != 0.0) {
    ExactLayout layout;
    layout.pair_products = true;
    return layout;
  }
  return detail::momentum_layout(o.momentum);
}

inline void SgdOptions::validate() const {
  detail::require_finite_at_least(lr, 0.0, "lr");
  detail::require_finite_at_least(momentum, 0.0, "momentum");
  detail::require(std::isfinite(dampening), "dampening must be a finite number, got ", dampening);
  detail::require_finite_at_least(weight_decay, 0.0, "weight_decay");
  detail::require(!nesterov || (momentum > 0.0 && dampening == 0.0),
                  "nesterov=True needs momentum > 0 and dampening = 0, got momentum=", momentum,
                  " and dampening=", dampening);
  if (mode == Mode::exact) {
    // Without momentum the record keeps log(1 - lr wd); with momentum the decay is in the
    // step matrices, which take any lr and weight_decay.
    detail::require(momentum != 0.0 || lr * weight_decay < 1.0,
                    "mode='exact' without momentum needs lr * weight_decay < 1 (the parameter "
                    "is multiplied by 1 - lr * weight_decay, kept as a logarithm), got ",
                    lr * weight_decay);
    sgd_exact_layout(*this);  // throws for a momentum it cannot catch up
  }
}

namespace detail {

template <bool Coupled, class T>
SPARSEOPT_ALWAYS_INLINE void sgd_row(T* SPARSEOPT_RESTRICT p, const T* SPARSEOPT_RESTRICT g, std::int64_t w,
                                     T lr, T wd) noexcept {
  for (std::int64_t j = 0; j < w; ++j) formulas::sgd<Coupled>(p, j, g[j], lr, wd);
}

// first: the row's buffer does not exist yet and starts as g (undampened), as in PyTorch.
template <bool Coupled, class T>
SPARSEOPT_ALWAYS_INLINE void sgd_momentum_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT b,
                                              const T* SPARSEOPT_RESTRICT g, std::int64_t w, T lr, T mu,
                                              T keep, bool nesterov, bool first, T wd) noexcept {
  for (std::int64_t j = 0; j < w; ++j)
    formulas::sgd_momentum<Coupled>(p, b, j, g[j], lr, mu, keep, nesterov, first, wd);
}

// Momentum and weight decay, exact mode: step t with a zero data gradient (g = wd p) maps each
// element's (p, buf) by this matrix. Step 1 creates torch's buffer: buf = g, undampened, and
// the (zero) buffer before it does not count. With k = 1 - dampening and mu' = mu (k = 1 and
// mu' = 0 at step 1):
//   buf' = k wd p + mu' buf
//   p'   = p - lr buf'                          = (1 - lr k wd) p - lr mu' buf
//   p'   = p - lr (wd p + mu buf')  (Nesterov)  = (1 - lr wd (1 + mu k)) p - lr mu mu' buf
// Host and device (the CUDA exact kernels multiply these too).
SPARSEOPT_HD_INLINE Mat2 sgd_step_matrix(const SgdOptions& o, double lr, bool first) noexcept {
  const double mu = o.momentum, wd = o.weight_decay;
  const double k = first ? 1.0 : 1.0 - o.dampening, mu_b = first ? 0.0 : mu;
  Mat2 a;
  a.c = k * wd;
  a.d = mu_b;
  if (o.nesterov) {
    a.a = 1.0 - lr * wd * (1.0 + mu * k);
    a.b = -lr * mu * mu_b;
  } else {
    a.a = 1.0 - lr * k * wd;
    a.b = -lr * mu_b;
  }
  return a;
}

// A_t from the record.
struct SgdStepMatrices {
  const SgdOptions& options;
  const ExactBook& book;
  Mat2 operator()(std::int64_t t) const noexcept {
    return sgd_step_matrix(options, book.lr(t), t == 1);
  }
};

// Exact mode's bookkeeping of one step, in one place for the CPU step and the device's
// (cuda/src/exact.cu), so their records cannot drift: record() writes the step's lr and decay
// factor before any row moves; advance() adds the step to the momentum window sum (or the step
// matrices' products) once the touched rows are updated.
struct SgdRecordStep {
  const SgdOptions& options;
  std::int64_t step;

  // Without momentum, coupled weight decay multiplies p by 1 - lr wd each step; with momentum
  // the decay is in the step matrices.
  double delta() const noexcept {
    return options.momentum != 0.0 ? 1.0 : 1.0 - options.lr * options.weight_decay;
  }
  void record(const ExactBook& book) const noexcept { book.record(step, options.lr, delta(), nullptr); }
  void advance(const ExactBook& book) const noexcept {
    const double f = options.lr * (options.nesterov ? options.momentum : 1.0);
    book.advance(step, delta(), &f, &options.momentum);
    if (book.layout().pair_products) book.append_product(step, SgdStepMatrices{options, book});
  }
};

// Exact mode: a row (p and, with momentum, its buffer b: w elements each) from step s to e,
// the latest recorded step, under zero gradients.
template <class T>
void sgd_catch_up(const SgdOptions& o, const ExactBook& book, const PowerTable& momentum_pow,
                  std::int64_t w, T* p, T* buffer, std::int64_t s, std::int64_t e) {
  if (e <= s) return;
  if (book.layout().pair_products) {
    const Mat2 m = book.range_product(s, e, SgdStepMatrices{o, book});
    T* SPARSEOPT_RESTRICT pp = p;
    T* SPARSEOPT_RESTRICT b = buffer;
    for (std::int64_t j = 0; j < w; ++j) {
      const double pj = pp[j], bj = b[j];
      pp[j] = T(m.a * pj + m.b * bj);
      b[j] = T(m.c * pj + m.d * bj);
    }
    return;
  }
  if (o.momentum == 0.0) {
    const double decay = book.decay(s, e);
    if (decay != 1.0)
      for (std::int64_t j = 0; j < w; ++j) p[j] = T(double(p[j]) * decay);
    return;
  }
  momentum_catch_up(p, buffer, w, book.window_sum(0, s, e), momentum_pow(e - s));
}

// Asks for row r of the parameter and of the momentum buffer (a hint: no effect on results).
template <class T, class S, class Level = PrefetchNear>
void prefetch_sgd_rows(const Table<T>& param, const SgdState<S>& state, std::int64_t r, Level level = {}) noexcept {
  prefetch_row(param.row(r), param.row_width, level);
  if (state.momentum_buffer.data) prefetch_row(state.momentum_buffer.row(r), param.row_width, level);
}

// Checks the state against the parameter; returns the arrays a step or flush writes (exact
// mode's record is added by the step and by flush_rows).
template <class T, class S>
WrittenArrays require_sgd_state(const Table<T>& param, const SgdState<S>& state, const SgdOptions& o) {
  WrittenArrays written(param);
  if (o.momentum != 0.0) {
    require_same_rows(param, state.momentum_buffer, "momentum_buffer");
    require(o.mode == Mode::exact || state.row_steps != nullptr || param.num_rows == 0,
            "row_steps is null");
    written.add(state.momentum_buffer, "momentum_buffer");
    if (o.mode == Mode::lazy) written.add(state.row_steps, param.num_rows * 8, "row_steps");
  }
  return written;
}

// body(p, buffer) on row r as T (buffer null without momentum), stored back after.
template <class T, class P, class S, class Body>
SPARSEOPT_ALWAYS_INLINE void on_sgd_rows(const RowAccess<T>& access, const Table<P>& param,
                                         const SgdState<S>& state, std::int64_t r, Body&& body) {
  on_rows(access, r, body, param.row(r),
          state.momentum_buffer.data ? state.momentum_buffer.row(r) : static_cast<S*>(nullptr));
}

}  // namespace detail

// One SGD step; `step` counts this step (1 on the first call; exact mode records it).
// Half tables: see adam_step.
template <class P, class S, class Grad>
void sgd_step(const Table<P>& param, const Grad& grad, const SgdState<S>& state,
              const SgdOptions& options, std::int64_t step, int num_threads = 0,
              const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  detail::require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  detail::WrittenArrays written = detail::require_sgd_state(param, state, options);
  const bool exact = options.mode == Mode::exact;
  // Lazy mode keeps no record (and takes any momentum torch takes, 1 and above included).
  const ExactLayout layout = exact ? sgd_exact_layout(options) : ExactLayout{};
  if (exact) detail::add_exact_arrays(written, state.exact, layout, param.num_rows);
  const auto& plan = detail::plan_step(param, grad, num_threads, written);
  const detail::ExactBook book(layout, state.exact);
  const bool momentum = options.momentum != 0.0;
  const detail::SgdRecordStep record{options, step};
  if (exact) {
    book.require_step(step, param.num_rows);
    record.record(book);
  }

  const std::int64_t w = param.row_width;
  const T lr = T(options.lr), mu = T(options.momentum), keep = T(1.0 - options.dampening);
  const T wd = T(options.weight_decay);
  const bool nesterov = options.nesterov, coupled = options.weight_decay != 0.0;
  const detail::PowerTable momentum_pow(options.momentum, exact ? detail::PowerTable::default_size : 0);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 2);
  detail::for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const T* g) {
        detail::on_sgd_rows(access, param, state, r, [&](T* p, T* b) {
        if (exact) {
          detail::sgd_catch_up(options, book, momentum_pow, w, p, b, state.exact.last_step[r], step - 1);
          state.exact.last_step[r] = step;
        }
        // PyTorch creates the buffer at its first step: the global first step in exact mode,
        // the row's first touch in lazy mode.
        const bool first = momentum && (exact ? step == 1 : state.row_steps[r]++ == 0);
        detail::simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // AVX2 where the CPU has it, same bits
          if (!momentum)
            coupled ? detail::sgd_row<true>(p, g, w, lr, wd) : detail::sgd_row<false>(p, g, w, lr, wd);
          else if (coupled)
            detail::sgd_momentum_row<true>(p, b, g, w, lr, mu, keep, nesterov, first, wd);
          else
            detail::sgd_momentum_row<false>(p, b, g, w, lr, mu, keep, nesterov, first, wd);
        });
        });
      },
      [&](std::int64_t r, auto level) {
        if (exact) detail::prefetch_row(state.exact.last_step + r, 1, level);
        detail::prefetch_sgd_rows(param, state, r, level);
      });
  if (exact) {
    record.advance(book);
    detail::restart_record(layout, state.exact, param, step, num_threads,
                           [&](const detail::ExactBook& book_, std::int64_t r, std::int64_t from) {
                             detail::on_sgd_rows(access, param, state, r, [&](T* p, T* b) {
                               detail::sgd_catch_up(options, book_, momentum_pow, w, p, b, from, step);
                             });
                           });
  }
}

// Exact mode: brings every row (or the rows in indices[0, n)) up to `step`, the last step taken. Lazy mode: nothing to do.
template <class P, class S, class I = std::int64_t>
void sgd_flush(const Table<P>& param, const SgdState<S>& state, const SgdOptions& options,
               std::int64_t step, int num_threads = 0,
              const I* indices = nullptr, std::int64_t n = 0, const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  const detail::WrittenArrays written = detail::require_sgd_state(param, state, options);
  if (options.mode != Mode::exact) return;
  const detail::PowerTable momentum_pow(options.momentum);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, 2);
  const std::int64_t w = param.row_width;
  detail::flush_rows(sgd_exact_layout(options), state.exact, param, step, num_threads, indices, n,
                     written, [&](const detail::ExactBook& book, std::int64_t r, std::int64_t last) {
                       detail::on_sgd_rows(access, param, state, r, [&](T* p, T* b) {
                         detail::sgd_catch_up(options, book, momentum_pow, w, p, b, last, step);
                       });
                     },
                     [&](std::int64_t r, auto level) { detail::prefetch_sgd_rows(param, state, r, level); });
}

}  // namespace sparseopt
