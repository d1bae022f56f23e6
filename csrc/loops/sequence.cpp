// libfastseq's kernel entry points: check the configuration and the buffers, then run the
// selected instruction-set variant (loops/dispatch.hpp) of the loops in loops/sequence.hpp.
#include <climits>
#include <stdexcept>
#include <string>

#include "fastseq/kernels.hpp"
#include "loops/layout.hpp"
#include "gemm/gemm.hpp"
#include "loops/dispatch.hpp"

namespace fastseq {

int gate_count(CellKind cell) {
  switch (cell) {
    case CellKind::rnn_tanh:
    case CellKind::rnn_relu: return 1;
    case CellKind::lstm: return 4;
    case CellKind::gru:
    case CellKind::gru_reset_before: return 3;
  }
  return 0;
}

const char* cell_name(CellKind cell) {
  switch (cell) {
    case CellKind::rnn_tanh: return "rnn_tanh";
    case CellKind::rnn_relu: return "rnn_relu";
    case CellKind::lstm: return "lstm";
    case CellKind::gru: return "gru";
    case CellKind::gru_reset_before: return "gru_reset_before";
  }
  return "unknown";
}

bool same_config(const SeqConfig& a, const SeqConfig& b) {
  return a.cell == b.cell && a.T == b.T && a.B == b.B && a.I == b.I && a.H == b.H &&
         a.has_bias == b.has_bias && a.has_lengths == b.has_lengths && a.reverse == b.reverse;
}

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

}  // namespace

void validate_config(const SeqConfig& cfg) {
  if (gate_count(cfg.cell) == 0) fail("unknown cell kind");
  if (cfg.T < 1 || cfg.B < 1 || cfg.I < 1 || cfg.H < 1)
    fail("T, B, I and H must all be >= 1 (got T=" + std::to_string(cfg.T) +
         ", B=" + std::to_string(cfg.B) + ", I=" + std::to_string(cfg.I) +
         ", H=" + std::to_string(cfg.H) + ")");
  // Every GEMM dimension and leading dimension must fit OpenBLAS's 32-bit blasint, and
  // every byte count a size_t.
  constexpr std::int64_t kMax = INT_MAX;
  if (cfg.T > kMax || cfg.B > kMax || cfg.I > kMax || cfg.H > kMax / 4 ||
      cfg.T * cfg.B > kMax)
    fail("sizes too large for the 32-bit BLAS interface (T*B, I and 4*H must be < 2^31)");
  // The largest plane is (T*B) x max(4H, I) scalars of at most 8 bytes.
  const std::int64_t width = cfg.I > 4 * cfg.H ? cfg.I : 4 * cfg.H;
  if (cfg.T * cfg.B > (std::int64_t(1) << 58) / width)
    fail("sizes too large: the buffers would not fit in memory");
}

std::size_t reserve_bytes(const SeqConfig& cfg, std::size_t scalar_size) {
  validate_config(cfg);
  Carver cv;
  if (scalar_size == 4)
    loops::ReservePlanes<float>::carve(cv, cfg);
  else
    loops::ReservePlanes<double>::carve(cv, cfg);
  return cv.used();
}

std::size_t forward_scratch_bytes(const SeqConfig& cfg, std::size_t scalar_size, bool training) {
  validate_config(cfg);
  Carver cv;
  if (scalar_size == 4)
    loops::ForwardScratch<float>::carve(cv, cfg, training);
  else
    loops::ForwardScratch<double>::carve(cv, cfg, training);
  return cv.used();
}

std::size_t backward_scratch_bytes(const SeqConfig& cfg, std::size_t scalar_size) {
  validate_config(cfg);
  Carver cv;
  if (scalar_size == 4)
    loops::BackwardScratch<float>::carve(cv, cfg);
  else
    loops::BackwardScratch<double>::carve(cv, cfg);
  return cv.used();
}

namespace {

void check_lengths(const SeqConfig& cfg, const std::int64_t* lengths) {
  if (!cfg.has_lengths) return;
  require(lengths != nullptr, "lengths is null although the configuration has lengths");
  for (std::int64_t b = 0; b < cfg.B; ++b)
    if (lengths[b] < 1 || lengths[b] > cfg.T)
      fail("lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
           " is outside 1.." + std::to_string(cfg.T));
}


}  // namespace

template <class S>
void sequence_forward(const SeqConfig& cfg, bool training, const ForwardArgs<S>& a) {
  validate_config(cfg);
  const bool lstm = cfg.cell == CellKind::lstm;
  require(a.y && a.h_n && a.x && a.w_ih && a.w_hh, "a required forward buffer is null");
  require(!lstm || a.c_n, "c_n is null for an LSTM");
  require(!cfg.has_bias || (a.b_ih && a.b_hh), "b_ih/b_hh are null although has_bias");
  check_lengths(cfg, a.lengths);
  if (training) {
    require(a.reserve != nullptr, "reserve is null in a training forward");
    if (a.reserve_size != reserve_bytes(cfg, sizeof(S)))
      fail("reserve has " + std::to_string(a.reserve_size) + " bytes, this configuration needs " +
           std::to_string(reserve_bytes(cfg, sizeof(S))));
  }
  const std::size_t need = forward_scratch_bytes(cfg, sizeof(S), training);
  require(a.scratch != nullptr || need == 0, "scratch is null");
  if (a.scratch_size < need)
    fail("scratch has " + std::to_string(a.scratch_size) + " bytes, needs " + std::to_string(need));

  gemm::ensure_single_threaded();
  const loops::KernelTable& k = loops::selected_table();
  if constexpr (sizeof(S) == 4) k.forward_f(cfg, training, a);
  else k.forward_d(cfg, training, a);
}

template <class S>
void sequence_backward(const SeqConfig& cfg, const BackwardArgs<S>& a) {
  validate_config(cfg);
  const bool lstm = cfg.cell == CellKind::lstm;
  require(a.dx && a.dh0 && a.dw_ih && a.dw_hh && a.x && a.w_ih && a.w_hh && a.dy,
          "a required backward buffer is null");
  require(!lstm || a.dc0, "dc0 is null for an LSTM");
  require(!cfg.has_bias || (a.db_ih && a.db_hh), "db_ih/db_hh are null although has_bias");
  check_lengths(cfg, a.lengths);
  require(a.reserve != nullptr, "reserve is null");
  if (a.reserve_size != reserve_bytes(cfg, sizeof(S)))
    fail("reserve has " + std::to_string(a.reserve_size) +
         " bytes, but this configuration's reserve has " +
         std::to_string(reserve_bytes(cfg, sizeof(S))) + ": it comes from another forward");
  const std::size_t need = backward_scratch_bytes(cfg, sizeof(S));
  require(a.scratch != nullptr, "scratch is null");
  if (a.scratch_size < need)
    fail("scratch has " + std::to_string(a.scratch_size) + " bytes, needs " + std::to_string(need));

  gemm::ensure_single_threaded();
  const loops::KernelTable& k = loops::selected_table();
  if constexpr (sizeof(S) == 4) k.backward_f(cfg, a);
  else k.backward_d(cfg, a);
}

template FASTSEQ_API void sequence_forward<float>(const SeqConfig&, bool, const ForwardArgs<float>&);
template FASTSEQ_API void sequence_forward<double>(const SeqConfig&, bool,
                                                   const ForwardArgs<double>&);
template FASTSEQ_API void sequence_backward<float>(const SeqConfig&, const BackwardArgs<float>&);
template FASTSEQ_API void sequence_backward<double>(const SeqConfig&, const BackwardArgs<double>&);

}  // namespace fastseq
