// GRU cells (PyTorch gate order r, z, n; h' = (1 - z) ⊙ n + z ⊙ h), both formulations:
//   GruAfter  (PyTorch, cuDNN):  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
//   GruBefore (Cho et al.):      n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)
// GruAfter keeps b_hn inside the recurrent term, so its reserve row is 4H wide:
// [r z n hn] with hn = W_hn h + b_hn; backward writes [dr dz dn dn⊙r] there, the first three
// being the input-side gradient dG_ih (contiguous) and (dr, dz, dn⊙r) the recurrent dG_hh.
// GruBefore needs r before the n-block's product: two dependent products per step, hence
// the phase1/phase2 split; its reserve keeps r ⊙ h for dW_hn.
#pragma once

#include <cstdint>

#include "cells/activations.hpp"
#include "fastseq/kernels.hpp"

namespace fastseq::cells {

template <class S>
struct GruAfter {
  static constexpr CellKind kind = CellKind::gru;
  static constexpr int G = 3;
  static constexpr bool two_products = false;
  static constexpr bool has_c = false;
  static constexpr std::int64_t reserve_width(std::int64_t H) { return 4 * H; }

  // gx (3H: x-projections r, z, n), gh (3H: W_hh h for r, z, n), bias (3H: b_ir + b_hr,
  // b_iz + b_hz, b_in), bhn (H). h in/out, y out.
  // Training: gx (4H wide then) <- [r z n hn], hprev <- h.
  template <bool Training>
  static void forward_row(std::int64_t H, S* FASTSEQ_RESTRICT gx, const S* FASTSEQ_RESTRICT gh,
                          const S* FASTSEQ_RESTRICT bias, const S* FASTSEQ_RESTRICT bhn,
                          S* FASTSEQ_RESTRICT h, S* FASTSEQ_RESTRICT y,
                          S* FASTSEQ_RESTRICT hprev) {
    S* const gates = gx;
    for (std::int64_t j = 0; j < H; ++j) {
      const S r = sigmoid(gx[j] + gh[j] + bias[j]);
      const S z = sigmoid(gx[H + j] + gh[H + j] + bias[H + j]);
      const S hn = gh[2 * H + j] + bhn[j];
      const S n = tanh_(gx[2 * H + j] + bias[2 * H + j] + r * hn);
      const S hp = h[j];
      const S hnew = (S(1) - z) * n + z * hp;
      if constexpr (Training) {
        gates[j] = r;
        gates[H + j] = z;
        gates[2 * H + j] = n;
        gates[3 * H + j] = hn;
        hprev[j] = hp;
      }
      h[j] = hnew;
      y[j] = hnew;
    }
  }

  // dh, dy, hprev (H) in. gates: in [r z n hn], out [dr dz dn dn⊙r] (pre-activation).
  // dgs (3H) <- [dr dz dn⊙r] for the step product; dh_out <- dh' ⊙ z (the direct path).
  static void backward_row(std::int64_t H, const S* FASTSEQ_RESTRICT dh,
                           const S* FASTSEQ_RESTRICT dy, const S* FASTSEQ_RESTRICT hprev,
                           S* FASTSEQ_RESTRICT gates, S* FASTSEQ_RESTRICT dgs,
                           S* FASTSEQ_RESTRICT dh_out) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S r = gates[j], z = gates[H + j], n = gates[2 * H + j], hn = gates[3 * H + j];
      const S dht = dh[j] + dy[j];
      const S dn = dht * (S(1) - z) * (S(1) - n * n);
      const S dz = dht * (hprev[j] - n) * z * (S(1) - z);
      const S dr = dn * hn * r * (S(1) - r);
      const S dnr = dn * r;
      gates[j] = dr;
      gates[H + j] = dz;
      gates[2 * H + j] = dn;
      gates[3 * H + j] = dnr;
      dgs[j] = dr;
      dgs[H + j] = dz;
      dgs[2 * H + j] = dnr;
      dh_out[j] = dht * z;
    }
  }
};

template <class S>
struct GruBefore {
  static constexpr CellKind kind = CellKind::gru_reset_before;
  static constexpr int G = 3;
  static constexpr bool two_products = true;
  static constexpr bool has_c = false;
  static constexpr std::int64_t reserve_width(std::int64_t H) { return 3 * H; }

  // Phase 1, after gh[0:2H] = h·W_hr,hzᵀ: r, z. gh's r, z slots <- r, z (phase 2 reads z
  // there); rh (dense scratch) <- r ⊙ h, the input of the n-block's product.
  // bias (3H) = b_ih + b_hh (b_hn folds in this formulation).
  // Training: gx[0:2H] <- r, z; hprev <- h; rh_keep <- r ⊙ h.
  template <bool Training>
  static void forward_row1(std::int64_t H, S* FASTSEQ_RESTRICT gx, S* FASTSEQ_RESTRICT gh,
                           const S* FASTSEQ_RESTRICT bias, const S* FASTSEQ_RESTRICT h,
                           S* FASTSEQ_RESTRICT rh, S* FASTSEQ_RESTRICT hprev,
                           S* FASTSEQ_RESTRICT rh_keep) {
    S* const gates = gx;
    for (std::int64_t j = 0; j < H; ++j) {
      const S r = sigmoid(gx[j] + gh[j] + bias[j]);
      const S z = sigmoid(gx[H + j] + gh[H + j] + bias[H + j]);
      const S v = r * h[j];
      gh[j] = r;
      gh[H + j] = z;
      rh[j] = v;
      if constexpr (Training) {
        gates[j] = r;
        gates[H + j] = z;
        hprev[j] = h[j];
        rh_keep[j] = v;
      }
    }
  }

  // Phase 2, after gh[2H:3H] = (r ⊙ h)·W_hnᵀ: n and the new state.
  // Training: gx[2H:3H] <- n.
  template <bool Training>
  static void forward_row2(std::int64_t H, S* FASTSEQ_RESTRICT gx, const S* FASTSEQ_RESTRICT gh,
                           const S* FASTSEQ_RESTRICT bias, S* FASTSEQ_RESTRICT h,
                           S* FASTSEQ_RESTRICT y) {
    S* const gates = gx;
    for (std::int64_t j = 0; j < H; ++j) {
      const S z = gh[H + j];
      const S n = tanh_(gx[2 * H + j] + gh[2 * H + j] + bias[2 * H + j]);
      const S hnew = (S(1) - z) * n + z * h[j];
      if constexpr (Training) gates[2 * H + j] = n;
      h[j] = hnew;
      y[j] = hnew;
    }
  }

  // Phase 1 of backward: dz, dn (pre-activation) into gates and dgs (3H dense); dh_out <-
  // dh' ⊙ z. gates' r slot still holds r for phase 2.
  static void backward_row1(std::int64_t H, const S* FASTSEQ_RESTRICT dh,
                            const S* FASTSEQ_RESTRICT dy, const S* FASTSEQ_RESTRICT hprev,
                            S* FASTSEQ_RESTRICT gates, S* FASTSEQ_RESTRICT dgs,
                            S* FASTSEQ_RESTRICT dh_out) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S z = gates[H + j], n = gates[2 * H + j];
      const S dht = dh[j] + dy[j];
      const S dn = dht * (S(1) - z) * (S(1) - n * n);
      const S dz = dht * (hprev[j] - n) * z * (S(1) - z);
      gates[H + j] = dz;
      gates[2 * H + j] = dn;
      dgs[H + j] = dz;
      dgs[2 * H + j] = dn;
      dh_out[j] = dht * z;
    }
  }

  // Phase 2, after drh = dn·W_hn (the gradient at r ⊙ h): dr, and drh ⊙ r into dh_out.
  static void backward_row2(std::int64_t H, const S* FASTSEQ_RESTRICT drh,
                            const S* FASTSEQ_RESTRICT hprev, S* FASTSEQ_RESTRICT gates,
                            S* FASTSEQ_RESTRICT dgs, S* FASTSEQ_RESTRICT dh_out) {
    for (std::int64_t j = 0; j < H; ++j) {
      const S r = gates[j];
      const S dr = drh[j] * hprev[j] * r * (S(1) - r);
      gates[j] = dr;
      dgs[j] = dr;
      dh_out[j] += drh[j] * r;
    }
  }
};

}  // namespace fastseq::cells
