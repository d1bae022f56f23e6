// The C ABI of include/fastseq/fastseq.h over the C++ kernels of include/fastseq/kernels.hpp:
// argument checks with a status code and a thread-local message, scratch allocation when
// the caller passes none, and a catch-all so that no C++ exception crosses into C. No maths.
#include "fastseq/export.hpp"  // first: FASTSEQ_API exports the declarations of fastseq.h
#include "fastseq/fastseq.h"

#include <cstdarg>
#include <cstdio>
#include <exception>
#include <new>
#include <stdexcept>

#include "fastseq/kernels.hpp"
#include "runtime/buffer_pool.hpp"
#include "runtime/thread_pool.hpp"

#ifndef FASTSEQ_VERSION
#define FASTSEQ_VERSION "unknown"
#endif

namespace fastseq::capi {
namespace {

// A fixed buffer, not a std::string: setting the message never allocates, so it works
// while reporting an out-of-memory error, and the thread_local needs no destructor.
thread_local char t_message[1024];

void vset_message(const char* fn, const char* fmt, std::va_list args) {
  int n = std::snprintf(t_message, sizeof t_message, "%s: ", fn);
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof t_message) return;
  std::vsnprintf(t_message + n, sizeof t_message - n, fmt, args);
}

void set_message(const char* fn, const char* fmt, ...) {
  std::va_list args;
  va_start(args, fmt);
  vset_message(fn, fmt, args);
  va_end(args);
}

// Thrown by the checks once the message is set; turned into its code by guarded().
struct Failure {
  int code;
};

[[noreturn]] void fail(int code, const char* fn, const char* fmt, ...) {
  std::va_list args;
  va_start(args, fmt);
  vset_message(fn, fmt, args);
  va_end(args);
  throw Failure{code};
}

// Runs body, returning FASTSEQ_OK or the status of whatever it threw. Every entry point
// goes through here: nothing escapes, std::bad_alloc becomes FASTSEQ_ERR_OUT_OF_MEMORY.
template <class F>
int guarded(const char* fn, F&& body) noexcept {
  t_message[0] = '\0';
  try {
    body();
    return FASTSEQ_OK;
  } catch (const Failure& f) {
    return f.code;
  } catch (const std::bad_alloc&) {
    set_message(fn, "out of memory");
    return FASTSEQ_ERR_OUT_OF_MEMORY;
  } catch (const ReserveError& e) {  // the reserve's header, checked by sequence_backward
    set_message(fn, "%s", e.what());
    return e.reason() == ReserveError::Reason::consumed ? FASTSEQ_ERR_RESERVE_CONSUMED
                                                        : FASTSEQ_ERR_RESERVE_MISMATCH;
  } catch (const AlignmentError& e) {
    set_message(fn, "%s", e.what());
    return FASTSEQ_ERR_ALIGNMENT;
  } catch (const std::invalid_argument& e) {  // a kernel check these checks did not foresee
    set_message(fn, "%s", e.what());
    return FASTSEQ_ERR_ARGUMENT;
  } catch (const std::exception& e) {
    set_message(fn, "internal error: %s", e.what());
    return FASTSEQ_ERR_INTERNAL;
  } catch (...) {
    set_message(fn, "internal error: unknown exception");
    return FASTSEQ_ERR_INTERNAL;
  }
}

void require(const void* p, const char* fn, const char* name) {
  if (p == nullptr) fail(FASTSEQ_ERR_NULL_POINTER, fn, "%s is NULL", name);
}

bool flag(int value, const char* fn, const char* name) {
  if (value != 0 && value != 1)
    fail(FASTSEQ_ERR_ARGUMENT, fn, "%s must be 0 or 1, got %d", name, value);
  return value == 1;
}

static_assert(kBufferAlign == 8, "fastseq.h documents the 8-byte alignment of reserve and scratch");

static_assert(int(CellKind::rnn_tanh) == FASTSEQ_CELL_RNN_TANH &&
                  int(CellKind::rnn_relu) == FASTSEQ_CELL_RNN_RELU &&
                  int(CellKind::lstm) == FASTSEQ_CELL_LSTM && int(CellKind::gru) == FASTSEQ_CELL_GRU &&
                  int(CellKind::gru_reset_before) == FASTSEQ_CELL_GRU_RESET_BEFORE,
              "fastseq_cell must mirror fastseq::CellKind");

CellKind cell_of(int cell, const char* fn) {
  if (cell < FASTSEQ_CELL_RNN_TANH || cell > FASTSEQ_CELL_GRU_RESET_BEFORE)
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "cell = %d is not a fastseq_cell (FASTSEQ_CELL_RNN_TANH .. FASTSEQ_CELL_GRU_RESET_BEFORE "
         "= 0..4)",
         cell);
  return static_cast<CellKind>(cell);
}

std::size_t scalar_size_of(int dtype, const char* fn) {
  if (dtype == FASTSEQ_FLOAT32) return sizeof(float);
  if (dtype == FASTSEQ_FLOAT64) return sizeof(double);
  fail(FASTSEQ_ERR_ARGUMENT, fn,
       "dtype = %d is not a fastseq_dtype (FASTSEQ_FLOAT32 = 1, FASTSEQ_FLOAT64 = 2)", dtype);
}

enum class Family { rnn, lstm, gru };

// The cell of a call: fixed by the function's name, and for the RNN and the GRU by its flag.
CellKind cell_of(Family family, int kind_flag, const char* fn) {
  switch (family) {
    case Family::rnn: return flag(kind_flag, fn, "relu") ? CellKind::rnn_relu : CellKind::rnn_tanh;
    case Family::gru:
      return flag(kind_flag, fn, "reset_after") ? CellKind::gru : CellKind::gru_reset_before;
    case Family::lstm: break;
  }
  return CellKind::lstm;
}

SeqConfig config(const char* fn, CellKind cell, std::int64_t T, std::int64_t B, std::int64_t I,
                 std::int64_t H) {
  SeqConfig cfg;
  cfg.cell = cell;
  cfg.T = T;
  cfg.B = B;
  cfg.I = I;
  cfg.H = H;
  try {
    validate_config(cfg);
  } catch (const std::invalid_argument& e) {
    fail(FASTSEQ_ERR_SIZE, fn, "%s", e.what());
  }
  return cfg;
}

// The configuration a size query describes: cell, sizes and the fastseq_option flags.
SeqConfig query_config(const char* fn, int cell, std::int64_t T, std::int64_t B, std::int64_t I,
                       std::int64_t H, int flags) {
  constexpr int known = FASTSEQ_BIAS | FASTSEQ_LENGTHS | FASTSEQ_REVERSE;
  if (flags & ~known)
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "flags = %d has bits that are no fastseq_option (FASTSEQ_BIAS | FASTSEQ_LENGTHS | "
         "FASTSEQ_REVERSE = %d)",
         flags, known);
  SeqConfig cfg = config(fn, cell_of(cell, fn), T, B, I, H);
  cfg.has_bias = (flags & FASTSEQ_BIAS) != 0;
  cfg.has_lengths = (flags & FASTSEQ_LENGTHS) != 0;
  cfg.reverse = (flags & FASTSEQ_REVERSE) != 0;
  return cfg;
}

void check_lengths(const char* fn, const SeqConfig& cfg, const std::int64_t* lengths) {
  if (lengths == nullptr) return;
  for (std::int64_t b = 0; b < cfg.B; ++b)
    if (lengths[b] < 0 || lengths[b] > cfg.T)
      fail(FASTSEQ_ERR_LENGTHS, fn, "lengths[%lld] = %lld is outside 0..T = 0..%lld",
           static_cast<long long>(b), static_cast<long long>(lengths[b]),
           static_cast<long long>(cfg.T));
}

void check_reserve(const char* fn, const SeqConfig& cfg, std::size_t scalar, const unsigned char* reserve,
                   std::size_t reserve_size) {
  require(reserve, fn, "reserve");
  const std::size_t need = reserve_bytes(cfg, scalar);
  if (reserve_size != need)
    fail(FASTSEQ_ERR_RESERVE_SIZE, fn,
         "reserve_size = %zu bytes, but this configuration's reserve is %zu bytes "
         "(fastseq_reserve_bytes)",
         reserve_size, need);
}

// The caller's scratch, checked; or, with scratch_size == 0, one for this call from the
// buffer pool (runtime/buffer_pool.hpp).
struct Scratch {
  runtime::PooledBuffer owned;
  void* data = nullptr;
  std::size_t size = 0;

  Scratch(const char* fn, unsigned char* scratch, std::size_t scratch_size, std::size_t need,
          const char* query) {
    if (scratch_size == 0) {
      try {
        owned = runtime::PooledBuffer(need);
      } catch (const std::bad_alloc&) {
        fail(FASTSEQ_ERR_OUT_OF_MEMORY, fn,
             "cannot allocate the %zu-byte scratch (pass scratch and scratch_size to avoid the "
             "allocation)",
             need);
      }
      data = owned.data();
      size = owned.size();
      return;
    }
    require(scratch, fn, "scratch");
    if (scratch_size < need)
      fail(FASTSEQ_ERR_SCRATCH_SIZE, fn,
           "scratch_size = %zu bytes, this configuration needs at least %zu (%s), or pass 0 "
           "to have the call allocate it",
           scratch_size, need, query);
    data = scratch;
    size = scratch_size;
  }
};

template <class S>
int forward(const char* fn, Family family, int kind_flag, S* y, S* h_n, S* c_n, unsigned char* reserve,
            std::size_t reserve_size, const S* x, const S* w_ih, const S* w_hh, const S* b_ih,
            const S* b_hh, const S* h0, const S* c0, const std::int64_t* lengths, unsigned char* scratch,
            std::size_t scratch_size, std::int64_t T, std::int64_t B, std::int64_t I,
            std::int64_t H, int reverse) {
  return guarded(fn, [&] {
    const CellKind cell = cell_of(family, kind_flag, fn);
    SeqConfig cfg = config(fn, cell, T, B, I, H);
    cfg.reverse = flag(reverse, fn, "reverse");
    const bool lstm = cell == CellKind::lstm;
    require(y, fn, "y");
    require(h_n, fn, "h_n");
    if (lstm) require(c_n, fn, "c_n");
    require(x, fn, "x");
    require(w_ih, fn, "w_ih");
    require(w_hh, fn, "w_hh");
    if ((b_ih == nullptr) != (b_hh == nullptr))
      fail(FASTSEQ_ERR_NULL_POINTER, fn, "%s is NULL but %s is not: pass both biases or neither",
           b_ih ? "b_hh" : "b_ih", b_ih ? "b_ih" : "b_hh");
    cfg.has_bias = b_ih != nullptr;
    cfg.has_lengths = lengths != nullptr;
    check_lengths(fn, cfg, lengths);
    const bool training = reserve_size != 0;
    if (training) check_reserve(fn, cfg, sizeof(S), reserve, reserve_size);
    Scratch s(fn, scratch, scratch_size, forward_scratch_bytes(cfg, sizeof(S), training),
              "fastseq_forward_scratch_bytes");

    ForwardArgs<S> a;
    a.y = y;
    a.h_n = h_n;
    a.c_n = lstm ? c_n : nullptr;
    a.reserve = training ? reserve : nullptr;
    a.reserve_size = training ? reserve_size : 0;
    a.x = x;
    a.w_ih = w_ih;
    a.w_hh = w_hh;
    a.b_ih = b_ih;
    a.b_hh = b_hh;
    a.h0 = h0;
    a.c0 = lstm ? c0 : nullptr;
    a.lengths = lengths;
    a.scratch = s.data;
    a.scratch_size = s.size;
    sequence_forward<S>(cfg, training, a);
  });
}

template <class S>
int backward(const char* fn, Family family, int kind_flag, S* dx, S* dh0, S* dc0, S* dw_ih, S* dw_hh, S* db_ih,
             S* db_hh, unsigned char* reserve, std::size_t reserve_size, const S* x, const S* w_ih,
             const S* w_hh, const std::int64_t* lengths, const S* dy, const S* dh_n,
             const S* dc_n, unsigned char* scratch, std::size_t scratch_size, std::int64_t T,
             std::int64_t B, std::int64_t I, std::int64_t H, int reverse) {
  return guarded(fn, [&] {
    const CellKind cell = cell_of(family, kind_flag, fn);
    SeqConfig cfg = config(fn, cell, T, B, I, H);
    cfg.reverse = flag(reverse, fn, "reverse");
    const bool lstm = cell == CellKind::lstm;
    require(dx, fn, "dx");
    require(dh0, fn, "dh0");
    if (lstm) require(dc0, fn, "dc0");
    require(dw_ih, fn, "dw_ih");
    require(dw_hh, fn, "dw_hh");
    if ((db_ih == nullptr) != (db_hh == nullptr))
      fail(FASTSEQ_ERR_NULL_POINTER, fn,
           "%s is NULL but %s is not: pass both bias gradients (the forward had biases) or "
           "neither",
           db_ih ? "db_hh" : "db_ih", db_ih ? "db_ih" : "db_hh");
    require(x, fn, "x");
    require(w_ih, fn, "w_ih");
    require(w_hh, fn, "w_hh");
    require(dy, fn, "dy");
    cfg.has_bias = db_ih != nullptr;
    cfg.has_lengths = lengths != nullptr;
    check_lengths(fn, cfg, lengths);
    check_reserve(fn, cfg, sizeof(S), reserve, reserve_size);
    Scratch s(fn, scratch, scratch_size, backward_scratch_bytes(cfg, sizeof(S)),
              "fastseq_backward_scratch_bytes");

    BackwardArgs<S> a;
    a.dx = dx;
    a.dh0 = dh0;
    a.dc0 = lstm ? dc0 : nullptr;
    a.dw_ih = dw_ih;
    a.dw_hh = dw_hh;
    a.db_ih = db_ih;
    a.db_hh = db_hh;
    a.reserve = reserve;
    a.reserve_size = reserve_size;
    a.x = x;
    a.w_ih = w_ih;
    a.w_hh = w_hh;
    a.lengths = lengths;
    a.dy = dy;
    a.dh_n = dh_n;
    a.dc_n = lstm ? dc_n : nullptr;
    a.scratch = s.data;
    a.scratch_size = s.size;
    sequence_backward<S>(cfg, a);
  });
}

}  // namespace
}  // namespace fastseq::capi

using fastseq::CellKind;
using namespace fastseq::capi;  // NOLINT: this file's own helpers

extern "C" {

FASTSEQ_API const char* fastseq_version(void) { return FASTSEQ_VERSION; }

FASTSEQ_API const char* fastseq_last_error(void) { return t_message; }

FASTSEQ_API int fastseq_get_num_threads(void) { return fastseq::runtime::num_threads(); }

FASTSEQ_API int fastseq_set_num_threads(int n) {
  const char* fn = "fastseq_set_num_threads";
  return guarded(fn, [&] {
    if (n < 1 || n > 4096)
      fail(FASTSEQ_ERR_ARGUMENT, fn, "n = %d: the thread count must be in 1..4096", n);
    fastseq::runtime::set_num_threads(n);
  });
}

FASTSEQ_API int fastseq_reserve_bytes(size_t* bytes, int cell, int dtype, int64_t T, int64_t B,
                                      int64_t I, int64_t H, int flags) {
  const char* fn = "fastseq_reserve_bytes";
  return guarded(fn, [&] {
    require(bytes, fn, "bytes");
    const std::size_t scalar = scalar_size_of(dtype, fn);
    *bytes = fastseq::reserve_bytes(query_config(fn, cell, T, B, I, H, flags), scalar);
  });
}

FASTSEQ_API int fastseq_forward_scratch_bytes(size_t* bytes, int cell, int dtype, int64_t T,
                                              int64_t B, int64_t I, int64_t H, int flags,
                                              int training) {
  const char* fn = "fastseq_forward_scratch_bytes";
  return guarded(fn, [&] {
    require(bytes, fn, "bytes");
    const std::size_t scalar = scalar_size_of(dtype, fn);
    const bool train = flag(training, fn, "training");
    *bytes = fastseq::forward_scratch_bytes(query_config(fn, cell, T, B, I, H, flags), scalar,
                                            train);
  });
}

FASTSEQ_API int fastseq_backward_scratch_bytes(size_t* bytes, int cell, int dtype, int64_t T,
                                               int64_t B, int64_t I, int64_t H, int flags) {
  const char* fn = "fastseq_backward_scratch_bytes";
  return guarded(fn, [&] {
    require(bytes, fn, "bytes");
    const std::size_t scalar = scalar_size_of(dtype, fn);
    *bytes = fastseq::backward_scratch_bytes(query_config(fn, cell, T, B, I, H, flags), scalar);
  });
}

// The twelve kernels, generated: each only names its cell family and scalar type.
#define FASTSEQ_RNN_LIKE(FAMILY, FLAG, S, FORWARD, BACKWARD)                                  \
  FASTSEQ_API int FORWARD(S* y, S* h_n, unsigned char* reserve, size_t reserve_size, const S* x,       \
                          const S* w_ih, const S* w_hh, const S* b_ih, const S* b_hh,         \
                          const S* h0, const int64_t* lengths, unsigned char* scratch,                 \
                          size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H,    \
                          int reverse, int FLAG) {                                            \
    return forward<S>(#FORWARD, Family::FAMILY, FLAG, y, h_n, nullptr, reserve, reserve_size, \
                      x, w_ih, w_hh, b_ih, b_hh, h0, nullptr, lengths, scratch, scratch_size, \
                      T, B, I, H, reverse);                                                   \
  }                                                                                           \
  FASTSEQ_API int BACKWARD(S* dx, S* dh0, S* dw_ih, S* dw_hh, S* db_ih, S* db_hh,             \
                           unsigned char* reserve, size_t reserve_size, const S* x, const S* w_ih,     \
                           const S* w_hh, const int64_t* lengths, const S* dy, const S* dh_n, \
                           unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B,          \
                           int64_t I, int64_t H, int reverse, int FLAG) {                     \
    return backward<S>(#BACKWARD, Family::FAMILY, FLAG, dx, dh0, nullptr, dw_ih, dw_hh,       \
                       db_ih, db_hh, reserve, reserve_size, x, w_ih, w_hh, lengths, dy, dh_n, \
                       nullptr, scratch, scratch_size, T, B, I, H, reverse);                  \
  }

#define FASTSEQ_LSTM(S, FORWARD, BACKWARD)                                                    \
  FASTSEQ_API int FORWARD(S* y, S* h_n, S* c_n, unsigned char* reserve, size_t reserve_size,           \
                          const S* x, const S* w_ih, const S* w_hh, const S* b_ih,            \
                          const S* b_hh, const S* h0, const S* c0, const int64_t* lengths,    \
                          unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B,           \
                          int64_t I, int64_t H, int reverse) {                                \
    return forward<S>(#FORWARD, Family::lstm, 0, y, h_n, c_n, reserve, reserve_size, x, w_ih, \
                      w_hh, b_ih, b_hh, h0, c0, lengths, scratch, scratch_size, T, B, I, H,   \
                      reverse);                                                               \
  }                                                                                           \
  FASTSEQ_API int BACKWARD(S* dx, S* dh0, S* dc0, S* dw_ih, S* dw_hh, S* db_ih, S* db_hh,     \
                           unsigned char* reserve, size_t reserve_size, const S* x, const S* w_ih,     \
                           const S* w_hh, const int64_t* lengths, const S* dy, const S* dh_n, \
                           const S* dc_n, unsigned char* scratch, size_t scratch_size, int64_t T,      \
                           int64_t B, int64_t I, int64_t H, int reverse) {                    \
    return backward<S>(#BACKWARD, Family::lstm, 0, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh,  \
                       reserve, reserve_size, x, w_ih, w_hh, lengths, dy, dh_n, dc_n,         \
                       scratch, scratch_size, T, B, I, H, reverse);                           \
  }

FASTSEQ_RNN_LIKE(rnn, relu, float, fastseq_rnn_forward_f32, fastseq_rnn_backward_f32)
FASTSEQ_RNN_LIKE(rnn, relu, double, fastseq_rnn_forward_f64, fastseq_rnn_backward_f64)
FASTSEQ_RNN_LIKE(gru, reset_after, float, fastseq_gru_forward_f32, fastseq_gru_backward_f32)
FASTSEQ_RNN_LIKE(gru, reset_after, double, fastseq_gru_forward_f64, fastseq_gru_backward_f64)
FASTSEQ_LSTM(float, fastseq_lstm_forward_f32, fastseq_lstm_backward_f32)
FASTSEQ_LSTM(double, fastseq_lstm_forward_f64, fastseq_lstm_backward_f64)

}  // extern "C"
