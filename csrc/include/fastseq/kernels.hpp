// fastseq's C++ kernel API: whole-sequence forward and backward for the RNN, LSTM and GRU,
// as exported by libfastseq.so. Callers (the pybind11 bindings, later the C ABI) own every
// buffer: kernels never allocate, and report bad configurations by throwing
// std::invalid_argument before touching any pointer.
//
// Conventions
// -----------
//   T  steps           B  batch           I  input size        H  hidden size
//   G  gates: 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n)   N = T*B rows
//   P  the LSTM projection's width (torch's proj_size; lstmp only, 0 < P < H), else 0.
//   Hs the state width: P with the projection, else H (state_width).
// - Row-major, time-major: x (T, B, I), y and dy (T, B, Hs); row (t, b) is at t*B + b.
// - Weights as PyTorch stores them: w_ih (G*H, I), w_hh (G*H, Hs), b_ih, b_hh (G*H,),
//   and with the projection w_hr (P, H): h = m·W_hrᵀ, m = o ⊙ tanh(c) (H wide); c stays H.
// - Sequence b has L_b = lengths[b] valid steps (0..T; every L_b = T without lengths).
//   Step s touches time t = s (forward) or t = L_b-1-s (reverse) while s < L_b; past its
//   length a sequence's state is frozen, y is zero and dy is ignored (L_b = 0: h_n = h0,
//   c_n = c0, y zero; backward: dh0 = dh_n, dc0 = dc_n, dx zero, no weight gradient).
// - No pointer may alias another unless stated. Pointers marked "optional" may be null.
// - reserve: written by a training forward, read and then consumed (overwritten) by the
//   one backward that follows. It opens with a 64-byte header (configuration, format
//   version, a consumed mark, a checksum) that backward checks before anything else: a
//   reserve of another configuration, an already consumed one, or bytes no forward wrote
//   throw ReserveError. scratch: lives within one call. Both are byte buffers of the sizes
//   the *_bytes queries return, starting on a multiple of kBufferAlign bytes (else
//   AlignmentError); 64-byte alignment is fastest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "fastseq/export.hpp"

namespace fastseq {

enum class CellKind : int {
  rnn_tanh = 0,
  rnn_relu = 1,
  lstm = 2,
  gru = 3,               // reset after the recurrent product (PyTorch, cuDNN)
  gru_reset_before = 4,  // reset before it (Cho et al., Keras reset_after=False)
  lstmp = 5,             // LSTM with a projection of h (torch's proj_size)
};

// Everything that fixes the sizes and the meaning of a reserve.
struct SeqConfig {
  CellKind cell = CellKind::lstm;
  std::int64_t T = 0, B = 0, I = 0, H = 0;
  std::int64_t P = 0;  // projection width: 0 < P < H for a projected cell, else 0
  bool has_bias = false;
  bool has_lengths = false;
  bool reverse = false;
};

// The width of the recurrent state h (and of y): P with a projection, else H.
inline std::int64_t state_width(const SeqConfig& cfg) { return cfg.P > 0 ? cfg.P : cfg.H; }

// reserve and scratch must start on a multiple of this many bytes: the planes are accessed
// as float or double in place, and the backward scratch holds double sums in float32 too.
// malloc, NumPy and the buffer pool all give at least this.
inline constexpr std::size_t kBufferAlign = 8;

// Every configuration or buffer error is a std::invalid_argument (the bindings' ValueError);
// the two subclasses below let the C ABI give these their own status codes.
//
// ReserveError: the reserve handed to backward was not written by a training forward of
// this configuration (mismatch: another configuration, a corrupt header or none), or a
// backward has consumed it already.
class FASTSEQ_API ReserveError : public std::invalid_argument {
 public:
  enum class Reason { mismatch, consumed };
  ReserveError(Reason reason, const std::string& what)
      : std::invalid_argument(what), reason_(reason) {}
  Reason reason() const { return reason_; }

 private:
  Reason reason_;
};

// AlignmentError: reserve or scratch does not start on a multiple of kBufferAlign bytes.
class FASTSEQ_API AlignmentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

FASTSEQ_API int gate_count(CellKind cell);
FASTSEQ_API const char* cell_name(CellKind cell);
FASTSEQ_API bool same_config(const SeqConfig& a, const SeqConfig& b);

// Throws std::invalid_argument unless every size is >= 1 and every product the kernels
// form fits the 32-bit BLAS interface.
FASTSEQ_API void validate_config(const SeqConfig& cfg);

FASTSEQ_API std::size_t reserve_bytes(const SeqConfig& cfg, std::size_t scalar_size);
FASTSEQ_API std::size_t forward_scratch_bytes(const SeqConfig& cfg, std::size_t scalar_size,
                                              bool training);
FASTSEQ_API std::size_t backward_scratch_bytes(const SeqConfig& cfg, std::size_t scalar_size);

template <class S>
struct ForwardArgs {
  // outputs
  S* y = nullptr;           // (T, B, Hs)
  S* h_n = nullptr;         // (B, Hs)
  S* c_n = nullptr;         // (B, H), LSTM only
  void* reserve = nullptr;  // reserve_bytes(cfg) bytes when training (header written last),
                            // else null
  // inputs
  const S* x = nullptr;                  // (T, B, I)
  const S* w_ih = nullptr;               // (G*H, I)
  const S* w_hh = nullptr;               // (G*H, Hs)
  const S* w_hr = nullptr;               // (P, H), iff cfg.P > 0
  const S* b_ih = nullptr;               // (G*H,), iff cfg.has_bias
  const S* b_hh = nullptr;               // (G*H,), iff cfg.has_bias
  const S* h0 = nullptr;                 // (B, Hs), optional (zeros)
  const S* c0 = nullptr;                 // (B, H), LSTM only, optional (zeros)
  const std::int64_t* lengths = nullptr; // (B,), iff cfg.has_lengths, values in 0..T
  // scratch
  void* scratch = nullptr;               // forward_scratch_bytes(cfg, sizeof(S), training)
  std::size_t reserve_size = 0;          // bytes at reserve (checked)
  std::size_t scratch_size = 0;          // bytes at scratch (checked)
};

template <class S>
struct BackwardArgs {
  // outputs: overwritten, except the parameter gradients dw_ih, dw_hh, dw_hr, db_ih, db_hh with
  // accumulate, which are added into (a layer's .grad: no temporary, no second pass; the
  // weight gradients' GEMMs run with beta = 1)
  bool accumulate = false;
  S* dx = nullptr;     // (T, B, I), or null: not wanted (skipped)
  S* dh0 = nullptr;    // (B, Hs)
  S* dc0 = nullptr;    // (B, H), LSTM only
  S* dw_ih = nullptr;  // (G*H, I)
  S* dw_hh = nullptr;  // (G*H, Hs)
  S* dw_hr = nullptr;  // (P, H), iff cfg.P > 0
  S* db_ih = nullptr;  // (G*H,), iff cfg.has_bias
  S* db_hh = nullptr;  // (G*H,), iff cfg.has_bias
  // inputs: the forward's own inputs, its reserve (consumed: overwritten with dG), and
  // the gradients arriving from above
  void* reserve = nullptr;               // in/out, reserve_bytes(cfg); its header marked
                                         // consumed
  const S* x = nullptr;                  // (T, B, I)
  const S* w_ih = nullptr;               // (G*H, I)
  const S* w_hh = nullptr;               // (G*H, Hs)
  const S* w_hr = nullptr;               // (P, H), iff cfg.P > 0
  const std::int64_t* lengths = nullptr; // (B,), iff cfg.has_lengths
  const S* dy = nullptr;                 // (T, B, Hs)
  const S* dh_n = nullptr;               // (B, Hs), optional (zeros)
  const S* dc_n = nullptr;               // (B, H), LSTM only, optional (zeros)
  void* scratch = nullptr;               // backward_scratch_bytes(cfg, sizeof(S))
  std::size_t reserve_size = 0;
  std::size_t scratch_size = 0;
};

// Run the whole sequence forward; with training, fill the reserve for backward (its header
// last, so a reserve whose forward did not finish is refused by backward). Throws
// std::invalid_argument (AlignmentError for reserve or scratch) before touching any pointer.
template <class S>
FASTSEQ_API void sequence_forward(const SeqConfig& cfg, bool training, const ForwardArgs<S>& a);

// Backward through the whole sequence: every gradient of the forward's inputs. Checks the
// arguments and the reserve's header (ReserveError naming what differs) before writing
// anything, then marks the header consumed and overwrites the reserve's planes with dG.
template <class S>
FASTSEQ_API void sequence_backward(const SeqConfig& cfg, const BackwardArgs<S>& a);

extern template FASTSEQ_API void sequence_forward<float>(const SeqConfig&, bool,
                                                         const ForwardArgs<float>&);
extern template FASTSEQ_API void sequence_forward<double>(const SeqConfig&, bool,
                                                          const ForwardArgs<double>&);
extern template FASTSEQ_API void sequence_backward<float>(const SeqConfig&,
                                                          const BackwardArgs<float>&);
extern template FASTSEQ_API void sequence_backward<double>(const SeqConfig&,
                                                           const BackwardArgs<double>&);

}  // namespace fastseq
