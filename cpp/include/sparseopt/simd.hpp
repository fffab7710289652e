// Runtime choice of the instruction set for hot loops, in a portable build (no -march flags).
//
// With GCC or Clang on x86-64, a kernel's hot loop is written once, as a lambda marked
// SPARSEOPT_INLINE_BODY (always_inline), and handed to simd_dispatch, which calls it either
// from a plain function (the baseline the package was built for: SSE2 on x86-64) or from one
// marked __attribute__((target("avx2,bmi2"))); inlined there, the same source is compiled a
// second time with 256-bit registers (and so are the small lambdas it calls, which inline too)
// and with BMI2's shifts by a variable count (one instruction where the baseline's take three:
// a step's grouping, its radix sort and word packing, runs 1.09-1.18x faster with them). The
// first call asks the CPU (__builtin_cpu_supports) and keeps the answer; every later call is
// one relaxed load and a branch, so dispatch per row or per block of rows is cheap. The body
// gets std::true_type (AVX2) or std::false_type, for choices such as how many registers to
// use:
//
//   detail::simd_dispatch([&](auto avx2) SPARSEOPT_INLINE_BODY {
//     for (std::int64_t j = 0; j < w; ++j) out[j] += s * x[j];
//   });
//
// Both paths give the same bits: AVX2 is asked for without FMA (a fused multiply-add rounds
// once where a multiply and an add round twice), so every element sees the same operations
// in the same order, only more of them per instruction. (One thing no C++ compiler pins down:
// when both operands of an addition are NaNs with different payloads or signs, x86 returns
// the first, and compilers may swap the operands of a commutative add. The result is NaN
// either way; which NaN may differ between paths, as between any two builds.) Other compilers and architectures
// compile only the plain path (SPARSEOPT_HAS_AVX2_DISPATCH is 0) and use_avx2() is false.
// The AVX2 path asks for BMI2 too, which every x86-64 CPU with AVX2 that we know of has (Intel
// from Haswell, AMD from Excavator); a CPU with AVX2 but not BMI2 takes the plain path.
//
// Vector types: SPARSEOPT_HAS_VECTOR_EXT is 1 where GCC/Clang vector extensions exist;
// detail::Vec<T> is then 32 bytes of T (two SSE registers on the baseline path, one AVX
// register on the AVX2 path), so a fixed set of them stays in registers on both.
//
// Testing: set_simd_path(SimdPath::generic) makes every later call take the plain path
// (SimdPath::best: the best the CPU has, the default); simd_path() is the path in use.
#pragma once

#include <atomic>
#include <cstdint>
#include <type_traits>

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define SPARSEOPT_HAS_AVX2_DISPATCH 1
#define SPARSEOPT_TARGET_AVX2 __attribute__((target("avx2,bmi2")))
#else
#define SPARSEOPT_HAS_AVX2_DISPATCH 0
#define SPARSEOPT_TARGET_AVX2
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SPARSEOPT_HAS_VECTOR_EXT 1
#define SPARSEOPT_ALWAYS_INLINE inline __attribute__((always_inline))
#define SPARSEOPT_INLINE_BODY __attribute__((always_inline))
#define SPARSEOPT_NOINLINE_BODY __attribute__((noinline))
#define SPARSEOPT_LIKELY(x) __builtin_expect(!!(x), 1)
#elif defined(_MSC_VER)
#define SPARSEOPT_HAS_VECTOR_EXT 0
#define SPARSEOPT_ALWAYS_INLINE __forceinline
#define SPARSEOPT_INLINE_BODY
#define SPARSEOPT_NOINLINE_BODY
#define SPARSEOPT_LIKELY(x) (x)
#else
#define SPARSEOPT_HAS_VECTOR_EXT 0
#define SPARSEOPT_ALWAYS_INLINE inline
#define SPARSEOPT_INLINE_BODY
#define SPARSEOPT_NOINLINE_BODY
#define SPARSEOPT_LIKELY(x) (x)
#endif

namespace sparseopt {

// Which compiled copy of the hot loops runs: `generic` (the build's baseline), `avx2`; `best`
// asks for the best the CPU supports.
enum class SimdPath { generic, avx2, best };

namespace detail {

// -1: not asked yet; 0: generic; 1: AVX2. Constant-initialised, so no guard on the hot path.
inline std::atomic<int>& simd_state() noexcept {
  static std::atomic<int> state{-1};
  return state;
}

inline bool cpu_has_avx2() noexcept {
#if SPARSEOPT_HAS_AVX2_DISPATCH
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
#else
  return false;
#endif
}

inline bool use_avx2() noexcept {
  int state = simd_state().load(std::memory_order_relaxed);
  if (state < 0) {
    state = cpu_has_avx2() ? 1 : 0;
    simd_state().store(state, std::memory_order_relaxed);
  }
  return state == 1;
}

#if SPARSEOPT_HAS_VECTOR_EXT
// 32 bytes of T (vector_size cannot apply to a template parameter: one specialisation per
// element type), and the same for unaligned memory that may alias T, as the intrinsics
// headers declare __m256_u.
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(32)));
  typedef float unaligned __attribute__((vector_size(32), aligned(alignof(float)), may_alias));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(32)));
  typedef double unaligned __attribute__((vector_size(32), aligned(alignof(double)), may_alias));
};
template <>
struct VecOf<std::int32_t> {
  typedef std::int32_t type __attribute__((vector_size(32)));
  typedef std::int32_t unaligned __attribute__((vector_size(32), aligned(alignof(std::int32_t)), may_alias));
};
template <>
struct VecOf<std::int64_t> {
  typedef std::int64_t type __attribute__((vector_size(32)));
  typedef std::int64_t unaligned __attribute__((vector_size(32), aligned(alignof(std::int64_t)), may_alias));
};
template <class T>
using Vec = typename VecOf<T>::type;

// Unaligned loads and stores (one vmovups, or two movups on the baseline path). Passed by
// reference: a 32-byte vector returned by value would change the baseline build's ABI.
template <class T>
SPARSEOPT_ALWAYS_INLINE void load_vec(Vec<T>& v, const T* p) noexcept {
  v = *reinterpret_cast<const typename VecOf<T>::unaligned*>(p);
}
template <class T>
SPARSEOPT_ALWAYS_INLINE void store_vec(T* p, const Vec<T>& v) noexcept {
  *reinterpret_cast<typename VecOf<T>::unaligned*>(p) = v;
}
#endif

#if SPARSEOPT_HAS_AVX2_DISPATCH
template <class Body>
SPARSEOPT_TARGET_AVX2 void run_avx2(Body& body) {
  body(std::true_type{});
}
#endif

// Runs body(std::true_type{}) compiled for AVX2 when the CPU has it (and set_simd_path has not
// asked for the generic path), else body(std::false_type{}) compiled for the baseline. body
// must be marked SPARSEOPT_INLINE_BODY, or the AVX2 copy would be a call to the plain one.
template <class Body>
SPARSEOPT_ALWAYS_INLINE void simd_dispatch(Body&& body) {
#if SPARSEOPT_HAS_AVX2_DISPATCH
  if (use_avx2()) {
    run_avx2(body);
    return;
  }
#endif
  body(std::false_type{});
}

}  // namespace detail

// Chooses the path of every later call (thread-safe; calls running now finish on theirs --
// the bits are the same). `best` on a CPU without AVX2 is `generic`.
inline void set_simd_path(SimdPath path) noexcept {
  const int state = path == SimdPath::generic ? 0 : (detail::cpu_has_avx2() ? 1 : 0);
  detail::simd_state().store(state, std::memory_order_relaxed);
}

// The path calls take now: SimdPath::avx2 or SimdPath::generic.
inline SimdPath simd_path() noexcept { return detail::use_avx2() ? SimdPath::avx2 : SimdPath::generic; }

inline const char* simd_path_name(SimdPath path) noexcept {
  return path == SimdPath::avx2 ? "avx2" : path == SimdPath::generic ? "generic" : "best";
}

}  // namespace sparseopt
