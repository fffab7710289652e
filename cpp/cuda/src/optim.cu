// Lazy optimizer steps on the device: the gradient's repeated indices grouped (groups.cuh),
// then a warp per touched row, each lane summing its elements' values in order of appearance
// and applying the CPU's per-element formula (optim/formulas.hpp). Compiled with --fmad=false
// (CMakeLists.txt) so that these formulas round as on the CPU.
#include <cstdint>
#include <tuple>

#include "groups.cuh"

namespace sparseopt {
namespace cuda {
namespace {

using detail::launch_rows;
using detail::prepare;
using detail::Scratch;
using sparseopt::detail::require;

// The options of an optimizer with two modes, and its step count: lazy mode only.
template <class Options>
void check_lazy_step(const Options& options, std::int64_t step) {
  options.validate();
  if (options.mode == Mode::exact)
    throw not_implemented("mode='exact' is not implemented by this call on the device; call "
                          "adam_exact_step, sgd_exact_step or rmsprop_exact_step (sparseopt/cuda/exact.hpp)");
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
}

// Lane 0's value of a per-row counter after incrementing it, in every lane.
__device__ __forceinline__ std::int64_t bump_row_count(std::int64_t* counts, std::int64_t r) {
  std::int64_t t = 0;
  if (lane_index() == 0) t = ++counts[r];
  return __shfl_sync(full_warp, t, 0);
}

// ---- SGD ------------------------------------------------------------------------------------

template <class T>
struct SgdScalars {
  T lr, mu, keep, wd;
  bool nesterov;
};

template <bool Momentum, bool Coupled, class T, class I>
__global__ void sgd_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* buffer,
                           std::int64_t* row_steps, SgdScalars<T> c) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u];
  T* p = param + r * w;
  bool first = false;
  if constexpr (Momentum) first = bump_row_count(row_steps, r) == 1;  // the row's first touch
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    const T grad = summed_element(g, u, values, w, j);
    if constexpr (Momentum)
      formulas::sgd_momentum<Coupled>(p, buffer + r * w, j, grad, c.lr, c.mu, c.keep, c.nesterov, first, c.wd);
    else
      formulas::sgd<Coupled>(p, j, grad, c.lr, c.wd);
  }
}

// ---- Adam / AdamW ---------------------------------------------------------------------------

template <class T>
struct AdamScalars {
  T keep1, keep2, eps, step_size, wd, shrink;
  bool decoupled, per_row;
  double lr, beta1, beta2;
};

template <bool Amsgrad, bool Coupled, class T, class I>
__global__ void adam_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* exp_avg, T* exp_avg_sq,
                            T* max_exp_avg_sq, std::int64_t* row_steps, AdamScalars<T> c) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u];
  T step_size = c.step_size;
  if (c.per_row) step_size = T(formulas::adam_step_size(c.lr, c.beta1, c.beta2, double(bump_row_count(row_steps, r))));
  T* p = param + r * w;
  T* m = exp_avg + r * w;
  T* v = exp_avg_sq + r * w;
  T* vmax = Amsgrad ? max_exp_avg_sq + r * w : nullptr;
  for (std::int64_t j = lane_index(); j < w; j += warp_size) {
    const T grad = summed_element(g, u, values, w, j);
    if (c.decoupled) formulas::scale(p, j, c.shrink);
    formulas::adam_lazy<Amsgrad, Coupled>(p, m, v, vmax, j, grad, c.keep1, c.keep2, c.eps, step_size, c.wd);
  }
}

// ---- Adagrad, RMSprop, FTRL -----------------------------------------------------------------

template <class T, class I>
__global__ void adagrad_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* sum, T clr, T eps) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u];
  for (std::int64_t j = lane_index(); j < w; j += warp_size)
    formulas::adagrad(param + r * w, sum + r * w, j, summed_element(g, u, values, w, j), clr, eps);
}

template <class T>
struct RmspropScalars {
  T lr, alpha, keep, eps, mu;
};

template <bool Centered, bool Momentum, class T, class I>
__global__ void rmsprop_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* square_avg, T* grad_avg,
                               T* buffer, RmspropScalars<T> c) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t o = std::int64_t(g.rows[u]) * w;
  T* ga = Centered ? grad_avg + o : nullptr;
  T* b = Momentum ? buffer + o : nullptr;
  for (std::int64_t j = lane_index(); j < w; j += warp_size)
    formulas::rmsprop<Centered, Momentum>(param + o, square_avg + o, ga, b, j, summed_element(g, u, values, w, j),
                                          c.lr, c.alpha, c.keep, c.eps, c.mu);
}

template <bool SqrtPower, class T, class I>
__global__ void ftrl_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* accumulator, T* linear,
                            T lr, T neg_lr_power, T l1, T two_l2) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t o = std::int64_t(g.rows[u]) * w;
  for (std::int64_t j = lane_index(); j < w; j += warp_size)
    formulas::ftrl<SqrtPower>(param + o, accumulator + o, linear + o, j, summed_element(g, u, values, w, j), lr,
                              neg_lr_power, l1, two_l2);
}

// ---- Row-wise Adagrad -----------------------------------------------------------------------

// Lanes 0-7 add the squares of elements l, l + 8, ... in order (the CPU's eight partial sums),
// every lane combines them as the CPU does, and every lane then updates its elements.
template <class T, class I>
__global__ void rowwise_adagrad_kernel(Groups<I> g, const T* values, std::int64_t w, T* param, T* sum, double lr,
                                       double eps) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  const std::int64_t r = g.rows[u];
  const int lane = lane_index();
  T part = 0;
  if (lane < formulas::rowwise_parts)
    for (std::int64_t j = lane; j < w; j += formulas::rowwise_parts)
      formulas::rowwise_square_add(part, summed_element(g, u, values, w, j));
  T parts[formulas::rowwise_parts];
  for (int l = 0; l < formulas::rowwise_parts; ++l) parts[l] = __shfl_sync(full_warp, part, l);
  const T s_new = formulas::rowwise_new_sum(sum[r], formulas::rowwise_combine_parts(parts), w);
  __syncwarp();  // every lane has read sum[r]
  if (lane == 0) sum[r] = s_new;
  const T multiplier = formulas::rowwise_multiplier(s_new, T(lr), T(eps));
  T* p = param + r * w;
  for (std::int64_t j = lane; j < w; j += warp_size)
    formulas::rowwise_adagrad(p, j, summed_element(g, u, values, w, j), multiplier);
}

template <class T, class I>
__global__ void coalesce_kernel(Groups<I> g, const T* values, std::int64_t w, I* unique_out, T* values_out,
                                std::int64_t* counts_out) {
  const std::int64_t u = warp_index();
  if (u >= *g.num_groups) return;
  if (lane_index() == 0) {
    unique_out[u] = g.rows[u];
    counts_out[u] = g.counts[u];
  }
  for (std::int64_t j = lane_index(); j < w; j += warp_size) values_out[u * w + j] = summed_element(g, u, values, w, j);
}

}  // namespace

template <class T, class I>
std::int64_t coalesce(const RowSparse<T, I>& grad, std::int64_t num_rows, I* unique_out, T* values_out,
                      std::int64_t* counts_out, std::int64_t capacity, cudaStream_t stream) {
  require(grad.size >= 0 && grad.row_width >= 0, "the gradient size and row width must be >= 0");
  require(grad.size == 0 || (grad.indices != nullptr && grad.values != nullptr), "indices or values is null");
  {  // the outputs apart from the inputs and from each other (pointer ranges, as the CPU checks)
    using sparseopt::detail::require_disjoint;
    const std::int64_t u_bytes = capacity * std::int64_t(sizeof(I)), c_bytes = capacity * 8;
    const std::int64_t v_bytes = capacity * grad.row_width * std::int64_t(sizeof(T));
    const std::int64_t i_bytes = grad.size * std::int64_t(sizeof(I));
    const std::int64_t g_bytes = grad.size * grad.row_width * std::int64_t(sizeof(T));
    for (auto [out, bytes, name] : {std::tuple<const void*, std::int64_t, const char*>{unique_out, u_bytes, "rows"},
                                    {values_out, v_bytes, "values_out"}, {counts_out, c_bytes, "counts"}}) {
      require_disjoint(out, bytes, name, grad.indices, i_bytes, "indices");
      require_disjoint(out, bytes, name, grad.values, g_bytes, "values");
    }
    require_disjoint(unique_out, u_bytes, "rows", values_out, v_bytes, "values_out");
    require_disjoint(unique_out, u_bytes, "rows", counts_out, c_bytes, "counts");
    require_disjoint(values_out, v_bytes, "values_out", counts_out, c_bytes, "counts");
  }
  Scratch scratch(stream);
  const Groups<I> g = detail::group_indices(grad.indices, grad.size, num_rows, "indices", scratch);
  const std::int64_t unique = detail::count_groups(g, scratch);
  require(capacity >= unique, "the output holds ", capacity, " rows but the gradient has ", unique,
          " distinct indices; pass capacity >= min(number of indices, num_rows)");
  if (unique == 0) return 0;
  require(unique_out != nullptr && counts_out != nullptr && (values_out != nullptr || grad.row_width == 0),
          "unique_out, values_out or counts_out is null");
  launch_rows(g.capacity, stream, coalesce_kernel<T, I>, g, grad.values, grad.row_width, unique_out, values_out,
              counts_out);
  return unique;
}

// ---- the public steps -----------------------------------------------------------------------

template <class T, class I>
void sgd_step(const Table<T>& param, const RowSparse<T, I>& grad, const SgdState<T>& state,
              const SgdOptions& options, std::int64_t step, cudaStream_t stream) {
  check_lazy_step(options, step);
  const auto written = sparseopt::detail::require_sgd_state(param, state, options);
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, written, scratch);
  const SgdScalars<T> c{T(options.lr), T(options.momentum), T(1.0 - options.dampening), T(options.weight_decay),
                        options.nesterov};
  const bool momentum = options.momentum != 0.0, coupled = options.weight_decay != 0.0;
  auto run = [&](auto kernel) {
    launch_rows(g.capacity, stream, kernel, g, grad.values, param.row_width, param.data, state.momentum_buffer.data,
                state.row_steps, c);
  };
  if (momentum)
    coupled ? run(sgd_kernel<true, true, T, I>) : run(sgd_kernel<true, false, T, I>);
  else
    coupled ? run(sgd_kernel<false, true, T, I>) : run(sgd_kernel<false, false, T, I>);
}

template <class T, class I>
void adam_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdamState<T>& state,
               const AdamOptions& options, std::int64_t step, cudaStream_t stream) {
  check_lazy_step(options, step);
  const auto written = sparseopt::detail::require_adam_state(param, state, options);
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, written, scratch);
  const AdamOptions& o = options;
  AdamScalars<T> c;
  c.keep1 = T(1.0 - o.beta1);
  c.keep2 = T(1.0 - o.beta2);
  c.eps = T(o.eps);
  c.step_size = T(sparseopt::detail::adam_step_size(o, step));
  c.wd = o.decoupled ? T(0) : T(o.weight_decay);
  c.shrink = T(1.0 - o.lr * o.weight_decay);  // AdamW, in the table's precision as torch
  c.decoupled = o.decoupled && o.weight_decay != 0.0;
  c.per_row = o.bias_correction == BiasCorrection::row;
  c.lr = o.lr;
  c.beta1 = o.beta1;
  c.beta2 = o.beta2;
  auto run = [&](auto kernel) {
    launch_rows(g.capacity, stream, kernel, g, grad.values, param.row_width, param.data, state.exp_avg.data,
                state.exp_avg_sq.data, state.max_exp_avg_sq.data, state.row_steps, c);
  };
  if (o.amsgrad)
    c.wd != T(0) ? run(adam_kernel<true, true, T, I>) : run(adam_kernel<true, false, T, I>);
  else
    c.wd != T(0) ? run(adam_kernel<false, true, T, I>) : run(adam_kernel<false, false, T, I>);
}

template <class T, class I>
void adagrad_step(const Table<T>& param, const RowSparse<T, I>& grad, const AdagradState<T>& state,
                  const AdagradOptions& options, std::int64_t step, cudaStream_t stream) {
  options.validate();
  require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  sparseopt::detail::require_same_rows(param, state.sum, "sum");
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, sparseopt::detail::WrittenArrays(param).add(state.sum, "sum"), scratch);
  const T clr = T(options.lr / (1.0 + double(step - 1) * options.lr_decay));
  launch_rows(g.capacity, stream, adagrad_kernel<T, I>, g, grad.values, param.row_width, param.data, state.sum.data,
              clr, T(options.eps));
}

template <class T, class I>
void rmsprop_step(const Table<T>& param, const RowSparse<T, I>& grad, const RmspropState<T>& state,
                  const RmspropOptions& options, std::int64_t step, cudaStream_t stream) {
  check_lazy_step(options, step);
  const auto written = sparseopt::detail::require_rmsprop_state(param, state, options);
  Scratch scratch(stream);
  const Groups<I> g = prepare(param, grad, written, scratch);
  const RmspropScalars<T> c{T(options.lr), T(options.alpha), T(1.0 - options.alpha), T(options.eps),
                            T(options.momentum)};
  auto run = [&](auto kernel) {
    launch_rows(g.capacity, stream, kernel, g, grad.values, param.row_width, param.data, state.square_avg.data,
                state.grad_avg.data, state.momentum_buffer.data, c);
  };
  const bool momentum = options.momentum != 0.0;
  if (options.centered)
    momentum ? run(rmsprop_kernel<true, true, T, I>) : run(rmsprop_kernel<true, false, T, I>);
  else
    momentum ? run(rmsprop_kernel<false, true, T, I>) : run(rmsprop_kernel<false, false, T, I>);
}

template <class T, class I>
void rowwise_adagrad_step(const Table<T>& param, const RowSparse<T, I>& grad, const RowWiseAdagradState<T>& state,
                          const RowWiseAdagradOptions& options, cudaStream_t stream) {
  options.validate_in<T>();
  require(state.sum != nullptr || param.num_rows == 0, "sum is null");
  Scratch scratch(stream);
  const auto written =
      sparseopt::detail::WrittenArrays(param).add(state.sum, param.num_rows * std::int64_t(sizeof(T)), "sum");
  const Groups<I> g = prepare(param, grad, written, scratch);
  if (param.row_width == 0) return;  // nothing to average: rows stay as they are
  launch_rows(g.capacity, stream, rowwise_adagrad_kernel<T, I>, g, grad.values, param.row_width, param.data,
              state.sum, options.lr, options.eps);
}

template <class T, class I>
void ftrl_step(const Table<T>& param, const RowSparse<T, I>& grad, const FtrlState<T>& state,
               const FtrlOptions& options, cudaStream_t stream) {
  options.validate_in<T>();
  sparseopt::detail::require_same_rows(param, state.accumulator, "accumulator");
  sparseopt::detail::require_same_rows(param, state.linear, "linear");
  Scratch scratch(stream);
  const Groups<I> g = prepare(
      param, grad,
      sparseopt::detail::WrittenArrays(param).add(state.accumulator, "accumulator").add(state.linear, "linear"),
      scratch);
  const sparseopt::detail::FtrlScalars<T> c(options);
  auto run = [&](auto kernel) {
    launch_rows(g.capacity, stream, kernel, g, grad.values, param.row_width, param.data, state.accumulator.data,
                state.linear.data, c.lr, c.neg_lr_power, c.l1, c.two_l2);
  };
  c.sqrt_power ? run(ftrl_kernel<true, T, I>) : run(ftrl_kernel<false, T, I>);
}

#define SPARSEOPT_CUDA_STEPS(T, I)                                                                                  \
  template void sgd_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const SgdState<T>&, const SgdOptions&,     \
                               std::int64_t, cudaStream_t);                                                         \
  template void adam_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const AdamState<T>&, const AdamOptions&,  \
                                std::int64_t, cudaStream_t);                                                        \
  template void adagrad_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const AdagradState<T>&,                \
                                   const AdagradOptions&, std::int64_t, cudaStream_t);                              \
  template void rmsprop_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const RmspropState<T>&,                \
                                   const RmspropOptions&, std::int64_t, cudaStream_t);                              \
  template void rowwise_adagrad_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const RowWiseAdagradState<T>&, \
                                           const RowWiseAdagradOptions&, cudaStream_t);                             \
  template void ftrl_step<T, I>(const Table<T>&, const RowSparse<T, I>&, const FtrlState<T>&, const FtrlOptions&,  \
                                cudaStream_t);                                                              \
  template std::int64_t coalesce<T, I>(const RowSparse<T, I>&, std::int64_t, I*, T*, std::int64_t*, std::int64_t, \
                                       cudaStream_t);

SPARSEOPT_CUDA_STEPS(float, std::int32_t)
SPARSEOPT_CUDA_STEPS(float, std::int64_t)
SPARSEOPT_CUDA_STEPS(double, std::int32_t)
SPARSEOPT_CUDA_STEPS(double, std::int64_t)

int device_count() noexcept {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the error so that later calls do not see it
    return 0;
  }
  return count;
}

}  // namespace cuda
}  // namespace sparseopt
