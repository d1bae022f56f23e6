// The forward and backward time loops, written once and templated on the cell, with the
// runtime flags (training, has-lengths) as template parameters so the step loop carries no
// test for them. The cells (cells/*.hpp) hold the gate math; gemm/ holds the products.
// Compiled once per ISA (loops/sequence_isa.cpp): everything here is in FASTSEQ_ISA_NS.
//
// Where the speed comes from:
// - W_hh is packed once per call into k-major panels of L units × the gates (forward), so
//   one register tile of h·W_hhᵀ holds every gate of the same units and the cell epilogue
//   runs on it straight away (no dense gate buffer, no second pass). The single-gate RNN
//   puts up to four blocks of L units side by side in one panel instead, so that its tile
//   is as wide as the LSTM's. Backward's dh = dG·W_hh reads W_hh's own rows, k-major
//   already: they are only copied per group of units into contiguous panels (no transpose).
// - A team of threads (runtime/thread_pool) splits the blocks of units: each thread packs
//   and then re-reads only its own panels, which stay in its core's cache for all T steps.
//   The next step needs all of h, so h (and dG in backward) is double-buffered and the team
//   meets at one barrier per step (two for the reset-before GRU). Which thread owns a unit
//   never changes what is computed for it: results do not depend on the thread count.
// - The large products (input projection, dx, weight gradients) are OpenBLAS calls on one
//   thread each, cut into parts fixed by their shape (team_matmul) and shared out over the team. Except the LSTM's
//   projection from 64 rows on without lengths: folded into the step product (Fused), its
//   panel above W_hh's, so that the gate pre-activations never go out to memory.
// - Odd steps visit the blocks backwards (zigzag), so the panels still in L2 from the end of
//   one step are the first the next step reads; and each block first prefetches the lines of
//   Gx, y and the reserve its epilogues will touch, which were written long before.
//
// Lengths and reverse without copies or gathers: at step s, row b works on time
// t = reverse ? L_b-1-s : s while s < L_b. The products always run on all B rows of the
// dense state; the epilogue reads Gx and writes y/reserve at row (t, b), and carries
// finished rows' state unchanged. Backward mirrors it: a finished row passes its dh through
// and contributes a zero row of dG to the product.
#pragma once

#include <cstdint>
#include <cstring>

#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"
#include "gemm/gemm.hpp"
#include "gemm/microkernel.hpp"
#include "gemm/transpose.hpp"
#include "loops/layout.hpp"
#include "runtime/isa.hpp"
#include "runtime/thread_pool.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

using gemm::Op;
using runtime::team_barrier;

template <class S>
inline void zero(S* p, std::int64_t n) {
  if (n > 0) std::memset(static_cast<void*>(p), 0, sizeof(S) * static_cast<std::size_t>(n));
}

template <class S>
inline void copy(S* dst, const S* src, std::int64_t n) {
  if (n > 0) std::memcpy(dst, src, sizeof(S) * static_cast<std::size_t>(n));
}

template <class S>
inline void copy_or_zero(S* dst, const S* src, std::int64_t n) {
  if (src)
    copy(dst, src, n);
  else
    zero(dst, n);
}

// [lo, hi): this thread's share of n items.
inline void share(std::int64_t n, int tid, int nt, std::int64_t& lo, std::int64_t& hi) {
  lo = n * tid / nt;
  hi = n * (tid + 1) / nt;
}

// Groups of w adjacent blocks (the last one narrower) out of nb, fixed by position; and this
// thread's share of whole groups, as blocks [jb0, jb1). Threads own whole groups so that a
// unit's tile, and with it the order of its sums, never depends on the thread count.
inline std::int64_t group_count(std::int64_t nb, std::int64_t w) { return (nb + w - 1) / w; }
inline void share_groups(std::int64_t nb, std::int64_t w, int tid, int nt, std::int64_t& jb0,
                         std::int64_t& jb1) {
  share(group_count(nb, w), tid, nt, jb0, jb1);
  jb0 *= w;
  jb1 = jb1 * w < nb ? jb1 * w : nb;
}

// The q-th of n groups of blocks to visit at step s: odd steps go backwards. The panels a
// step used last are then the first the next step needs, so whatever part of them is still
// in L2 is hit before it is evicted; a sweep in the same order every step through more
// panel than L2 holds (LSTM H = 512 in float32: 4 MiB against 2 MiB) misses on every line.
// The order of the blocks changes no value.
inline std::int64_t zigzag(std::int64_t s, std::int64_t q, std::int64_t n) {
  return s % 2 == 0 ? q : n - 1 - q;
}

// Zero rows (t, b), t >= lengths[b], of a (T*B, width) plane (row stride ld), b in [b0, b1).
template <class S>
void zero_padding(S* plane, std::int64_t ld, std::int64_t width, const SeqConfig& cfg,
                  const std::int64_t* lengths, std::int64_t b0, std::int64_t b1) {
  for (std::int64_t b = b0; b < b1; ++b)
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

// The parts team_matmul splits a product into along its longer side: a power of two, at
// least kMinPartExtent rows (or columns) each, at most kMaxParts — fixed by the product's
// shape alone, never by the thread count. Each part is one OpenBLAS call, and OpenBLAS's
// bits for a row depend on the call it is in (its AVX2 kernels give a block of rows other
// bits than the whole product: edge tiles and small-matrix kernels sum in other orders), so
// the same parts on 1 or 64 threads are what makes every output the same bits on both.
// Each part re-packs the other operand: at 256 rows that costs about 1-2 % of the part's
// FMAs; a power of two shares out evenly over 2, 4, 8... threads.
inline constexpr std::int64_t kMinPartExtent = 256;
inline constexpr std::int64_t kMaxParts = 64;
inline std::int64_t matmul_parts(std::int64_t extent) {
  std::int64_t p = 1;
  while (p < kMaxParts && extent / (2 * p) >= kMinPartExtent) p *= 2;
  return p;
}

// This thread's parts of C (m x n) = op(A)·op(B) (+ beta·C): rows of C if m >= n, else
// columns, cut by matmul_parts; the team shares out whole parts.
template <class S>
void team_matmul(int tid, int nt, Op oa, Op ob, std::int64_t m, std::int64_t n, std::int64_t k,
                 const S* a, std::int64_t lda, const S* b, std::int64_t ldb, S* c,
                 std::int64_t ldc, S beta = S(0)) {
  const bool by_rows = m >= n;
  const std::int64_t extent = by_rows ? m : n;
  const std::int64_t parts = matmul_parts(extent);
  std::int64_t p0, p1, lo, hi;
  share(parts, tid, nt, p0, p1);
  for (std::int64_t p = p0; p < p1; ++p) {
    share(extent, int(p), int(parts), lo, hi);
    if (hi <= lo) continue;
    if (by_rows)
      gemm::matmul<S>(oa, ob, hi - lo, n, k, oa == Op::N ? a + lo * lda : a + lo, lda, b, ldb,
                      beta, c + lo * ldc, ldc);
    else
      gemm::matmul<S>(oa, ob, m, hi - lo, k, a, lda, ob == Op::N ? b + lo : b + lo * ldb, ldb,
                      beta, c + lo, ldc);
  }
}

// Forward panel rows [0, K) of one block of units, k-major with row stride ldp (>= NG·L: the
// panel of a group of blocks holds them side by side), from w (rows of length K, H rows per
// gate: W_hh, or W_ih with K = I): panel[k·ldp + g·L + u] = w[((g0+g)·H + j0+u)·K + k], zero
// for u >= n.
template <class S, int NG>
void pack_forward(S* panel, std::int64_t ldp, const S* w, std::int64_t H, std::int64_t K,
                  int g0, std::int64_t j0, int n) {
  using V = typename gemm::Vec<S>::type;
  constexpr int L = gemm::lanes<S>;
  // L x L blocks transposed in registers (gemm/transpose.hpp): L rows of w read a vector at
  // a time, L panel lines written whole; the last K mod L columns one element at a time.
  const std::int64_t K0 = K / L * L;
  for (int g = 0; g < NG; ++g) {
    const S* src = w + ((g0 + g) * H + j0) * K;
    S* dst = panel + g * L;
    for (std::int64_t k0 = 0; k0 < K0; k0 += L) {
      V v[L];
      for (int u = 0; u < L; ++u) v[u] = u < n ? gemm::vload(src + u * K + k0) : V{};
      gemm::transpose<S>(v);
      for (int i = 0; i < L; ++i) gemm::vstore(dst + (k0 + i) * ldp, v[i]);
    }
    for (std::int64_t k = K0; k < K; ++k)
      for (int u = 0; u < L; ++u) dst[k * ldp + u] = u < n ? src[u * K + k] : S(0);
  }
}

// Calls Cell's epilogue fn for a full or a partial block.
#define FASTSEQ_EPILOGUE(call, n, L) \
  do {                               \
    if ((n) == (L)) {                \
      call(true);                    \
    } else {                         \
      call(false);                   \
    }                                \
  } while (0)

// ---------------------------------------------------------------------------------------
// Forward

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
};

// Fused: the input projection is folded into the step product (layout.hpp,
// fuses_projection): the panels hold W_ihᵀ above W_hhᵀ, the k-slices of each step run over
// x_t's rows and then h, and the epilogues find no Gx to add.
template <class S, class Cell, bool Training, bool HasLengths, bool Fused = false>
struct Forward {
  static constexpr int L = gemm::lanes<S>;
  static constexpr int G = Cell::G;
  static constexpr CellKind kind = Cell::kind;
  // Gates in the (first) product's panel, and in the second one (reset-before GRU's n).
  static constexpr int NG1 = Cell::two_products ? 2 : G;
  // Blocks of L units per panel. A single-gate cell's panel of one block gives (AVX-512)
  // tiles of 16 rows × 1 vector: 17 loads per 16 FMAs, load-bound. Four blocks side by side
  // give the LSTM's 4 rows × 4 vectors: 8 loads per 16 FMAs. The groups are fixed by
  // position (group q: blocks [q·W, q·W + W), the last one narrower), and threads own whole
  // groups, so a unit's tile shape, and with it the order of its sum over k, never depends
  // on the thread count.
  static constexpr int W = G == 1 ? 4 : 1;

  const FwdShared<S>& sh;
  std::int64_t T, B, H;
  const std::int64_t* lengths;
  bool reverse;
  std::int64_t ldh;  // row stride of h, r ⊙ h, z

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
      gemm::tile<S, MR, NV>(a + b0 * f.ldh, f.ldh, panel, NV * L, f.H, acc);
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
        // place and needs nothing).
        if constexpr (!Cell::two_products) copy(h_out + b * f.ldh + j0, h_in + b * f.ldh + j0, n);
        return;
      }
      const std::int64_t row = t * f.B + b;
      cells::FwdRow<S> w;
      w.acc = acc;
      w.gx = sh.gates + row * sh.ldg + j0;
      w.bias = sh.sc.bias + j0;
      w.h_in = h_in + b * f.ldh + j0;
      w.h_out = h_out + b * f.ldh + j0;
      w.y = sh.a->y + row * H + j0;
      w.H = H;
      w.n = n;
      if constexpr (Training) w.hprev = sh.rv.hprev + row * H + j0;
      if constexpr (kind == CellKind::lstm) {
        w.c = sh.sc.c + b * H + j0;
        if constexpr (Training) {
          w.cprev = sh.rv.cprev + row * H + j0;
          w.tanhc = sh.rv.tanhc + row * H + j0;
        }
      }
      if constexpr (kind == CellKind::gru) w.bhn = sh.sc.bhn + j0;
      if constexpr (kind == CellKind::gru_reset_before) {
        w.rh = sh.sc.rh + b * f.ldh + j0;
        w.z = sh.sc.z + b * f.ldh + j0;
        if constexpr (Training) w.rh_keep = sh.rv.rh + row * H + j0;
      }
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
      if constexpr (last_phase) __builtin_prefetch(sh.a->y + row * H + j0, 1);
      if constexpr (Training && Phase == 0) {
        __builtin_prefetch(sh.rv.hprev + row * H + j0, 1);
        if constexpr (Cell::has_c) {
          __builtin_prefetch(sh.rv.cprev + row * H + j0, 1);
          __builtin_prefetch(sh.rv.tanhc + row * H + j0, 1);
        }
        if constexpr (kind == CellKind::gru_reset_before)
          __builtin_prefetch(sh.rv.rh + row * H + j0, 1);
      }
    }
  }

  template <int Phase>
  void step(std::int64_t s, std::int64_t jb0, std::int64_t jb1, const S* a, S* h_in,
            S* h_out) const {
    const std::int64_t n = group_count(jb1 - jb0, W);
    for (std::int64_t q = 0; q < n; ++q) {
      const std::int64_t jb = jb0 + W * zigzag(s, q, n);
      group<Phase>(s, jb, jb1 - jb < W ? int(jb1 - jb) : W, a, h_in, h_out);
    }
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
    if (Fused || (B >= kb_min_rows && H > KC)) {
      // k-blocked: a KC-row slice of the panel stays in L1 while every row tile of a
      // chunk of rows passes over it; partial sums wait in part, the epilogue follows
      // the last slice. Fused, the slices run over x_t's rows (staged by stage_x) first,
      // panel rows [0, I).
      for (std::int64_t c0 = 0; c0 < B; c0 += KB_ROWS) {
        const std::int64_t rows = B - c0 < KB_ROWS ? B - c0 : KB_ROWS;
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
        slices(a, ldh, H, st.panel + kh * NV * L);
        for (std::int64_t r = 0; r < rows; ++r) st.epilogues(c0 + r, part + r * NV * L);
      }
      return;
    }
    std::int64_t b0 = 0;
    gemm::for_row_blocks<gemm::max_rows<NV>>(B, b0, st);
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

  // k-blocking of the forward product: KC panel rows per slice, KB_ROWS batch rows per chunk
  // (part lives on the stack), used from kb_min_rows rows on.
  static constexpr std::int64_t KC = 128;
  static constexpr std::int64_t KB_ROWS = 64;
  static constexpr std::int64_t kb_min_rows = 16;

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
    const Forward f{sh, cfg.T, cfg.B, cfg.H, a.lengths, cfg.reverse, sh.sc.ldh};
    const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B, GH = G * H;
    const ForwardScratch<S>& sc = sh.sc;
    std::int64_t lo, hi;

    // 0. Fold the biases into one vector (the GRU's b_hn stays inside r ⊙ (W_hn h + b_hn)),
    //    initial states, and this thread's panels.
    share(GH, tid, nt, lo, hi);
    for (std::int64_t k = lo; k < hi; ++k) {
      S v = cfg.has_bias ? a.b_ih[k] + a.b_hh[k] : S(0);
      if (kind == CellKind::gru && cfg.has_bias && k >= 2 * H) v = a.b_ih[k];
      sc.bias[k] = v;
    }
    if constexpr (kind == CellKind::gru) {
      share(H, tid, nt, lo, hi);
      for (std::int64_t j = lo; j < hi; ++j) sc.bhn[j] = cfg.has_bias ? a.b_hh[2 * H + j] : S(0);
    }
    const std::int64_t ldh = sc.ldh;
    share(B, tid, nt, lo, hi);
    for (std::int64_t b = lo; b < hi; ++b) {
      copy_or_zero(sc.h + b * ldh, a.h0 ? a.h0 + b * H : nullptr, H);
      if constexpr (Cell::two_products) {
        zero(sc.rh + b * ldh, ldh);
        zero(sc.z + b * ldh, ldh);
      }
    }
    if constexpr (Cell::has_c) copy_or_zero(sc.c + lo * H, a.c0 ? a.c0 + lo * H : nullptr, (hi - lo) * H);
    std::int64_t jb0, jb1;
    share_groups(sh.nb, W, tid, nt, jb0, jb1);
    for (std::int64_t jb = jb0; jb < jb1; ++jb) {
      const std::int64_t j0 = jb * L;
      const int n = int(H - j0 < L ? H - j0 : L);
      // Block jb is block v of the group from block jg, side by side with the others.
      const std::int64_t jg = jb / W * W, v = jb - jg;
      const std::int64_t ldp = (sh.nb - jg < W ? sh.nb - jg : W) * NG1 * L;
      S* p = const_cast<S*>(f.panel1(jg)) + v * NG1 * L;
      if constexpr (Fused) {
        pack_forward<S, NG1>(p, ldp, a.w_ih, H, I, 0, j0, n);
        p += I * ldp;
      }
      pack_forward<S, NG1>(p, ldp, a.w_hh, H, H, 0, j0, n);
      if constexpr (Cell::two_products)
        pack_forward<S, 1>(const_cast<S*>(f.panel2(jb)), L, a.w_hh, H, H, 2, j0, n);
    }

    // 1. Input projection for all T steps at once: Gx = X · W_ihᵀ, written straight into
    //    the gate plane the epilogue then overwrites in place. (Fused: in the steps.)
    std::int64_t xlo = 0, xhi = 0;  // fused: this thread's rows of x to stage
    if constexpr (Fused) {
      share(B, tid, nt, xlo, xhi);
      f.stage_x(0, xlo, xhi);
    } else {
      team_matmul<S>(tid, nt, Op::N, Op::T, N, GH, I, a.x, I, a.w_ih, I, sh.gates, sh.ldg);
    }
    team_barrier(nt);

    // 2. The sequential part: per step one product tile per block of units and rows, the
    //    cell epilogue on it, one barrier (reset-before GRU: two products, two barriers).
    S* h_cur = sc.h;
    S* h_nxt = sc.h + B * ldh;
    for (std::int64_t s = 0; s < T; ++s) {
      if constexpr (Cell::two_products) {
        f.template step<0>(s, jb0, jb1, h_cur, h_cur, h_cur);
        team_barrier(nt);
        f.template step<1>(s, jb0, jb1, sc.rh, h_cur, h_cur);
        team_barrier(nt);
      } else {
        f.template step<0>(s, jb0, jb1, h_cur, h_cur, h_nxt);
        if constexpr (Fused) f.stage_x(s + 1, xlo, xhi);
        team_barrier(nt);
        S* tmp = h_cur;
        h_cur = h_nxt;
        h_nxt = tmp;
      }
    }

    // 3. Final states; zeros where sequences had ended (y, and the reserve planes that the
    //    backward GEMMs multiply by the zero dG of those rows: 0 · garbage could be NaN).
    share(B, tid, nt, lo, hi);
    for (std::int64_t b = lo; b < hi; ++b) copy(a.h_n + b * H, h_cur + b * ldh, H);
    if constexpr (Cell::has_c) copy(a.c_n + lo * H, sc.c + lo * H, (hi - lo) * H);
    if constexpr (HasLengths) {
      zero_padding(a.y, H, H, cfg, a.lengths, lo, hi);
      if constexpr (Training) {
        zero_padding(sh.rv.hprev, H, H, cfg, a.lengths, lo, hi);
        if constexpr (Cell::two_products) zero_padding(sh.rv.rh, H, H, cfg, a.lengths, lo, hi);
      }
    }
  }
};

// ---------------------------------------------------------------------------------------
// Backward

template <class S>
struct BwdShared {
  const SeqConfig* cfg;
  const BackwardArgs<S>* a;
  BackwardScratch<S> sc;
  ReservePlanes<S> rv;
  std::int64_t nb;
};

template <class S, class Cell, bool HasLengths>
struct Backward {
  static constexpr int L = gemm::lanes<S>;
  static constexpr int G = Cell::G;
  static constexpr CellKind kind = Cell::kind;

  const BwdShared<S>& sh;
  std::int64_t T, B, H;
  const std::int64_t* lengths;
  bool reverse;

  // The slice of W_hh rows [r0, r0 + K) of the group of nv blocks from jb, k-major (row
  // stride ldp), from the backward panels.
  struct Slice {
    const S* p;
    std::int64_t ldp;
  };
  Slice slice(std::int64_t jb, int nv, std::int64_t r0) const {
    const std::int64_t j0 = jb * L, w = nv * L;
    return {sh.sc.panels + j0 * G * H + r0 * w, w};
  }

  // Threads own whole pairs of blocks (share_groups); a pair from an even block is one
  // group of two where both blocks are full, else single blocks.
  static int group_width(std::int64_t jb, std::int64_t H) {
    return (jb % 2 == 0 && (jb + 2) * L <= H) ? 2 : 1;
  }

  // Phase 0: the only product (or GRU reset-before phase A); 1: GRU reset-before phase B;
  // 2: the final product, dh0 = dhd + dG_0 · W_hh. NV adjacent blocks of units per tile
  // (two full blocks: fewer broadcast rows per FMA, so the tile is not load-bound).
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
      const std::int64_t H = f.H;
      S* dhd = sh.sc.dhd + b * H + j0;
      if constexpr (Phase == 2) {
        S* dh0 = sh.a->dh0 + b * H + j0;
        for (int u = 0; u < n; ++u) dh0[u] = dhd[u] + acc[u];
        return;
      }
      const std::int64_t t = time_of<HasLengths>(s, b, f.T, f.reverse, f.lengths);
      if (HasLengths && t < 0) {
        // Finished: dh passes through; its dG rows are zero.
        if constexpr (Phase == 0)
          for (int u = 0; u < n; ++u) dhd[u] += acc[u];
        const int gates_out = Cell::two_products ? (Phase == 0 ? 1 : 2) : G;
        for (int g = 0; g < gates_out; ++g) zero(dgs_out + b * ldo + g * H + j0, n);
        return;
      }
      const std::int64_t row = t * f.B + b;
      cells::BwdRow<S> w;
      w.acc = acc;
      w.dhd = dhd;
      w.dy = sh.a->dy + row * H + j0;
      w.gates = sh.rv.gates + row * sh.rv.ldg + j0;
      w.dgs = dgs_out + b * ldo + j0;
      w.H = H;
      w.n = n;
      if constexpr (kind == CellKind::lstm) {
        w.dc = sh.sc.dc + b * H + j0;
        w.cprev = sh.rv.cprev + row * H + j0;
        w.tanhc = sh.rv.tanhc + row * H + j0;
      }
      if constexpr (kind == CellKind::gru || kind == CellKind::gru_reset_before)
        w.hprev = sh.rv.hprev + row * H + j0;
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

  // Pairs of blocks [2q, 2q + 2) of this thread's [jb0, jb1) (jb0 is even), in zig-zag order:
  // one group of two, or single blocks.
  template <int Phase>
  void step(std::int64_t s, std::int64_t jb0, std::int64_t jb1, const S* a, std::int64_t lda,
            std::int64_t r0, std::int64_t K, S* dgs_out, std::int64_t ldo) const {
    const std::int64_t n = group_count(jb1 - jb0, 2);
    for (std::int64_t q = 0; q < n; ++q) {
      const std::int64_t jb = jb0 + 2 * zigzag(s, q, n);
      std::int64_t b0 = 0;
      if (group_width(jb, H) == 2) {
        Step<Phase, 2> st{*this, s, jb * L, L, a, lda, K, slice(jb, 2, r0), dgs_out, ldo};
        gemm::for_row_blocks<gemm::max_rows<2>>(B, b0, st);
        continue;
      }
      for (std::int64_t j = jb; j < jb + 2 && j < jb1; ++j) {
        const std::int64_t j0 = j * L;
        const int nu = int(H - j0 < L ? H - j0 : L);
        Step<Phase, 1> st{*this, s, j0, nu, a, lda, K, slice(j, 1, r0), dgs_out, ldo};
        b0 = 0;
        gemm::for_row_blocks<gemm::max_rows<1>>(B, b0, st);
      }
    }
  }

  static void team(void* ctx, int tid, int nt) {
    const BwdShared<S>& sh = *static_cast<const BwdShared<S>*>(ctx);
    const SeqConfig& cfg = *sh.cfg;
    const BackwardArgs<S>& a = *sh.a;
    const Backward f{sh, cfg.T, cfg.B, cfg.H, a.lengths, cfg.reverse};
    const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, N = T * B, GH = G * H;
    const BackwardScratch<S>& sc = sh.sc;
    const std::int64_t ldg = sh.rv.ldg;
    std::int64_t lo, hi;

    // 0. Carried gradients, and this thread's groups of W_hh columns packed k-major (W_hh's
    //    own rows are k-major but H scalars apart: strided rows defeat the prefetchers and the L1).
    share(B, tid, nt, lo, hi);
    copy_or_zero(sc.dhd + lo * H, a.dh_n ? a.dh_n + lo * H : nullptr, (hi - lo) * H);
    if constexpr (Cell::has_c)
      copy_or_zero(sc.dc + lo * H, a.dc_n ? a.dc_n + lo * H : nullptr, (hi - lo) * H);
    std::int64_t jb0, jb1;
    share_groups(sh.nb, 2, tid, nt, jb0, jb1);
    for (std::int64_t jb = jb0; jb < jb1;) {
      const int nv = group_width(jb, H);
      const std::int64_t j0 = jb * L, w = nv * L;
      const std::int64_t n = H - j0 < w ? H - j0 : w;
      S* dst = sc.panels + j0 * GH;
      if (n == w) {
        // A vector per block and row: memcpy's call per row piece was 4 % of a batch-1
        // LSTM's training step (32 K calls of 128 bytes at H = 512).
        for (std::int64_t r = 0; r < GH; ++r)
          for (int v = 0; v < nv; ++v)
            gemm::vstore(dst + r * w + v * L, gemm::vload(a.w_hh + r * H + j0 + v * L));
      } else {
        for (std::int64_t r = 0; r < GH; ++r) {
          copy(dst + r * w, a.w_hh + r * H + j0, n);
          for (std::int64_t u = n; u < w; ++u) dst[r * w + u] = S(0);
        }
      }
      jb += nv;
    }
    team_barrier(nt);

    // 1. Reverse time loop. Each step: for this thread's units, dh = dhd + dG_next · W_hh,
    //    then the cell's pointwise backward writes dG over the reserve's activations and
    //    into the dense buffer the next step's product reads.
    if constexpr (Cell::two_products) {
      const std::int64_t ldrz = padded_ld<S>(2 * H), ldn = padded_ld<S>(H);
      S* dgrz = sc.dgs;            // (B, ldrz)
      S* dn = sc.dgs + B * ldrz;   // (B, ldn)
      for (std::int64_t s = T - 1; s >= 0; --s) {
        f.template step<0>(s, jb0, jb1, s == T - 1 ? nullptr : dgrz, ldrz, 0, 2 * H, dn, ldn);
        team_barrier(nt);
        f.template step<1>(s, jb0, jb1, dn, ldn, 2 * H, H, dgrz, ldrz);
        team_barrier(nt);
      }
      f.template step<2>(0, jb0, jb1, dgrz, ldrz, 0, 2 * H, nullptr, 0);
    } else {
      const std::int64_t ldd = padded_ld<S>(GH);
      S* cur = sc.dgs;
      S* nxt = sc.dgs + B * ldd;
      for (std::int64_t s = T - 1; s >= 0; --s) {
        f.template step<0>(s, jb0, jb1, s == T - 1 ? nullptr : cur, ldd, 0, GH, nxt, ldd);
        team_barrier(nt);
        S* tmp = cur;
        cur = nxt;
        nxt = tmp;
      }
      f.template step<2>(0, jb0, jb1, cur, ldd, 0, GH, nullptr, 0);
    }
    if constexpr (Cell::has_c) {
      for (std::int64_t jb = jb0; jb < jb1; ++jb) {
        const std::int64_t j0 = jb * L;
        const std::int64_t n = H - j0 < L ? H - j0 : L;
        for (std::int64_t b = 0; b < B; ++b) copy(a.dc0 + b * H + j0, sc.dc + b * H + j0, n);
      }
    }
    if constexpr (HasLengths) {
      share(B, tid, nt, lo, hi);
      zero_padding(sh.rv.gates, ldg, ldg, cfg, a.lengths, lo, hi);
    }
    team_barrier(nt);

    // 2. Weight and input gradients, each one GEMM over all N rows split over the team.
    //    Columns [0, G*H) of the gate plane are dG_ih in every cell. With accumulate the
    //    weight gradients are added into (beta = 1).
    const S* dg = sh.rv.gates;
    const S beta = a.accumulate ? S(1) : S(0);
    team_matmul<S>(tid, nt, Op::N, Op::N, N, I, GH, dg, ldg, a.w_ih, I, a.dx, I);
    if constexpr (HasLengths) {
      // Padding rows of x must not reach dW_ih, not even as 0 · NaN: x a chunk of rows at a
      // time, its padding rows zeroed, accumulated over the chunks.
      const std::int64_t R = x_chunk_rows(cfg);
      for (std::int64_t r0 = 0; r0 < N; r0 += R) {
        const std::int64_t rc = N - r0 < R ? N - r0 : R;
        share(rc, tid, nt, lo, hi);
        for (std::int64_t r = lo; r < hi; ++r) {
          const std::int64_t t = (r0 + r) / B, b = (r0 + r) % B;
          if (t < a.lengths[b])
            copy(sc.x_rows + r * I, a.x + (r0 + r) * I, I);
          else
            zero(sc.x_rows + r * I, I);
        }
        team_barrier(nt);
        team_matmul<S>(tid, nt, Op::T, Op::N, GH, I, rc, dg + r0 * ldg, ldg, sc.x_rows, I,
                       a.dw_ih, I, r0 == 0 ? beta : S(1));
        team_barrier(nt);
      }
      // dx's padding rows are zero, as the contract says: the product gave 0 · W_ih there,
      // NaN where W_ih holds one. (Every part of dx was written before the barriers above.)
      share(B, tid, nt, lo, hi);
      zero_padding(a.dx, I, I, cfg, a.lengths, lo, hi);
    } else {
      team_matmul<S>(tid, nt, Op::T, Op::N, GH, I, N, dg, ldg, a.x, I, a.dw_ih, I, beta);
    }
    if constexpr (kind == CellKind::gru || kind == CellKind::gru_reset_before) {
      // r, z blocks against h_{t-1}; the n block is dn ⊙ r against h_{t-1} (reset after,
      // column 3H) or dn against r ⊙ h_{t-1} (reset before).
      team_matmul<S>(tid, nt, Op::T, Op::N, 2 * H, H, N, dg, ldg, sh.rv.hprev, H, a.dw_hh, H,
                     beta);
      if constexpr (kind == CellKind::gru)
        team_matmul<S>(tid, nt, Op::T, Op::N, H, H, N, dg + 3 * H, ldg, sh.rv.hprev, H,
                       a.dw_hh + 2 * H * H, H, beta);
      else
        team_matmul<S>(tid, nt, Op::T, Op::N, H, H, N, dg + 2 * H, ldg, sh.rv.rh, H,
                       a.dw_hh + 2 * H * H, H, beta);
    } else {
      team_matmul<S>(tid, nt, Op::T, Op::N, GH, H, N, dg, ldg, sh.rv.hprev, H, a.dw_hh, H,
                     beta);
    }

    // 3. Bias gradients: column sums over all N rows in row order, accumulated in double,
    //    each column by one thread, so the result is the same whatever the thread count.
    if (cfg.has_bias) {
      share(ldg, tid, nt, lo, hi);
      double* acc = sc.colsum;
      for (std::int64_t k = lo; k < hi; ++k) acc[k] = 0.0;
      for (std::int64_t r = 0; r < N; ++r) {
        const S* g = dg + r * ldg;
        for (std::int64_t k = lo; k < hi; ++k) acc[k] += static_cast<double>(g[k]);
      }
      // Rounded to S first, then added: what grad += db would give.
      const bool add = a.accumulate;
      const auto put = [add](S& dst, double sum) { dst = add ? dst + S(sum) : S(sum); };
      for (std::int64_t k = lo; k < hi && k < GH; ++k) {
        put(a.db_ih[k], acc[k]);
        if (kind != CellKind::gru || k < 2 * H) put(a.db_hh[k], acc[k]);
      }
      if constexpr (kind == CellKind::gru) {
        // db_hn is the column sum of dn ⊙ r (column 3H + j), owned by whoever summed it.
        for (std::int64_t k = lo; k < hi; ++k)
          if (k >= 3 * H) put(a.db_hh[2 * H + (k - 3 * H)], acc[k]);
      }
    }
  }
};

// Threads for one call: no more than the parts (blocks or groups of blocks) the units are
// shared out in, and one when a step is too small for a barrier to pay.
template <class S>
inline int team_size(const SeqConfig& cfg, std::int64_t parts) {
  const double step_flops = 2.0 * double(cfg.B) * gate_count(cfg.cell) * double(cfg.H) * double(cfg.H);
  int nt = runtime::num_threads();
  if (nt > parts) nt = int(parts);
  if (step_flops < 1.5e5) nt = 1;
  return nt < 1 ? 1 : nt;
}

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
  sh.kp = forward_panel_rows(cfg);
  using F = Forward<S, Cell, Training, HasLengths>;
  const int nt = team_size<S>(cfg, group_count(sh.nb, F::W));
  if constexpr (!HasLengths && can_fuse_projection(Cell::kind)) {
    if (fuses_projection(cfg)) {
      using FF = Forward<S, Cell, Training, false, true>;
      runtime::parallel_run(nt, &FF::team, &sh);
      return;
    }
  }
  runtime::parallel_run(nt, &F::team, &sh);
}

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
  using Bw = Backward<S, Cell, HasLengths>;
  runtime::parallel_run(team_size<S>(cfg, group_count(sh.nb, 2)), &Bw::team, &sh);
}

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::loops
