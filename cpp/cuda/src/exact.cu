// Exact mode on the device (Adam/AdamW, SGD, RMSprop): see <sparseopt/cuda/exact.hpp>. The
// record is the CPU's, kept in host memory by the CPU's own bookkeeping (ExactBook); the device
// reads a mirror of its per-step scalars. A warp per row: the row is caught up over the steps
// it rested (Adam: each lane its elements, by the per-step recurrence in double; SGD and
// RMSprop: per-row factors summed or multiplied by the lanes together, then applied to every
// element), then this step's formula, the CPU's (formulas.hpp).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <sparseopt/cuda/exact.hpp>

#include "groups.cuh"

namespace sparseopt {
namespace cuda {
namespace {

using detail::launch_rows;
using detail::prepare;
using detail::Scratch;
using sparseopt::detail::ExactBook;
using sparseopt::detail::require;
using sparseopt::detail::WrittenArrays;

// ---- the record -----------------------------------------------------------------------------

// The device mirror as the kernels read it: row t - first holds step t's lr, L, aux...
struct RecordView {
  const double* columns;
  std::int64_t first;   // the step the record's row 0 holds
  std::int64_t window;  // H: terms of a catch-up fade below 1e-18 after it
  __device__ double at(std::int64_t t, int column) const {
    return columns[(t - first) * device_record_columns + column];
  }
};

RecordView view_of(const ExactState& exact, const ExactLayout& layout, const DeviceRecord& record) {
  return {record.columns, *exact.first_step, layout.window};
}

// The checks of the record a step or flush shares (before anything is written); adds the
// device arrays it writes (last_step, the mirror) to `written`.
template <class T>
void check_record(WrittenArrays& written, const Table<T>& param, const ExactState& exact, std::int64_t step,
                  const DeviceRecord& record, const ExactLayout& layout) {
  require(exact.first_step != nullptr, "exact mode on the device needs the bounded record "
          "(ExactState::first_step, history_start in Python)");
  const ExactBook book(layout, exact);
  book.require_step(step, param.num_rows);
  require(record.columns != nullptr && record.capacity > step - book.first_step(), "the device record has room "
          "for ", record.capacity, " steps from step ", book.first_step(), "; step ", step, " needs ",
          step - book.first_step() + 1, " (allocate device_record_rows rows)");
  require(2 + layout.aux <= device_record_columns, "the device record holds ", device_record_columns,
          " columns per step");
  written.add(exact.last_step, param.num_rows * 8, "last_step");
  written.add(record.columns, record.capacity * device_record_columns * 8, "the device record");
}

// Copies the host record's row for step t (lr, L, aux) into the device mirror, in stream order
// (a pageable copy is staged when the call returns: the host row may change afterwards).
void upload_row(const ExactLayout& layout, const ExactState& exact, const DeviceRecord& record, std::int64_t t,
                cudaStream_t stream) {
  const std::int64_t i = t - *exact.first_step;
  detail::check(cudaMemcpyAsync(record.columns + i * device_record_columns, exact.history + i * layout.columns(),
                                std::size_t(2 + layout.aux) * sizeof(double), cudaMemcpyHostToDevice, stream),
                "cudaMemcpyAsync");
}

// ---- warp-wide pieces -----------------------------------------------------------------------

__device__ __forceinline__ std::int64_t smaller(std::int64_t a, std::int64_t b) { return a < b ? a : b; }

// The sum over the warp, the same bits in every lane (a butterfly: each addition commutes).
__device__ __forceinline__ double warp_sum(double x) {
  for (int offset = warp_size / 2; offset > 0; offset /= 2) x += __shfl_xor_sync(full_warp, x, offset);
  return x;
}

// A heavy-ball buffer's drift from step s to e: sum_{i=1}^{min(e-s, H)} scale lr_{s+i} mu^i,
// the lanes taking every 32nd term.
__device__ double momentum_drift(const RecordView& rec, std::int64_t s, std::int64_t e, double mu, double scale) {
  const std::int64_t steps = smaller(e - s, rec.window);
  double sum = 0.0;
  for (std::int64_t i = 1 + lane_index(); i <= steps; i += warp_size)
    sum += rec.at(s + i, 0) * scale * pow(mu, double(i));
  return warp_sum(sum);
}

// p -= b drift, b *= fade, in double, for the lane's elements.
template <class T>
__device__ void momentum_fade(T* p, T* b, std::int64_t w, double drift, double fade) {
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    const double bj = b[j];
    p[j] = T(double(p[j]) - bj * drift);
    b[j] = T(bj * fade);
  }
}

// ---- generic kernels ------------------------------------------------------------------------

// A warp per touched row: rows(r, s, step - 1) catches it up (warp-collective), then
// update(r, j, g) applies this step to each of the lane's elements; last_step = step.
template <class Rows, class Update, class T, class I>
__global__ void exact_step_kernel(Groups<I> g, const T* values, std::int64_t w, std::int64_t* last, Rows rows,
                                  Update update, std::int64_t step) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u], s = last[r];
  rows(r, s, step - 1);
  for (std::int64_t j = lane_index(); j < w; j += warp_size) update(r, j, summed_element(g, u, values, w, j));
  __syncwarp();  // every lane has read last[r]
  if (lane_index() == 0) last[r] = step;
}

// A warp per row: rows[u] for u < *count (grouped indices), or row u for u < num_rows (rows
// null: every row); each caught up to `step`.
template <class Rows, class I>
__global__ void exact_flush_kernel(const I* rows, const std::int64_t* count, std::int64_t num_rows,
                                   std::int64_t* last, Rows catch_up, std::int64_t step) {
  const std::int64_t u = warp_index();
  if (u >= (rows ? *count : num_rows)) return;
  const std::int64_t r = rows ? std::int64_t(rows[u]) : u, s = last[r];
  if (s >= step) return;
  catch_up(r, s, step);
  __syncwarp();
  if (lane_index() == 0) last[r] = step;
}

template <class I, class Rows>
void flush_rows(std::int64_t num_rows, std::int64_t* last, const Rows& rows, std::int64_t step, const I* list,
                const std::int64_t* count, std::int64_t capacity, cudaStream_t stream) {
  launch_rows(capacity, stream, exact_flush_kernel<Rows, I>, list, count, num_rows, last, rows, step);
}

// One exact step, host side, after the optimizer's own checks: the record's checks, the
// indices (waits), the host record of this step (bookkeeping.record(book), the CPU step's own
// <opt>RecordStep) and its upload, the kernel, then bookkeeping.advance(book) (the window sums
// and products) and the bounded record's restart (the CPU's restart_record: every row caught
// up on the device, the record moved on the host, its new row 0 uploaded).
template <class T, class I, class Rows, class Update, class Bookkeeping>
void exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const ExactState& exact,
                const ExactLayout& layout, WrittenArrays written, std::int64_t step, const DeviceRecord& record,
                const Bookkeeping& bookkeeping, const Rows& rows, const Update& update, cudaStream_t stream) {
  check_record(written, param, exact, step, record, layout);
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, written, scratch);  // waits: indices checked
  const ExactBook book(layout, exact);
  bookkeeping.record(book);
  upload_row(layout, exact, record, step, stream);
  launch_rows(g.capacity, stream, exact_step_kernel<Rows, Update, T, I>, g, grad.values, param.row_width,
              exact.last_step, rows, update, step);
  bookkeeping.advance(book);
  if (step - book.first_step() < exact_record_span) return;
  flush_rows<I>(param.num_rows, exact.last_step, rows, step, nullptr, nullptr, param.num_rows, stream);
  double* latest = exact.history + (step - book.first_step()) * layout.columns();
  std::copy(latest, latest + layout.columns(), exact.history);
  exact.history[1] = 0.0;
  *exact.first_step = step;
  upload_row(layout, exact, record, step, stream);
}

// One flush, host side, after the optimizer's own checks: every row (indices null) or those
// in indices[0, n), checked and grouped on the device first.
template <class T, class I, class Rows>
void exact_flush(const Table<T>& param, const ExactState& exact, const ExactLayout& layout, WrittenArrays written,
                 std::int64_t step, const DeviceRecord& record, const I* indices, std::int64_t n, const Rows& rows,
                 cudaStream_t stream) {
  require(step >= 0, "step must be >= 0, got ", step);
  check_record(written, param, exact, step, record, layout);
  if (indices == nullptr)
    return flush_rows<I>(param.num_rows, exact.last_step, rows, step, nullptr, nullptr, param.num_rows, stream);
  require(n >= 0, "n must be >= 0, got ", n);
  written.require_apart_from(indices, n * std::int64_t(sizeof(I)), "indices");
  Scratch scratch(stream);
  const Groups<I> g = detail::group_indices(indices, n, param.num_rows, "indices", scratch);  // waits
  flush_rows<I>(param.num_rows, exact.last_step, rows, step, g.rows, g.num_groups, g.capacity, stream);
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

// Adam's rows: each lane catches its elements up from step s to e with zero gradients by
// torch.optim.Adam's recurrence, in double, as the CPU's adam_catch_up_steps writes it.
template <bool Amsgrad, class T>
struct AdamRows {
  RecordView rec;
  double beta1, beta2, root_beta2;  // root_beta2: sqrt(beta2), 1 with amsgrad
  bool decays;                      // AdamW's decay: the parameter fades as exp(L_e - L_t)
  std::int64_t w;
  T *param, *exp_avg, *exp_avg_sq, *max_exp_avg_sq;

  __device__ void operator()(std::int64_t r, std::int64_t s, std::int64_t e) const {
    if (e <= s) return;
    const std::int64_t k = e - s, steps = smaller(k, rec.window);
    const double log_end = rec.at(e, 1);
    const double decay = decays ? exp(log_end - rec.at(s, 1)) : 1.0;
    const double m_fade = pow(beta1, double(k)), v_fade = pow(beta2, double(k));
    T* p = param + r * w;
    T* m = exp_avg + r * w;
    T* v = exp_avg_sq + r * w;
    const T* v_hat = Amsgrad ? max_exp_avg_sq + r * w : v;
    for (std::int64_t j = lane_index(); j < w; j += warp_size) {
      double mi = double(m[j]), ui = sqrt(double(v_hat[j])), drift = 0.0;
      for (std::int64_t i = 1; i <= steps; ++i) {
        const std::int64_t t = s + i;
        mi *= beta1;
        ui *= root_beta2;
        double dt = rec.at(t, 2) * mi / (ui + rec.at(t, 3));
        if (decays) dt *= exp(log_end - rec.at(t, 1));
        drift += dt;
      }
      p[j] = T(double(p[j]) * decay - drift);
      m[j] = T(double(m[j]) * m_fade);
      v[j] = T(double(v[j]) * v_fade);
    }
  }
};

// This step's dense update (the CPU's adam_exact_step, after the catch-up).
template <bool Amsgrad, class T>
struct AdamUpdate {
  T beta2, keep1, keep2, eps, bias_sqrt2, step_size, shrink;
  bool decoupled;
  std::int64_t w;
  T *param, *exp_avg, *exp_avg_sq, *max_exp_avg_sq;

  __device__ void operator()(std::int64_t r, std::int64_t j, T grad) const {
    const std::int64_t o = r * w;
    T* p = param + o;
    if (decoupled) formulas::scale(p, j, shrink);
    formulas::adam_dense<Amsgrad>(p, exp_avg + o, exp_avg_sq + o, Amsgrad ? max_exp_avg_sq + o : nullptr, j, grad,
                                  beta2, keep1, keep2, eps, bias_sqrt2, step_size);
  }
};

template <bool Amsgrad, class T>
AdamRows<Amsgrad, T> adam_rows(const Table<T>& param, const AdamState<T>& state, const AdamOptions& o,
                               const ExactLayout& layout, const DeviceRecord& record) {
  return {view_of(state.exact, layout, record), o.beta1, o.beta2, Amsgrad ? 1.0 : std::sqrt(o.beta2),
          o.weight_decay != 0.0, param.row_width, param.data, state.exp_avg.data, state.exp_avg_sq.data,
          state.max_exp_avg_sq.data};
}

// ---- SGD ------------------------------------------------------------------------------------

// x y (y's map first), as Mat2's operator* on the host.
__device__ Mat2 mul(const Mat2& x, const Mat2& y) {
  return {x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c, x.c * y.b + x.d * y.d};
}

__device__ Mat2 shfl_down(const Mat2& m, int offset) {
  return {__shfl_down_sync(full_warp, m.a, offset), __shfl_down_sync(full_warp, m.b, offset),
          __shfl_down_sync(full_warp, m.c, offset), __shfl_down_sync(full_warp, m.d, offset)};
}

// SGD's rows: without momentum the decay exp(L_e - L_s); with momentum the drift and fade;
// with momentum and weight decay the product of the skipped steps' 2x2 matrices A_t (the
// CPU's sgd_step_matrix, host and device), each lane multiplying a run of consecutive steps, the runs then
// combined in order by a tree over the lanes.
template <bool Momentum, class T>
struct SgdRows {
  RecordView rec;
  SgdOptions options;
  bool pairs;
  std::int64_t w;
  T *param, *buffer;

  __device__ Mat2 step_matrix(std::int64_t t) const {
    return sparseopt::detail::sgd_step_matrix(options, rec.at(t, 0), t == 1);
  }

  __device__ Mat2 range_product(std::int64_t s, std::int64_t e) const {  // A_e ... A_{s+1}
    const std::int64_t chunk = (e - s + warp_size - 1) / warp_size;
    const std::int64_t lo = smaller(e, s + lane_index() * chunk), hi = smaller(e, lo + chunk);
    Mat2 m;
    for (std::int64_t t = lo + 1; t <= hi; ++t) m = mul(step_matrix(t), m);
    for (int offset = 1; offset < warp_size; offset *= 2) {
      const Mat2 later = shfl_down(m, offset);
      if ((lane_index() & (2 * offset - 1)) == 0) m = mul(later, m);
    }
    return {__shfl_sync(full_warp, m.a, 0), __shfl_sync(full_warp, m.b, 0), __shfl_sync(full_warp, m.c, 0),
            __shfl_sync(full_warp, m.d, 0)};
  }

  __device__ void operator()(std::int64_t r, std::int64_t s, std::int64_t e) const {
    if (e <= s) return;
    T* p = param + r * w;
    if constexpr (Momentum) {
      T* b = buffer + r * w;
      if (pairs) {
        const Mat2 m = range_product(s, e);
        for (std::int64_t j = lane_index(); j < w; j += warp_size) {
          const double pj = p[j], bj = b[j];
          p[j] = T(m.a * pj + m.b * bj);
          b[j] = T(m.c * pj + m.d * bj);
        }
        return;
      }
      const double mu = options.momentum;
      momentum_fade(p, b, w, momentum_drift(rec, s, e, mu, options.nesterov ? mu : 1.0), pow(mu, double(e - s)));
    } else {
      const double decay = exp(rec.at(e, 1) - rec.at(s, 1));
      if (decay != 1.0)
        for (std::int64_t j = lane_index(); j < w; j += warp_size) p[j] = T(double(p[j]) * decay);
    }
  }
};

template <bool Momentum, bool Coupled, class T>
struct SgdUpdate {
  T lr, mu, keep, wd;
  bool nesterov, first;
  std::int64_t w;
  T *param, *buffer;

  __device__ void operator()(std::int64_t r, std::int64_t j, T grad) const {
    if constexpr (Momentum)
      formulas::sgd_momentum<Coupled>(param + r * w, buffer + r * w, j, grad, lr, mu, keep, nesterov, first, wd);
    else
      formulas::sgd<Coupled>(param + r * w, j, grad, lr, wd);
  }
};

template <bool Momentum, class T>
SgdRows<Momentum, T> sgd_rows(const Table<T>& param, const SgdState<T>& state, const SgdOptions& o,
                              const ExactLayout& layout, const DeviceRecord& record) {
  return {view_of(state.exact, layout, record), o, layout.pair_products, param.row_width, param.data,
          state.momentum_buffer.data};
}

// ---- RMSprop --------------------------------------------------------------------------------

// RMSprop's rows: the averages fade by alpha^k; with momentum, the drift and fade.
template <bool Centered, bool Momentum, class T>
struct RmspropRows {
  RecordView rec;
  double alpha, mu;
  std::int64_t w;
  T *param, *square_avg, *grad_avg, *buffer;

  __device__ void operator()(std::int64_t r, std::int64_t s, std::int64_t e) const {
    if (e <= s) return;
    const std::int64_t o = r * w;
    const double fade = pow(alpha, double(e - s));
    for (std::int64_t j = lane_index(); j < w; j += warp_size) {
      square_avg[o + j] = T(double(square_avg[o + j]) * fade);
      if constexpr (Centered) grad_avg[o + j] = T(double(grad_avg[o + j]) * fade);
    }
    if constexpr (Momentum)
      momentum_fade(param + o, buffer + o, w, momentum_drift(rec, s, e, mu, 1.0), pow(mu, double(e - s)));
  }
};

template <bool Centered, bool Momentum, class T>
struct RmspropUpdate {
  T lr, alpha, keep, eps, mu;
  std::int64_t w;
  T *param, *square_avg, *grad_avg, *buffer;

  __device__ void operator()(std::int64_t r, std::int64_t j, T grad) const {
    const std::int64_t o = r * w;
    formulas::rmsprop<Centered, Momentum>(param + o, square_avg + o, Centered ? grad_avg + o : nullptr,
                                          Momentum ? buffer + o : nullptr, j, grad, lr, alpha, keep, eps, mu);
  }
};

template <bool Centered, bool Momentum, class T>
RmspropRows<Centered, Momentum, T> rmsprop_rows(const Table<T>& param, const RmspropState<T>& state,
                                                const RmspropOptions& o, const ExactLayout& layout,
                                                const DeviceRecord& record) {
  return {view_of(state.exact, layout, record), o.alpha, o.momentum, param.row_width, param.data,
          state.square_avg.data, state.grad_avg.data, state.momentum_buffer.data};
}

template <class Options>
void require_exact(const Options& o, const char* call) {
  o.validate();
  require(o.mode == Mode::exact, call, " takes mode=Mode::exact options");
}

// Calls f(std::bool_constant<a>{}, std::bool_constant<b>{}).
template <class F>
void with_flags(bool a, bool b, F&& f) {
  using yes = std::true_type;
  using no = std::false_type;
  if (a)
    b ? f(yes{}, yes{}) : f(yes{}, no{});
  else
    b ? f(no{}, yes{}) : f(no{}, no{});
}

}  // namespace

// ---- the public calls -----------------------------------------------------------------------

template <class T, class I>
void adam_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
                     const AdamOptions& o, std::int64_t step, const DeviceRecord& record, cudaStream_t stream) {
  require_exact(o, "adam_exact_step");
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  const auto& constants = sparseopt::detail::adam_exact_constants<T>(o);
  const ExactLayout& layout = constants.layout;
  const auto now = sparseopt::detail::adam_step_scalars<T>(o, step);
  const sparseopt::detail::AdamRecordStep bookkeeping{o, constants.series, now, step};
  with_flags(o.amsgrad, false, [&](auto amsgrad, auto) {
    constexpr bool A = decltype(amsgrad)::value;
    const AdamUpdate<A, T> update{T(o.beta2),        T(1.0 - o.beta1),     T(1.0 - o.beta2),
                                  T(o.eps),          T(now.bias_sqrt2),    T(now.step_size),
                                  T(now.delta),      now.delta != 1.0,     param.row_width,
                                  param.data,        state.exp_avg.data,   state.exp_avg_sq.data,
                                  state.max_exp_avg_sq.data};
    exact_step(param, grad, state.exact, layout, sparseopt::detail::require_adam_state(param, state, o), step,
               record, bookkeeping, adam_rows<A>(param, state, o, layout, record), update, stream);
  });
}

template <class T, class I>
void adam_exact_flush(const Table<T>& param, const AdamState<T>& state, const AdamOptions& o, std::int64_t step,
                      const DeviceRecord& record, const I* indices, std::int64_t n, cudaStream_t stream) {
  require_exact(o, "adam_exact_flush");
  const ExactLayout& layout = sparseopt::detail::adam_exact_constants<T>(o).layout;
  with_flags(o.amsgrad, false, [&](auto amsgrad, auto) {
    exact_flush(param, state.exact, layout, sparseopt::detail::require_adam_state(param, state, o), step, record,
                indices, n, adam_rows<decltype(amsgrad)::value>(param, state, o, layout, record), stream);
  });
}

template <class T, class I>
void sgd_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const SgdState<T>& state,
                    const SgdOptions& o, std::int64_t step, const DeviceRecord& record, cudaStream_t stream) {
  require_exact(o, "sgd_exact_step");
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  const ExactLayout layout = sgd_exact_layout(o);
  const bool momentum = o.momentum != 0.0;
  const sparseopt::detail::SgdRecordStep bookkeeping{o, step};
  with_flags(momentum, o.weight_decay != 0.0, [&](auto has_momentum, auto coupled) {
    constexpr bool M = decltype(has_momentum)::value, C = decltype(coupled)::value;
    const SgdUpdate<M, C, T> update{T(o.lr),         T(o.momentum), T(1.0 - o.dampening), T(o.weight_decay),
                                    o.nesterov,      step == 1,     param.row_width,      param.data,
                                    state.momentum_buffer.data};
    exact_step(param, grad, state.exact, layout, sparseopt::detail::require_sgd_state(param, state, o), step,
               record, bookkeeping, sgd_rows<M>(param, state, o, layout, record), update, stream);
  });
}

template <class T, class I>
void sgd_exact_flush(const Table<T>& param, const SgdState<T>& state, const SgdOptions& o, std::int64_t step,
                     const DeviceRecord& record, const I* indices, std::int64_t n, cudaStream_t stream) {
  require_exact(o, "sgd_exact_flush");
  const ExactLayout layout = sgd_exact_layout(o);
  with_flags(o.momentum != 0.0, false, [&](auto has_momentum, auto) {
    exact_flush(param, state.exact, layout, sparseopt::detail::require_sgd_state(param, state, o), step, record,
                indices, n, sgd_rows<decltype(has_momentum)::value>(param, state, o, layout, record), stream);
  });
}

template <class T, class I>
void rmsprop_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const RmspropState<T>& state,
                        const RmspropOptions& o, std::int64_t step, const DeviceRecord& record, cudaStream_t stream) {
  require_exact(o, "rmsprop_exact_step");
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  const ExactLayout layout = rmsprop_exact_layout(o);
  const sparseopt::detail::RmspropRecordStep bookkeeping{o, step};
  with_flags(o.centered, o.momentum != 0.0, [&](auto centered, auto has_momentum) {
    constexpr bool C = decltype(centered)::value, M = decltype(has_momentum)::value;
    const RmspropUpdate<C, M, T> update{T(o.lr),         T(o.alpha),         T(1.0 - o.alpha),
                                        T(o.eps),        T(o.momentum),      param.row_width,
                                        param.data,      state.square_avg.data, state.grad_avg.data,
                                        state.momentum_buffer.data};
    exact_step(param, grad, state.exact, layout, sparseopt::detail::require_rmsprop_state(param, state, o), step,
               record, bookkeeping, rmsprop_rows<C, M>(param, state, o, layout, record), update, stream);
  });
}

template <class T, class I>
void rmsprop_exact_flush(const Table<T>& param, const RmspropState<T>& state, const RmspropOptions& o,
                         std::int64_t step, const DeviceRecord& record, const I* indices, std::int64_t n,
                         cudaStream_t stream) {
  require_exact(o, "rmsprop_exact_flush");
  const ExactLayout layout = rmsprop_exact_layout(o);
  with_flags(o.centered, o.momentum != 0.0, [&](auto centered, auto has_momentum) {
    exact_flush(param, state.exact, layout, sparseopt::detail::require_rmsprop_state(param, state, o), step, record,
                indices, n,
                rmsprop_rows<decltype(centered)::value, decltype(has_momentum)::value>(param, state, o, layout,
                                                                                       record),
                stream);
  });
}

#define SPARSEOPT_CUDA_EXACT_OF(NAME, T, I)                                                                     \
  template void NAME##_exact_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const NAME##_state_t<T>&,      \
                                        const NAME##_options_t&, std::int64_t, const DeviceRecord&, cudaStream_t); \
  template void NAME##_exact_flush<T, I>(const Table<T>&, const NAME##_state_t<T>&, const NAME##_options_t&,    \
                                         std::int64_t, const DeviceRecord&, const I*, std::int64_t, cudaStream_t);

template <class T>
using adam_state_t = AdamState<T>;
template <class T>
using sgd_state_t = SgdState<T>;
template <class T>
using rmsprop_state_t = RmspropState<T>;
using adam_options_t = AdamOptions;
using sgd_options_t = SgdOptions;
using rmsprop_options_t = RmspropOptions;

#define SPARSEOPT_CUDA_EXACT(T, I)        \
  SPARSEOPT_CUDA_EXACT_OF(adam, T, I)     \
  SPARSEOPT_CUDA_EXACT_OF(sgd, T, I)      \
  SPARSEOPT_CUDA_EXACT_OF(rmsprop, T, I)

SPARSEOPT_CUDA_EXACT(float, std::int32_t)
SPARSEOPT_CUDA_EXACT(float, std::int64_t)
SPARSEOPT_CUDA_EXACT(double, std::int32_t)
SPARSEOPT_CUDA_EXACT(double, std::int64_t)

}  // namespace cuda
}  // namespace sparseopt
