// In-register transpose of an L x L block (L = the vector's lanes), for packing W_hh into
// the forward panels: W_hh's rows are units, the panels' rows are k, so every panel line is
// a column of L rows of W_hh. Element by element that transpose cost about 1 ms per call
// for an LSTM at H = 512 (4 MiB), as much as eight of its batch-1 steps; a vector at a time
// it runs at the speed of the memory it reads.
//
// log2(L) rounds; round D swaps the off-diagonal D x D sub-blocks of every 2D x 2D block:
// row r (bit D clear) takes lanes l + D of row r + D into its lanes l (bit D set), and row
// r + D takes lanes l + D of row r. Each round is L two-input shuffles, which GCC turns into
// vpermt2ps (AVX-512), vpermps + blend (AVX2) or shufps (SSE).
#pragma once

#include <cstdint>

#include "gemm/microkernel.hpp"
#include "runtime/isa.hpp"

namespace fastseq::gemm {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct Lane;  // the integer lane type of S's shuffle masks
template <>
struct Lane<float> {
  typedef std::int32_t mask __attribute__((vector_size(FASTSEQ_VEC_BYTES)));
};
template <>
struct Lane<double> {
  typedef std::int64_t mask __attribute__((vector_size(FASTSEQ_VEC_BYTES)));
};

template <class S, int D>
inline void transpose_round(typename Vec<S>::type (&v)[lanes<S>]) {
  using M = typename Lane<S>::mask;
  constexpr int L = lanes<S>;
  M low, high;  // index i < L: lane i of the first input; L + i: lane i of the second
  for (int l = 0; l < L; ++l) {
    low[l] = (l & D) ? L + l - D : l;
    high[l] = (l & D) ? L + l : l + D;
  }
  for (int r = 0; r < L; ++r) {
    if (r & D) continue;
    const typename Vec<S>::type a = v[r], b = v[r + D];
    v[r] = __builtin_shuffle(a, b, low);
    v[r + D] = __builtin_shuffle(a, b, high);
  }
}

template <class S, int D = lanes<S> / 2>
inline void transpose(typename Vec<S>::type (&v)[lanes<S>]) {
  if constexpr (D >= 1) {
    transpose_round<S, D>(v);
    transpose<S, D / 2>(v);
  }
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::gemm
