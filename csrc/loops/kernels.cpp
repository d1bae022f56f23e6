// libfastseq's kernel entry points: check the configuration and the buffers, then run the
// selected instruction-set variant (loops/dispatch.hpp) of the loops in loops/forward.hpp
// and loops/backward.hpp.
#include <climits>
#include <cstring>
#include <utility>
#include <stdexcept>
#include <string>

#include "cells/registry.hpp"
#include "fastseq/kernels.hpp"
#include "loops/layout.hpp"
#include "gemm/gemm.hpp"
#include "loops/dispatch.hpp"
#include "loops/reserve_header.hpp"

namespace fastseq {

int gate_count(CellKind cell) {
  const cells::CellInfo* c = cells::find_cell(cell);
  return c ? c->gates : 0;
}

const char* cell_name(CellKind cell) {
  const cells::CellInfo* c = cells::find_cell(cell);
  return c ? c->name : "unknown";
}

bool same_config(const SeqConfig& a, const SeqConfig& b) {
  return a.cell == b.cell && a.T == b.T && a.B == b.B && a.I == b.I && a.H == b.H && a.P == b.P &&
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
  if (cells::cell_info(cfg.cell).projected) {
    if (cfg.P < 1 || cfg.P >= cfg.H)
      fail(std::string(cell_name(cfg.cell)) + " needs a projection width 0 < P < H (got P=" +
           std::to_string(cfg.P) + ", H=" + std::to_string(cfg.H) + ")");
  } else if (cfg.P != 0) {
    fail(std::string(cell_name(cfg.cell)) + " has no projection: P must be 0 (got P=" +
         std::to_string(cfg.P) + ")");
  }
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

loops::tuning::Choices loops::forward_choices_now(const SeqConfig& cfg, std::size_t scalar_size) {
  validate_config(cfg);
  return loops::forward_choices(cfg, std::int64_t(scalar_size), selected_table().vec_bytes,
                                runtime::cache_sizes());
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
    if (lengths[b] < 0 || lengths[b] > cfg.T)
      fail("lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
           " is outside 0.." + std::to_string(cfg.T));
}

void check_alignment(const void* buffer, const char* name) {
  const auto address = reinterpret_cast<std::uintptr_t>(buffer);
  if (address % kBufferAlign != 0)
    throw AlignmentError(std::string(name) + " is at an address " +
                         std::to_string(address % kBufferAlign) + " bytes past a multiple of " +
                         std::to_string(kBufferAlign) + ": it must start on a multiple of " +
                         std::to_string(kBufferAlign) + " bytes (64 is fastest)");
}

[[noreturn]] void reserve_mismatch(const std::string& why) {
  throw ReserveError(ReserveError::Reason::mismatch, "reserve " + why);
}

std::string flag_names(std::uint32_t flags) {
  std::string s;
  for (auto [bit, name] : {std::pair{loops::kHasBias, "bias"},
                           std::pair{loops::kHasLengths, "lengths"},
                           std::pair{loops::kReverse, "reverse"}})
    if (flags & bit) s += (s.empty() ? "" : "|") + std::string(name);
  return s.empty() ? "none" : s;
}

// The reserve's header against this backward's configuration: everything that differs is
// named, "there" (the forward that wrote the reserve) against "here" (this call).
void check_header(const SeqConfig& cfg, std::size_t scalar_size, const void* reserve) {
  using namespace loops;
  const ReserveHeader got = read_header(reserve);
  const ReserveHeader want = make_header(cfg, scalar_size, kWritten);
  if (got.magic != kReserveMagic) {
    const ReserveHeader zero{};
    reserve_mismatch(std::memcmp(&got, &zero, sizeof got) == 0
                         ? "starts with zero bytes, not a reserve header: no training forward "
                           "wrote it"
                         : "does not start with a reserve header: no training forward wrote "
                           "it, or it was overwritten since");
  }
  if (got.checksum != header_checksum(got))
    reserve_mismatch("header is corrupt (its checksum does not match): it was overwritten "
                     "since the forward wrote it");
  if (got.version != kReserveVersion)
    reserve_mismatch("header has format version " + std::to_string(got.version) +
                     ", this library reads version " + std::to_string(kReserveVersion));
  if (got.state == kConsumed)
    throw ReserveError(ReserveError::Reason::consumed,
                       "reserve was already consumed by a backward call (backward overwrites "
                       "it with the gate gradients): run the training forward again");
  if (got.state != kWritten) reserve_mismatch("header has an unknown state");
  std::string diff;
  auto differ = [&](const char* field, const std::string& there, const std::string& here) {
    if (there != here)
      diff += std::string(diff.empty() ? "" : ", ") + field + " " + there + " there, " + here +
              " here";
  };
  auto cell = [](std::uint32_t c) {
    return cells::find_cell(CellKind(c)) ? std::string(cell_name(CellKind(c)))
                                         : "cell " + std::to_string(c);
  };
  auto dtype = [](std::uint32_t size) {
    return size == 4 ? std::string("float32") : size == 8 ? std::string("float64")
                                                          : std::to_string(size) + "-byte";
  };
  differ("cell", cell(got.cell), cell(want.cell));
  differ("dtype", dtype(got.scalar_size), dtype(want.scalar_size));
  differ("T", std::to_string(got.T), std::to_string(want.T));
  differ("B", std::to_string(got.B), std::to_string(want.B));
  differ("I", std::to_string(got.I), std::to_string(want.I));
  differ("H", std::to_string(got.H), std::to_string(want.H));
  differ("P", std::to_string(got.P), std::to_string(want.P));
  differ("options", flag_names(got.flags), flag_names(want.flags));
  if (!diff.empty())
    reserve_mismatch("was written by a forward of another configuration (" + diff + ")");
}

}  // namespace

template <class S>
void sequence_forward(const SeqConfig& cfg, bool training, const ForwardArgs<S>& a) {
  validate_config(cfg);
  const bool has_c = cells::cell_info(cfg.cell).states == 2;
  require(a.y && a.h_n && a.x && a.w_ih && a.w_hh, "a required forward buffer is null");
  require(!has_c || a.c_n, "c_n is null for an LSTM");
  require(!cfg.has_bias || (a.b_ih && a.b_hh), "b_ih/b_hh are null although has_bias");
  require(cfg.P == 0 || a.w_hr, "w_hr is null for a projected cell");
  check_lengths(cfg, a.lengths);
  if (training) {
    require(a.reserve != nullptr, "reserve is null in a training forward");
    check_alignment(a.reserve, "reserve");
    if (a.reserve_size != reserve_bytes(cfg, sizeof(S)))
      fail("reserve has " + std::to_string(a.reserve_size) + " bytes, this configuration needs " +
           std::to_string(reserve_bytes(cfg, sizeof(S))));
  }
  const std::size_t need = forward_scratch_bytes(cfg, sizeof(S), training);
  require(a.scratch != nullptr || need == 0, "scratch is null");
  check_alignment(a.scratch, "scratch");
  if (a.scratch_size < need)
    fail("scratch has " + std::to_string(a.scratch_size) + " bytes, needs " + std::to_string(need));

  // The header goes in last: until the planes are complete, the reserve is no reserve.
  if (training) loops::write_header(a.reserve, loops::ReserveHeader{});
  gemm::ensure_single_threaded();
  const loops::KernelTable& k = loops::selected_table();
  if constexpr (sizeof(S) == 4) k.forward_f(cfg, training, a);
  else k.forward_d(cfg, training, a);
  if (training) loops::write_header(a.reserve, loops::make_header(cfg, sizeof(S), loops::kWritten));
}

template <class S>
void sequence_backward(const SeqConfig& cfg, const BackwardArgs<S>& a) {
  validate_config(cfg);
  const bool has_c = cells::cell_info(cfg.cell).states == 2;
  // dx may be null: the input's gradient is not wanted (a first layer over data), and its
  // product, a third of the work after the loop, is skipped.
  require(a.dh0 && a.dw_ih && a.dw_hh && a.x && a.w_ih && a.w_hh && a.dy,
          "a required backward buffer is null");
  require(!has_c || a.dc0, "dc0 is null for an LSTM");
  require(!cfg.has_bias || (a.db_ih && a.db_hh), "db_ih/db_hh are null although has_bias");
  require(cfg.P == 0 || (a.w_hr && a.dw_hr), "w_hr or dw_hr is null for a projected cell");
  check_lengths(cfg, a.lengths);
  require(a.reserve != nullptr, "reserve is null");
  check_alignment(a.reserve, "reserve");
  if (a.reserve_size != reserve_bytes(cfg, sizeof(S)))
    fail("reserve has " + std::to_string(a.reserve_size) +
         " bytes, but this configuration's reserve has " +
         std::to_string(reserve_bytes(cfg, sizeof(S))) + ": it comes from another forward");
  check_header(cfg, sizeof(S), a.reserve);
  const std::size_t need = backward_scratch_bytes(cfg, sizeof(S));
  require(a.scratch != nullptr, "scratch is null");
  check_alignment(a.scratch, "scratch");
  if (a.scratch_size < need)
    fail("scratch has " + std::to_string(a.scratch_size) + " bytes, needs " + std::to_string(need));

  // From here on the reserve's planes become dG: a second backward must not read them.
  loops::write_header(a.reserve, loops::make_header(cfg, sizeof(S), loops::kConsumed));
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
