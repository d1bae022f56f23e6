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

  // gx (4H), gh (4H), bias (4H: b_ih + b_hh). h, c in/out; y out.
  // Training: gates (may alias gx) <- [i f g o], hprev <- h, cprev <- c, tanhc <- tanh(c').
  template <bool Training>
  static void forward_row(std::int64_t H, const S* gx, const S* gh, const S* bias, S* h, S* c,
                          S* y, S* gates, S* hprev, S* cprev, S* tanhc) {
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
    for (std::int64_t j = 0; j < H; ++j) {
      const S i = gates[j], f = gates[H + j], g = gates[2 * H + j], o = gates[3 * H + j];
      const S tc = tanhc[j];
      const S dht = dh[j] + dy[j];
      const S dct = dc[j] + dht * o * (S(1) - tc * tc);
      const S di = dct * g * i * (S(1) - i);
      const S df = dct * cprev[j] * f * (S(1) - f);
      const S dg = dct * i * (S(1) - g * g);
      const S d_o = dht * tc * o * (S(1) - o);
      gates[j] = di;
      gates[H + j] = df;
      gates[2 * H + j] = dg;
      gates[3 * H + j] = d_o;
      dgs[j] = di;
      dgs[H + j] = df;
      dgs[2 * H + j] = dg;
      dgs[3 * H + j] = d_o;
      dc[j] = dct * f;
      dh_out[j] = S(0);
    }
  }
};

}  // namespace fastseq::cells
