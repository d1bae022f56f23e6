// What a cell's tile epilogue sees of one batch row and one block of n <= L hidden units
// (units j0 .. j0+n-1): every pointer is already offset to unit j0; gate g of a gate-plane
// row is at +g·H. Pointers a cell does not use are null.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "cells/registry.hpp"
#include "runtime/isa.hpp"

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct FwdRow {
  const S* acc = nullptr;   // the tile's product for this row: gate g of the panel at +g·L
  S* gx = nullptr;          // gate-plane row: input projection in; activations out (training)
  const S* bias = nullptr;  // folded biases (G·H)
  const S* bhn = nullptr;   // GRU reset-after b_hn (H)
  const S* h_in = nullptr;  // state the step starts from
  S* h_out = nullptr;       // new state (a different buffer, except GRU reset-before phase 2)
  S* c = nullptr;           // LSTM cell state, in/out
  S* y = nullptr;           // output row
  S* hprev = nullptr;       // training: reserve copy of h_in
  S* rh = nullptr;          // GRU reset-before: r ⊙ h for the n-block product (dense)
  S* rh_keep = nullptr;     // training: reserve copy of r ⊙ h
  S* m_keep = nullptr;      // training, projected: reserve copy of the cell output m
  S* kept[most_kept_planes()] = {};        // training: the cell's rows of its kept planes
  S* carried[most_carried_planes()] = {};  // the cell's rows of its carried planes
  std::int64_t H = 0;
  int n = 0;
};

// The stores of a tile epilogue, one destination per loop. A loop that stores through
// several pointers which might overlap gets versioned by GCC behind pairwise overlap checks
// (about 200 scalar instructions per call in the LSTM's, more than its vector maths); a
// copy out of a local array has nothing to check.
template <class S>
FASTSEQ_INLINE void put(S* dst, const S* src, int n) {
  for (int u = 0; u < n; ++u) dst[u] = src[u];
}
template <class S>
FASTSEQ_INLINE void put_zeros(S* dst, int n) {
  for (int u = 0; u < n; ++u) dst[u] = S(0);
}
// Consecutive gates into a gate-plane row, where gate g is at +g·H: put(row + g·H, the g-th
// of gates). One put per gate, as written out by hand (a loop over the gates made GCC split
// one of the reset-before GRU's stores into pieces).
template <class S, class... Gates>
FASTSEQ_INLINE void put_gates(S* row, std::int64_t H, int n, const Gates&... gates) {
  std::int64_t off = 0;
  ((put(row + off, gates, n), off += H), ...);
}

// The biases an epilogue adds, folded once per call by the loops (loops/forward.hpp) through
// the cell: element k of the one vector of G·H biases (`bias`) and, for a cell whose
// registry entry keeps a recurrent bias apart (recurrent_bias_apart: the layout carves its
// H-wide plane `bhn`), element j of that plane. By default both biases of a gate are summed,
// since they add to the same pre-activation; the reset-after GRU hides this with its own
// (cells/gru.hpp: b_hn inside r ⊙ (W_hn h + b_hn)).
template <class S>
struct SummedBiases {
  static FASTSEQ_INLINE S folded_bias(const S* b_ih, const S* b_hh, std::int64_t /*H*/,
                                      std::int64_t k) {
    return b_ih[k] + b_hh[k];
  }
};

template <class S>
struct BwdRow {
  const S* acc = nullptr;    // product for this row: dG_next · W_hh (or dn · W_hn) over the units;
                             // projected: dm = dh · W_hr, the whole gradient at the output m
  S* dhd = nullptr;          // carried part of dh that bypasses W_hh, in/out (not projected)
  const S* dy = nullptr;     // output gradient row
  S* gates = nullptr;        // reserve gate row: activations in, dG out
  S* dgs = nullptr;          // dense dG row for the next product (gate stride H)
  S* dc = nullptr;           // LSTM carried dc, in/out
  const S* hprev = nullptr;
  const S* kept[most_kept_planes()] = {};  // what the forward's epilogue kept, as FwdRow
  S* dn = nullptr;           // GRU reset-before: dense dn for the n-block product
  std::int64_t H = 0;
  int n = 0;
};

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
