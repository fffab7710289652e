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

#include "sampling.hpp"  // detail::mix64, splitmix64's finaliser

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

// Branch-free (every case computed, one selected), so that loops over rows vectorise.
// Subnormals go through an integer-to-float conversion, not through float subnormals: the same
// result with flush-to-zero or denormals-are-zero set.
namespace detail {

// c ? a : b without a branch (GCC turns nested conditionals into jumps, which stop
// vectorisation).
inline std::uint32_t select(bool c, std::uint32_t a, std::uint32_t b) noexcept {
  const std::uint32_t m = 0u - std::uint32_t(c);
  return (a & m) | (b & ~m);
}

}  // namespace detail

inline float widen(float16 h) noexcept {
  const std::uint32_t sign = std::uint32_t(h.bits & 0x8000u) << 16;
  const std::uint32_t em = h.bits & 0x7fffu;  // exponent and mantissa
  const std::uint32_t subnormal = detail::float_bits(float(std::int32_t(em)) * 0x1p-24f);  // zero too; exact
  const std::uint32_t normal = (em << 13) + (112u << 23);
  const std::uint32_t special = 0x7f800000u | ((em & 0x3ffu) << 13);  // inf, NaN
  return detail::bits_float(sign | detail::select(em >= 0x7c00u, special, detail::select(em < 0x400u, subnormal, normal)));
}

namespace detail {

// `value` (magnitude bits) without its low `shift` bits, rounded stochastically with 16 random bits: up with probability (dropped bits) /
// 2^shift, exactly for shift <= 16 (adding the random bits below the kept ones carries into
// them with that probability), and quantised to 2^-16 beyond (float16 subnormals only).
inline std::uint32_t drop_bits_stochastic(std::uint32_t value, int shift, std::uint32_t random16) noexcept {
  if (shift <= 16) return (value + (random16 & ((std::uint32_t(1) << shift) - 1))) >> shift;
  if (shift >= 48) return 0;  // value < 2^32: below 2^-16 of the last kept bit
  const std::uint64_t v = value;
  const std::uint64_t kept = v >> shift;
  const std::uint64_t rest16 = (v & ((std::uint64_t(1) << shift) - 1)) >> (shift - 16);
  return std::uint32_t(kept + (random16 < rest16));
}

// float and bfloat16 share the exponent: rounding the bit pattern rounds the value (a carry
// into the exponent is the next binade, or infinity past the largest finite value; it never
// reaches the sign bit). NaN keeps its sign and top payload bits and is made quiet, so that it
// stays NaN. Branch-free, so that loops over rows vectorise.
inline std::uint16_t bfloat16_bits(std::uint32_t u, std::uint32_t rounded) noexcept {
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return std::uint16_t(nan ? (u >> 16) | 0x40u : rounded >> 16);
}

inline bfloat16 to_bfloat16(float x, bool to_nearest) noexcept {
  const std::uint32_t u = float_bits(x);
  const std::uint32_t add = to_nearest ? 0x7fffu + ((u >> 16) & 1u) : 0u;  // ties to even
  return bfloat16{bfloat16_bits(u, u + add)};
}

// To the nearest float16, ties to even. Branch-free, as widen(float16). Normal results: drop 13
// mantissa bits of the rebased pattern, rounding (a carry may reach the next binade, or
// infinity from 65520 up). Subnormal results (|x| < 2^-14): adding 0.5 rounds |x| to a multiple
// of 2^-24, the float16 subnormal step, in the FPU's rounding (ties to even), and the low bits
// of the sum are the result. NaN follows NumPy: sign and top payload bits, kept a NaN.
inline float16 to_float16_nearest(float x) noexcept {
  const std::uint32_t u = float_bits(x);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  const std::uint32_t normal = (a + 0xc8000fffu + ((a >> 13) & 1u)) >> 13;  // 0xc8000000: -112 << 23
  const std::uint32_t subnormal = float_bits(bits_float(a) + 0.5f) - 0x3f000000u;
  const std::uint32_t payload = (a & 0x7fffffu) >> 13;
  const std::uint32_t nan = 0x7c00u | select(payload != 0, payload, 1u);
  const std::uint32_t h = select(a > 0x7f800000u, nan,
                                 select(a >= 0x47800000u, 0x7c00u, select(a < 0x38800000u, subnormal, normal)));
  return float16{std::uint16_t(sign | h)};
}


}  // namespace detail

// The stream of random bits for one array of one step: a key per (seed, step, array), mixed
// with (row, column / 4) per group of four elements, whose 64 bits give each 16.
struct RoundingStream {
  std::uint64_t key = 0;

  RoundingStream() = default;
  RoundingStream(std::uint64_t seed, std::int64_t step, int array) noexcept
      : key(detail::mix64(detail::mix64(seed ^ 0x9e3779b97f4a7c15ull) +
                          std::uint64_t(step) * 0xd1b54a32d192ed03ull + std::uint64_t(array))) {}

  // 64 bits for columns [4 g, 4 g + 4) of `row`: column 4 g + i takes bits [16 i, 16 i + 16).
  std::uint64_t group(std::int64_t row, std::int64_t g) const noexcept {
    return detail::mix64(key ^ (std::uint64_t(row) * 0x9e3779b97f4a7c15ull +
                                std::uint64_t(g) * 0xc2b2ae3d27d4eb4full));
  }

  // 16 uniform bits for element (row, column).
  std::uint32_t bits(std::int64_t row, std::int64_t column) const noexcept {
    return std::uint32_t(group(row, column >> 2) >> (16 * (column & 3))) & 0xffffu;
  }
};

// x stored in H to the nearest value (ties to even).
template <class H>
H narrow_nearest(float x) noexcept {
  if constexpr (std::is_same_v<H, bfloat16>)
    return detail::to_bfloat16(x, true);
  else
    return detail::to_float16_nearest(x);
}

namespace detail {

// Infinity's low bits are 0: adding random ones leaves it infinite.
inline bfloat16 to_bfloat16_stochastic(float x, std::uint32_t random16) noexcept {
  const std::uint32_t u = float_bits(x);
  return bfloat16{bfloat16_bits(u, u + (random16 & 0xffffu))};
}

inline float16 to_float16_stochastic(float x, std::uint32_t random16) noexcept {
  const std::uint32_t u = float_bits(x);
  const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  const int e = int(a >> 23) - 127;
  if (a >= 0x7f800000u || e > 15) return to_float16_nearest(x);  // inf, NaN; beyond 65536: inf
  if (e >= -14) {
    const std::uint32_t rebased = (std::uint32_t(e + 15) << 23) | (a & 0x7fffffu);
    return float16{std::uint16_t(sign | drop_bits_stochastic(rebased, 13, random16))};
  }
  if (e == -127) return float16{sign};  // float subnormals: below 2^-16 of float16's least step
  const std::uint32_t significand = (a & 0x7fffffu) | 0x800000u;
  return float16{std::uint16_t(sign | drop_bits_stochastic(significand, -(e + 1), random16))};
}

}  // namespace detail

// x stored in H stochastically, with 16 uniform random bits: the neighbour away from zero with
// probability (|x| - |lo|) / (|hi| - |lo|), lo = x rounded toward zero, hi the next value
// (exact: the random bits are added below the kept ones; float16 subnormals, where more than 16
// bits are dropped, quantise the probability to 2^-16). Values are stored as they are when
// representable; the largest finite value may round up to infinity.
template <class H>
H narrow_stochastic(float x, std::uint32_t random16) noexcept {
  if constexpr (std::is_same_v<H, bfloat16>)
    return detail::to_bfloat16_stochastic(x, random16);
  else
    return detail::to_float16_stochastic(x, random16);
}

template <class H>
H narrow(float x, Rounding rounding, std::uint32_t random16) noexcept {
  return rounding == Rounding::stochastic ? narrow_stochastic<H>(x, random16) : narrow_nearest<H>(x);
}

inline const char* dtype_name(float16) noexcept { return "float16"; }
inline const char* dtype_name(bfloat16) noexcept { return "bfloat16"; }

}  // namespace sparseopt
