// The forward and backward time loops, written once and templated on the cell, with the
// runtime flags (training, has-lengths) as template parameters so the step loop carries no
// test for them. The cells (cells/*.hpp) hold the gate math; gemm/ holds the products.
//
// Lengths and reverse without copies or gathers: at step s, row b works on time
// t = reverse ? L_b-1-s : s while s < L_b. The recurrent product always runs on all B rows
// of the dense state; the epilogue reads Gx and writes y/reserve at row (t, b), and leaves
// finished rows alone (frozen state). Backward mirrors it: a finished row passes its dh
// through unchanged and contributes a zero row of dG to the product.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"
#include "gemm/gemm.hpp"
#include "loops/layout.hpp"

namespace fastseq::loops {

using gemm::Op;

template <class S>
inline void zero(S* p, std::int64_t n) {
  std::memset(static_cast<void*>(p), 0, sizeof(S) * static_cast<std::size_t>(n));
}

template <class S>
inline void copy_or_zero(S* dst, const S* src, std::int64_t n) {
  if (src)
    std::memcpy(dst, src, sizeof(S) * static_cast<std::size_t>(n));
  else
    zero(dst, n);
}

// Zero rows (t, b) with t >= lengths[b] of a (T*B, width) plane with row stride ld.
template <class S>
void zero_padding(S* plane, std::int64_t ld, std::int64_t width, const SeqConfig& cfg,
                  const std::int64_t* lengths) {
  for (std::int64_t b = 0; b < cfg.B; ++b)
    for (std::int64_t t = lengths[b]; t < cfg.T; ++t) zero(plane + (t * cfg.B + b) * ld, width);
}

// Time index of row b at step s, or -1 once the sequence has ended.
template <bool HasLengths>
inline std::int64_t time_of(std::int64_t s, std::int64_t b, std::int64_t T, bool reverse,
                            const std::int64_t* lengths) {
  if constexpr (HasLengths) {
    const std::int64_t L = lengths[b];
    if (s >= L) return -1;
    return reverse ? L - 1 - s : s;
  } else {
    (void)b;
    (void)lengths;
    return reverse ? T - 1 - s : s;
  }
}

template <class S, class Cell, bool Training, bool HasLengths>
void forward_loop(const SeqConfig& cfg, const ForwardArgs<S>& a) {
  constexpr CellKind kind = Cell::kind;
  const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B;
  const std::int64_t GH = Cell::G * H;
  const std::int64_t* lengths = a.lengths;

  Carver scv(a.scratch);
  ForwardScratch<S> sc = ForwardScratch<S>::carve(scv, cfg, Training);
  ReservePlanes<S> rv;
  if constexpr (Training) {
    Carver rcv(a.reserve);
    rv = ReservePlanes<S>::carve(rcv, cfg);
  }
  S* const gates = Training ? rv.gates : sc.gates;
  const std::int64_t ldg = Training ? rv.ldg : GH;

  // 0. Fold the biases into one vector; the GRU's b_hn stays inside r ⊙ (W_hn h + b_hn).
  if (cfg.has_bias) {
    for (std::int64_t k = 0; k < GH; ++k) sc.bias[k] = a.b_ih[k] + a.b_hh[k];
    if constexpr (kind == CellKind::gru) {
      for (std::int64_t j = 0; j < H; ++j) {
        sc.bias[2 * H + j] = a.b_ih[2 * H + j];
        sc.bhn[j] = a.b_hh[2 * H + j];
      }
    }
  } else {
    zero(sc.bias, GH);
    if constexpr (kind == CellKind::gru) zero(sc.bhn, H);
  }
  copy_or_zero(sc.h, a.h0, B * H);
  if constexpr (Cell::has_c) copy_or_zero(sc.c, a.c0, B * H);
  // Products with beta = 0 still scale their output in some BLAS paths (0 · NaN = NaN), and
  // finished rows keep entering the products: start every product buffer at zero.
  zero(sc.gh, B * GH);
  if constexpr (Cell::two_products) zero(sc.rh, B * H);

  // 1. Input projection for all T steps at once: Gx = X · W_ihᵀ, one GEMM over N rows,
  //    written straight into the gate plane the epilogue then overwrites in place.
  gemm::matmul<S>(Op::N, Op::T, N, GH, I, a.x, I, a.w_ih, I, S(0), gates, ldg);

  // 2. The sequential part: per step one recurrent product (two for GRU reset-before),
  //    each followed by the cell's epilogue over the batch rows.
  const std::int64_t n_first = Cell::two_products ? 2 * H : GH;
  for (std::int64_t s = 0; s < T; ++s) {
    gemm::step_forward<S>(B, n_first, H, sc.h, H, a.w_hh, H, sc.gh, GH);
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t t = time_of<HasLengths>(s, b, T, cfg.reverse, lengths);
      if (HasLengths && t < 0) continue;
      const std::int64_t row = t * B + b;
      S* g = gates + row * ldg;
      S* gh = sc.gh + b * GH;
      S* h = sc.h + b * H;
      S* y = a.y + row * H;
      S* hprev = Training ? rv.hprev + row * H : nullptr;
      if constexpr (kind == CellKind::rnn_tanh || kind == CellKind::rnn_relu) {
        Cell::template forward_row<Training>(H, g, gh, sc.bias, h, y, hprev);
      } else if constexpr (kind == CellKind::lstm) {
        S* cprev = Training ? rv.cprev + row * H : nullptr;
        S* tanhc = Training ? rv.tanhc + row * H : nullptr;
        Cell::template forward_row<Training>(H, g, gh, sc.bias, h, sc.c + b * H, y, hprev, cprev,
                                             tanhc);
      } else if constexpr (kind == CellKind::gru) {
        Cell::template forward_row<Training>(H, g, gh, sc.bias, sc.bhn, h, y, hprev);
      } else {
        S* rh_keep = Training ? rv.rh + row * H : nullptr;
        Cell::template forward_row1<Training>(H, g, gh, sc.bias, h, sc.rh + b * H, hprev,
                                              rh_keep);
      }
    }
    if constexpr (Cell::two_products) {
      // r is known only now: the n-block's product takes r ⊙ h.
      gemm::step_forward<S>(B, H, H, sc.rh, H, a.w_hh + 2 * H * H, H, sc.gh + 2 * H, GH);
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t t = time_of<HasLengths>(s, b, T, cfg.reverse, lengths);
        if (HasLengths && t < 0) continue;
        const std::int64_t row = t * B + b;
        S* g = gates + row * ldg;
        Cell::template forward_row2<Training>(H, g, sc.gh + b * GH, sc.bias, sc.h + b * H,
                                              a.y + row * H);
      }
    }
  }

  // 3. Final states; zeros where sequences had ended (y, and the reserve planes that the
  //    backward GEMMs multiply by the zero dG of those rows: 0 · garbage could be NaN).
  std::memcpy(a.h_n, sc.h, sizeof(S) * static_cast<std::size_t>(B * H));
  if constexpr (Cell::has_c) std::memcpy(a.c_n, sc.c, sizeof(S) * static_cast<std::size_t>(B * H));
  if constexpr (HasLengths) {
    zero_padding(a.y, H, H, cfg, lengths);
    if constexpr (Training) {
      zero_padding(rv.hprev, H, H, cfg, lengths);
      if constexpr (Cell::two_products) zero_padding(rv.rh, H, H, cfg, lengths);
    }
  }
}

template <class S, class Cell, bool HasLengths>
void backward_loop(const SeqConfig& cfg, const BackwardArgs<S>& a) {
  constexpr CellKind kind = Cell::kind;
  const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B;
  const std::int64_t GH = Cell::G * H;
  const std::int64_t* lengths = a.lengths;

  Carver rcv(a.reserve);
  const ReservePlanes<S> rv = ReservePlanes<S>::carve(rcv, cfg);
  Carver scv(a.scratch);
  const BackwardScratch<S> sc = BackwardScratch<S>::carve(scv, cfg);
  const std::int64_t ldg = rv.ldg;

  S* dh = sc.dh_a;
  S* dh_next = sc.dh_b;
  copy_or_zero(dh, a.dh_n, B * H);
  if constexpr (Cell::has_c) copy_or_zero(sc.dc, a.dc_n, B * H);
  zero(sc.dgs, B * GH);
  if constexpr (Cell::two_products) zero(sc.drh, B * H);

  // 1. Reverse time loop: the pointwise backward of each row writes dG over the reserve's
  //    activations (in place: they are not needed afterwards) and a dense copy for the one
  //    per-step product dh_{t-1} = dh_out + dG · W_hh.
  const std::int64_t n_last = Cell::two_products ? 2 * H : GH;
  for (std::int64_t s = T - 1; s >= 0; --s) {
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t t = time_of<HasLengths>(s, b, T, cfg.reverse, lengths);
      if (HasLengths && t < 0) {
        std::memcpy(dh_next + b * H, dh + b * H, sizeof(S) * static_cast<std::size_t>(H));
        zero(sc.dgs + b * GH, GH);
        continue;
      }
      const std::int64_t row = t * B + b;
      S* g = rv.gates + row * ldg;
      const S* dy = a.dy + row * H;
      if constexpr (kind == CellKind::rnn_tanh || kind == CellKind::rnn_relu) {
        Cell::backward_row(H, dh + b * H, dy, g, sc.dgs + b * GH, dh_next + b * H);
      } else if constexpr (kind == CellKind::lstm) {
        Cell::backward_row(H, dh + b * H, dy, sc.dc + b * H, rv.cprev + row * H,
                           rv.tanhc + row * H, g, sc.dgs + b * GH, dh_next + b * H);
      } else if constexpr (kind == CellKind::gru) {
        Cell::backward_row(H, dh + b * H, dy, rv.hprev + row * H, g, sc.dgs + b * GH,
                           dh_next + b * H);
      } else {
        Cell::backward_row1(H, dh + b * H, dy, rv.hprev + row * H, g, sc.dgs + b * GH,
                            dh_next + b * H);
      }
    }
    if constexpr (Cell::two_products) {
      // Gradient at r ⊙ h through the n-block, then dr (needs it) and its share of dh.
      gemm::step_backward<S>(B, H, H, sc.dgs + 2 * H, GH, a.w_hh + 2 * H * H, H, S(0), sc.drh,
                             H);
      for (std::int64_t b = 0; b < B; ++b) {
        const std::int64_t t = time_of<HasLengths>(s, b, T, cfg.reverse, lengths);
        if (HasLengths && t < 0) continue;
        const std::int64_t row = t * B + b;
        Cell::backward_row2(H, sc.drh + b * H, rv.hprev + row * H, rv.gates + row * ldg,
                            sc.dgs + b * GH, dh_next + b * H);
      }
    }
    gemm::step_backward<S>(B, n_last, H, sc.dgs, GH, a.w_hh, H, S(1), dh_next, H);
    std::swap(dh, dh_next);
  }
  std::memcpy(a.dh0, dh, sizeof(S) * static_cast<std::size_t>(B * H));
  if constexpr (Cell::has_c)
    std::memcpy(a.dc0, sc.dc, sizeof(S) * static_cast<std::size_t>(B * H));
  if constexpr (HasLengths) zero_padding(rv.gates, ldg, ldg, cfg, lengths);

  // 2. Weight and input gradients: each one GEMM over all N rows. Columns [0, G*H) of the
  //    gate plane are dG_ih in every cell.
  const S* dg = rv.gates;
  gemm::matmul<S>(Op::N, Op::N, N, I, GH, dg, ldg, a.w_ih, I, S(0), a.dx, I);
  gemm::matmul<S>(Op::T, Op::N, GH, I, N, dg, ldg, a.x, I, S(0), a.dw_ih, I);
  if constexpr (kind == CellKind::gru || kind == CellKind::gru_reset_before) {
    // r, z blocks against h_{t-1}; the n block is dn ⊙ r against h_{t-1} (reset after,
    // column 3H) or dn against r ⊙ h_{t-1} (reset before).
    gemm::matmul<S>(Op::T, Op::N, 2 * H, H, N, dg, ldg, rv.hprev, H, S(0), a.dw_hh, H);
    if constexpr (kind == CellKind::gru)
      gemm::matmul<S>(Op::T, Op::N, H, H, N, dg + 3 * H, ldg, rv.hprev, H, S(0),
                      a.dw_hh + 2 * H * H, H);
    else
      gemm::matmul<S>(Op::T, Op::N, H, H, N, dg + 2 * H, ldg, rv.rh, H, S(0),
                      a.dw_hh + 2 * H * H, H);
  } else {
    gemm::matmul<S>(Op::T, Op::N, GH, H, N, dg, ldg, rv.hprev, H, S(0), a.dw_hh, H);
  }

  // 3. Bias gradients: column sums over all N rows in row order, accumulated in double, so
  //    the result is the same whatever the thread count.
  if (cfg.has_bias) {
    double* acc = sc.colsum;
    std::fill(acc, acc + ldg, 0.0);
    for (std::int64_t r = 0; r < N; ++r) {
      const S* g = dg + r * ldg;
      for (std::int64_t k = 0; k < ldg; ++k) acc[k] += static_cast<double>(g[k]);
    }
    for (std::int64_t k = 0; k < GH; ++k) {
      a.db_ih[k] = static_cast<S>(acc[k]);
      a.db_hh[k] = static_cast<S>(acc[k]);
    }
    if constexpr (kind == CellKind::gru)
      for (std::int64_t j = 0; j < H; ++j) a.db_hh[2 * H + j] = static_cast<S>(acc[3 * H + j]);
  }
}

}  // namespace fastseq::loops
