// The C++ list of cells: one entry per cell with every fact the rest of the library asks of
// a cell without running its code — the size queries and the carving of reserve and scratch
// (loops/layout.hpp), the entry points (loops/kernels.cpp), the bindings and the C ABI. The
// cell's code (cells/<cell>.hpp) takes its facts from here, and cells/all.hpp maps each
// kind to that code. Adding a cell: an entry here, its header, and its line in cells/all.hpp.
#pragma once

#include <cstdint>

#include "fastseq/kernels.hpp"

namespace fastseq::cells {

// Which plane a block of dW_hh is taken against (backward's weight-gradient plan).
enum class Against { hprev, rh };

// dW_hh[w_row·H .. +gates·H) = dGᵀ[columns dg_col·H ..] · against: one product of the plan.
struct RecurrentGradPart {
  int dg_col, w_row, gates;
  Against against;
};

struct CellInfo {
  CellKind kind;
  const char* name;    // as the bindings, capi and the reserve's repr spell it
  const char* family;  // the functional family whose arguments it takes: rnn, lstm, gru
  int gates;           // G: blocks of H rows in W_ih, W_hh, b_ih, b_hh
  int states;          // 1: h; 2: h and the cell state c
  int reserve_gates;   // width of the reserve's gate-plane row, in H (activations, then dG)
  // The cell's own planes, H wide, which only its epilogues read (cells/rows.hpp, `kept` and
  // `carried`): the loops carve, wire and prefetch them, and know nothing else of them.
  // kept: in the reserve, a row per step row, written by the forward's epilogue when
  // training and read by the backward's (the LSTM's c_{t-1} and tanh c_t); carried: in the
  // forward's scratch, a row per batch row, zero at the start of the call, passed between
  // the phases of a step or from step to step (the reset-before GRU's z).
  int kept_planes;
  int carried_planes;
  // Two dependent recurrent products per step: gates [0, 2) against h, then gate 2 against
  // r ⊙ h, with a barrier between (the reset-before GRU); the reserve keeps r ⊙ h.
  bool two_products;
  // The last gate's recurrent bias stays inside the recurrent term, r ⊙ (W_hn h + b_hn)
  // (the reset-after GRU): not folded into the input projection's bias.
  bool recurrent_bias_apart;
  // The forward may fold the input projection into the step product (loops/layout.hpp).
  bool can_fuse_projection;
  // The weight-gradient plan for dW_hh, and the gate-plane column (in H) of each gate's
  // db_hh sum.
  RecurrentGradPart dw_hh[2];
  int dw_hh_parts;
  int db_hh_col[4];
  // The state h is a projection of the cell's output, h = m·W_hrᵀ (P wide, m = the cell's
  // H-wide output): the loops run a product phase more per step (loops/forward.hpp,
  // backward.hpp), the recurrent product's K is P, and w_hr joins the parameters after w_hh.
  bool projected = false;
};

// Fields in CellInfo's order: kind, name, family; gates, states, reserve_gates, kept_planes,
// carried_planes; two_products, recurrent_bias_apart, can_fuse_projection; the dW_hh plan,
// its part count and the db_hh columns; projected.
inline constexpr CellInfo kCells[] = {
    {CellKind::rnn_tanh, "rnn_tanh", "rnn", 1, 1, 1, 0, 0, false, false, false,
     {{0, 0, 1, Against::hprev}}, 1, {0}},
    {CellKind::rnn_relu, "rnn_relu", "rnn", 1, 1, 1, 0, 0, false, false, false,
     {{0, 0, 1, Against::hprev}}, 1, {0}},
    // Its projection folds into the step from tuning::kFuseMinRows rows on (where the fused
    // panel fits the cache rule of loops/tuning.hpp, choose); the RNN's does
    // not pay (its W_hh panel stays in L2, the fused one would not), nor the GRU's (its n
    // gate keeps x's and h's parts apart).
    // Kept: c_{t-1} and tanh c_t (cells/lstm.hpp).
    {CellKind::lstm, "lstm", "lstm", 4, 2, 4, 2, 0, false, false, true,
     {{0, 0, 4, Against::hprev}}, 1, {0, 1, 2, 3}},
    // Reserve row [r z n hn]; backward writes [dr dz dn dn⊙r]: the n block of dW_hh and
    // db_hh is dn ⊙ r (column 3), the others as the input side's.
    {CellKind::gru, "gru", "gru", 3, 1, 4, 0, 0, false, true, false,
     {{0, 0, 2, Against::hprev}, {3, 2, 1, Against::hprev}}, 2, {0, 1, 3}},
    // dW_hn is taken against r ⊙ h_{t-1}. Carried: z, from phase 1 to phase 2.
    {CellKind::gru_reset_before, "gru_reset_before", "gru", 3, 1, 3, 0, 1, true, false, false,
     {{0, 0, 2, Against::hprev}, {2, 2, 1, Against::rh}}, 2, {0, 1, 2}},
    // torch's LSTM with proj_size: the LSTM's gates, h = (o ⊙ tanh c)·W_hrᵀ.
    {CellKind::lstmp, "lstmp", "lstm", 4, 2, 4, 2, 0, false, false, true,
     {{0, 0, 4, Against::hprev}}, 1, {0, 1, 2, 3}, true},
};

// The parameter arrays of a cell in call order (fastseq/cells.py's Cell.parameters): the
// weights, w_hr after w_hh when projected, then the two biases.
constexpr int parameter_count(const CellInfo& c) { return c.projected ? 5 : 4; }
constexpr const char* parameter_name(const CellInfo& c, int i) {
  const char* const plain[] = {"w_ih", "w_hh", "b_ih", "b_hh"};
  const char* const projected[] = {"w_ih", "w_hh", "w_hr", "b_ih", "b_hh"};
  return c.projected ? projected[i] : plain[i];
}

// The most own planes of one kind (&CellInfo::kept_planes or carried_planes) of any cell,
// at least 1: the size of the row views' arrays.
constexpr int most_planes(int CellInfo::*count) {
  int m = 1;
  for (const CellInfo& c : kCells) m = c.*count > m ? c.*count : m;
  return m;
}
constexpr int most_kept_planes() { return most_planes(&CellInfo::kept_planes); }
constexpr int most_carried_planes() { return most_planes(&CellInfo::carried_planes); }

// The entry of a cell kind, or null for a value no entry has (a C caller's bad int).
constexpr const CellInfo* find_cell(CellKind kind) {
  for (const CellInfo& c : kCells)
    if (c.kind == kind) return &c;
  return nullptr;
}

// The entry of a kind known to be valid (validate_config has checked it).
constexpr const CellInfo& cell_info(CellKind kind) { return *find_cell(kind); }

// What a cell's code (cells/<cell>.hpp) derives from its entry: `struct Lstm : Facts<...>`.
template <CellKind K>
struct Facts {
  static constexpr const CellInfo& info = cell_info(K);
  static constexpr CellKind kind = K;
  static constexpr int G = info.gates;
  static constexpr bool two_products = info.two_products;
  static constexpr bool has_c = info.states == 2;
  static constexpr bool projected = info.projected;
};

}  // namespace fastseq::cells
