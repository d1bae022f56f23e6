// The per-step register-tile kernel, written once with GCC vector extensions and compiled
// per ISA (runtime/isa.hpp sets the width: 16 B portable, 32 B AVX2, 64 B AVX-512).
//   out (MR x NV·L) = Σ_k a[r, k] · p[k, 0 : NV·L]
// with p a k-major panel (row stride ldp): the packed W_hhᵀ panels in forward (NV gates of
// L units each, interleaved so one tile holds every gate of the same units) and W_hh itself
// in backward (its rows are already k-major for dh = dG · W_hh). KU independent accumulator
// sets over k hide the FMA latency when MR·NV is small (B = 1): their sum is taken in a
// fixed order, so the result depends on nothing but the inputs.
#pragma once

#include <cstdint>
#include <cstring>

#include "runtime/isa.hpp"

#if defined(FASTSEQ_ISA_AVX512) || defined(FASTSEQ_ISA_AVX2)
#include <immintrin.h>
#endif

namespace fastseq::gemm {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(FASTSEQ_VEC_BYTES)));
  static constexpr int lanes = FASTSEQ_VEC_BYTES / 4;
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(FASTSEQ_VEC_BYTES)));
  static constexpr int lanes = FASTSEQ_VEC_BYTES / 8;
};

template <class S>
inline constexpr int lanes = Vec<S>::lanes;

template <class S>
inline typename Vec<S>::type vload(const S* p) {
  typename Vec<S>::type v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class S>
inline void vstore(S* p, typename Vec<S>::type v) {
  std::memcpy(p, &v, sizeof(v));
}

// a·b + c. The ISA translation units are compiled with -ffp-contract=off, so that the cells'
// epilogues round the same way in every template instance (inference and training forward
// give the same bits); the product's fused multiply-adds are asked for explicitly.
inline Vec<float>::type vfma(Vec<float>::type a, Vec<float>::type b, Vec<float>::type c) {
#if defined(FASTSEQ_ISA_AVX512)
  return (Vec<float>::type)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif defined(FASTSEQ_ISA_AVX2)
  return (Vec<float>::type)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
  return a * b + c;
#endif
}
inline Vec<double>::type vfma(Vec<double>::type a, Vec<double>::type b, Vec<double>::type c) {
#if defined(FASTSEQ_ISA_AVX512)
  return (Vec<double>::type)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#elif defined(FASTSEQ_ISA_AVX2)
  return (Vec<double>::type)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#else
  return a * b + c;
#endif
}

// Rows per tile for NV vectors of output per row. 32 registers (AVX-512): as many
// accumulators as the file holds beside the NV weight vectors and one broadcast. 16
// (AVX2, portable): 12 accumulators, the weight vectors then taken as FMA memory operands
// where they no longer fit; in L1 (bench/microkernel_rate.cpp, AVX2 kernels on a Sapphire
// Rapids core, best of 15) 3 rows × 4 vectors ran at 70-86 GFLOP/s against 39-61 for the
// 2 × 4 that leaves the weights in registers, 3 × 3 at 66-77 against 38-54 for 2 × 3, and
// 12 × 1 at 30-51 against 24-36 for 8 × 1: FMA latency needs about 8 independent chains
// in flight, and 6-8 accumulators were at the edge.
template <int NV>
inline constexpr int max_rows = (FASTSEQ_VEC_REGS == 32)
                                    ? (NV >= 3 ? 4 : NV == 2 ? 8 : 16)
                                    : (NV >= 3 ? 3 : NV == 2 ? 6 : 12);

template <int MR, int NV>
inline constexpr int k_split = (MR * NV >= 8) ? 1 : (8 / (MR * NV) > 4 ? 4 : 8 / (MR * NV));

// Accumulate: out holds a partial sum over earlier k (a k-blocked product) that the first
// accumulator set continues from.
template <class S, int MR, int NV, bool Accumulate = false>
inline void tile(const S* __restrict a, std::int64_t lda, const S* __restrict p,
                 std::int64_t ldp, std::int64_t K, S* __restrict out) {
  using V = typename Vec<S>::type;
  constexpr int L = lanes<S>;
  constexpr int KU = k_split<MR, NV>;
  V acc[KU][MR][NV];
  for (int u = 0; u < KU; ++u)
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v)
        acc[u][r][v] = (Accumulate && u == 0) ? vload(out + (r * NV + v) * L) : V{};
  std::int64_t k = 0;
  for (; k + KU <= K; k += KU) {
    for (int u = 0; u < KU; ++u) {
      const S* pk = p + (k + u) * ldp;
      V w[NV];
      for (int v = 0; v < NV; ++v) w[v] = vload(pk + v * L);
      for (int r = 0; r < MR; ++r) {
        const V b = a[r * lda + k + u] - V{};  // x - 0 is x: a plain broadcast
        for (int v = 0; v < NV; ++v) acc[u][r][v] = vfma(b, w[v], acc[u][r][v]);
      }
    }
  }
  for (; k < K; ++k) {
    const S* pk = p + k * ldp;
    V w[NV];
    for (int v = 0; v < NV; ++v) w[v] = vload(pk + v * L);
    for (int r = 0; r < MR; ++r) {
      const V b = a[r * lda + k] - V{};
      for (int v = 0; v < NV; ++v) acc[0][r][v] = vfma(b, w[v], acc[0][r][v]);
    }
  }
  for (int u = 1; u < KU; ++u)
    for (int r = 0; r < MR; ++r)
      for (int v = 0; v < NV; ++v) acc[0][r][v] += acc[u][r][v];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) vstore(out + (r * NV + v) * L, acc[0][r][v]);
}

// Calls f.template operator()<MR>(b0) for row blocks covering 0..B: full tiles of the
// largest height, then halving heights for the remainder.
template <int MR, class F>
inline void for_row_blocks(std::int64_t B, std::int64_t& b0, F& f) {
  for (; b0 + MR <= B; b0 += MR) f.template rows<MR>(b0);
  if constexpr (MR > 1) for_row_blocks<MR / 2>(B, b0, f);
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::gemm
