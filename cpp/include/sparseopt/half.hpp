// 16-bit storage types for tables and optimizer state: IEEE float16 and bfloat16.
//
// A half table is only storage: kernels widen each element to float (exact), compute in float
// as the float kernels do, and narrow the result on store, either to the nearest value (ties to
// even, as NumPy's astype and ml_dtypes do) or stochastically: up to the next value away from
// zero with probability (x - lo) / (hi - lo), where lo is x rounded toward zero, so that the
// stored value equals x on average and updates far below one unit in the last place still move
// the mean. The random bits come from a counter-based hash of (seed, step, row, column, which
// array), not from a generator with a state: the same inputs give the same bits for any thread
// count, on every rerun, and after a checkpoint is reloaded.
//
// The conversions are plain integer code (no F16C): the same bits on every CPU and compiler.
// NaN stays NaN (sign and the top payload bits kept), infinities stay infinite; stochastic
// rounding of a finite value may reach infinity only from beyond the largest finite value.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace sparseopt {

// IEEE 754 binary16 (NumPy's float16): 5 exponent bits, 10 mantissa bits.
struct float16 {
  std::uint16_t bits;
};

// bfloat16 (ml_dtypes.bfloat16): float's 8 exponent bits, 7 mantissa bits.
struct bfloat16 {
  std::uint16_t bits;
};

static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2, "16-bit storage types");

// How a computed float is stored in a half element.
enum class Rounding { nearest, stochastic };

template <class T>
inline constexpr bool is_half_v = std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>;

namespace detail {

inline std::uint32_t float_bits(float x) noexcept {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float bits_float(std::uint32_t u) noexcept {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace detail

inline float widen(float x) noexcept { return x; }

inline float widen(bfloat16 h) noexcept { return detail::bits_float(std::uint32_t(h.bits) << 16); }

inline float widen(float16 h) noexcept {
  const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
  const std::uint32_t exp = (h.bits >> 10) & 0x1fu, mant = h.bits & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24, exact in float
    const float magnitude = float(mant) * 0x1p-24f;
    return detail::bits_float(sign | detail::float_bits(magnitude));
  }
  if (exp == 31) return detail::bits_float(sign | 0x7f800000u | (mant << 13));  // inf, NaN
  return detail::bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

namespace detail {

// x's magnitude bits rounded to a format that keeps the top `keep` of float's 24 significant
// bits' positions below `shift` dropped bits: shared by both types' finite paths.
// to_nearest: ties to even; else toward zero.
inline std::uint32_t drop_bits(std::uint32_t value, int shift, bool to_nearest) noexcept {
  if (shift >= 32) return 0;  // everything dropped, and below half of the last kept bit
  const std::uint32_t kept = value >> shift;
  if (!to_nearest || shift == 0) return kept;
  const std::uint32_t rest = value & ((std::uint32_t(1) << shift) - 1);
  const std::uint32_t half = std::uint32_t(1) << (shift - 1);
  return kept + (rest > half || (rest == half && (kept & 1u)));
}

inline bfloat16 to_bfloat16(float x, bool to_nearest) noexcept {
  const std::uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign and top payload, stay NaN
    return bfloat16{std::uint16_t((u >> 16) | 0x40u)};
  }
  // float and bfloat16 share the exponent: rounding the bit pattern rounds the value (a carry
  // into the exponent is the next binade, or infinity past the largest finite value).
  const std::uint32_t sign = u & 0x80000000u;
  const std::uint32_t magnitude = drop_bits(u & 0x7fffffffu, 16, to_nearest);
  return bfloat16{std::uint16_t((sign >> 16) | magnitude)};
}

inline float16 to_float16(float x, bool to_nearest) noexcept {
  const std::uint32_t u = float_bits(x);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) {  // inf, or NaN (NumPy's rule: top payload bits, never turned into inf)
    std::uint16_t h = std::uint16_t(0x7c00u | (a > 0x7f800000u ? (a & 0x7fffffu) >> 13 : 0u));
    if (a > 0x7f800000u && h == 0x7c00u) h = 0x7c01u;
    return float16{std::uint16_t(sign | h)};
  }
  const int e = int(a >> 23) - 127;  // float's unbiased exponent (-127 for float subnormals)
  if (e > 15) return float16{std::uint16_t(sign | (to_nearest ? 0x7c00u : 0x7bffu))};
  if (e >= -14) {  // a normal float16: rebias, drop 13 mantissa bits (a carry may give inf)
    const std::uint32_t rebased = (std::uint32_t(e + 15) << 23) | (a & 0x7fffffu);
    std::uint32_t h = drop_bits(rebased, 13, to_nearest);
    if (!to_nearest && h > 0x7bffu) h = 0x7bffu;
    return float16{std::uint16_t(sign | h)};
  }
  // float16 subnormal (or zero): m * 2^-24 with m = significand * 2^(e + 1 - 23 + 23) ...
  // i.e. the 24-bit significand shifted right by -(e + 1) places.
  if (e == -127) return float16{sign};  // float subnormals are below 2^-126: far below 2^-25
  const std::uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  return float16{std::uint16_t(sign | drop_bits(significand, -(e + 1), to_nearest))};
}

template <class H>
H round_toward_zero(float x) noexcept {
  if constexpr (std::is_same_v<H, bfloat16>)
    return to_bfloat16(x, false);
  else
    return to_float16(x, false);
}

// splitmix64's finaliser: a bijection of 64 bits whose output bits each depend on every input
// bit (Steele, Lea and Flood 2014).
inline std::uint64_t mix64(std::uint64_t z) noexcept {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace detail

// The stream of random bits for one array of one step: a key per (seed, step, array), mixed
// with (row, column) per element. Two mixing rounds: the key, then the element.
struct RoundingStream {
  std::uint64_t key = 0;

  RoundingStream() = default;
  RoundingStream(std::uint64_t seed, std::int64_t step, int array) noexcept
      : key(detail::mix64(detail::mix64(seed ^ 0x9e3779b97f4a7c15ull) +
                          std::uint64_t(step) * 0xd1b54a32d192ed03ull + std::uint64_t(array))) {}

  // 24 uniform bits for element (row, column).
  std::uint32_t bits(std::int64_t row, std::int64_t column) const noexcept {
    const std::uint64_t z = detail::mix64(key ^ (std::uint64_t(row) * 0x9e3779b97f4a7c15ull +
                                                 std::uint64_t(column) * 0xc2b2ae3d27d4eb4full));
    return std::uint32_t(z >> 40);
  }
};

// x stored in H to the nearest value (ties to even).
template <class H>
H narrow_nearest(float x) noexcept {
  if constexpr (std::is_same_v<H, bfloat16>)
    return detail::to_bfloat16(x, true);
  else
    return detail::to_float16(x, true);
}

// x stored in H stochastically, with 24 uniform random bits: the neighbour away from zero with
// probability (|x| - |lo|) / ulp, rounded up to a multiple of 2^-24 (a bias below 2^-24 ulp).
// lo, hi and the fraction are exact in float: x - lo by Sterbenz's lemma, ulp a power of two.
template <class H>
H narrow_stochastic(float x, std::uint32_t random24) noexcept {
  if (!std::isfinite(x)) return narrow_nearest<H>(x);
  const H lo = detail::round_toward_zero<H>(x);
  const float low = widen(lo);
  if (low == x) return lo;
  H hi = lo;
  ++hi.bits;  // sign-magnitude: the next value away from zero (the largest finite goes to inf)
  const float high = widen(hi);
  const float fraction = (x - low) / (high - low);  // in (0, 1); 0 when high is infinite
  return float(random24) * 0x1p-24f < fraction ? hi : lo;
}

template <class H>
H narrow(float x, Rounding rounding, std::uint32_t random24) noexcept {
  return rounding == Rounding::stochastic ? narrow_stochastic<H>(x, random24) : narrow_nearest<H>(x);
}

inline const char* dtype_name(float16) noexcept { return "float16"; }
inline const char* dtype_name(bfloat16) noexcept { return "bfloat16"; }

}  // namespace sparseopt
