// GRU cells (PyTorch gate order r, z, n; h' = (1 - z) ⊙ n + z ⊙ h), both formulations:
//   GruAfter  (PyTorch, cuDNN):  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   GruBefore (Cho et al.):      n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
// GruAfter keeps b_hn inside the recurrent term, so its reserve row is 4H wide:
// [r z n hn] with hn = W_hn h + b_hn; backward writes [dr dz dn dn⊙r] there, the first three
// being the input-side gradient dG_ih (contiguous) and (dr, dz, dn⊙r) the recurrent dG_hh.
// GruBefore needs r before the n-block's product: two dependent products per step, hence
// the phase1/phase2 split; its reserve keeps r ⊙ h for dW_hn.
// Each function handles one batch row and one block of L units (cells/rows.hpp).
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "cells/registry.hpp"
#include "cells/rows.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct GruAfter : Facts<CellKind::gru> {
  // bias: [b_ir + b_hr, b_iz + b_hz, b_in] (element k of 3H); b_hn apart, inside
  // r ⊙ (W_hn h + b_hn): element j of the plane bhn.
  static FASTSEQ_INLINE S folded_bias(const S* b_ih, const S* b_hh, std::int64_t H,
                                      std::int64_t k) {
    return k < 2 * H ? b_ih[k] + b_hh[k] : b_ih[k];
  }
  static FASTSEQ_INLINE S bias_apart(const S* b_hh, std::int64_t H, std::int64_t j) {
    return b_hh[2 * H + j];
  }

  // bias and bhn folded as above.
  template <bool Training, int L, bool Full>
  FASTSEQ_TILE_FN static void forward(const FwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S pre[3][L] = {}, bn[L] = {}, hp[L] = {};
    for (int g = 0; g < 3; ++g)
      for (int u = 0; u < n; ++u) pre[g][u] = w.gx[g * H + u] + w.bias[g * H + u];
    for (int u = 0; u < n; ++u) {
      bn[u] = w.bhn[u];
      hp[u] = w.h_in[u];
    }
    S r[L], z[L], hn[L], nn[L], hnew[L];
    for (int u = 0; u < L; ++u) {
      r[u] = sigmoid(pre[0][u] + w.acc[u]);
      z[u] = sigmoid(pre[1][u] + w.acc[L + u]);
      hn[u] = w.acc[2 * L + u] + bn[u];
      nn[u] = tanh_(pre[2][u] + r[u] * hn[u]);
      hnew[u] = (S(1) - z[u]) * nn[u] + z[u] * hp[u];
    }
    if constexpr (Training) {
      put_gates(w.gx, H, n, r, z, nn, hn);
      put(w.hprev, hp, n);
    }
    put(w.h_out, hnew, n);
    put(w.y, hnew, n);
  }

  // gates: [r z n hn] in, [dr dz dn dn⊙r] out; dgs <- [dr dz dn⊙r]; dhd <- dh' ⊙ z.
  template <int L, bool Full>
  FASTSEQ_TILE_FN static void backward(const BwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S dht[L] = {}, a[4][L] = {}, hp[L] = {};
    for (int u = 0; u < n; ++u) {
      dht[u] = w.dhd[u] + w.acc[u] + w.dy[u];
      hp[u] = w.hprev[u];
    }
    for (int g = 0; g < 4; ++g)
      for (int u = 0; u < n; ++u) a[g][u] = w.gates[g * H + u];
    S dr[L], dz[L], dn[L], dnr[L], dd[L];
    for (int u = 0; u < L; ++u) {
      const S r = a[0][u], z = a[1][u], nn = a[2][u], hn = a[3][u];
      dn[u] = dht[u] * (S(1) - z) * (S(1) - nn * nn);
      dz[u] = dht[u] * (hp[u] - nn) * z * (S(1) - z);
      dr[u] = dn[u] * hn * r * (S(1) - r);
      dnr[u] = dn[u] * r;
      dd[u] = dht[u] * z;
    }
    put_gates(w.gates, H, n, dr, dz, dn, dnr);
    put_gates(w.dgs, H, n, dr, dz, dnr);
    put(w.dhd, dd, n);
  }
};

template <class S>
struct GruBefore : Facts<CellKind::gru_reset_before>, SummedBiases<S> {
  enum Carried : int { kZ, kCarried };  // z, from phase 1 to phase 2
  static_assert(info.carried_planes == kCarried, "registry.hpp: the GRU carries one plane");

  // Phase 1, acc = h·W_hr,hzᵀ (2 gates): r, z; rh <- r ⊙ h (input of the n-block product),
  // z carried to phase 2. bias = b_ih + b_hh (b_hn folds in this formulation).
  // Training: gx[r, z] <- r, z; hprev <- h; rh_keep <- r ⊙ h.
  template <bool Training, int L, bool Full>
  FASTSEQ_TILE_FN static void forward1(const FwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S pre[2][L] = {}, hp[L] = {};
    for (int g = 0; g < 2; ++g)
      for (int u = 0; u < n; ++u) pre[g][u] = w.gx[g * H + u] + w.bias[g * H + u];
    for (int u = 0; u < n; ++u) hp[u] = w.h_in[u];
    S r[L], z[L], v[L];
    for (int u = 0; u < L; ++u) {
      r[u] = sigmoid(pre[0][u] + w.acc[u]);
      z[u] = sigmoid(pre[1][u] + w.acc[L + u]);
      v[u] = r[u] * hp[u];
    }
    put(w.rh, v, n);
    put(w.carried[kZ], z, n);
    if constexpr (Training) {
      put_gates(w.gx, H, n, r, z);
      put(w.hprev, hp, n);
      put(w.rh_keep, v, n);
    }
  }

  // Phase 2, acc = (r ⊙ h)·W_hnᵀ: n and the new state (h_out may be h_in: in place).
  // Training: gx[n] <- n.
  template <bool Training, int L, bool Full>
  FASTSEQ_TILE_FN static void forward2(const FwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S pre[L] = {}, z[L] = {}, hp[L] = {};
    for (int u = 0; u < n; ++u) {
      pre[u] = w.gx[2 * H + u] + w.bias[2 * H + u];
      z[u] = w.carried[kZ][u];
      hp[u] = w.h_in[u];
    }
    S nn[L], hnew[L];
    for (int u = 0; u < L; ++u) {
      nn[u] = tanh_(pre[u] + w.acc[u]);
      hnew[u] = (S(1) - z[u]) * nn[u] + z[u] * hp[u];
    }
    if constexpr (Training) put(w.gx + 2 * H, nn, n);
    put(w.h_out, hnew, n);
    put(w.y, hnew, n);
  }

  // Phase A of backward, acc = dG_rz,next · W_hr,hz: dz, dn into gates; dn <- dn (dense,
  // for the n-block product); dhd <- dh' ⊙ z. gates' r slot still holds r for phase B.
  template <int L, bool Full>
  FASTSEQ_TILE_FN static void backward1(const BwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S dht[L] = {}, z[L] = {}, nn[L] = {}, hp[L] = {};
    for (int u = 0; u < n; ++u) {
      dht[u] = w.dhd[u] + w.acc[u] + w.dy[u];
      z[u] = w.gates[H + u];
      nn[u] = w.gates[2 * H + u];
      hp[u] = w.hprev[u];
    }
    S dz[L], dn[L], dd[L];
    for (int u = 0; u < L; ++u) {
      dn[u] = dht[u] * (S(1) - z[u]) * (S(1) - nn[u] * nn[u]);
      dz[u] = dht[u] * (hp[u] - nn[u]) * z[u] * (S(1) - z[u]);
      dd[u] = dht[u] * z[u];
    }
    put_gates(w.gates + H, H, n, dz, dn);
    put(w.dn, dn, n);
    put(w.dhd, dd, n);
  }

  // Phase B, acc = dn · W_hn (the gradient at r ⊙ h): dr; dgs <- [dr dz]; dhd += acc ⊙ r.
  template <int L, bool Full>
  FASTSEQ_TILE_FN static void backward2(const BwdRow<S>& w) {
    const int n = Full ? L : w.n;
    const std::int64_t H = w.H;
    S r[L] = {}, dz[L] = {}, hp[L] = {}, dd[L] = {};
    for (int u = 0; u < n; ++u) {
      r[u] = w.gates[u];
      dz[u] = w.gates[H + u];
      hp[u] = w.hprev[u];
      dd[u] = w.dhd[u];
    }
    S dr[L], dh[L];
    for (int u = 0; u < L; ++u) {
      dr[u] = w.acc[u] * hp[u] * r[u] * (S(1) - r[u]);
      dh[u] = dd[u] + w.acc[u] * r[u];
    }
    put(w.gates, dr, n);
    put_gates(w.dgs, H, n, dr, dz);
    put(w.dhd, dh, n);
  }
};

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
