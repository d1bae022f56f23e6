// Packing of the forward's recurrent (and, fused, input) weights into the micro-kernel's
// k-major panels (gemm/microkernel.hpp): L×L blocks transposed in registers
// (gemm/transpose.hpp). Compiled per ISA, in FASTSEQ_ISA_NS.
#pragma once

#include <cstdint>

#include "gemm/microkernel.hpp"
#include "gemm/transpose.hpp"
#include "runtime/isa.hpp"

namespace fastseq::gemm {
inline namespace FASTSEQ_ISA_NS {

// Forward panel rows [0, K) of one block of units, k-major with row stride ldp (>= NG·L: the
// panel of a group of blocks holds them side by side), from w (rows of length K, H rows per
// gate: W_hh, or W_ih with K = I): panel[k·ldp + g·L + u] = w[((g0+g)·H + j0+u)·K + k], zero
// for u >= n.
template <class S, int NG>
void pack_forward(S* panel, std::int64_t ldp, const S* w, std::int64_t H, std::int64_t K,
                  int g0, std::int64_t j0, int n) {
  using V = typename Vec<S>::type;
  constexpr int L = lanes<S>;
  // L x L blocks transposed in registers (gemm/transpose.hpp): L rows of w read a vector at
  // a time, L panel lines written whole; the last K mod L columns one element at a time.
  const std::int64_t K0 = K / L * L;
  for (int g = 0; g < NG; ++g) {
    const S* src = w + ((g0 + g) * H + j0) * K;
    S* dst = panel + g * L;
    for (std::int64_t k0 = 0; k0 < K0; k0 += L) {
      V v[L];
      for (int u = 0; u < L; ++u) v[u] = u < n ? vload(src + u * K + k0) : V{};
      transpose<S>(v);
      for (int i = 0; i < L; ++i) vstore(dst + (k0 + i) * ldp, v[i]);
    }
    for (std::int64_t k = K0; k < K; ++k)
      for (int u = 0; u < L; ++u) dst[k * ldp + u] = u < n ? src[u * K + k] : S(0);
  }
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::gemm
