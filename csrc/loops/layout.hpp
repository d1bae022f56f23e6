// Where each named tensor lives inside the reserve and the scratch buffers. The size
// queries and the loops both carve through these functions, so they cannot disagree.
#pragma once

#include <cstdint>

#include "fastseq/kernels.hpp"
#include "runtime/aligned_buffer.hpp"

namespace fastseq::loops {

// Width of one row of the reserve's gate plane (see the cells: GRU reset-after keeps 4H).
inline std::int64_t reserve_gate_width(CellKind cell, std::int64_t H) {
  switch (cell) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: return H;
    case CellKind::lstm: return 4 * H;
    case CellKind::gru: return 4 * H;
    case CellKind::gru_reset_before: return 3 * H;
  }
  return 0;
}

template <class S>
struct ReservePlanes {
  S* gates = nullptr;  // (N, Wr): activations after forward, dG after backward
  S* hprev = nullptr;  // (N, H): the state each row's step started from (0 at padding)
  S* cprev = nullptr;  // (N, H): LSTM cell state each step started from
  S* tanhc = nullptr;  // (N, H): LSTM tanh(c') of each step
  S* rh = nullptr;     // (N, H): GRU reset-before r ⊙ h_prev (0 at padding)
  std::int64_t ldg = 0;

  static ReservePlanes carve(Carver& cv, const SeqConfig& cfg) {
    const std::int64_t N = cfg.T * cfg.B, H = cfg.H;
    ReservePlanes p;
    p.ldg = reserve_gate_width(cfg.cell, H);
    p.gates = cv.take<S>(N * p.ldg);
    p.hprev = cv.take<S>(N * H);
    if (cfg.cell == CellKind::lstm) {
      p.cprev = cv.take<S>(N * H);
      p.tanhc = cv.take<S>(N * H);
    }
    if (cfg.cell == CellKind::gru_reset_before) p.rh = cv.take<S>(N * H);
    return p;
  }
};

template <class S>
struct ForwardScratch {
  S* gates = nullptr;  // (N, G*H): the input projection when not training (else reserve's)
  S* gh = nullptr;     // (B, G*H): this step's recurrent product
  S* h = nullptr;      // (B, H): running state
  S* c = nullptr;      // (B, H): LSTM running cell state
  S* rh = nullptr;     // (B, H): GRU reset-before r ⊙ h, input of the n-block product
  S* bias = nullptr;   // (G*H): the biases folded into one vector (zeros without bias)
  S* bhn = nullptr;    // (H): GRU reset-after b_hn, kept inside the recurrent term

  static ForwardScratch carve(Carver& cv, const SeqConfig& cfg, bool training) {
    const std::int64_t N = cfg.T * cfg.B, B = cfg.B, H = cfg.H;
    const std::int64_t GH = gate_count(cfg.cell) * H;
    ForwardScratch s;
    if (!training) s.gates = cv.take<S>(N * GH);
    s.gh = cv.take<S>(B * GH);
    s.h = cv.take<S>(B * H);
    if (cfg.cell == CellKind::lstm) s.c = cv.take<S>(B * H);
    if (cfg.cell == CellKind::gru_reset_before) s.rh = cv.take<S>(B * H);
    s.bias = cv.take<S>(GH);
    if (cfg.cell == CellKind::gru) s.bhn = cv.take<S>(H);
    return s;
  }
};

template <class S>
struct BackwardScratch {
  S* dgs = nullptr;           // (B, G*H): this step's recurrent dG, dense
  S* dh_a = nullptr;          // (B, H): carried dh (ping)
  S* dh_b = nullptr;          // (B, H): carried dh (pong)
  S* dc = nullptr;            // (B, H): LSTM carried dc
  S* drh = nullptr;           // (B, H): GRU reset-before gradient at r ⊙ h
  double* colsum = nullptr;   // (Wr): bias gradients, summed in double in row order

  static BackwardScratch carve(Carver& cv, const SeqConfig& cfg) {
    const std::int64_t B = cfg.B, H = cfg.H;
    const std::int64_t GH = gate_count(cfg.cell) * H;
    BackwardScratch s;
    s.dgs = cv.take<S>(B * GH);
    s.dh_a = cv.take<S>(B * H);
    s.dh_b = cv.take<S>(B * H);
    if (cfg.cell == CellKind::lstm) s.dc = cv.take<S>(B * H);
    if (cfg.cell == CellKind::gru_reset_before) s.drh = cv.take<S>(B * H);
    s.colsum = cv.take<double>(reserve_gate_width(cfg.cell, H));
    return s;
  }
};

}  // namespace fastseq::loops
