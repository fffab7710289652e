// The per-element update of every optimizer's touched row, written once for the host and the
// device. The CPU row loops (adam.hpp, sgd.hpp, ...) call these in their loop over a row's
// elements; the CUDA kernels (cpp/cuda/) call them with one element per thread of a warp. Each
// function updates element j of the row pointers it is given, with the operations, in the
// order and precision, that the loop body had before it moved here: the CPU's bits do not
// change, and a device build compiled without contraction (nvcc --fmad=false) and IEEE sqrt and
// division (nvcc's defaults) computes the same bits from the same inputs.
//
// Host and device may differ only where a library function rounds differently (pow, in FTRL
// with lr_power != -0.5 and in per-row bias correction's step size, computed in double).
//
// No <algorithm> (std::min/max are constexpr host functions): the selects are written out, with
// std::max's and std::min's semantics (the first argument unless the second is strictly
// better), so NaNs propagate as they did.
#pragma once

#include <cmath>
#include <cstdint>

#include "../config.hpp"

#if defined(__CUDACC__)
#define SPARSEOPT_HD_INLINE __host__ __device__ __forceinline__
#elif defined(__GNUC__) || defined(__clang__)
#define SPARSEOPT_HD_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define SPARSEOPT_HD_INLINE __forceinline
#else
#define SPARSEOPT_HD_INLINE inline
#endif

namespace sparseopt {
namespace formulas {

// std::sqrt on the host; the device's IEEE-rounded sqrt (float and double overloads) there.
template <class T>
SPARSEOPT_HD_INLINE T sqrt_of(T x) noexcept {
#if defined(__CUDA_ARCH__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

template <class T>
SPARSEOPT_HD_INLINE T pow_of(T x, T y) noexcept {
#if defined(__CUDA_ARCH__)
  return ::pow(x, y);
#else
  return std::pow(x, y);
#endif
}

// std::max(a, b) and std::min(a, b): a unless b is strictly larger (smaller).
template <class T>
SPARSEOPT_HD_INLINE T max_of(T a, T b) noexcept {
  return a < b ? b : a;
}
template <class T>
SPARSEOPT_HD_INLINE T min_of(T a, T b) noexcept {
  return b < a ? b : a;
}

// p *= factor (AdamW's decoupled decay, applied before the Adam update).
template <class T>
SPARSEOPT_HD_INLINE void scale(T* SPARSEOPT_RESTRICT p, std::int64_t j, T factor) noexcept {
  p[j] *= factor;
}

// Each function takes the element's summed gradient `grad` by value (a register on the device).

// Adam's bias-corrected step size after t steps, lr * sqrt(1 - beta2^t) / (1 - beta1^t), in
// double (per row on the device with bias_correction='row').
SPARSEOPT_HD_INLINE double adam_bias_sqrt2(double beta2, double t) noexcept {
  return sqrt_of(1.0 - pow_of(beta2, t));
}
SPARSEOPT_HD_INLINE double adam_step_size(double lr, double beta1, double beta2, double t) noexcept {
  return lr * adam_bias_sqrt2(beta2, t) / (1.0 - pow_of(beta1, t));
}

// Lazy Adam (torch.optim.SparseAdam's rounding: old + (1 - beta) (new - old)); Coupled adds
// wd * p to the gradient first; Amsgrad keeps the running maximum of v in vmax.
template <bool Amsgrad, bool Coupled, class T>
SPARSEOPT_HD_INLINE void adam_lazy(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
                                   T* SPARSEOPT_RESTRICT vmax, std::int64_t j, T grad,
                                   T keep1, T keep2, T eps, T step_size, T wd) noexcept {
  const T gj = Coupled ? grad + wd * p[j] : grad;
  const T m_new = m[j] + (gj - m[j]) * keep1;
  const T v_new = v[j] + (gj * gj - v[j]) * keep2;
  m[j] = m_new;
  v[j] = v_new;
  T v_hat = v_new;
  if constexpr (Amsgrad) v_hat = vmax[j] = max_of(vmax[j], v_new);
  p[j] -= step_size * (m_new / (sqrt_of(v_hat) + eps));
}

// Exact-mode Adam on a touched row: torch.optim.Adam's dense formula for this step.
template <bool Amsgrad, class T>
SPARSEOPT_HD_INLINE void adam_dense(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
                                    T* SPARSEOPT_RESTRICT vmax, std::int64_t j, T grad,
                                    T beta2, T keep1, T keep2, T eps, T bias_sqrt2, T step_size) noexcept {
  const T m_new = m[j] + (grad - m[j]) * keep1;
  const T v_new = v[j] * beta2 + keep2 * grad * grad;
  m[j] = m_new;
  v[j] = v_new;
  T v_hat = v_new;
  if constexpr (Amsgrad) v_hat = vmax[j] = max_of(vmax[j], v_new);
  p[j] -= step_size * (m_new / (sqrt_of(v_hat) / bias_sqrt2 + eps));
}

// SGD without momentum; Coupled: L2 weight decay added to the gradient.
template <bool Coupled, class T>
SPARSEOPT_HD_INLINE void sgd(T* SPARSEOPT_RESTRICT p, std::int64_t j, T grad, T lr,
                             T wd) noexcept {
  p[j] -= lr * (Coupled ? grad + wd * p[j] : grad);
}

// SGD with momentum; first: the buffer does not exist yet and starts as g (undampened).
template <bool Coupled, class T>
SPARSEOPT_HD_INLINE void sgd_momentum(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT b,
                                      std::int64_t j, T grad, T lr, T mu, T keep,
                                      bool nesterov, bool first, T wd) noexcept {
  const T gj = Coupled ? grad + wd * p[j] : grad;
  const T bj = first ? gj : mu * b[j] + keep * gj;
  b[j] = bj;
  p[j] -= lr * (nesterov ? gj + mu * bj : bj);
}

// Adagrad: sum += g^2; p -= clr * g / (sqrt(sum) + eps).
template <class T>
SPARSEOPT_HD_INLINE void adagrad(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT s, std::int64_t j, T grad,
                                 T clr, T eps) noexcept {
  s[j] += grad * grad;
  p[j] -= clr * (grad / (sqrt_of(s[j]) + eps));
}

// RMSprop (torch.optim.RMSprop), with a centered gradient average and/or momentum.
template <bool Centered, bool Momentum, class T>
SPARSEOPT_HD_INLINE void rmsprop(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT sq, T* SPARSEOPT_RESTRICT ga,
                                 T* SPARSEOPT_RESTRICT b, std::int64_t j, T grad, T lr,
                                 T alpha, T keep, T eps, T mu) noexcept {
  const T s = sq[j] * alpha + keep * grad * grad;
  sq[j] = s;
  T avg;
  if constexpr (Centered) {
    const T a = ga[j] + (grad - ga[j]) * keep;
    ga[j] = a;
    avg = sqrt_of(s - a * a) + eps;
  } else {
    avg = sqrt_of(s) + eps;
  }
  if constexpr (Momentum) {
    const T bj = b[j] * mu + grad / avg;
    b[j] = bj;
    p[j] -= lr * bj;
  } else {
    p[j] -= lr * (grad / avg);
  }
}

// accum**(-lr_power), through sqrt on TF's lr_power == -0.5 path.
template <bool SqrtPower, class T>
SPARSEOPT_HD_INLINE T ftrl_power(T accum, T neg_lr_power) noexcept {
  if constexpr (SqrtPower) {
    return sqrt_of(accum);
  } else {
    return pow_of(accum, neg_lr_power);
  }
}

// FTRL-proximal as TensorFlow's SparseApplyFtrl (ftrl.hpp).
template <bool SqrtPower, class T>
SPARSEOPT_HD_INLINE void ftrl(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT accum, T* SPARSEOPT_RESTRICT linear,
                              std::int64_t j, T grad, T lr, T neg_lr_power, T l1,
                              T two_l2) noexcept {
  const T accum_new = accum[j] + grad * grad;
  const T power_new = ftrl_power<SqrtPower>(accum_new, neg_lr_power);
  const T sigma = (power_new - ftrl_power<SqrtPower>(accum[j], neg_lr_power)) / lr;
  const T z = linear[j] + (grad - sigma * p[j]);
  const T quadratic = power_new / lr + two_l2;
  p[j] = (max_of(min_of(z, l1), -l1) - z) / quadratic;
  linear[j] = z;
  accum[j] = accum_new;
}

// Row-wise Adagrad: the row's sum of squares adds eight partial sums, partial l taking the
// elements j = l, l + 8, ... in order (rowwise_square_add), combined pairwise
// (rowwise_combine_parts); then sum = T(sum + squares / w), and each element moves by
// T(W(p) - multiplier * W(g)), W being the type the step computes in (rowwise_adagrad).
inline constexpr int rowwise_parts = 8;

template <class W, class T>
SPARSEOPT_HD_INLINE void rowwise_square_add(W& part, T grad) noexcept {
  part += W(grad) * W(grad);
}

template <class W>
SPARSEOPT_HD_INLINE W rowwise_combine_parts(const W* part) noexcept {
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

template <class W, class T>
SPARSEOPT_HD_INLINE T rowwise_new_sum(T sum, W squares, std::int64_t w) noexcept {
  return T(W(sum) + squares / W(w));
}

template <class W, class T>
SPARSEOPT_HD_INLINE W rowwise_multiplier(T sum, W lr, W eps) noexcept {
  return lr / (sqrt_of(W(sum)) + eps);
}

template <class W, class T>
SPARSEOPT_HD_INLINE void rowwise_adagrad(T* SPARSEOPT_RESTRICT p, std::int64_t j, T grad,
                                         W multiplier) noexcept {
  p[j] = T(W(p[j]) - multiplier * W(grad));
}

}  // namespace formulas
}  // namespace sparseopt
