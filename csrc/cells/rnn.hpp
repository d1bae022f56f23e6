// Elman RNN cell, h' = act(x·W_ihᵀ + b_ih + h·W_hhᵀ + b_hh) with act = tanh or relu: the
// forward epilogue and the backward pointwise step for one batch row. The time loop
// (loops/sequence.hpp) owns the products and the indexing; nothing here knows about time.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {

template <class S, bool Relu>
struct Rnn {
  static constexpr CellKind kind = Relu ? CellKind::rnn_relu : CellKind::rnn_tanh;
  static constexpr int G = 1;
  static constexpr bool two_products = false;
  static constexpr bool has_c = false;
  // Reserve gate row: [h'] (the activation; its derivative needs nothing else).
  static constexpr std::int64_t reserve_width(std::int64_t H) { return H; }

  // g: in the row's input projection (H), out (training) h'. gh: h·W_hhᵀ (H);
  // bias: b_ih + b_hh (H). h in/out; y out. Training: hprev <- h.
  template <bool Training>
  static void forward_row(std::int64_t H, S* FASTSEQ_RESTRICT g, const S* FASTSEQ_RESTRICT gh,
                          const S* FASTSEQ_RESTRICT bias, S* FASTSEQ_RESTRICT h,
                          S* FASTSEQ_RESTRICT y, S* FASTSEQ_RESTRICT hprev) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S pre = g[j] + gh[j] + bias[j];
      const S hn = Relu ? relu(pre) : tanh_(pre);
      if constexpr (Training) {
        hprev[j] = h[j];
        g[j] = hn;
      }
      h[j] = hn;
      y[j] = hn;
    }
  }

  // dh: carried gradient (H); dy: this step's output gradient. gates: in h', out dG.
  // dgs: dense copy of dG for the step product; dh_out <- the part of dh_{t-1} that does not
  // go through W_hh (none for the RNN).
  static void backward_row(std::int64_t H, const S* FASTSEQ_RESTRICT dh,
                           const S* FASTSEQ_RESTRICT dy, S* FASTSEQ_RESTRICT gates,
                           S* FASTSEQ_RESTRICT dgs, S* FASTSEQ_RESTRICT dh_out) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S hn = gates[j];
      const S d = dh[j] + dy[j];
      const S dpre = Relu ? (hn > S(0) ? d : S(0)) : d * (S(1) - hn * hn);
      gates[j] = dpre;
      dgs[j] = dpre;
      dh_out[j] = S(0);
    }
  }
};

}  // namespace fastseq::cells
