// The forward time loop, written once for every cell (cells/*.hpp hold the gate math) with
// training and lengths as template parameters, so the step loop tests neither: the input
// projection for all steps, then per step one register tile of h·W_hhᵀ per block of units
// and rows with the cell's epilogue on it, and one barrier (a projected cell: then a second
// product phase, h = m·W_hrᵀ, and a second barrier). docs/kernels.md explains the
// layout and the tricks. Compiled per ISA (loops/sequence_isa.cpp), in FASTSEQ_ISA_NS.
#pragma once

#include <cstdint>

#include "cells/registry.hpp"
#include "cells/rows.hpp"
#include "gemm/microkernel.hpp"
#include "gemm/pack.hpp"
#include "loops/layout.hpp"
#include "loops/team.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

template <class S>
struct FwdShared {
  const SeqConfig* cfg;
  const ForwardArgs<S>* a;
  ForwardScratch<S> sc;
  ReservePlanes<S> rv;
  S* gates;
  std::int64_t ldg;
  std::int64_t nb;  // blocks of L units
  std::int64_t kp;  // rows of each forward panel (forward_panel_rows)
  tuning::Choices ch;  // this call's tuning choices (layout.hpp, forward_choices)
  std::int64_t nbp; // projected: blocks of L columns of P
  bool direct;      // direct_products: no panels, the products from the weights as they are
};

// Fused: the input projection is folded into the step product (layout.hpp,
// forward_choices): the panels hold W_ihᵀ above W_hhᵀ, the k-slices of each step run over
// x_t's rows and then h, and the epilogues find no Gx to add.
template <class S, class Cell, bool Training, bool HasLengths, bool Fused = false>
struct Forward {
  static constexpr int L = gemm::lanes<S>;
  static constexpr int G = Cell::G;
  // Gates in the (first) product's panel, and in the second one (reset-before GRU's n).
  static constexpr int NG1 = Cell::two_products ? 2 : G;
  // Blocks of L units per panel (tuning::kRnnBlocksPerPanel for the single-gate cells). The
  // groups are fixed by position (group q: blocks [q·W, q·W + W), the last one narrower),
  // and threads own whole groups, so a unit's tile shape, and with it the order of its sum
  // over k, never depends on the thread count.
  static constexpr int W = G == 1 ? tuning::kRnnBlocksPerPanel : 1;
  // The projection phase (Cell::projected, h = m·W_hrᵀ): groups of WP blocks of P columns side
  // by side in one panel, fixed by position as above (the RNN's single-gate tile shape).
  static constexpr bool Proj = Cell::projected;
  static constexpr int WP = tuning::kRnnBlocksPerPanel;

  const FwdShared<S>& sh;
  std::int64_t T, B, H;
  const std::int64_t* lengths;
  bool reverse;
  std::int64_t ldh;  // row stride of h and r ⊙ h
  std::int64_t K;    // the state width Hs: the recurrent product's K, the width of h and y

  // Product tiles and epilogues of the group of NB blocks from unit j0 at step s.
  // phase 0: the only product, or GRU reset-before phase 1; phase 1: its phase 2.
  template <int Phase, int NB>
  struct Step {
    static constexpr int NG = Phase == 0 ? NG1 : 1;
    static constexpr int NV = NB * NG;  // vectors per tile row: block v's gate g at v·NG + g

    const Forward& f;
    std::int64_t s, j0;
    const S* a;      // product input (h or r ⊙ h), (B, H)
    const S* panel;  // this group's panel, row stride NV·L
    S* h_in;
    S* h_out;

    template <int MR>
    void rows(std::int64_t b0) {
      alignas(64) S acc[MR * NV * L];
      gemm::tile<S, MR, NV>(a + b0 * f.ldh, f.ldh, panel, NV * L, f.K, acc);
      for (int r = 0; r < MR; ++r) epilogues(b0 + r, acc + r * NV * L);
    }

    // The cell epilogue of row b once per block of the group (the last may be partial).
    void epilogues(std::int64_t b, const S* acc) const {
      for (int v = 0; v < NB; ++v) {
        const std::int64_t jv = j0 + v * L;
        epilogue(b, acc + v * NG * L, jv, int(f.H - jv < L ? f.H - jv : L));
      }
    }

    void epilogue(std::int64_t b, const S* acc, std::int64_t j0, int n) const {
      const FwdShared<S>& sh = f.sh;
      const std::int64_t H = f.H;
      const std::int64_t t = time_of<HasLengths>(s, b, f.T, f.reverse, f.lengths);
      if (HasLengths && t < 0) {
        // Frozen: carry the state into the other buffer (the reset-before GRU updates h in
        // place and needs nothing; a projected cell's projection phase carries h).
        if constexpr (!Cell::two_products && !Proj)
          copy(h_out + b * f.ldh + j0, h_in + b * f.ldh + j0, n);
        return;
      }
      const std::int64_t row = t * f.B + b;
      cells::FwdRow<S> w;
      w.acc = acc;
      w.gx = sh.gates + row * sh.ldg + j0;
      w.bias = sh.sc.bias + j0;
      w.H = H;
      w.n = n;
      if constexpr (Proj) {
        // The cell's output m, for the projection phase (which writes h, y and hprev).
        w.h_out = sh.sc.m + b * sh.sc.ldm + j0;
        if constexpr (Training) w.m_keep = sh.rv.m + row * H + j0;
      } else {
        w.h_in = h_in + b * f.ldh + j0;
        w.h_out = h_out + b * f.ldh + j0;
        w.y = sh.a->y + row * H + j0;
        if constexpr (Training) w.hprev = sh.rv.hprev + row * H + j0;
      }
      if constexpr (Cell::has_c) w.c = sh.sc.c + b * H + j0;
      if constexpr (Cell::info.recurrent_bias_apart) w.bhn = sh.sc.bhn + j0;
      if constexpr (Cell::two_products) {
        w.rh = sh.sc.rh + b * f.ldh + j0;
        if constexpr (Training) w.rh_keep = sh.rv.rh + row * H + j0;
      }
      // The cell's own planes (cells/registry.hpp): compile-time counts, so no branch.
      if constexpr (Training)
        for (int i = 0; i < Cell::info.kept_planes; ++i) w.kept[i] = sh.rv.kept[i] + row * H + j0;
      for (int i = 0; i < Cell::info.carried_planes; ++i)
        w.carried[i] = sh.sc.carried[i] + b * sh.sc.ld_carried + j0;
      if constexpr (Cell::two_products) {
        if constexpr (Phase == 0) {
#define FASTSEQ_CALL(full) Cell::template forward1<Training, L, full>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        } else {
#define FASTSEQ_CALL(full) Cell::template forward2<Training, L, full>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        }
      } else {
        if constexpr (Fused) {
#define FASTSEQ_CALL(full) Cell::template forward<Training, L, full, false>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        } else {
#define FASTSEQ_CALL(full) Cell::template forward<Training, L, full>(w)
          FASTSEQ_EPILOGUE(FASTSEQ_CALL, n, L);
#undef FASTSEQ_CALL
        }
      }
    }
  };

  // Panels of the group from block jb: every group before it is W blocks wide, so it starts
  // at jb·L·kp·NG whatever the widths (the panels of all blocks fill kp · nb·L · NG).
  const S* panel1(std::int64_t jb) const { return sh.sc.panels + jb * sh.kp * NG1 * L; }
  const S* panel2(std::int64_t jb) const {
    return sh.sc.panels + sh.nb * sh.kp * NG1 * L + jb * H * L;
  }

  // The lines of the big planes (Gx, y, the reserve) that block j0's epilogues will touch at
  // step s. The input projection wrote all T steps of Gx before the loop began, tens of MB
  // ago, so without this each line is a cache miss at the end of the block's products (about
  // a sixth of an LSTM step at B = 64); asked for first, they arrive behind the block's FMAs.
  template <int Phase>
  void prefetch_block(std::int64_t s, std::int64_t j0) const {
    constexpr bool last_phase = !Cell::two_products || Phase == 1;
    const std::int64_t gate0 = Cell::two_products && Phase == 1 ? 2 : 0;
    const std::int64_t gates = Cell::two_products ? (Phase == 0 ? 2 : 1) : sh.ldg / H;
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t t = time_of<HasLengths>(s, b, T, reverse, lengths);
      if (HasLengths && t < 0) continue;
      const std::int64_t row = t * B + b;
      const S* gx = sh.gates + row * sh.ldg + gate0 * H + j0;
      for (std::int64_t g = 0; g < gates; ++g) {
        if constexpr (Training)
          __builtin_prefetch(gx + g * H, 1);  // activations are written back in place
        else if constexpr (!Fused)
          __builtin_prefetch(gx + g * H, 0);
      }
      if constexpr (last_phase && !Proj) __builtin_prefetch(sh.a->y + row * H + j0, 1);
      if constexpr (Training && Phase == 0) {
        if constexpr (Proj)
          __builtin_prefetch(sh.rv.m + row * H + j0, 1);
        else
          __builtin_prefetch(sh.rv.hprev + row * H + j0, 1);
        for (int i = 0; i < Cell::info.kept_planes; ++i)
          __builtin_prefetch(sh.rv.kept[i] + row * H + j0, 1);
        if constexpr (Cell::two_products)
          __builtin_prefetch(sh.rv.rh + row * H + j0, 1);
      }
    }
  }

  // Phase `Phase` of step s: every group of blocks, one item each, in zig-zag order.
  template <int Phase>
  void step(Team& team, std::int64_t s, const S* a, S* h_in, S* h_out) const {
    if constexpr (!Fused) {
      if (sh.direct) return direct_step<Phase>(team, s, a, h_in, h_out);
    }
    team.each_group(
        sh.nb, W, [&](std::int64_t jb, int nv) { group<Phase>(s, jb, nv, a, h_in, h_out); },
        zigzag_backwards(s));
  }

  // One group's step with its width nb as the compile-time NB.
  template <int Phase, int NB = W>
  void group(std::int64_t s, std::int64_t jb, int nb, const S* a, S* h_in, S* h_out) const {
    if constexpr (NB > 1) {
      if (nb < NB) return group<Phase, NB - 1>(s, jb, nb, a, h_in, h_out);
    }
    using St = Step<Phase, NB>;
    constexpr int NV = St::NV;
    for (int v = 0; v < NB; ++v) prefetch_block<Phase>(s, (jb + v) * L);
    St st{*this, s, jb * L, a, Phase == 0 ? panel1(jb) : panel2(jb), h_in, h_out};
    const std::int64_t KC = sh.ch.k_slice, chunk = sh.ch.k_block_rows;
    if (Fused || (B >= kb_min_rows && K > KC)) {
      // k-blocked: a KC-row slice of the panel stays in L1 while every row tile of a
      // chunk of rows passes over it; partial sums wait in part, the epilogue follows
      // the last slice. Fused, the slices run over x_t's rows (staged by stage_x) first,
      // panel rows [0, I).
      for (std::int64_t c0 = 0; c0 < B; c0 += chunk) {
        const std::int64_t rows = B - c0 < chunk ? B - c0 : chunk;
        alignas(64) S part[KB_ROWS * NV * L];
        bool first = true;
        const auto slices = [&](const S* in, std::int64_t ld, std::int64_t K, const S* p) {
          for (std::int64_t k0 = 0; k0 < K; k0 += KC) {
            const std::int64_t kc = K - k0 < KC ? K - k0 : KC;
            const std::int64_t kn = K - k0 - kc < KC ? K - k0 - kc : KC;  // next slice's rows
            KSlice<NV> ks{in + c0 * ld + k0, ld, p + k0 * NV * L, kc, part, !first,
                          p + (k0 + kc) * NV * L, kn * NV * L, rows};
            first = false;
            std::int64_t b0 = 0;
            gemm::for_row_blocks<gemm::max_rows<NV>>(rows, b0, ks);
          }
        };
        std::int64_t kh = 0;  // the panel row h's slices start at
        if constexpr (Fused) {
          kh = sh.cfg->I;
          slices(sh.sc.xs + (s % 2) * B * sh.sc.ldx, sh.sc.ldx, kh, st.panel);
        }
        slices(a, ldh, K, st.panel + kh * NV * L);
        for (std::int64_t r = 0; r < rows; ++r) st.epilogues(c0 + r, part + r * NV * L);
      }
      return;
    }
    std::int64_t b0 = 0;
    gemm::for_row_blocks<gemm::max_rows<NV>>(B, b0, st);
  }

  // few_rows_projection: Gx = X·W_ihᵀ for N = T·B <= tuning::kFewRowsMax rows as
  // Gxᵀ = W_ih·Xᵀ on the micro-kernel: Xᵀ packed k-major (NV vectors of N columns, the
  // lanes past N zero) is the panel, W_ih's rows are the tile's rows, read once as they are;
  // each tile's rows are scattered into Gx's columns. W_ih's rows go in chunks fixed by
  // the shape, so a row's tile shape, and its bits, never depend on the thread count.
  // False (nothing done) when the choice is not to (tuning::choose, which also keeps N
  // within tuning::kFewRowsVectors vectors).
  bool project_few_rows(Team& team) const {
    if (!sh.ch.few_rows_projection) return false;
    const std::int64_t N = T * B;
    static_assert(tuning::kFewRowsVectors == 4, "one case below per panel width");
    switch ((N + L - 1) / L) {
      case 1: project_few_rows<1>(team); return true;
      case 2: project_few_rows<2>(team); return true;
      case 3: project_few_rows<3>(team); return true;
      case 4: project_few_rows<4>(team); return true;
      default: return false;  // unreachable: choose() keeps N within the cases above
    }
  }

  template <int NV>
  struct FewRows {
    const Forward& f;
    const S* w;       // W_ih's rows from the chunk's first
    std::int64_t j0;  // the chunk's first row of W_ih: Gx's column
    template <int MR>
    void rows(std::int64_t r0) {
      const FwdShared<S>& sh = f.sh;
      const std::int64_t I = sh.cfg->I, N = f.T * f.B;
      alignas(64) S out[MR * NV * L];
      gemm::tile<S, MR, NV>(w + r0 * I, I, sh.sc.xt, NV * L, I, out);
      // Row by row of Gx, the tile's MR columns side by side: one run of MR scalars per
      // row, where column by column each scalar went to a line (and a page) of its own.
      // LSTMP (25,1,1024, P = 256) inference, 1 thread, AMD Zen 4: this copy 5.2 % of the
      // call, then 0.8 % (perf); bench/ab.py, 9 rounds, 1.06 (IQR 1.00-1.12). Same bits.
      S* gx = sh.gates + j0 + r0;  // Gx's column of the tile's first row
      for (std::int64_t n = 0; n < N; ++n)
        for (int r = 0; r < MR; ++r) gx[n * sh.ldg + r] = out[r * NV * L + n];
    }
  };

  template <int NV>
  void project_few_rows(Team& team) const {
    const std::int64_t I = sh.cfg->I, N = T * B, GH = G * H;
    const S* x = sh.a->x;
    S* xt = sh.sc.xt;
    team.each_chunk(I, kVectorChunk, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t k = lo; k < hi; ++k) {
        S* row = xt + k * NV * L;
        for (std::int64_t n = 0; n < N; ++n) row[n] = x[n * I + k];
        for (std::int64_t n = N; n < NV * L; ++n) row[n] = S(0);
      }
    });
    team.sync();
    constexpr std::int64_t chunk = 64;  // W_ih rows per item
    team.each_chunk(GH, chunk, [&](std::int64_t lo, std::int64_t hi) {
      FewRows<NV> st{*this, sh.a->w_ih + lo * I, lo};
      std::int64_t r0 = 0;
      gemm::for_row_blocks<gemm::max_rows<NV>>(hi - lo, r0, st);
    });
  }

  // Direct (direct_products): the phase's product a·W_phaseᵀ as one team_matmul into the
  // panels' buffer, whose row b holds gate g's columns at g·H; then each group's epilogues
  // from it, gathered into the tile layout (block v's gate g at v·NG + g) they read.
  // Phase 0 multiplies by the first NG1 gates' rows of W_hh, phase 1 by the last gate's.
  template <int Phase>
  void direct_step(Team& team, std::int64_t s, const S* a, S* h_in, S* h_out) const {
    constexpr std::int64_t ng = Step<Phase, 1>::NG;
    const S* w = sh.a->w_hh + (Phase == 0 ? 0 : (G - 1)) * H * K;
    team_matmul<S>(team, gemm::Op::N, gemm::Op::T, B, ng * H, K, a, ldh, w, K, sh.sc.panels,
                   ng * H);
    team.sync();
    team.each_group(
        sh.nb, W, [&](std::int64_t jb, int nv) { direct_group<Phase>(s, jb, nv, h_in, h_out); },
        zigzag_backwards(s));
  }

  template <int Phase, int NB = W>
  void direct_group(std::int64_t s, std::int64_t jb, int nb, S* h_in, S* h_out) const {
    if constexpr (NB > 1) {
      if (nb < NB) return direct_group<Phase, NB - 1>(s, jb, nb, h_in, h_out);
    }
    using St = Step<Phase, NB>;
    constexpr int NG = St::NG;
    const St st{*this, s, jb * L, nullptr, nullptr, h_in, h_out};
    for (std::int64_t b = 0; b < B; ++b) {
      const S* row = sh.sc.panels + b * NG * H;
      alignas(64) S acc[St::NV * L];
      for (int v = 0; v < NB; ++v) {
        const std::int64_t j = (jb + v) * L;
        const std::int64_t n = H - j < L ? H - j : L;
        for (int g = 0; g < NG; ++g) {
          S* dst = acc + (v * NG + g) * L;
          copy(dst, row + g * H + j, n);  // a partial block: its lanes past H are zeros
          for (std::int64_t l = n; l < L; ++l) dst[l] = S(0);
        }
      }
      st.epilogues(b, acc);
    }
  }

  // The projection phase of a projected cell at step s: h_out = m·W_hrᵀ per group of P
  // columns, written to y and, training, h_in to the reserve's
  // hprev; a finished row carries h_in. One tile of rows × NB column blocks per group.
  template <int NB>
  struct ProjStep {
    const Forward& f;
    std::int64_t s, j0;
    const S* panel;  // W_hrᵀ of the group: H rows, row stride NB·L
    const S* h_in;
    S* h_out;

    template <int MR>
    void rows(std::int64_t b0) {
      alignas(64) S acc[MR * NB * L];
      gemm::tile<S, MR, NB>(f.sh.sc.m + b0 * f.sh.sc.ldm, f.sh.sc.ldm, panel, NB * L, f.H, acc);
      for (int r = 0; r < MR; ++r)
        for (int v = 0; v < NB; ++v) {
          const std::int64_t jv = j0 + v * L;
          epilogue(b0 + r, acc + (r * NB + v) * L, jv, f.K - jv < L ? f.K - jv : L);
        }
    }

    void epilogue(std::int64_t b, const S* acc, std::int64_t j, std::int64_t n) const {
      const S* hi = h_in + b * f.ldh + j;
      S* ho = h_out + b * f.ldh + j;
      const std::int64_t t = time_of<HasLengths>(s, b, f.T, f.reverse, f.lengths);
      if (HasLengths && t < 0) {
        copy(ho, hi, n);
        return;
      }
      const std::int64_t row = t * f.B + b;
      if constexpr (Training) copy(f.sh.rv.hprev + row * f.K + j, hi, n);
      copy(ho, acc, n);
      copy(f.sh.a->y + row * f.K + j, acc, n);
    }
  };

  // Panel of the projection group from column block pb (every group before it WP wide).
  const S* proj_panel(std::int64_t pb) const { return sh.sc.proj_panels + pb * H * L; }

  void project(Team& team, std::int64_t s, const S* h_in, S* h_out) const {
    if (sh.direct) {
      // h = m·W_hrᵀ into the projection panels' buffer, then each group's epilogues.
      team_matmul<S>(team, gemm::Op::N, gemm::Op::T, B, K, H, sh.sc.m, sh.sc.ldm, sh.a->w_hr,
                     H, sh.sc.proj_panels, K);
      team.sync();
      team.each_group(
          sh.nbp, WP,
          [&](std::int64_t pb, int nv) {
            const ProjStep<1> st{*this, s, 0, nullptr, h_in, h_out};
            for (std::int64_t b = 0; b < B; ++b)
              for (std::int64_t j = pb * L; j < (pb + nv) * L && j < K; j += L)
                st.epilogue(b, sh.sc.proj_panels + b * K + j, j, K - j < L ? K - j : L);
          },
          zigzag_backwards(s));
      return;
    }
    team.each_group(
        sh.nbp, WP, [&](std::int64_t pb, int nv) { proj_group(s, pb, nv, h_in, h_out); },
        zigzag_backwards(s));
  }

  template <int NB = WP>
  void proj_group(std::int64_t s, std::int64_t pb, int nb, const S* h_in, S* h_out) const {
    if constexpr (NB > 1) {
      if (nb < NB) return proj_group<NB - 1>(s, pb, nb, h_in, h_out);
    }
    ProjStep<NB> st{*this, s, pb * L, proj_panel(pb), h_in, h_out};
    std::int64_t b0 = 0;
    gemm::for_row_blocks<gemm::max_rows<NB>>(B, b0, st);
  }

  // Fused: rows [b_lo, b_hi) of x at step s into the step's staging buffer (double-buffered:
  // step s reads buffer s mod 2 while the team fills the other one for step s + 1). x's own
  // rows are I scalars apart: at I = 512 in float32 the rows of a k-slice fall into a
  // quarter of the L1's sets and evict one another; the staged rows are padded like h.
  void stage_x(std::int64_t s, std::int64_t b_lo, std::int64_t b_hi) const {
    if (s >= T) return;
    const std::int64_t I = sh.cfg->I;
    const S* x_t = sh.a->x + (reverse ? T - 1 - s : s) * B * I;  // no lengths when fused
    S* dst = sh.sc.xs + (s % 2) * B * sh.sc.ldx;
    for (std::int64_t b = b_lo; b < b_hi; ++b) copy(dst + b * sh.sc.ldx, x_t + b * I, I);
  }

  // k-blocking of the forward product (tuning.hpp): the slice depth and the chunk of rows
  // are the call's choices (sh.ch), the chunk at most KB_ROWS (the partial sums' array).
  static constexpr std::int64_t KB_ROWS = tuning::kKBlockRows;
  static constexpr std::int64_t kb_min_rows = tuning::kKBlockMinRows;
  static_assert(W * NG1 == widest_panel_vectors(Cell::info),
                "forward_choices sizes the k-slice for the widest panel");

  template <int NV>
  struct KSlice {
    const S* a;
    std::int64_t lda;
    const S* p;
    std::int64_t K;
    S* part;
    bool accumulate;
    // The next slice of the panel (n scalars from next), asked into L2 a share per row
    // tile: a panel larger than L2 (LSTM H = 1024: 16 MiB) comes from L3 at every step,
    // and the first row tile over a slice would wait on it at about a third of the rate its
    // FMAs consume it.
    const S* next;
    std::int64_t n;
    std::int64_t rows_total;
    template <int MR>
    void rows(std::int64_t b0) {
      constexpr std::int64_t line = 64 / sizeof(S);
      const std::int64_t lines = (n + line - 1) / line;
      const std::int64_t l1 = lines * (b0 + MR) / rows_total;
      for (std::int64_t l = lines * b0 / rows_total; l < l1; ++l)
        __builtin_prefetch(next + l * line, 0, 2);
      if (accumulate)
        gemm::tile<S, MR, NV, true>(a + b0 * lda, lda, p, NV * L, K, part + b0 * NV * L);
      else
        gemm::tile<S, MR, NV, false>(a + b0 * lda, lda, p, NV * L, K, part + b0 * NV * L);
    }
  };

  static void team(void* ctx, int tid, int nt) {
    const FwdShared<S>& sh = *static_cast<const FwdShared<S>*>(ctx);
    const SeqConfig& cfg = *sh.cfg;
    const ForwardArgs<S>& a = *sh.a;
    const std::int64_t Hs = state_width(cfg);
    const Forward f{sh, cfg.T, cfg.B, cfg.H, a.lengths, cfg.reverse, sh.sc.ldh, Hs};
    const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B, GH = G * H;
    const ForwardScratch<S>& sc = sh.sc;
    const std::int64_t ldh = sc.ldh;
    Team team(tid, nt);

    // 0. The biases as the cell folds them (cells/rows.hpp, SummedBiases; zeros without
    //    bias), initial states, and the panels, a group per item (as the steps: a thread
    //    packs what it will multiply by).
    team.each_chunk(GH, kVectorChunk, [&](std::int64_t lo, std::int64_t hi) {
      if (!cfg.has_bias) return zero(sc.bias + lo, hi - lo);
      for (std::int64_t k = lo; k < hi; ++k) sc.bias[k] = Cell::folded_bias(a.b_ih, a.b_hh, H, k);
    });
    if constexpr (Cell::info.recurrent_bias_apart) {
      team.each_chunk(H, kVectorChunk, [&](std::int64_t lo, std::int64_t hi) {
        if (!cfg.has_bias) return zero(sc.bhn + lo, hi - lo);
        for (std::int64_t j = lo; j < hi; ++j) sc.bhn[j] = Cell::bias_apart(a.b_hh, H, j);
      });
    }
    team.each_chunk(B, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t b = lo; b < hi; ++b) {
        copy_or_zero(sc.h + b * ldh, a.h0 ? a.h0 + b * Hs : nullptr, Hs);
        if constexpr (Cell::two_products) zero(sc.rh + b * ldh, ldh);
        for (int i = 0; i < Cell::info.carried_planes; ++i)
          zero(sc.carried[i] + b * sc.ld_carried, sc.ld_carried);
      }
      if constexpr (Cell::has_c)
        copy_or_zero(sc.c + lo * H, a.c0 ? a.c0 + lo * H : nullptr, (hi - lo) * H);
    });
    if (!sh.direct) team.each_group(sh.nb, W, [&](std::int64_t jg, int nv) {
      const std::int64_t ldp = nv * NG1 * L;
      for (std::int64_t jb = jg; jb < jg + nv; ++jb) {
        const std::int64_t j0 = jb * L;
        const int n = int(H - j0 < L ? H - j0 : L);
        // Block jb is block jb - jg of the group, side by side with the others.
        S* p = const_cast<S*>(f.panel1(jg)) + (jb - jg) * NG1 * L;
        if constexpr (Fused) {
          gemm::pack_forward<S, NG1>(p, ldp, a.w_ih, H, I, 0, j0, n);
          p += I * ldp;
        }
        gemm::pack_forward<S, NG1>(p, ldp, a.w_hh, H, Hs, 0, j0, n);
        if constexpr (Cell::two_products)
          gemm::pack_forward<S, 1>(const_cast<S*>(f.panel2(jb)), L, a.w_hh, H, H, 2, j0, n);
      }
    });
    // Projected: groups of P columns, W_hrᵀ (H rows) side by side per group.
    if constexpr (Proj) {
      if (!sh.direct) team.each_group(sh.nbp, WP, [&](std::int64_t pg, int nv) {
        const std::int64_t ldp = nv * L;
        for (std::int64_t pb = pg; pb < pg + nv; ++pb) {
          const std::int64_t j0 = pb * L;
          const int n = int(Hs - j0 < L ? Hs - j0 : L);
          gemm::pack_forward<S, 1>(const_cast<S*>(f.proj_panel(pg)) + (pb - pg) * L, ldp,
                                   a.w_hr, Hs, H, 0, j0, n);
        }
      });
    }

    // 1. Input projection for all T steps at once: Gx = X · W_ihᵀ, written straight into
    //    the gate plane the epilogue then overwrites in place. (Fused: in the steps.)
    const auto stage_x = [&](std::int64_t s) {
      team.each_chunk(B, kRowChunk,
                      [&](std::int64_t lo, std::int64_t hi) { f.stage_x(s, lo, hi); });
    };
    if constexpr (Fused)
      stage_x(0);
    else if (!f.project_few_rows(team))
      team_matmul<S>(team, Op::N, Op::T, N, GH, I, a.x, I, a.w_ih, I, sh.gates, sh.ldg);
    team.sync();

    // 2. The sequential part: per step one product tile per block of units and rows, the
    //    cell epilogue on it, one sync (reset-before GRU: two products, two syncs).
    S* h_cur = sc.h;
    S* h_nxt = sc.h + B * ldh;
    for (std::int64_t s = 0; s < T; ++s) {
      if constexpr (Cell::two_products) {
        f.template step<0>(team, s, h_cur, h_cur, h_cur);
        team.sync();
        f.template step<1>(team, s, sc.rh, h_cur, h_cur);
        team.sync();
      } else {
        f.template step<0>(team, s, h_cur, h_cur, h_nxt);
        if constexpr (Proj) {
          team.sync();  // all of m before any of its projection
          f.project(team, s, h_cur, h_nxt);
        }
        if constexpr (Fused) stage_x(s + 1);
        team.sync();
        S* tmp = h_cur;
        h_cur = h_nxt;
        h_nxt = tmp;
      }
    }

    // 3. Final states; zeros where sequences had ended (y, and the reserve planes that the
    //    backward GEMMs multiply by the zero dG of those rows: 0 · garbage could be NaN).
    team.each_chunk(B, kRowChunk, [&](std::int64_t lo, std::int64_t hi) {
      for (std::int64_t b = lo; b < hi; ++b) copy(a.h_n + b * Hs, h_cur + b * ldh, Hs);
      if constexpr (Cell::has_c) copy(a.c_n + lo * H, sc.c + lo * H, (hi - lo) * H);
      if constexpr (HasLengths) {
        zero_padding(a.y, Hs, Hs, cfg, a.lengths, lo, hi);
        if constexpr (Training) {
          zero_padding(sh.rv.hprev, Hs, Hs, cfg, a.lengths, lo, hi);
          if constexpr (Cell::two_products) zero_padding(sh.rv.rh, H, H, cfg, a.lengths, lo, hi);
          if constexpr (Proj) zero_padding(sh.rv.m, H, H, cfg, a.lengths, lo, hi);
        }
      }
    });
    team.sync();
  }
};

template <class S, class Cell, bool Training, bool HasLengths>
void forward_loop(const SeqConfig& cfg, const ForwardArgs<S>& a) {
  constexpr int L = gemm::lanes<S>;
  FwdShared<S> sh;
  sh.cfg = &cfg;
  sh.a = &a;
  Carver scv(a.scratch);
  sh.sc = ForwardScratch<S>::carve(scv, cfg, Training);
  if constexpr (Training) {
    Carver rcv(a.reserve);
    sh.rv = ReservePlanes<S>::carve(rcv, cfg);
  }
  sh.gates = Training ? sh.rv.gates : sh.sc.gates;
  sh.ldg = Training ? sh.rv.ldg : Cell::G * cfg.H;
  sh.nb = (cfg.H + L - 1) / L;
  // The cache sizes are read once per call: a set_cache_sizes meanwhile applies from the
  // next call on.
  sh.ch = forward_choices(cfg, sizeof(S), FASTSEQ_VEC_BYTES, runtime::cache_sizes());
  sh.kp = forward_panel_rows(cfg, sh.ch.fuse_projection);
  sh.nbp = (cfg.P + L - 1) / L;
  sh.direct = direct_products(cfg);
  using F = Forward<S, Cell, Training, HasLengths>;
  const int nt = team_size<S>(cfg, group_count(sh.nb, F::W));
  if constexpr (!HasLengths && Cell::info.can_fuse_projection) {
    if (sh.ch.fuse_projection) {
      using FF = Forward<S, Cell, Training, false, true>;
      runtime::parallel_run(nt, &FF::team, &sh);
      return;
    }
  }
  runtime::parallel_run(nt, &F::team, &sh);
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::loops
