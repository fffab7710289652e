// Sparse Adam and AdamW.
//
// Lazy mode follows torch.optim.SparseAdam: on each touched row
//   m += (1 - beta1) (g - m);   v += (1 - beta2) (g^2 - v)
//   p -= lr * sqrt(1 - beta2^t) / (1 - beta1^t) * m / (sqrt(v) + eps)
// and untouched rows keep parameters and moments. The bias-correction count t is
//   global - the optimizer's step count (SparseAdam, PyTorch's Adam);
//   row    - the number of steps that touched this row, so a row first touched late still
//            gets a first step of size lr (lazy mode only);
//   none   - no correction (t -> infinity).
// Options: amsgrad (v replaced by its running maximum), weight_decay as L2 added to the
// gradient (Adam) or as decoupled decay p *= 1 - lr * weight_decay (AdamW), on touched rows.
//
// Exact mode is torch.optim.Adam / AdamW (dense; eps added after the bias correction):
//   m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2
//   p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// fed a zero gradient on untouched rows, which are caught up when next touched or flushed.
// Over skipped steps j = 1..k after step s (u = sqrt(v_s), or sqrt(max v) with amsgrad, which
// a zero gradient does not change):
//   m = beta1^j m_s,  sqrt(v) = beta2^(j/2) u,  drift_j = c_j beta1^j m_s / (beta2^(a j) u + q_j)
// with c_j = lr_j sqrt(bc2_j) / bc1_j, q_j = eps sqrt(bc2_j), a = 1/2 (0 with amsgrad). For
// u well above eps the denominator is a geometric series in q_j beta2^(-a j) / u, whose terms
// are window sums (exact.hpp) of ratio beta1 beta2^(-a (n+1)) and factor c_j q_j^n: the drift
// of every element is m_s * sum_n (-1)^n S_n / u^(n+1), O(terms) per element. Elements with u
// near eps (tiny gradients, or v = 0 where an input feature is always zero) take the per-step
// sum instead, bounded by the window length H, in groups that share each step's scalars; the
// rest of their row keeps the vectorised series. A row caught up over a few steps (a flush after every step) takes the
// per-step sum whole, vectorised over its elements: cheaper there than a long series.
// AdamW's decay multiplies the parameter by prod (1 - lr_j wd), folded into the sums.
// Coupled L2 decay (Adam's weight_decay) has no such closed form: exact mode refuses it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "../simd.hpp"
#include "common.hpp"
#include "formulas.hpp"
#include "exact.hpp"
#include "rows.hpp"

namespace sparseopt {

enum class BiasCorrection { global, row, none };

struct AdamOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled = false;  // AdamW: p *= 1 - lr * weight_decay instead of g += weight_decay * p
  bool amsgrad = false;
  Mode mode = Mode::lazy;
  BiasCorrection bias_correction = BiasCorrection::global;

  void validate() const;
};

template <class T>
struct AdamState {
  Table<T> exp_avg;                   // first moment m
  Table<T> exp_avg_sq;                // second moment v
  Table<T> max_exp_avg_sq;            // running maximum of v, with amsgrad
  std::int64_t* row_steps = nullptr;  // per-row touch counts, for BiasCorrection::row
  ExactState exact;                   // exact mode's record
};

namespace detail {

inline constexpr int adam_max_terms = 24;
// Rows caught up over at most this many steps may take the per-step sum whole.
inline constexpr std::int64_t adam_steps_max = 8;
// The series is cut where its next term is below this fraction of the drift: far below the
// rounding of the table's precision (float: 2^-24 = 6e-8; double: 1.1e-16, where the
// per-step sum it replaces carries errors of ~1e-13 anyway). A looser float bound means fewer
// terms and fewer elements left to the per-step sum.
template <class T>
inline constexpr double adam_series_tolerance = std::is_same_v<T, float> ? 1e-8 : 1e-12;

// How exact mode expands the eps term: the ratios of its window sums and when to use them.
struct AdamSeries {
  int terms = 0;
  double ratio[adam_max_terms] = {};
  double v_power = 0.5;  // a: sqrt(v) decays as beta2^(a j); 0 with amsgrad
  double root_beta2 = 1.0;  // beta2^a: sqrt(v)'s factor per skipped step
  double theta = 0.0;    // series when q_j beta2^(-a j) <= theta u over the window
  double scale = 1.0;    // the sums of term n are kept divided by scale^n (eps^n): well scaled
  double tolerance = 0.0;  // x^terms below this: the series' relative truncation error
};

template <class T>
AdamSeries adam_series(const AdamOptions& o) {
  AdamSeries s;
  s.v_power = o.amsgrad ? 0.0 : 0.5;
  s.root_beta2 = std::pow(o.beta2, s.v_power);
  s.scale = o.eps > 0.0 ? o.eps : 1.0;
  // Term n decays with ratio beta1 / beta2^(a (n+1)), slower for higher n; terms are added
  // while their window stays within a few times the first one's.
  const double first = o.beta1 / std::pow(o.beta2, s.v_power);
  const double slowest = 1.0 - (1.0 - first) / 4.0;
  for (int n = 0; n < adam_max_terms; ++n) {
    const double r = o.beta1 / std::pow(o.beta2, s.v_power * (n + 1));
    if (!(r < 1.0) || (n > 0 && r > slowest)) break;
    s.ratio[s.terms++] = r;
  }
  // With beta1 >= sqrt(beta2), m / sqrt(v) grows over skipped steps: no series, every element
  // takes the per-step sum (correct, but O(H) per element).
  s.tolerance = adam_series_tolerance<T>;
  s.theta = s.terms ? std::pow(s.tolerance, 1.0 / s.terms) : 0.0;
  return s;
}

}  // namespace detail

// The shape of Adam's exact-mode record: per step c_t and q_t, and one window sum per term.
inline ExactLayout adam_exact_layout(const AdamOptions& o) {
  // The record's shape does not depend on the table's precision (only the cut does).
  const detail::AdamSeries s = detail::adam_series<double>(o);
  ExactLayout layout;
  layout.aux = 2;
  layout.quantities = s.terms;
  // The per-step sum's terms fade as beta1^j: the window covers that too.
  std::vector<double> ratios(s.ratio, s.ratio + s.terms);
  ratios.push_back(o.beta1);
  layout.window = detail::window_for(ratios, "betas[0] / betas[1]**0.5");
  return layout;
}

inline void AdamOptions::validate() const {
  detail::require_finite_at_least(lr, 0.0, "lr");
  detail::require_unit_interval(beta1, "betas[0]");
  detail::require_unit_interval(beta2, "betas[1]");
  detail::require_finite_at_least(eps, 0.0, "eps");
  detail::require_finite_at_least(weight_decay, 0.0, "weight_decay");
  if (mode == Mode::exact) {
    detail::require(decoupled || weight_decay == 0.0,
                    "Adam(weight_decay=", weight_decay, ") adds the decay to the gradient, which "
                    "mode='exact' cannot catch up in closed form; use AdamW (decoupled decay) or "
                    "mode='lazy'");
    detail::require(bias_correction != BiasCorrection::row,
                    "bias_correction='row' counts the steps that touch a row, which only "
                    "mode='lazy' has; use 'global' or 'none'");
    detail::require(lr * weight_decay < 1.0, "mode='exact' needs lr * weight_decay < 1, got ",
                    lr * weight_decay);
    adam_exact_layout(*this);  // throws for a beta1 too close to 1
  }
}

namespace detail {

// lr * sqrt(1 - beta2^t) / (1 - beta1^t) (SparseAdam's step size, and c_t of exact mode) and
// sqrt(1 - beta2^t), after t steps.
inline double adam_bias_sqrt2(const AdamOptions& o, std::int64_t t) {
  if (o.bias_correction == BiasCorrection::none) return 1.0;
  return formulas::adam_bias_sqrt2(o.beta2, double(t));
}

inline double adam_step_size(const AdamOptions& o, std::int64_t t) {
  if (o.bias_correction == BiasCorrection::none) return o.lr;
  return formulas::adam_step_size(o.lr, o.beta1, o.beta2, double(t));
}

// One touched row in lazy mode, written as SparseAdam writes it (old + (1 - beta) (new - old))
// so that the rounding matches. Coupled decay adds wd * p to the gradient first.
template <bool Amsgrad, bool Coupled, class T>
SPARSEOPT_ALWAYS_INLINE void adam_lazy_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
                   T* SPARSEOPT_RESTRICT vmax, const T* SPARSEOPT_RESTRICT g, std::int64_t w,
                   T keep1, T keep2, T eps, T step_size, T wd) noexcept {
  for (std::int64_t j = 0; j < w; ++j)
    formulas::adam_lazy<Amsgrad, Coupled>(p, m, v, vmax, j, g[j], keep1, keep2, eps, step_size, wd);
}

// One touched row in exact mode: torch.optim.Adam's dense formula for this step.
template <bool Amsgrad, class T>
SPARSEOPT_ALWAYS_INLINE void adam_dense_row(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
                    T* SPARSEOPT_RESTRICT vmax, const T* SPARSEOPT_RESTRICT g, std::int64_t w,
                    T beta2, T keep1, T keep2, T eps, T bias_sqrt2, T step_size) noexcept {
  for (std::int64_t j = 0; j < w; ++j)
    formulas::adam_dense<Amsgrad>(p, m, v, vmax, j, g[j], beta2, keep1, keep2, eps, bias_sqrt2, step_size);
}

template <class T>
SPARSEOPT_ALWAYS_INLINE void scale_row(T* SPARSEOPT_RESTRICT p, std::int64_t w, T factor) noexcept {
  for (std::int64_t j = 0; j < w; ++j) formulas::scale(p, j, factor);
}

// s[K] - x (s[K+1] - x (... s[N-1])): the alternating series, unrolled at compile time so
// that the loop around it has no inner loop and vectorises.
template <int K, int N, class T>
SPARSEOPT_ALWAYS_INLINE T alternating_horner(const T* s, T x) noexcept {
  if constexpr (K == N - 1)
    return s[K];
  else
    return s[K] - alternating_horner<K + 1, N>(s, x) * x;
}

// The fast catch-up of elements that have sqrt(v) well above eps, or m = 0 (which does not
// move p, whatever v): the series in the table's precision, N terms, no branches (it
// vectorises). v is read as at least v_lo, the smallest v of the elements with m != 0, so
// that an m = 0 element with a smaller v (even 0) gives 0 * (a finite series) = 0 and every
// other element reads its own v.
template <int N, bool Amsgrad, class T>
SPARSEOPT_ALWAYS_INLINE void adam_catch_up_series(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m, T* SPARSEOPT_RESTRICT v,
                          const T* SPARSEOPT_RESTRICT vmax, std::int64_t w, const double* sums,
                          T scale, T decay, T m_fade, T v_fade, T v_lo) noexcept {
  T s[N];
  for (int n = 0; n < N; ++n) s[n] = T(sums[n]);
  for (std::int64_t j = 0; j < w; ++j) {
    const T vj = Amsgrad ? vmax[j] : v[j];
    const T inv = T(1) / std::sqrt(vj > v_lo ? vj : v_lo);
    const T x = scale * inv;  // eps / sqrt(v): the series' variable, <= theta here
    const T acc = alternating_horner<0, N>(s, x);
    p[j] = p[j] * decay - m[j] * acc * inv;
    m[j] *= m_fade;
    v[j] *= v_fade;
  }
}

// One skipped step's scalars for the per-step sum: c_t, q_t and the decay from t to the end.
struct AdamStepTerms {
  double c, q, decay;
};

// The per-step sum over `steps` skipped steps, in double, for n elements of a row, the g-th at
// position at(g); terms(i) gives step i's scalars (i = 1 .. steps). The dense optimizer's
// recurrence with a zero gradient, exact for every element (v = 0 included), with the same
// arithmetic for each element whatever the others (so the same bits), but the steps outside
// and up to 64 elements inside, so that the inner loop vectorises. Its cost grows with steps.
template <class T, class At, class Terms>
SPARSEOPT_ALWAYS_INLINE void adam_catch_up_steps(T* SPARSEOPT_RESTRICT p, T* SPARSEOPT_RESTRICT m,
                                                 T* SPARSEOPT_RESTRICT v, const T* v_hat, std::int64_t n,
                                                 At&& at, std::int64_t steps, Terms&& terms, double beta1,
                                                 double root_beta2, double decay, double m_fade,
                                                 double v_fade) noexcept {
  constexpr std::int64_t chunk = 64;
  double mi[chunk], ui[chunk], drift[chunk];
  for (std::int64_t a = 0; a < n; a += chunk) {
    const std::int64_t len = std::min(chunk, n - a);
    for (std::int64_t g = 0; g < len; ++g) {
      const std::int64_t j = at(a + g);
      mi[g] = double(m[j]);
      ui[g] = std::sqrt(double(v_hat[j]));
      drift[g] = 0.0;
    }
    for (std::int64_t i = 1; i <= steps; ++i) {
      const AdamStepTerms st = terms(i);
      for (std::int64_t g = 0; g < len; ++g) {
        mi[g] *= beta1;
        ui[g] *= root_beta2;
        double dt = st.c * mi[g] / (ui[g] + st.q);
        dt *= st.decay;
        drift[g] += dt;
      }
    }
    for (std::int64_t g = 0; g < len; ++g) {
      const std::int64_t j = at(a + g);
      p[j] = T(double(p[j]) * decay - drift[g]);
      m[j] = T(double(m[j]) * m_fade);
      v[j] = T(double(v[j]) * v_fade);
    }
  }
}

// What a catch-up over k skipped steps needs that depends on k alone: the fades beta1^k and
// beta2^k, and the smallest v for which the series holds. Tabulated for k <= H once per step
// (or flush), so that a row costs no pow().
class AdamCatchUpTables {
 public:
  AdamCatchUpTables(const AdamOptions& o, const AdamSeries& series, std::int64_t window)
      : series_(series), m_fade_(o.beta1, window + 1), v_fade_(o.beta2, window + 1), v_min_(window + 1),
        eps_max_(window + 1) {
    for (std::int64_t k = 0; k <= window; ++k) {
      eps_max_[k] = o.eps * std::pow(o.beta2, -series.v_power * double(k));
      v_min_[k] = compute_v_min(k);
    }
  }
  double m_fade(std::int64_t k) const { return m_fade_(k); }
  double v_fade(std::int64_t k) const { return v_fade_(k); }
  // Past the window the eps term stops growing: the bounds of k = H apply.
  double v_min(std::int64_t k) const { return v_min_[std::min<std::int64_t>(k, v_min_.size() - 1)]; }
  double eps_max(std::int64_t k) const { return eps_max_[std::min<std::int64_t>(k, eps_max_.size() - 1)]; }

 private:
  // The largest eps term q_j beta2^(-a j) over j <= k (q_j <= eps) must be <= theta sqrt(v).
  double compute_v_min(std::int64_t k) const {
    if (series_.terms == 0) return std::numeric_limits<double>::infinity();
    const double root = eps_max_[k] / series_.theta;
    return std::max(root * root, double(std::numeric_limits<float>::min()));
  }

  AdamSeries series_;
  PowerTable m_fade_, v_fade_;  // beta1^k, beta2^k
  std::vector<double> v_min_, eps_max_;
};

// Exact mode's constants for one set of options: the record's layout, the series and the
// catch-up tables. Building them takes hundreds of pow() calls, which was most of an exact
// step's fixed cost; they depend on betas, eps and amsgrad only (and the table's type), so each
// thread keeps the last set it built and rebuilds it when those change.
template <class T>
struct AdamExactConstants {
  ExactLayout layout;
  AdamSeries series;
  AdamCatchUpTables tables;
};

template <class T>
const AdamExactConstants<T>& adam_exact_constants(const AdamOptions& o) {
  struct Cache {
    double beta1 = -1.0, beta2 = -1.0, eps = -1.0;
    bool amsgrad = false;
    std::optional<AdamExactConstants<T>> value;
  };
  thread_local Cache cache;
  if (!cache.value || cache.beta1 != o.beta1 || cache.beta2 != o.beta2 || cache.eps != o.eps ||
      cache.amsgrad != o.amsgrad) {
    const ExactLayout layout = adam_exact_layout(o);
    const AdamSeries series = adam_series<T>(o);
    cache.value.reset();  // a throwing rebuild leaves no stale constants behind
    cache.value.emplace(AdamExactConstants<T>{layout, series, AdamCatchUpTables(o, series, layout.window)});
    cache.beta1 = o.beta1;
    cache.beta2 = o.beta2;
    cache.eps = o.eps;
    cache.amsgrad = o.amsgrad;
  }
  return *cache.value;
}

// Exact mode: brings a row (p, m, v and, with amsgrad, vmax: w elements each) from step s (its
// last) to step e, the latest recorded step, as if it had seen zero gradients (see the top of
// this file).
template <class T>
void adam_catch_up(const AdamOptions& o, const AdamSeries& series, const AdamCatchUpTables& tables,
                   const ExactBook& book, std::int64_t w, T* p, T* m, T* v, const T* vmax,
                   std::int64_t s, std::int64_t e) noexcept {
  const std::int64_t k = e - s;
  if (k <= 0) return;
  const std::int64_t h = book.layout().window;
  const bool decays = o.weight_decay != 0.0;
  const double decay = decays ? book.decay(s, e) : 1.0;
  const double m_fade = tables.m_fade(k), v_fade = tables.v_fade(k), v_min = tables.v_min(k);
  const T* v_hat = o.amsgrad ? vmax : v;  // read only where v is not
  // Elements whose sqrt(v) is well above eps take the series, vectorised; the smallest such v
  // among the moving (m != 0) elements decides how many terms it needs. Elements with m = 0,
  // which do not move, take it too. The others (tiny gradients: sqrt(v) near eps) take the
  // per-step sum. The first pass vectorises; only a row with such elements looks
  // at its elements one by one. The body is compiled twice (simd.hpp): for the baseline and
  // for AVX2, with the same bits.
  simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {
    constexpr T none = std::numeric_limits<T>::infinity();
    // v_lo and whether anything moves. A min over one running value is a serial chain that the
    // compiler may not reorder, so it would not vectorise: it runs in vector lanes here (min is
    // exact, so the order does not change the result), with both arrays loaded and selects
    // instead of branches.
    T v_lo = none;
    bool drifts = false;
    std::int64_t j0 = 0;
#if SPARSEOPT_HAS_VECTOR_EXT
    {
      constexpr int lanes = int(sizeof(Vec<T>) / sizeof(T));
      using Mask = decltype(Vec<T>{} != Vec<T>{});
      const Vec<T> zero = {}, inf = zero + none;
      Vec<T> lo = inf;
      Mask moved = zero != zero;
      for (; j0 + lanes <= w; j0 += lanes) {
        Vec<T> mj, vj;
        load_vec(mj, m + j0);
        load_vec(vj, v_hat + j0);
        const Mask moving = mj != zero;
        const Vec<T> vm = moving ? vj : inf;
        lo = vm < lo ? vm : lo;
        moved |= moving;
      }
      for (int l = 0; l < lanes; ++l) {
        v_lo = lo[l] < v_lo ? lo[l] : v_lo;
        drifts |= moved[l] != 0;
      }
    }
#endif
    for (; j0 < w; ++j0) {
      const bool moving = m[j0] != T(0);
      const T vm = moving ? v_hat[j0] : none;
      v_lo = vm < v_lo ? vm : v_lo;
      drifts |= moving;
    }
    const T d = T(decay), mf = T(m_fade), vf = T(v_fade);
    if (!drifts) {  // m = 0 everywhere (a row never touched, or faded out): nothing moves it
      for (std::int64_t j = 0; j < w; ++j) {
        p[j] *= d;
        v[j] *= vf;
      }
      return;
    }
    const double v_floor = series.terms > 0 ? v_min : std::numeric_limits<double>::infinity();
    auto in_series = [&](std::int64_t j) { return double(v_hat[j]) >= v_floor || m[j] == T(0); };
    const bool all_series = double(v_lo) >= v_floor;
    const std::int64_t steps = std::min(k, h);  // the per-step sum's terms fade as beta1^i
    const double root_beta2 = series.root_beta2;
    // Few skipped steps (a flush after every step, as a layer's forward pass does): the whole
    // row by the per-step sum, vectorised, rather than the series with elements near eps set
    // aside one by one, or a long series for one step.
    auto step_terms = [&](std::int64_t i) SPARSEOPT_INLINE_BODY {
      const std::int64_t t = s + i;
      return AdamStepTerms{book.aux(t, 0), book.aux(t, 1), decays ? book.decay(t, e) : 1.0};
    };
    auto by_steps = [&]() SPARSEOPT_INLINE_BODY {
      AdamStepTerms few[adam_steps_max];
      for (std::int64_t i = 1; i <= steps; ++i) few[i - 1] = step_terms(i);
      adam_catch_up_steps(
          p, m, v, v_hat, w, [](std::int64_t g) SPARSEOPT_INLINE_BODY { return g; }, steps,
          [&](std::int64_t i) SPARSEOPT_INLINE_BODY { return few[i - 1]; }, o.beta1, root_beta2, decay, m_fade,
          v_fade);
    };
    if (!all_series && steps <= adam_steps_max) return by_steps();
    if (!all_series) {  // the smallest v among the moving elements the series takes
      v_lo = none;
      for (std::int64_t j = 0; j < w; ++j)
        if (m[j] != T(0) && double(v_hat[j]) >= v_floor && v_hat[j] < v_lo) v_lo = v_hat[j];
    }
    // The series over elements [a, b), each with v >= v_lo >= v_min or m = 0. Terms are taken
    // in blocks of 2, 4, 8, 16, 24: x^terms <= tolerance, x = eps_max / sqrt(v_lo).
    double sums[adam_max_terms];
    int block = 2, needed = 0;  // no element with a large v: the spans hold only m = 0 elements
    if (v_lo != none) {
      const double x2 = tables.eps_max(k) * tables.eps_max(k) / double(v_lo);  // x^2, no sqrt
      const double tol = series.tolerance;
      const double x4 = x2 * x2, x8 = x4 * x4, x16 = x8 * x8;  // no pow() per row
      block = x2 <= tol ? 2 : x4 <= tol ? 4 : x8 <= tol ? 8 : x16 <= tol ? 16 : adam_max_terms;
      needed = std::min(block, series.terms);
      for (int n = 0; n < needed; ++n) sums[n] = book.window_sum(n, s, e);
    }
    if (steps * 12 <= block) return by_steps();  // a long series for one or two steps
    for (int n = needed; n < block; ++n) sums[n] = 0.0;
    const T sc = T(series.scale);
    auto series_span = [&](std::int64_t a, std::int64_t b) SPARSEOPT_INLINE_BODY {
      // Sums past `needed` are zero: padding at the top of Horner's scheme is harmless, so a
      // few loop lengths serve every term count.
      auto run = [&](auto terms) SPARSEOPT_INLINE_BODY {
        constexpr int n = decltype(terms)::value;
        if (o.amsgrad)
          adam_catch_up_series<n, true>(p + a, m + a, v + a, v_hat + a, b - a, sums, sc, d, mf, vf, v_lo);
        else
          adam_catch_up_series<n, false>(p + a, m + a, v + a, v_hat + a, b - a, sums, sc, d, mf, vf, v_lo);
      };
      if (block == 2) return run(std::integral_constant<int, 2>{});
      if (block == 4) return run(std::integral_constant<int, 4>{});
      if (block == 8) return run(std::integral_constant<int, 8>{});
      if (block == 16) return run(std::integral_constant<int, 16>{});
      return run(std::integral_constant<int, adam_max_terms>{});
    };
    if (all_series) return series_span(0, w);
    // The elements near eps (m != 0 here): the per-step sum, in groups of up to 64 that share
    // each step's scalars; the runs between them: the series.
    std::int64_t group[64];
    std::int64_t in_group = 0;
    auto sum_group = [&]() SPARSEOPT_INLINE_BODY {
      adam_catch_up_steps(
          p, m, v, v_hat, in_group, [&](std::int64_t g) SPARSEOPT_INLINE_BODY { return group[g]; }, steps, step_terms, o.beta1,
          root_beta2, decay, m_fade, v_fade);
      in_group = 0;
    };
    for (std::int64_t j = 0; j < w;) {
      if (in_series(j)) {  // a run of series elements
        std::int64_t b = j + 1;
        while (b < w && in_series(b)) ++b;
        series_span(j, b);
        j = b;
        continue;
      }
      group[in_group++] = j++;
      if (in_group == 64) sum_group();
    }
    if (in_group) sum_group();
  });
}

// Asks for row r of the parameter and of every moment array (a hint: no effect on results).
template <class T, class S, class Level = PrefetchNear>
void prefetch_adam_rows(const Table<T>& param, const AdamState<S>& state, const AdamOptions& o,
                        std::int64_t r, Level level = {}) noexcept {
  const std::int64_t w = param.row_width;
  prefetch_row(param.row(r), w, level);
  prefetch_row(state.exp_avg.row(r), w, level);
  prefetch_row(state.exp_avg_sq.row(r), w, level);
  if (o.amsgrad) prefetch_row(state.max_exp_avg_sq.row(r), w, level);
}

// Checks the state against the parameter; returns the arrays a step or flush writes (exact
// mode's record is added by the step and by flush_rows).
template <class T, class S>
WrittenArrays require_adam_state(const Table<T>& param, const AdamState<S>& state,
                                 const AdamOptions& o) {
  WrittenArrays written(param);
  require_same_rows(param, state.exp_avg, "exp_avg");
  require_same_rows(param, state.exp_avg_sq, "exp_avg_sq");
  written.add(state.exp_avg, "exp_avg").add(state.exp_avg_sq, "exp_avg_sq");
  if (o.amsgrad) {
    require_same_rows(param, state.max_exp_avg_sq, "max_exp_avg_sq");
    written.add(state.max_exp_avg_sq, "max_exp_avg_sq");
  }
  const bool row_counts = o.mode == Mode::lazy && o.bias_correction == BiasCorrection::row;
  require(!row_counts || state.row_steps != nullptr || param.num_rows == 0,
          "bias_correction='row' needs row_steps");
  if (row_counts) written.add(state.row_steps, param.num_rows * 8, "row_steps");
  return written;
}

// body(p, m, v, vmax) on row r as T (vmax null without amsgrad), stored back after.
template <class T, class P, class S, class Body>
SPARSEOPT_ALWAYS_INLINE void on_adam_rows(const RowAccess<T>& access, const Table<P>& param,
                                          const AdamState<S>& state, const AdamOptions& o, std::int64_t r,
                                          Body&& body) {
  on_rows(access, r, body, param.row(r), state.exp_avg.row(r), state.exp_avg_sq.row(r),
          o.amsgrad ? state.max_exp_avg_sq.row(r) : static_cast<S*>(nullptr));
}

template <class P, class S, class Grad, class Plan>
void adam_lazy_step(const Table<P>& param, const Grad& grad, const AdamState<S>& state,
                    const AdamOptions& o, std::int64_t step, int num_threads,
                    const Plan& plan, const RowAccess<compute_t<P>>& access) {
  using T = compute_t<P>;
  const std::int64_t w = param.row_width;
  const T keep1 = T(1.0 - o.beta1), keep2 = T(1.0 - o.beta2), eps = T(o.eps);
  const bool per_row = o.bias_correction == BiasCorrection::row;
  const T global_step_size = T(adam_step_size(o, step));
  const T coupled = o.decoupled ? T(0) : T(o.weight_decay);
  const T shrink = T(1.0 - o.lr * o.weight_decay);  // AdamW, in the table's precision as torch
  const bool decoupled = o.decoupled && o.weight_decay != 0.0;
  for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const T* g) {
        const T step_size = per_row ? T(adam_step_size(o, ++state.row_steps[r])) : global_step_size;
        on_adam_rows(access, param, state, o, r, [&](T* p, T* m, T* v, T* vmax) {
        simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // AVX2 where the CPU has it, same bits
          if (decoupled) scale_row(p, w, shrink);
          auto row = [&](auto amsgrad, auto l2) SPARSEOPT_INLINE_BODY {
            adam_lazy_row<decltype(amsgrad)::value, decltype(l2)::value>(
                p, m, v, vmax, g, w, keep1, keep2, eps, step_size, coupled);
          };
          using yes = std::true_type;
          using no = std::false_type;
          if (o.amsgrad) {
            coupled != T(0) ? row(yes{}, yes{}) : row(yes{}, no{});
          } else {
            coupled != T(0) ? row(no{}, yes{}) : row(no{}, no{});
          }
        });
        });
      },
      [&](std::int64_t r, auto level) { prefetch_adam_rows(param, state, o, r, level); });
}

// Exact mode's per-step scalars: c_t and q_t (see the top of the file) and the decay factor.
struct AdamStepScalars {
  double c, q, delta, bias_sqrt2, step_size;
};

template <class T>
AdamStepScalars adam_step_scalars(const AdamOptions& o, std::int64_t t) {
  AdamStepScalars s;
  s.bias_sqrt2 = adam_bias_sqrt2(o, t);
  const double bc1 = o.bias_correction == BiasCorrection::none ? 1.0 : 1.0 - std::pow(o.beta1, double(t));
  s.step_size = o.lr / bc1;
  s.c = s.step_size * s.bias_sqrt2;
  s.q = o.eps * s.bias_sqrt2;
  // torch multiplies by (1 - lr wd) in the table's precision; the record keeps that factor.
  s.delta = o.decoupled && o.weight_decay != 0.0 ? double(T(1.0 - o.lr * o.weight_decay)) : 1.0;
  return s;
}

// Exact mode's bookkeeping of one step, in one place for the CPU step and the device's
// (cuda/src/exact.cu), so their records cannot drift: record() writes the step's lr, decay
// factor, c_t and q_t before any row moves; advance() adds the step's series terms
// f_n = c_t (q_t / scale)^n to the window sums once the touched rows are updated.
struct AdamRecordStep {
  const AdamOptions& options;
  const AdamSeries& series;
  AdamStepScalars now;
  std::int64_t step;

  void record(const ExactBook& book) const noexcept {
    const double aux[2] = {now.c, now.q};
    book.record(step, options.lr, now.delta, aux);
  }
  void advance(const ExactBook& book) const noexcept {
    double f[adam_max_terms];
    for (int n = 0; n < series.terms; ++n) f[n] = now.c * std::pow(now.q / series.scale, n);
    book.advance(step, now.delta, f, series.ratio);
  }
};

template <class P, class S, class Grad, class Plan>
void adam_exact_step(const Table<P>& param, const Grad& grad, const AdamState<S>& state,
                     const AdamOptions& o, std::int64_t step, int num_threads,
                     const Plan& plan, const RowAccess<compute_t<P>>& access) {
  using T = compute_t<P>;
  const AdamExactConstants<T>& constants = adam_exact_constants<T>(o);
  const ExactLayout& layout = constants.layout;
  const ExactBook book(layout, state.exact);
  book.require_step(step, param.num_rows);
  const AdamSeries& series = constants.series;
  const AdamCatchUpTables& tables = constants.tables;
  const AdamStepScalars now = adam_step_scalars<T>(o, step);
  const AdamRecordStep record{o, series, now, step};
  record.record(book);

  const std::int64_t w = param.row_width;
  const T beta2 = T(o.beta2), keep1 = T(1.0 - o.beta1), keep2 = T(1.0 - o.beta2), eps = T(o.eps);
  const T bias_sqrt2 = T(now.bias_sqrt2), step_size = T(now.step_size), shrink = T(now.delta);
  std::int64_t* last = state.exact.last_step;
  for_each_row(
      grad, plan, num_threads,
      [&](std::int64_t r, const T* g) {
        on_adam_rows(access, param, state, o, r, [&](T* p, T* m, T* v, T* vmax) {
        adam_catch_up(o, series, tables, book, w, p, m, v, vmax, last[r], step - 1);
        last[r] = step;
        simd_dispatch([&](auto) SPARSEOPT_INLINE_BODY {  // AVX2 where the CPU has it, same bits
          if (now.delta != 1.0) scale_row(p, w, shrink);
          if (o.amsgrad)
            adam_dense_row<true>(p, m, v, vmax, g, w, beta2, keep1, keep2, eps, bias_sqrt2, step_size);
          else
            adam_dense_row<false>(p, m, v, vmax, g, w, beta2, keep1, keep2, eps, bias_sqrt2, step_size);
        });
        });
      },
      [&](std::int64_t r, auto level) {
        prefetch_row(last + r, 1, level);  // a scattered int64 per row: one more miss to overlap
        prefetch_adam_rows(param, state, o, r, level);
      });

  record.advance(book);
  restart_record(layout, state.exact, param, step, num_threads,
                 [&](const ExactBook& b, std::int64_t r, std::int64_t from) {
                   on_adam_rows(access, param, state, o, r, [&](T* p, T* m, T* v, T* vmax) {
                     adam_catch_up(o, series, tables, b, w, p, m, v, vmax, from, step);
                   });
                 });
}

}  // namespace detail

// One Adam step. `step` is the optimizer's step count including this step (1 on the first
// call); in exact mode it must be the step after the last one recorded in state.exact.
// A float16/bfloat16 table (P) takes float gradients and float or half state (S), computes in
// float and stores with `how` (rows.hpp); float and double tables ignore `how`.
template <class P, class S, class Grad>
void adam_step(const Table<P>& param, const Grad& grad, const AdamState<S>& state,
               const AdamOptions& options, std::int64_t step, int num_threads = 0,
               const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::is_gradient_v<Grad, T>, "grad: a RowSparse<T, I> or BagGradient<T, I> (T: float for half tables)");
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  detail::require(step >= 1, "step must be >= 1 (it counts this step), got ", step);
  detail::WrittenArrays written = detail::require_adam_state(param, state, options);
  if (options.mode == Mode::exact)
    detail::add_exact_arrays(written, state.exact, detail::adam_exact_constants<T>(options).layout, param.num_rows);
  const auto& plan = detail::plan_step(param, grad, num_threads, written);
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, options.amsgrad ? 4 : 3);
  if (options.mode == Mode::exact)
    detail::adam_exact_step(param, grad, state, options, step, num_threads, plan, access);
  else
    detail::adam_lazy_step(param, grad, state, options, step, num_threads, plan, access);
}

// Exact mode: brings every row (or the rows in indices[0, n)) up to `step`, the last step taken, as the dense optimizer
// has them. Lazy mode has nothing to do.
template <class P, class S, class I = std::int64_t>
void adam_flush(const Table<P>& param, const AdamState<S>& state, const AdamOptions& options,
                std::int64_t step, int num_threads = 0,
               const I* indices = nullptr, std::int64_t n = 0, const HalfRounding& how = {}) {
  using T = compute_t<P>;
  static_assert(detail::state_type_ok_v<P, S>, "state: the table's type, or float or half for a half table");
  options.validate();
  const detail::WrittenArrays written = detail::require_adam_state(param, state, options);
  if (options.mode != Mode::exact) return;
  detail::require(step >= 0, "step must be >= 0, got ", step);
  const detail::AdamExactConstants<T>& constants = detail::adam_exact_constants<T>(options);
  const ExactLayout& layout = constants.layout;
  const detail::AdamSeries& series = constants.series;
  const detail::AdamCatchUpTables& tables = constants.tables;
  const auto access = detail::row_access<P, S>(param, how, step, num_threads, options.amsgrad ? 4 : 3);
  const std::int64_t w = param.row_width;
  detail::flush_rows(layout, state.exact, param, step, num_threads, indices, n, written,
                     [&](const detail::ExactBook& book, std::int64_t r, std::int64_t last) {
                       detail::on_adam_rows(access, param, state, options, r, [&](T* p, T* m, T* v, T* vmax) {
                         detail::adam_catch_up(options, series, tables, book, w, p, m, v, vmax, last, step);
                       });
                     },
                     [&](std::int64_t r, auto level) { detail::prefetch_adam_rows(param, state, options, r, level); });
}

}  // namespace sparseopt
