// The nonlinearities of the cells, written branch-free so that the compiler vectorises the
// cells' row loops (glibc's expf/tanhf are scalar calls and cost as much as the GEMMs).
// sigmoid and tanh stay finite and saturate exactly for inputs of any magnitude, ±inf
// included (sigmoid(-inf) is exactly 0, so that a 0·inf downstream shows as NaN), and they
// let NaN through: no clamp or comparison here may turn a non-finite value into a finite one.
//
// exp: Cody–Waite reduction x = n·ln2 + r, |r| <= ln2/2, then a Taylor polynomial for e^r
// (degree 7 in float, truncation 5e-9 relative; degree 13 in double, 4e-18) and 2^n built
// in the exponent bits. The polynomial is evaluated by Estrin's scheme: the epilogues are
// chains of dependent latencies (a gate's sigmoid, then tanh of the new c), and Horner's
// 7 (13) dependent FMAs made the LSTM's epilogue 15 % of an AVX2 forward at (50,16,256);
// Estrin's 3 (4) levels, 10 %. It costs about an ulp of exp: measured against long double
// over [-87, 88.3] and [-708, 709.4], <= 1.8 ulp (float) and <= 2.3 ulp (double), Horner
// 0.93 and 0.89; sigmoid's and tanh's absolute error stays 1.8e-7 (float), 3.5e-16
// (double). Above 88.37 (float) and 709.43 (double) n is 128 (1024), 2^n gets the exponent
// bits of +inf, and the result is +inf (the true exp overflows from 88.72 and 709.78):
// exp(inf) = inf at no cost. sigmoid = 1/(1+e^-x) and tanh = 1 - 2/(e^{2x}+1) inherit an
// absolute error of a few ulp of 1 (not relative near 0, which no caller needs: every use
// is absolute).
// The cells' tile epilogues call them in loops over one vector of units, which the compiler
// vectorises for the ISA of the translation unit (one copy per ISA namespace).
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/isa.hpp"

// The cells' row pointers never alias one another (a row's input projection is overwritten
// in place through one pointer); saying so lets the row loops vectorise without checks.
#define FASTSEQ_RESTRICT __restrict__
// Inlined into the cells' unit loops, which only then vectorise.
#define FASTSEQ_INLINE inline __attribute__((always_inline))
// The cells' tile epilogues stay functions of their own: inlined into the step loops, GCC
// gave up vectorising some of them (GRU) and ran the transcendentals one unit at a time.
#define FASTSEQ_TILE_FN __attribute__((noinline))

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class To, class From>
FASTSEQ_INLINE To bits_as(From v) {
  static_assert(sizeof(To) == sizeof(From));
  To out;
  std::memcpy(&out, &v, sizeof(To));
  return out;
}

// a·b + c, in one rounding where the instruction set has fused multiply-add. The kernels'
// translation units are compiled with -ffp-contract=off (so every template instance of an
// epilogue rounds alike); the fusions that pay are asked for here, explicitly, and GCC
// vectorises the builtins to vfmadd.
FASTSEQ_INLINE float fmadd(float a, float b, float c) {
#if defined(__FMA__)
  return __builtin_fmaf(a, b, c);
#else
  return a * b + c;
#endif
}
FASTSEQ_INLINE double fmadd(double a, double b, double c) {
#if defined(__FMA__)
  return __builtin_fma(a, b, c);
#else
  return a * b + c;
#endif
}

// The comparisons are ordered so that NaN passes the clamps unchanged (vectorised, they are
// max/min with x as the operand returned for NaN; tests/test_nonfinite.py checks every ISA).
FASTSEQ_INLINE float exp_(float x) {
  x = x < -87.3f ? -87.3f : x;  // 2^n stays a normal number ...
  x = x > 89.0f ? 89.0f : x;    // ... or +inf: n in -126..128, and 2^128 has inf's bits
  constexpr float kMagic = 12582912.0f;  // 1.5·2^23: adding it rounds to an integer
  const float t = fmadd(x, 1.44269504088896341f, kMagic);
  const float n = t - kMagic;
  float r = fmadd(-n, 0.693145751953125f, x);  // ln2 split: n·hi is exact
  r = fmadd(-n, 1.428606765330187045e-06f, r);
  // Estrin's scheme: pairs of terms in parallel, then r^2 and r^4 join them. Three
  // dependent FMAs after r^2 where Horner's chain was seven: the cells' epilogues are
  // latency-bound chains (sigmoid, then tanh(c) of it), not FMA-bound.
  const float r2 = r * r, r4 = r2 * r2;
  const float p01 = r + 1.0f;
  const float p23 = fmadd(r, 1.0f / 6, 0.5f);
  const float p45 = fmadd(r, 1.0f / 120, 1.0f / 24);
  const float p67 = fmadd(r, 1.0f / 5040, 1.0f / 720);
  const float p = fmadd(fmadd(p67, r2, p45), r4, fmadd(p23, r2, p01));
  // Unsigned: a NaN x gives t any bits, and a negative value shifted left is undefined
  // behaviour in C++17 (UBSan's report); the bits, and the code GCC emits, are the same.
  const std::uint32_t e = (bits_as<std::uint32_t>(t) - bits_as<std::uint32_t>(kMagic) + 127) << 23;
  return p * bits_as<float>(e);
}

FASTSEQ_INLINE double exp_(double x) {
  x = x < -708.3 ? -708.3 : x;  // n in -1022..1024 (2^1024: +inf)
  x = x > 710.0 ? 710.0 : x;
  constexpr double kMagic = 6755399441055744.0;  // 1.5·2^52
  const double t = fmadd(x, 1.4426950408889634074, kMagic);
  const double n = t - kMagic;
  double r = fmadd(-n, 6.93147180369123816490e-01, x);  // fdlibm's ln2 split
  r = fmadd(-n, 1.90821492927058770002e-10, r);
  // Estrin's scheme, as in float: four dependent levels (r, r^2, r^4, r^8) for Horner's 13.
  const double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
  const double q0 = r + 1.0;
  const double q1 = fmadd(r, 1.0 / 6.0, 0.5);
  const double q2 = fmadd(r, 1.0 / 120.0, 1.0 / 24.0);
  const double q3 = fmadd(r, 1.0 / 5040.0, 1.0 / 720.0);
  const double q4 = fmadd(r, 1.0 / 362880.0, 1.0 / 40320.0);
  const double q5 = fmadd(r, 1.0 / 39916800.0, 1.0 / 3628800.0);
  const double q6 = fmadd(r, 1.0 / 6227020800.0, 1.0 / 479001600.0);  // 1/13!, 1/12!
  const double lo = fmadd(fmadd(q3, r2, q2), r4, fmadd(q1, r2, q0));
  const double hi = fmadd(q6, r4, fmadd(q5, r2, q4));
  const double p = fmadd(hi, r8, lo);
  const std::uint64_t e = (bits_as<std::uint64_t>(t) - bits_as<std::uint64_t>(kMagic) + 1023) << 52;  // as above
  return p * bits_as<double>(e);
}

template <class S>
FASTSEQ_INLINE S sigmoid(S x) {
  return S(1) / (S(1) + exp_(-x));
}

template <class S>
FASTSEQ_INLINE S tanh_(S x) {
  return S(1) - S(2) / (exp_(S(2) * x) + S(1));
}

// NaN < 0 is false, so NaN passes through as in NumPy's maximum(x, 0).
template <class S>
FASTSEQ_INLINE S relu(S x) {
  return x < S(0) ? S(0) : x;
}

// d · relu'(p), from h = relu(p): d where h > 0, d · 0 where h = 0, and NaN where h is NaN
// (h > 0 ? d : 0 would return a finite 0 for a diverged unit, and for d = NaN at h = 0).
template <class S>
FASTSEQ_INLINE S relu_grad(S h, S d) {
  return h > S(0) ? d : d * h;
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
