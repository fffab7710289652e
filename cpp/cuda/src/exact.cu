// Exact mode on the device (Adam, AdamW): see <sparseopt/cuda/exact.hpp>. The record is the
// CPU's, kept in host memory by the CPU's own bookkeeping (ExactBook); the device reads a
// mirror of its per-step scalars. A warp per row: each lane catches its elements up by the
// per-step recurrence (in double, over at most the record's window), then applies the dense
// formula of this step (formulas::adam_dense, the CPU's).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include <sparseopt/cuda/exact.hpp>

#include "groups.cuh"

namespace sparseopt {
namespace cuda {
namespace {

using detail::launch_rows;
using detail::prepare;
using detail::Scratch;
using sparseopt::detail::require;

// What a catch-up reads: the mirror of the record's columns and the constants of the options.
struct AdamCatchUp {
  const double* columns;      // device: row i = step first + i: lr, L, c, q
  std::int64_t first;         // the step the record's row 0 holds
  std::int64_t window;        // H: the per-step sum's terms fade below 1e-18 after it
  double beta1, beta2, root_beta2;  // root_beta2: sqrt(beta2), 1 with amsgrad
  bool decays;                // AdamW's decay: the parameter fades as exp(L_e - L_t)

  __device__ double at(std::int64_t t, int column) const { return columns[(t - first) * 4 + column]; }
};

// Element j of a row from step s to step e > s with zero gradients: torch.optim.Adam's
// recurrence, in double, as the CPU's adam_catch_up_steps writes it.
template <bool Amsgrad, class T>
__device__ void adam_catch_up_element(const AdamCatchUp& c, T* p, T* m, T* v, const T* vmax, std::int64_t j,
                                      std::int64_t s, std::int64_t e) {
  const std::int64_t k = e - s, steps = k < c.window ? k : c.window;
  const double log_end = c.at(e, 1);
  double mi = double(m[j]), ui = sqrt(double(Amsgrad ? vmax[j] : v[j])), drift = 0.0;
  for (std::int64_t i = 1; i <= steps; ++i) {
    const std::int64_t t = s + i;
    mi *= c.beta1;
    ui *= c.root_beta2;
    double dt = c.at(t, 2) * mi / (ui + c.at(t, 3));
    if (c.decays) dt *= exp(log_end - c.at(t, 1));
    drift += dt;
  }
  const double decay = c.decays ? exp(log_end - c.at(s, 1)) : 1.0;
  p[j] = T(double(p[j]) * decay - drift);
  m[j] = T(double(m[j]) * pow(c.beta1, double(k)));
  v[j] = T(double(v[j]) * pow(c.beta2, double(k)));
}

// This step's dense update (the CPU's adam_exact_step, after the catch-up).
template <class T>
struct AdamDense {
  T beta2, keep1, keep2, eps, bias_sqrt2, step_size, shrink;
  bool decoupled;
};

// A warp per touched row: caught up to step - 1, then the dense update; last_step = step.
template <bool Amsgrad, class T, class I>
__global__ void adam_exact_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* exp_avg,
                                  T* exp_avg_sq, T* max_exp_avg_sq, std::int64_t* last, AdamCatchUp c,
                                  AdamDense<T> d, std::int64_t step) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u], s = last[r];
  T* p = param + r * w;
  T* m = exp_avg + r * w;
  T* v = exp_avg_sq + r * w;
  T* vmax = Amsgrad ? max_exp_avg_sq + r * w : nullptr;
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    if (s < step - 1) adam_catch_up_element<Amsgrad>(c, p, m, v, vmax, j, s, step - 1);
    if (d.decoupled) formulas::scale(p, j, d.shrink);
    formulas::adam_dense<Amsgrad>(p, m, v, vmax, j, summed_element(g, u, values, w, j), d.beta2, d.keep1, d.keep2,
                                  d.eps, d.bias_sqrt2, d.step_size);
  }
  __syncwarp();  // every lane has read last[r]
  if (lane_index() == 0) last[r] = step;
}

// A warp per row: rows[u] for u < *count (grouped indices), or row u for u < num_rows (rows
// null: every row); each caught up to `step`.
template <bool Amsgrad, class T, class I>
__global__ void adam_flush_kernel(const I* rows, const std::int64_t* count, std::int64_t num_rows, std::int64_t w,
                                  T* param, T* exp_avg, T* exp_avg_sq, const T* max_exp_avg_sq, std::int64_t* last,
                                  AdamCatchUp c, std::int64_t step) {
  const std::int64_t u = warp_index();
  if (u >= (rows ? *count : num_rows)) return;
  const std::int64_t r = rows ? std::int64_t(rows[u]) : u, s = last[r];
  if (s >= step) return;
  const T* vmax = Amsgrad ? max_exp_avg_sq + r * w : nullptr;
  for (std::int64_t j = lane_index(); j < w; j += warp_size)
    adam_catch_up_element<Amsgrad>(c, param + r * w, exp_avg + r * w, exp_avg_sq + r * w, vmax, j, s, step);
  __syncwarp();
  if (lane_index() == 0) last[r] = step;
}

// The checks a step and a flush share (before anything is written); the arrays they write.
template <class T>
sparseopt::detail::WrittenArrays check_exact(const Table<T>& param, const AdamState<T>& state,
                                             const AdamOptions& o, std::int64_t step, const DeviceRecord& record,
                                             const ExactLayout& layout) {
  o.validate();
  require(o.mode == Mode::exact, "adam_exact_step and adam_exact_flush take mode=Mode::exact options");
  require(state.exact.first_step != nullptr, "exact mode on the device needs the bounded record "
          "(ExactState::first_step, history_start in Python)");
  auto written = sparseopt::detail::require_adam_state(param, state, o);
  const sparseopt::detail::ExactBook book(layout, state.exact);
  book.require_step(step, param.num_rows);
  require(record.columns != nullptr && record.capacity > step - book.first_step(), "the device record has room "
          "for ", record.capacity, " steps from step ", book.first_step(), "; step ", step, " needs ",
          step - book.first_step() + 1, " (allocate device_record_rows rows)");
  require(layout.aux == 2, "the device record holds 4 columns per step");
  // last_step is written on the device; the host record (history, window, history_start) is
  // host memory, apart from every device array.
  written.add(state.exact.last_step, param.num_rows * 8, "last_step");
  written.add(record.columns, record.capacity * 4 * 8, "the device record");
  return written;
}

template <class T>
AdamCatchUp catch_up_of(const AdamOptions& o, const AdamState<T>& state, const DeviceRecord& record,
                        const ExactLayout& layout) {
  return {record.columns, *state.exact.first_step, layout.window, o.beta1, o.beta2, o.amsgrad ? 1.0 : std::sqrt(o.beta2),
          o.weight_decay != 0.0};
}

// Copies host record row (t - first) into the device mirror, in stream order.
void upload_row(const sparseopt::detail::ExactBook& book, const ExactLayout& layout, const ExactState& exact,
                const DeviceRecord& record, std::int64_t t, cudaStream_t stream) {
  const std::int64_t i = t - book.first_step();
  detail::check(cudaMemcpyAsync(record.columns + i * 4, exact.history + i * layout.columns(), 4 * sizeof(double),
                                cudaMemcpyHostToDevice, stream),
                "cudaMemcpyAsync");
}

template <class T, class I>
void flush_rows(const Table<T>& param, const AdamState<T>& state, const AdamOptions& o, std::int64_t step,
                const AdamCatchUp& c, const I* rows, const std::int64_t* count, std::int64_t capacity,
                cudaStream_t stream) {
  auto run = [&](auto kernel) {
    launch_rows(capacity, stream, kernel, rows, count, param.num_rows, param.row_width, param.data,
                state.exp_avg.data, state.exp_avg_sq.data, state.max_exp_avg_sq.data, state.exact.last_step, c,
                step);
  };
  o.amsgrad ? run(adam_flush_kernel<true, T, I>) : run(adam_flush_kernel<false, T, I>);
}

}  // namespace

template <class T, class I>
void adam_exact_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
                     const AdamOptions& o, std::int64_t step, const DeviceRecord& record, cudaStream_t stream) {
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  const auto& constants = sparseopt::detail::adam_exact_constants<T>(o);  // validates o first
  const ExactLayout& layout = constants.layout;
  const auto written = check_exact(param, state, o, step, record, layout);
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, written, scratch);  // waits: indices checked

  // The host record, as the CPU's adam_exact_step keeps it.
  const sparseopt::detail::ExactBook book(layout, state.exact);
  const auto now = sparseopt::detail::adam_step_scalars<T>(o, step);
  const double aux[2] = {now.c, now.q};
  book.record(step, o.lr, now.delta, aux);
  upload_row(book, layout, state.exact, record, step, stream);

  const AdamCatchUp c = catch_up_of(o, state, record, layout);
  const AdamDense<T> d{T(o.beta2), T(1.0 - o.beta1), T(1.0 - o.beta2), T(o.eps), T(now.bias_sqrt2),
                       T(now.step_size), T(now.delta), now.delta != 1.0};
  auto run = [&](auto kernel) {
    launch_rows(g.capacity, stream, kernel, g, grad.values, param.row_width, param.data, state.exp_avg.data,
                state.exp_avg_sq.data, state.max_exp_avg_sq.data, state.exact.last_step, c, d, step);
  };
  o.amsgrad ? run(adam_exact_kernel<true, T, I>) : run(adam_exact_kernel<false, T, I>);

  const auto& series = constants.series;
  double f[sparseopt::detail::adam_max_terms];
  for (int n = 0; n < series.terms; ++n) f[n] = now.c * std::pow(now.q / series.scale, n);
  book.advance(step, now.delta, f, series.ratio);
  // The bounded record's restart (the CPU's restart_record): every row caught up to `step` on
  // the device, then the record moves on the host and its new row 0 goes to the mirror.
  if (step - book.first_step() < exact_record_span) return;
  flush_rows<T, I>(param, state, o, step, c, nullptr, nullptr, param.num_rows, stream);
  double* latest = state.exact.history + (step - book.first_step()) * layout.columns();
  std::copy(latest, latest + layout.columns(), state.exact.history);
  state.exact.history[1] = 0.0;
  *state.exact.first_step = step;
  upload_row(book, layout, state.exact, record, step, stream);
}

template <class T, class I>
void adam_exact_flush(const Table<T>& param, const AdamState<T>& state, const AdamOptions& o, std::int64_t step,
                      const DeviceRecord& record, const I* indices, std::int64_t n, cudaStream_t stream) {
  require(step >= 0, "step must be >= 0, got ", step);
  const ExactLayout& layout = sparseopt::detail::adam_exact_constants<T>(o).layout;
  const auto written = check_exact(param, state, o, step, record, layout);
  const AdamCatchUp c = catch_up_of(o, state, record, layout);
  if (indices == nullptr) return flush_rows<T, I>(param, state, o, step, c, nullptr, nullptr, param.num_rows, stream);
  require(n >= 0, "n must be >= 0, got ", n);
  written.require_apart_from(indices, n * std::int64_t(sizeof(I)), "indices");
  Scratch scratch(stream);
  const Groups<I> g = detail::group_indices(indices, n, param.num_rows, "indices", scratch);  // waits
  flush_rows<T, I>(param, state, o, step, c, g.rows, g.num_groups, g.capacity, stream);
}

#define SPARSEOPT_CUDA_EXACT(T, I)                                                                                \
  template void adam_exact_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const AdamState<T>&,              \
                                      const AdamOptions&, std::int64_t, const DeviceRecord&, cudaStream_t);      \
  template void adam_exact_flush<T, I>(const Table<T>&, const AdamState<T>&, const AdamOptions&, std::int64_t,   \
                                       const DeviceRecord&, const I*, std::int64_t, cudaStream_t);

SPARSEOPT_CUDA_EXACT(float, std::int32_t)
SPARSEOPT_CUDA_EXACT(float, std::int64_t)
SPARSEOPT_CUDA_EXACT(double, std::int32_t)
SPARSEOPT_CUDA_EXACT(double, std::int64_t)

}  // namespace cuda
}  // namespace sparseopt
