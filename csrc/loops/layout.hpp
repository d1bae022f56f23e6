// Where each named tensor lives inside the reserve (after its header) and the scratch
// buffers. The size queries and the loops both carve through these functions, so they
// cannot disagree.
// Panel sizes use the widest vector of any compiled ISA (kMaxVecBytes), so one size serves
// every variant.
#pragma once

#include <cstdint>

#include "cells/registry.hpp"
#include "fastseq/kernels.hpp"
#include "loops/reserve_header.hpp"
#include "loops/tuning.hpp"
#include "runtime/aligned_buffer.hpp"
#include "runtime/caches.hpp"
#include "runtime/isa.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

// A cell's facts (cells/registry.hpp) by its kind, and the width of one row of the
// reserve's gate plane (the reset-after GRU keeps 4H).
inline const cells::CellInfo& info_of(const SeqConfig& cfg) { return cells::cell_info(cfg.cell); }
inline std::int64_t reserve_gate_width(const SeqConfig& cfg) {
  return info_of(cfg).reserve_gates * cfg.H;
}

// H rounded up to whole blocks of the widest vector of S.
template <class S>
inline std::int64_t padded_units(std::int64_t H) {
  constexpr std::int64_t L = kMaxVecBytes / sizeof(S);
  return (H + L - 1) / L * L;
}

// Row stride of the dense buffers the step products read (h, r ⊙ h, dG): padded by one
// vector so that a tile's rows do not all fall into one L1 set when the width is a multiple
// of 4 KiB's worth of scalars (H = 1024 in float32 and the like).
template <class S>
inline std::int64_t padded_ld(std::int64_t width) {
  return width + kMaxVecBytes / std::int64_t(sizeof(S));
}

// One step of one sequence: products straight from the weights (tuning::kDirectMaxRows).
// The plane a product lands in is the panels' buffer (at least G·H scalars, and the
// projection's at least P), which such a call does not pack.
inline bool direct_products(const SeqConfig& cfg) {
  return cfg.T == 1 && cfg.B <= tuning::kDirectMaxRows;
}

// An input projection of few rows (tuning::kFewRowsMax) may run on the micro-kernel, W_ih's
// rows as the tile's rows and Xᵀ as the panel (ForwardScratch::xt). A shape rule, so that
// the scratch a size query reports is the call's; whether it does is the call's choice
// (tuning::Choices::few_rows_projection, from L2), and an ISA whose vectors would make the
// panel wider than the kernel's tiles take still uses OpenBLAS (Forward, project_few_rows).
inline bool few_rows_projection(const SeqConfig& cfg) {
  return cfg.T * cfg.B <= tuning::kFewRowsMax;
}

// From tuning::kFuseMinRows batch rows on, the LSTM's forward may fold the input projection
// into the step product when there are no lengths: the panels hold W_ihᵀ above W_hhᵀ and
// each step multiplies [x_t | h]. One product at the micro-kernel's rate instead of an
// OpenBLAS GEMM whose (T·B, 4H) result goes out to memory and comes back, a cache miss per
// line, in the epilogues (tuning.hpp has the measurement). Where it does not pay, it is not
// used: the Elman RNN (its W_hh panel, 1 MiB at H = 512, stays in L2, the fused one would
// not: no gain at (50,64,512), up to 5 % slower on 2 threads); the GRU (its n gate keeps
// x's and h's parts apart, they cannot share one sum). This is the shape's part of the
// rule, and it alone sizes the scratch; whether a call does fuse also depends on the cache
// sizes in force (forward_choices, tuning::choose).
inline bool may_fuse_projection(const SeqConfig& cfg) {
  return info_of(cfg).can_fuse_projection && cfg.B >= tuning::kFuseMinRows;
}

// Rows (k) of the forward panels: the state width Hs (H, or P with the LSTM's projection), or
// I + Hs where the input projection is folded in.
inline std::int64_t forward_panel_rows(const SeqConfig& cfg, bool fused) {
  return fused ? cfg.I + state_width(cfg) : state_width(cfg);
}

// Vectors per tile row of the widest forward panel of a cell (loops/forward.hpp: W blocks
// of NG1 gates): the single-gate cells put tuning::kRnnBlocksPerPanel blocks side by side,
// the reset-before GRU's first product holds its r and z gates, the others every gate.
constexpr int widest_panel_vectors(const cells::CellInfo& c) {
  return (c.gates == 1 ? tuning::kRnnBlocksPerPanel : 1) * (c.two_products ? 2 : c.gates);
}

// The tuning choices of a forward call (tuning.hpp, choose) for a kernel variant with
// vectors of vec_bytes and scalars of scalar_size bytes, under the cache sizes `caches`.
// The kernels call it once per call with the sizes in force; the bindings with the selected
// variant's width, to show the choices.
inline tuning::Choices forward_choices(const SeqConfig& cfg, std::int64_t scalar_size,
                                       std::int64_t vec_bytes,
                                       const runtime::CacheSizes& caches) {
  tuning::ChoiceInputs in;
  in.panel_row_bytes = widest_panel_vectors(info_of(cfg)) * vec_bytes;
  // With lengths the forward never fuses (a finished row's x is not staged): its panels
  // then hold W_hhᵀ alone, in the room the shape rule left.
  in.may_fuse = may_fuse_projection(cfg) && !cfg.has_lengths;
  in.rows = cfg.B;
  if (few_rows_projection(cfg)) {
    in.few_rows_weight_bytes = gate_count(cfg.cell) * cfg.H * cfg.I * scalar_size;
    in.few_rows = cfg.T * cfg.B;
    in.lanes = vec_bytes / scalar_size;
  }
  if (in.may_fuse) {
    // The panels' bytes as ForwardScratch carves them: G · K · (H in whole vectors).
    const std::int64_t lanes = kMaxVecBytes / scalar_size;
    const std::int64_t column =
        gate_count(cfg.cell) * ((cfg.H + lanes - 1) / lanes * lanes) * scalar_size;
    in.fused_panel_bytes = forward_panel_rows(cfg, true) * column;
  }
  return tuning::choose(in, caches);
}

template <class S>
struct ReservePlanes {
  S* gates = nullptr;  // (N, Wr): activations after forward, dG after backward
  S* hprev = nullptr;  // (N, Hs): the state each row's step started from (0 at padding)
  // (N, H) each: the cell's kept planes (cells/registry.hpp, kept_planes), which only its
  // epilogues read, at live rows (not zeroed at padding).
  S* kept[cells::most_kept_planes()] = {};
  S* rh = nullptr;     // (N, H): GRU reset-before r ⊙ h_prev (0 at padding)
  S* m = nullptr;      // (N, H): projected, the cell's output m before W_hr (0 at padding)
  std::int64_t ldg = 0;

  // The one place that places the planes after the header: the size query and both loops
  // carve through here.
  static ReservePlanes carve(Carver& cv, const SeqConfig& cfg) {
    const std::int64_t N = cfg.T * cfg.B, H = cfg.H;
    ReservePlanes p;
    cv.take<ReserveHeader>(1);  // 64 bytes, written and checked by loops/kernels.cpp
    p.ldg = reserve_gate_width(cfg);
    p.gates = cv.take<S>(N * p.ldg);
    p.hprev = cv.take<S>(N * state_width(cfg));
    for (int i = 0; i < info_of(cfg).kept_planes; ++i) p.kept[i] = cv.take<S>(N * H);
    if (info_of(cfg).two_products) p.rh = cv.take<S>(N * H);
    if (info_of(cfg).projected) p.m = cv.take<S>(N * H);
    return p;
  }
};

template <class S>
struct ForwardScratch {
  S* gates = nullptr;   // (N, G*H): the input projection when not training (else reserve's)
  S* panels = nullptr;  // (G, K, Hp): W_hhᵀ packed per block of units, gates interleaved
                        // (single-gate cells: per group of up to four blocks side by side;
                        // either way the blocks' panels fill G·K·ceil(H/L)·L <= this);
                        // K = forward_panel_rows: W_ihᵀ above W_hhᵀ when the projection
                        // may be folded in (the call's choice may still leave W_ih out:
                        // then the panels take the first G·Hs·Hp)
  S* h = nullptr;       // (2, B, ldh): running state (Hs wide), double-buffered across a step
  S* c = nullptr;       // (B, H): LSTM running cell state
  S* m = nullptr;       // (B, ldm): projected, the cell's output m, input of the projection
  std::int64_t ldm = 0; // padded_ld(H)
  S* proj_panels = nullptr;  // (H, Pp): projected, W_hrᵀ packed k-major per group of up to
                             // tuning::kRnnBlocksPerPanel blocks of P columns side by side
  S* rh = nullptr;      // (B, ldh): GRU reset-before r ⊙ h, input of the n-block product
  // (B, ld_carried) each: the cell's carried planes (cells/registry.hpp, carried_planes).
  S* carried[cells::most_carried_planes()] = {};
  std::int64_t ld_carried = 0;  // padded_ld(H)
  std::int64_t ldh = 0; // padded_ld(Hs)
  S* xs = nullptr;      // (2, B, ldx): projection may be folded in: x_t's rows,
                        // double-buffered
  std::int64_t ldx = 0; // padded_ld(I), so that a tile's rows do not share L1 sets as x's can
  S* bias = nullptr;    // (G*H): the biases folded into one vector (zeros without bias)
  S* bhn = nullptr;     // (H): GRU reset-after b_hn, kept inside the recurrent term
  S* xt = nullptr;      // (I, padded_units(N)): few_rows_projection, Xᵀ packed k-major

  static ForwardScratch carve(Carver& cv, const SeqConfig& cfg, bool training) {
    const std::int64_t N = cfg.T * cfg.B, B = cfg.B, H = cfg.H;
    const std::int64_t GH = gate_count(cfg.cell) * H;
    ForwardScratch s;
    if (!training) s.gates = cv.take<S>(N * GH);
    const std::int64_t kp = forward_panel_rows(cfg, may_fuse_projection(cfg));
    s.panels = cv.take<S>(gate_count(cfg.cell) * kp * padded_units<S>(H));
    s.ldh = padded_ld<S>(state_width(cfg));
    s.h = cv.take<S>(2 * B * s.ldh);
    if (info_of(cfg).projected) {
      s.ldm = padded_ld<S>(H);
      s.m = cv.take<S>(B * s.ldm);
      s.proj_panels = cv.take<S>(H * padded_units<S>(cfg.P));
    }
    if (may_fuse_projection(cfg)) {
      s.ldx = padded_ld<S>(cfg.I);
      s.xs = cv.take<S>(2 * B * s.ldx);
    }
    if (info_of(cfg).states == 2) s.c = cv.take<S>(B * H);
    if (info_of(cfg).two_products) s.rh = cv.take<S>(B * s.ldh);
    s.ld_carried = padded_ld<S>(H);
    for (int i = 0; i < info_of(cfg).carried_planes; ++i)
      s.carried[i] = cv.take<S>(B * s.ld_carried);
    s.bias = cv.take<S>(GH);
    if (info_of(cfg).recurrent_bias_apart) s.bhn = cv.take<S>(H);
    if (few_rows_projection(cfg)) s.xt = cv.take<S>(cfg.I * padded_units<S>(N));
    return s;
  }
};

// Rows of x cleaned at a time for dW_ih when there are lengths.
inline std::int64_t x_chunk_rows(const SeqConfig& cfg) {
  const std::int64_t N = cfg.T * cfg.B;
  return N < 512 ? N : 512;
}

template <class S>
struct BackwardScratch {
  S* dgs = nullptr;           // (2, B, padded_ld(G*H)): dense recurrent dG, double-buffered
                              // across a step (GRU reset-before: (B, padded_ld(2H)) dG_rz
                              // then (B, padded_ld(H)) dn)
  S* dhd = nullptr;           // (B, Hs): carried dh that bypasses W_hh
  S* dc = nullptr;            // (B, H): LSTM carried dc
  S* panels = nullptr;        // (Hsp, G*H): W_hh packed per group of one or two blocks of
                              // state units (the backward step's tiles), k-major and
                              // contiguous: group [j0, j0 + w) at j0·G·H, row stride w, zero
                              // past Hs
  S* proj_panels = nullptr;   // (Hp, P): projected, W_hr packed as W_hh, per group of blocks of
                              // the H units of m
  S* dh = nullptr;            // (B, padded_ld(P)): projected, this step's dh, input of dm = dh·W_hr
  S* dh_rows = nullptr;       // (N, P): projected, every step's dh, for dW_hr = dHᵀ·m (0 at padding)
  double* colsum = nullptr;   // (Wr): bias gradients, summed in double in row order
  S* x_rows = nullptr;        // (R, I), R = x_chunk_rows: with lengths, x's rows a chunk at a
                              // time with the padding rows zeroed (so NaN there cannot reach
                              // dW_ih through 0 · NaN). Always carved: the C ABI's size
                              // queries do not know about lengths.

  static BackwardScratch carve(Carver& cv, const SeqConfig& cfg) {
    const std::int64_t B = cfg.B, H = cfg.H;
    const std::int64_t GH = gate_count(cfg.cell) * H;
    BackwardScratch s;
    s.dgs = cv.take<S>(2 * B * padded_ld<S>(GH));
    s.dhd = cv.take<S>(B * state_width(cfg));
    if (info_of(cfg).states == 2) s.dc = cv.take<S>(B * H);
    s.panels = cv.take<S>(GH * padded_units<S>(state_width(cfg)));
    if (info_of(cfg).projected) {
      s.proj_panels = cv.take<S>(cfg.P * padded_units<S>(H));
      s.dh = cv.take<S>(B * padded_ld<S>(cfg.P));
      s.dh_rows = cv.take<S>(cfg.T * B * cfg.P);
    }
    s.colsum = cv.take<double>(reserve_gate_width(cfg));
    s.x_rows = cv.take<S>(x_chunk_rows(cfg) * cfg.I);
    return s;
  }
};

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::loops
