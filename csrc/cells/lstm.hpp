// LSTM cell (PyTorch gate order i, f, g, o):
//   i, f, o = σ(·), g = tanh(·);  c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')
// forward epilogue and backward pointwise step for one batch row.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {

template <class S>
struct Lstm {
  static constexpr CellKind kind = CellKind::lstm;
  static constexpr int G = 4;
  static constexpr bool two_products = false;
  static constexpr bool has_c = true;
  // Reserve gate row: [i f g o] activated.
  static constexpr std::int64_t reserve_width(std::int64_t H) { return 4 * H; }

  // g: in the input projection (4H), out (training) [i f g o]. gh (4H), bias (4H: b_ih +
  // b_hh). h, c in/out; y out. Training: hprev <- h, cprev <- c, tanhc <- tanh(c').
  template <bool Training>
  static void forward_row(std::int64_t H, S* FASTSEQ_RESTRICT gx, const S* FASTSEQ_RESTRICT gh,
                          const S* FASTSEQ_RESTRICT bias, S* FASTSEQ_RESTRICT h,
                          S* FASTSEQ_RESTRICT c, S* FASTSEQ_RESTRICT y,
                          S* FASTSEQ_RESTRICT hprev, S* FASTSEQ_RESTRICT cprev,
                          S* FASTSEQ_RESTRICT tanhc) {
    S* const gates = gx;
    for (std::int64_t j = 0; j < H; ++j) {
      const S i = sigmoid(gx[j] + gh[j] + bias[j]);
      const S f = sigmoid(gx[H + j] + gh[H + j] + bias[H + j]);
      const S g = tanh_(gx[2 * H + j] + gh[2 * H + j] + bias[2 * H + j]);
      const S o = sigmoid(gx[3 * H + j] + gh[3 * H + j] + bias[3 * H + j]);
      const S cn = f * c[j] + i * g;
      const S tc = tanh_(cn);
      const S hn = o * tc;
      if constexpr (Training) {
        gates[j] = i;
        gates[H + j] = f;
        gates[2 * H + j] = g;
        gates[3 * H + j] = o;
        hprev[j] = h[j];
        cprev[j] = c[j];
        tanhc[j] = tc;
      }
      c[j] = cn;
      h[j] = hn;
      y[j] = hn;
    }
  }

  // dh, dy (H) in; dc in/out (carried cell gradient). gates: in [i f g o], out dG (4H).
  // dgs: dense copy of dG; dh_out <- 0 (all of dh_{t-1} goes through W_hh).
  static void backward_row(std::int64_t H, const S* dh, const S* dy, S* dc, const S* cprev,
                           const S* tanhc, S* gates, S* dgs, S* dh_out) {
    // One pointer per gate block: with offsets j, H+j, ... of one pointer the compiler cannot
    // prove the blocks apart and gives up vectorising.
    backward_blocks(H, dh, dy, dc, cprev, tanhc, gates, gates + H, gates + 2 * H, gates + 3 * H,
                    dgs, dgs + H, dgs + 2 * H, dgs + 3 * H, dh_out);
  }

 private:
  static void backward_blocks(std::int64_t H, const S* FASTSEQ_RESTRICT dh,
                              const S* FASTSEQ_RESTRICT dy, S* FASTSEQ_RESTRICT dc,
                              const S* FASTSEQ_RESTRICT cprev, const S* FASTSEQ_RESTRICT tanhc,
                              S* FASTSEQ_RESTRICT gi, S* FASTSEQ_RESTRICT gf,
                              S* FASTSEQ_RESTRICT gg, S* FASTSEQ_RESTRICT go,
                              S* FASTSEQ_RESTRICT di_out, S* FASTSEQ_RESTRICT df_out,
                              S* FASTSEQ_RESTRICT dg_out, S* FASTSEQ_RESTRICT do_out,
                              S* FASTSEQ_RESTRICT dh_out) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S i = gi[j], f = gf[j], g = gg[j], o = go[j];
      const S tc = tanhc[j];
      const S dht = dh[j] + dy[j];
      const S dct = dc[j] + dht * o * (S(1) - tc * tc);
      const S di = dct * g * i * (S(1) - i);
      const S df = dct * cprev[j] * f * (S(1) - f);
      const S dg = dct * i * (S(1) - g * g);
      const S d_o = dht * tc * o * (S(1) - o);
      gi[j] = di;
      gf[j] = df;
      gg[j] = dg;
      go[j] = d_o;
      di_out[j] = di;
      df_out[j] = df;
      dg_out[j] = dg;
      do_out[j] = d_o;
      dc[j] = dct * f;
      dh_out[j] = S(0);
    }
  }
};

}  // namespace fastseq::cells
