// The backward time loop, written once for every cell: per step (in reverse) the cell's
// pointwise backward on dh = dhd + dG·W_hh for each block of units, one barrier (a projected
// cell: first dh = dhd + dG·W_hh + dy over the P state columns, a barrier, then the cell's
// backward on dm = dh·W_hr, a barrier); then the weight and input gradients as large
// products over all rows, and the bias sums. docs/kernels.md explains it. Compiled per ISA (loops/sequence_isa.cpp), in FASTSEQ_ISA_NS.
#pragma once

#include <cstdint>

#include "cells/registry.hpp"
#include "cells/rows.hpp"
#include "gemm/microkernel.hpp"
#include "loops/layout.hpp"
#include "loops/team.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct BwdShared {
  const SeqConfig* cfg;
  const BackwardArgs<S>* a;
  BackwardScratch<S> sc;
  ReservePlanes<S> rv;
  std::int64_t nb;   // blocks of L units of H
  std::int64_t nbs;  // blocks of L columns of the state (Hs)
};

template <class S, class Cell, bool HasLengths>
struct Backward {
  static constexpr int L = gemm::lanes<S>;
  static constexpr int G = Cell::G;
  static constexpr bool Proj = Cell::projected;

  const BwdShared<S>& sh;
  std::int64_t T, B, H;
  const std::int64_t* lengths;
  bool reverse;
  std::int64_t Hs;  // the state width: H, or P with the projection

  // Packed columns [0, width) of a weight, per group of one or two blocks of L columns, each
  // column `rows` k-rows deep: W_hh (G·H rows, the state's Hs columns) or, projected, W_hr
  // (P rows, the H units of m).
  struct Panels {
    const S* base;
    std::int64_t rows, width;
  };
  Panels w_hh_panels() const { return {sh.sc.panels, G * H, Hs}; }
  Panels w_hr_panels() const { return {sh.sc.proj_panels, sh.cfg->P, H}; }

  // The slice of rows [r0, r0 + K) of the group of nv blocks from jb, k-major (row stride
  // ldp).
  struct Slice {
    const S* p;
    std::int64_t ldp;
  };
  static Slice slice(const Panels& pp, std::int64_t jb, int nv, std::int64_t r0) {
    const std::int64_t j0 = jb * L, w = nv * L;
    return {pp.base + j0 * pp.rows + r0 * w, w};
  }

  // Items are whole pairs of blocks; a pair from an even block is one group of two where
  // both blocks are full, else single blocks.
  static int group_width(std::int64_t jb, std::int64_t H) {
    return (jb % 2 == 0 && (jb + 2) * L <= H) ? 2 : 1;
  }

  // Phase 0: the only product (or GRU reset-before phase A; projected: dm = dh · W_hr and
  // the cell's backward); 1: GRU reset-before phase B; 2: the final product, dh0 = dhd +
  // dG_0 · W_hh; 3: projected, dh = dhd + dG_next · W_hh + dy over the state's columns. NV
  // adjacent blocks of units per tile (two full blocks: fewer broadcast rows per FMA, so the
  // tile is not load-bound).
  template <int Phase, int NV>
  struct Step {
    const Backward& f;
    std::int64_t s, j0;
    int n;  // units of a single (NV = 1) block
    const S* a;  // product input (dense dG or dn), null: product is zero (first step)
    std::int64_t lda, K;
    Slice w;
    S* dgs_out;  // dense dG rows written here (row stride ldo)
    std::int64_t ldo;

    template <int MR>
    void rows(std::int64_t b0) {
      alignas(64) S acc[MR * NV * L];
      if (a)
        gemm::tile<S, MR, NV>(a + b0 * lda, lda, w.p, w.ldp, K, acc);
      else
        for (int i = 0; i < MR * NV * L; ++i) acc[i] = S(0);
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NV; ++v)
          epilogue(b0 + r, acc + (r * NV + v) * L, j0 + v * L, NV == 1 ? n : L);
    }

    void epilogue(std::int64_t b, const S* acc, std::int64_t j0, int n) {
      const BwdShared<S>& sh = f.sh;
      const std::int64_t H = f.H, Hs = f.Hs;
      S* dhd = sh.sc.dhd + b * Hs + j0;  // state columns (phases 2 and 3; 0 unprojected)
      if constexpr (Phase == 2) {
        S* dh0 = sh.a->dh0 + b * Hs + j0;
        for (int u = 0; u < n; ++u) dh0[u] = dhd[u] + acc[u];
        return;
      }
      const std::int64_t t = time_of<HasLengths>(s, b, f.T, f.reverse, f.lengths);
      if constexpr (Phase == 3) {
        // dh of the state columns [j0, j0 + n): into the dense row dm's product reads and
        // the plane of every step's dh (dW_hr); finished: it passes through, its row is 0.
        S* dh = dgs_out + b * ldo + j0;
        if (HasLengths && t < 0) {
          for (int u = 0; u < n; ++u) dhd[u] += acc[u];
          zero(dh, n);
          return;
        }
        const std::int64_t row = t * f.B + b;
        const S* dy = sh.a->dy + row * Hs + j0;
        S* keep = sh.sc.dh_rows + row * Hs + j0;
        for (int u = 0; u < n; ++u) {
          const S v = dhd[u] + acc[u] + dy[u];
          dh[u] = v;
          keep[u] = v;
          dhd[u] = S(0);
        }
        return;
      }
      if (HasLengths && t < 0) {
        // Finished: dh passes through; its dG rows are zero.
        if constexpr (Phase == 0 && !Proj)
          for (int u = 0; u < n; ++u) dhd[u] += acc[u];
        const int gates_out = Cell::two_products ? (Phase == 0 ? 1 : 2) : G;
        for (int g = 0; g < gates_out; ++g) zero(dgs_out + b * ldo + g * H + j0, n);
        return;
      }
      const std::int64_t row = t * f.B + b;
      cells::BwdRow<S> w;
      w.acc = acc;
      if constexpr (!Proj) {
        w.dhd = dhd;
        w.dy = sh.a->dy + row * H + j0;
      }
      w.gates = sh.rv.gates + row * sh.rv.ldg + j0;
      w.dgs = dgs_out + b * ldo + j0;
      w.H = H;
      w.n = n;
      if constexpr (Cell::has_c) w.dc = sh.sc.dc + b * H + j0;
      for (int i = 0; i < Cell::info.kept_planes; ++i) w.kept[i] = sh.rv.kept[i] + row * H + j0;
      if constexpr (!Proj) w.hprev = sh.rv.hprev + row * H + j0;
      if constexpr (Cell::two_products) {
        if constexpr (Phase == 0) {
          w.dn = dgs_out + b * ldo + j0;
#define FASTSEQ_CALL(full) Cell::template backward1<L, full>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        } else {
#define FASTSEQ_CALL(full) Cell::template backward2<L, full>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        }
      } else {
#define FASTSEQ_CALL(full) Cell::template backward<L, full>(w)
        FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
      }
    }
  };

  // Phase `Phase` of step s over the panels' columns: a pair of blocks [2q, 2q + 2) per item
  // (one group of two, or single blocks), in zig-zag order.
  template <int Phase>
  void step(Team& team, std::int64_t s, const Panels& pp, const S* a, std::int64_t lda,
            std::int64_t r0, std::int64_t K, S* dgs_out, std::int64_t ldo) const {
    const std::int64_t width = pp.width, nblocks = (width + L - 1) / L;
    team.each(
        group_count(nblocks, 2),
        [&](std::int64_t q) {
          const std::int64_t jb = 2 * q;
          std::int64_t b0 = 0;
          if (group_width(jb, width) == 2) {
            Step<Phase, 2> st{*this, s, jb * L, L, a, lda, K, slice(pp, jb, 2, r0), dgs_out, ldo};
            gemm::for_row_blocks<gemm::max_rows<2>>(B, b0, st);
            return;
          }
          for (std::int64_t j = jb; j < jb + 2 && j < nblocks; ++j) {
            const std::int64_t j0 = j * L;
            const int nu = int(width - j0 < L ? width - j0 : L);
            Step<Phase, 1> st{*this, s, j0, nu, a, lda, K, slice(pp, j, 1, r0), dgs_out, ldo};
            b0 = 0;
            gemm::for_row_blocks<gemm::max_rows<1>>(B, b0, st);
          }
        },
        zigzag_backwards(s));
  }

  // The panels pp of w, a pair of blocks per item (as the steps read them).
  static void pack(Team& team, const Panels& pp, const S* w) {
    const std::int64_t nblocks = (pp.width + L - 1) / L;
    team.each(group_count(nblocks, 2), [&](std::int64_t q) {
      pack_columns(pp, w, 2 * q, 2 * q + 2 < nblocks ? 2 * q + 2 : nblocks);
    });
  }

  // Columns [j0 of block jb0, of block jb1) of w (pp.rows rows of pp.width scalars) into the
  // panels pp, per group of one or two blocks, zero past the width.
  static void pack_columns(const Panels& pp, const S* w, std::int64_t jb0, std::int64_t jb1) {
    const std::int64_t R = pp.rows, width = pp.width;
    for (std::int64_t jb = jb0; jb < jb1;) {
      const int nv = group_width(jb, width);
      const std::int64_t j0 = jb * L, gw = nv * L;
      const std::int64_t n = width - j0 < gw ? width - j0 : gw;
      S* dst = const_cast<S*>(pp.base) + j0 * R;
      if (n == gw) {
        // A vector per block and row: memcpy's call per row piece was 4 % of a batch-1
        // LSTM's training step (32 K calls of 128 bytes at H = 512).
        for (std::int64_t r = 0; r < R; ++r)
          for (int v = 0; v < nv; ++v)
            gemm::vstore(dst + r * gw + v * L, gemm::vload(w + r * width + j0 + v * L));
      } else {
        for (std::int64_t r = 0; r < R; ++r) {
          copy(dst + r * gw, w + r * width + j0, n);
          for (std::int64_t u = n; u < gw; ++u) dst[r * gw + u] = S(0);
        }
      }
      jb += nv;
    }
  }

  static void team(void* ctx, int tid, int nt) {
    const BwdShared<S>& sh = *static_cast<const BwdShared<S>*>(ctx);
    const SeqConfig& cfg = *sh.cfg;
    const BackwardArgs<S>& a = *sh.a;
    const std::int64_t Hs = state_width(cfg), P = cfg.P;
    const Backward f{sh, cfg.T, cfg.B, cfg.H, a.lengths, cfg.reverse, Hs};
    const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B, GH = G * H;
    const BackwardScratch<S>& sc = sh.sc;
    const std::int64_t ldg = sh.rv.ldg;
    Team team(tid, nt);

    // 0. Carried gradients, and W_hh's columns packed k-major per pair of blocks (W_hh's own
    //    rows are k-major but H scalars apart: strided rows defeat the prefetchers and the L1).
    //    Projected: W_hh's columns are the P of the state, and W_hr's H columns are packed so too.
    team.each_chunk(B, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
      copy_or_zero(sc.dhd + lo * Hs, a.dh_n ? a.dh_n + lo * Hs : nullptr, (hi - lo) * Hs);
      if constexpr (Cell::has_c)
        copy_or_zero(sc.dc + lo * H, a.dc_n ? a.dc_n + lo * H : nullptr, (hi - lo) * H);
    });
    pack(team, f.w_hh_panels(), a.w_hh);
    if constexpr (Proj) pack(team, f.w_hr_panels(), a.w_hr);
    team.sync();

    // 1. Reverse time loop. Each step: per block of units, dh = dhd + dG_next · W_hh, then
    //    the cell's pointwise backward writes dG over the reserve's activations and into the
    //    dense buffer the next step's product reads.
    if constexpr (Cell::two_products) {
      const std::int64_t ldrz = padded_ld<S>(2 * H), ldn = padded_ld<S>(H);
      S* dgrz = sc.dgs;            // (B, ldrz)
      S* dn = sc.dgs + B * ldrz;   // (B, ldn)
      for (std::int64_t s = T - 1; s >= 0; --s) {
        f.template step<0>(team, s, f.w_hh_panels(), s == T - 1 ? nullptr : dgrz, ldrz, 0,
                           2 * H, dn, ldn);
        team.sync();
        f.template step<1>(team, s, f.w_hh_panels(), dn, ldn, 2 * H, H, dgrz, ldrz);
        team.sync();
      }
      f.template step<2>(team, 0, f.w_hh_panels(), dgrz, ldrz, 0, 2 * H, nullptr, 0);
    } else {
      const std::int64_t ldd = padded_ld<S>(GH);
      S* cur = sc.dgs;
      S* nxt = sc.dgs + B * ldd;
      for (std::int64_t s = T - 1; s >= 0; --s) {
        const S* dg_next = s == T - 1 ? nullptr : cur;
        if constexpr (Proj) {
          const std::int64_t ldh = padded_ld<S>(P);
          f.template step<3>(team, s, f.w_hh_panels(), dg_next, ldd, 0, GH, sc.dh, ldh);
          team.sync();
          f.template step<0>(team, s, f.w_hr_panels(), sc.dh, ldh, 0, P, nxt, ldd);
        } else {
          f.template step<0>(team, s, f.w_hh_panels(), dg_next, ldd, 0, GH, nxt, ldd);
        }
        team.sync();
        S* tmp = cur;
        cur = nxt;
        nxt = tmp;
      }
      f.template step<2>(team, 0, f.w_hh_panels(), cur, ldd, 0, GH, nullptr, 0);
    }
    team.each_chunk(B, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
      if constexpr (Cell::has_c) copy(a.dc0 + lo * H, sc.dc + lo * H, (hi - lo) * H);
      if constexpr (HasLengths) {
        zero_padding(sh.rv.gates, ldg, ldg, cfg, a.lengths, lo, hi);
        if constexpr (Proj) zero_padding(sc.dh_rows, P, P, cfg, a.lengths, lo, hi);
      }
    });
    team.sync();

    // 2. Weight and input gradients, each one GEMM over all N rows, cut into parts.
    //    Columns [0, G*H) of the gate plane are dG_ih in every cell. With accumulate the
    //    weight gradients are added into (beta = 1).
    const S* dg = sh.rv.gates;
    const S beta = a.accumulate ? S(1) : S(0);
    if (a.dx) team_matmul<S>(team, Op::N, Op::N, N, I, GH, dg, ldg, a.w_ih, I, a.dx, I);
    if constexpr (HasLengths) {
      // Padding rows of x must not reach dW_ih, not even as 0 · NaN: x a chunk of rows at a
      // time, its padding rows zeroed, accumulated over the chunks.
      const std::int64_t R = x_chunk_rows(cfg);
      for (std::int64_t r0 = 0; r0 < N; r0 += R) {
        const std::int64_t rc = N - r0 < R ? N - r0 : R;
        team.each_chunk(rc, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
          for (std::int64_t r = lo; r < hi; ++r) {
            const std::int64_t t = (r0 + r) / B, b = (r0 + r) % B;
            if (t < a.lengths[b])
              copy(sc.x_rows + r * I, a.x + (r0 + r) * I, I);
            else
              zero(sc.x_rows + r * I, I);
          }
        });
        team.sync();
        team_matmul<S>(team, Op::T, Op::N, GH, I, rc, dg + r0 * ldg, ldg, sc.x_rows, I,
                       a.dw_ih, I, r0 == 0 ? beta : S(1));
        team.sync();
      }
      // dx's padding rows are zero, as the contract says: the product gave 0 · W_ih there,
      // NaN where W_ih holds one. (Every part of dx was done by the syncs above.)
      if (a.dx)
        team.each_chunk(B, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
          zero_padding(a.dx, I, I, cfg, a.lengths, lo, hi);
        });
    } else {
      team_matmul<S>(team, Op::T, Op::N, GH, I, N, dg, ldg, a.x, I, a.dw_ih, I, beta);
    }
    //    dW_hh by the cell's plan (cells/registry.hpp): blocks of gates against h_{t-1} or
    //    r ⊙ h_{t-1}, from the columns of the gate plane that hold their dG_hh.
    for (int q = 0; q < Cell::info.dw_hh_parts; ++q) {
      const cells::RecurrentGradPart& part = Cell::info.dw_hh[q];
      const S* against = part.against == cells::Against::rh ? sh.rv.rh : sh.rv.hprev;
      team_matmul<S>(team, Op::T, Op::N, part.gates * H, Hs, N, dg + part.dg_col * H, ldg,
                     against, Hs, a.dw_hh + part.w_row * H * Hs, Hs, beta);
    }
    //    Projected: dW_hr = Σ_t dh_tᵀ · m_t, one product over all rows.
    if constexpr (Proj)
      team_matmul<S>(team, Op::T, Op::N, P, H, N, sc.dh_rows, P, sh.rv.m, H, a.dw_hr, H, beta);

    // 3. Bias gradients: column sums over all N rows in row order, accumulated in double,
    //    each column by one thread, so the result is the same whatever the thread count.
    if (cfg.has_bias) {
      team.each_chunk(ldg, kVectorChunk, [&](std::int64_t lo, std::int64_t hi) {
        double* acc = sc.colsum;
        for (std::int64_t k = lo; k < hi; ++k) acc[k] = 0.0;
        for (std::int64_t r = 0; r < N; ++r) {
          const S* g = dg + r * ldg;
          for (std::int64_t k = lo; k < hi; ++k) acc[k] += static_cast<double>(g[k]);
        }
        // Rounded to S first, then added: what grad += db would give.
        const bool add = a.accumulate;
        const auto put = [add](S& dst, double sum) { dst = add ? dst + S(sum) : S(sum); };
        for (std::int64_t k = lo; k < hi && k < GH; ++k) put(a.db_ih[k], acc[k]);
        // Gate g's db_hh is the sum of the plane's column block db_hh_col[g] (the GRU's
        // db_hn: of dn ⊙ r, column 3H), written by whoever summed that column.
        for (int g = 0; g < G; ++g) {
          const std::int64_t col = Cell::info.db_hh_col[g] * H;
          for (std::int64_t k = lo > col ? lo : col; k < hi && k < col + H; ++k)
            put(a.db_hh[g * H + (k - col)], acc[k]);
        }
      });
    }
    team.sync();
  }
};

template <class S, class Cell, bool HasLengths>
void backward_loop(const SeqConfig& cfg, const BackwardArgs<S>& a) {
  constexpr int L = gemm::lanes<S>;
  BwdShared<S> sh;
  sh.cfg = &cfg;
  sh.a = &a;
  Carver rcv(a.reserve);
  sh.rv = ReservePlanes<S>::carve(rcv, cfg);
  Carver scv(a.scratch);
  sh.sc = BackwardScratch<S>::carve(scv, cfg);
  sh.nb = (cfg.H + L - 1) / L;
  sh.nbs = (state_width(cfg) + L - 1) / L;
  using Bw = Backward<S, Cell, HasLengths>;
  runtime::parallel_run(team_size<S>(cfg, group_count(sh.nb, 2)), &Bw::team, &sh);
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::loops
