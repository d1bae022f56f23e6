// Elman RNN cell, h' = act(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh) with act = tanh or relu: the
// forward epilogue and the backward pointwise step for one batch row and one block of L
// units (cells/rows.hpp). Loads go to local arrays first, the maths runs on them (so it
// vectorises with no aliasing question), then stores, one destination per loop (put, in
// cells/rows.hpp): n < L only shortens loads and stores.
// The time loop (loops/forward.hpp, loops/backward.hpp) owns the products and the indexing.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "cells/registry.hpp"
#include "cells/rows.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class S, bool Relu>
struct Rnn : Facts<Relu ? CellKind::rnn_relu : CellKind::rnn_tanh>, SummedBiases<S> {
  // Reserve gate row: [h'] (the activation; its derivative needs nothing else).

  template <bool Training, int L, bool Full>
  FASTSEQ_TILE_FN static void forward(const FwdRow<S>& w) {
    const int n = Full ? L : w.n;
    S pre[L] = {}, hp[L] = {}, hn[L];
    for (int u = 0; u < n; ++u) {
      pre[u] = w.gx[u] + w.bias[u];
      hp[u] = w.h_in[u];
    }
    for (int u = 0; u < L; ++u) {
      const S p = pre[u] + w.acc[u];
      hn[u] = Relu ? relu(p) : tanh_(p);
    }
    if constexpr (Training) {
      put(w.hprev, hp, n);
      put(w.gx, hn, n);
    }
    put(w.h_out, hn, n);
    put(w.y, hn, n);
  }

  // gates: h' in, dG out; dgs <- dG; dhd <- 0 (all of dh_{t-1} goes through W_hh).
  template <int L, bool Full>
  FASTSEQ_TILE_FN static void backward(const BwdRow<S>& w) {
    const int n = Full ? L : w.n;
    S d[L] = {}, hn[L] = {}, dp[L];
    for (int u = 0; u < n; ++u) {
      d[u] = w.dhd[u] + w.acc[u] + w.dy[u];
      hn[u] = w.gates[u];
    }
    for (int u = 0; u < L; ++u)
      dp[u] = Relu ? relu_grad(hn[u], d[u]) : d[u] * (S(1) - hn[u] * hn[u]);
    put(w.gates, dp, n);
    put(w.dgs, dp, n);
    put_zeros(w.dhd, n);
  }
};

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
