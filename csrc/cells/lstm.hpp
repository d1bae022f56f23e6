// LSTM cell (PyTorch gate order i, f, g, o):
//   i, f, o = σ(·), g = tanh(·);  c' = f ⊙ c + i ⊙ g;  h' = o ⊙ tanh(c')
// and the projected LSTM (lstmp, torch's proj_size): the same cell whose output m = o ⊙ tanh(c')
// the loops project, h' = m·W_hrᵀ (a product phase of their own): here m goes to h_out (the
// dense m buffer) and the reserve, and backward's acc is the whole dm.
// forward epilogue and backward pointwise step for one batch row and one block of L units
// (cells/rows.hpp): the tile holds all four gates of the same units.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "cells/registry.hpp"
#include "cells/rows.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class S, CellKind K = CellKind::lstm>
struct Lstm : Facts<K>, SummedBiases<S> {
  // Reserve gate row: [i f g o] activated; hprev (the loops', projected) and (projected) m
  // beside it, and the kept planes (registry.hpp: kept_planes): c_{t-1} and tanh c_t.
  static constexpr bool proj = Facts<K>::projected;
  enum Kept : int { kCprev, kTanhc, kKept };
  static_assert(Facts<K>::info.kept_planes == kKept, "registry.hpp: the LSTM keeps two planes");

  // GxIn: gx holds the input projection; false where the loop folded it into acc
  // (loops/layout.hpp, forward_choices), and gx is only written.
  template <bool Training, int L, bool Full, bool GxIn = true>
  FASTSEQ_TILE_FN static void forward(const FwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S pre[4][L] = {}, cp[L] = {}, hp[L] = {};
    for (int g = 0; g < 4; ++g)
      for (int u = 0; u < n; ++u)
        pre[g][u] = GxIn ? w.gx[g * H + u] + w.bias[g * H + u] : w.bias[g * H + u];
    for (int u = 0; u < n; ++u) {
      cp[u] = w.c[u];
      if constexpr (!proj) hp[u] = w.h_in[u];
    }
    S ig[L], fg[L], gg[L], og[L], cn[L], tc[L], hn[L];
    for (int u = 0; u < L; ++u) {
      ig[u] = sigmoid(pre[0][u] + w.acc[u]);
      fg[u] = sigmoid(pre[1][u] + w.acc[L + u]);
      gg[u] = tanh_(pre[2][u] + w.acc[2 * L + u]);
      og[u] = sigmoid(pre[3][u] + w.acc[3 * L + u]);
      cn[u] = fg[u] * cp[u] + ig[u] * gg[u];
      tc[u] = tanh_(cn[u]);
      hn[u] = og[u] * tc[u];
    }
    if constexpr (Training) {
      put_gates(w.gx, H, n, ig, fg, gg, og);
      if constexpr (!proj) put(w.hprev, hp, n);
      put(w.kept[kCprev], cp, n);
      put(w.kept[kTanhc], tc, n);
      if constexpr (proj) put(w.m_keep, hn, n);
    }
    put(w.c, cn, n);
    put(w.h_out, hn, n);
    if constexpr (!proj) put(w.y, hn, n);
  }

  // gates: [i f g o] in, dG out; dgs <- dG; dc carried; dhd <- 0 (projected: dh at m is acc).
  template <int L, bool Full>
  FASTSEQ_TILE_FN static void backward(const BwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S dht[L] = {}, dcc[L] = {}, a[4][L] = {}, tc[L] = {}, cp[L] = {};
    for (int u = 0; u < n; ++u) {
      if constexpr (proj)
        dht[u] = w.acc[u];
      else
        dht[u] = w.dhd[u] + w.acc[u] + w.dy[u];
      dcc[u] = w.dc[u];
      tc[u] = w.kept[kTanhc][u];
      cp[u] = w.kept[kCprev][u];
    }
    for (int g = 0; g < 4; ++g)
      for (int u = 0; u < n; ++u) a[g][u] = w.gates[g * H + u];
    S di[L], df[L], dg[L], d_o[L], dcn[L];
    for (int u = 0; u < L; ++u) {
      const S i = a[0][u], f = a[1][u], g = a[2][u], o = a[3][u];
      const S dct = dcc[u] + dht[u] * o * (S(1) - tc[u] * tc[u]);
      di[u] = dct * g * i * (S(1) - i);
      df[u] = dct * cp[u] * f * (S(1) - f);
      dg[u] = dct * i * (S(1) - g * g);
      d_o[u] = dht[u] * tc[u] * o * (S(1) - o);
      dcn[u] = dct * f;
    }
    put_gates(w.gates, H, n, di, df, dg, d_o);
    put_gates(w.dgs, H, n, di, df, dg, d_o);
    put(w.dc, dcn, n);
    if constexpr (!proj) put_zeros(w.dhd, n);
  }
};

template <class S>
using Lstmp = Lstm<S, CellKind::lstmp>;

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
