// The C ABI of include/fastseq/fastseq.h over the C++ kernels of include/fastseq/kernels.hpp:
// argument checks with a status code and a thread-local message, scratch allocation when
// the caller passes none, and a catch-all so that no C++ exception crosses into C. No maths.
#include "fastseq/export.hpp"  // first: FASTSEQ_API exports the declarations of fastseq.h
#include "fastseq/fastseq.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <new>
#include <stdexcept>

#include "cells/registry.hpp"
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
                  int(CellKind::gru_reset_before) == FASTSEQ_CELL_GRU_RESET_BEFORE &&
                  int(CellKind::lstmp) == FASTSEQ_CELL_LSTMP,
              "fastseq_cell must mirror fastseq::CellKind");

CellKind cell_of(int cell, const char* fn) {
  if (cell < FASTSEQ_CELL_RNN_TANH || cell > FASTSEQ_CELL_LSTMP)
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "cell = %d is not a fastseq_cell (FASTSEQ_CELL_RNN_TANH .. FASTSEQ_CELL_LSTMP = 0..5)",
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
                 std::int64_t H, std::int64_t P = 0) {
  SeqConfig cfg;
  cfg.cell = cell;
  cfg.T = T;
  cfg.B = B;
  cfg.I = I;
  cfg.H = H;
  cfg.P = P;
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
  const CellKind kind = cell_of(cell, fn);
  if (cells::cell_info(kind).projected)
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "cell = %d (%s) has a projection, whose width P these queries cannot take: ask "
         "fastseq_buffer_bytes with opts->proj_size",
         cell, cell_name(kind));
  SeqConfig cfg = config(fn, kind, T, B, I, H);
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

// The options of a generic call, read as far as the caller's struct_size covers and
// checked; the configuration they describe (cell, sizes, P, flags).
struct Options {
  SeqConfig cfg;
  std::size_t scalar = 0;
  bool accumulate = false;
};

Options read_options(const char* fn, int cell, const fastseq_options* opts) {
  require(opts, fn, "opts");
  fastseq_options o{};
  const std::size_t size = opts->struct_size;
  if (size < sizeof(fastseq_options))
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "opts->struct_size = %zu is smaller than this version's fastseq_options (%zu "
         "bytes): set it to sizeof(fastseq_options)",
         size, sizeof(fastseq_options));
  std::memcpy(&o, opts, sizeof o);
  // A newer caller's struct: the fields this library does not know must be zero (unset).
  const unsigned char* extra = reinterpret_cast<const unsigned char*>(opts) + sizeof o;
  for (std::size_t i = 0; i < size - sizeof o; ++i)
    if (extra[i] != 0)
      fail(FASTSEQ_ERR_ARGUMENT, fn,
           "opts sets options this library (C API version %d) does not know: byte %zu of "
           "its %zu is not zero",
           FASTSEQ_C_API_VERSION, sizeof o + i, size);
  Options out;
  out.scalar = scalar_size_of(o.dtype, fn);
  constexpr int known = FASTSEQ_BIAS | FASTSEQ_LENGTHS | FASTSEQ_REVERSE;
  if (o.flags & ~known)
    fail(FASTSEQ_ERR_ARGUMENT, fn,
         "opts->flags = %d has bits that are no fastseq_option (FASTSEQ_BIAS | "
         "FASTSEQ_LENGTHS | FASTSEQ_REVERSE = %d)",
         o.flags, known);
  out.accumulate = flag(o.accumulate, fn, "opts->accumulate");
  out.cfg = config(fn, cell_of(cell, fn), o.T, o.B, o.I, o.H, o.proj_size);
  out.cfg.has_bias = (o.flags & FASTSEQ_BIAS) != 0;
  out.cfg.has_lengths = (o.flags & FASTSEQ_LENGTHS) != 0;
  out.cfg.reverse = (o.flags & FASTSEQ_REVERSE) != 0;
  return out;
}

// Whether what the call gives (biases, lengths) is what its options say.
void check_given(const char* fn, const SeqConfig& cfg, bool bias, bool lengths,
                 const char* bias_names) {
  if (bias != cfg.has_bias)
    fail(FASTSEQ_ERR_ARGUMENT, fn, "%s %s given but opts->flags %s FASTSEQ_BIAS", bias_names,
         bias ? "are" : "are not", cfg.has_bias ? "has" : "lacks");
  if (lengths != cfg.has_lengths)
    fail(FASTSEQ_ERR_ARGUMENT, fn, "lengths is %s but opts->flags %s FASTSEQ_LENGTHS",
         lengths ? "given" : "NULL", cfg.has_lengths ? "has" : "lacks");
}

// A cell's parameter (or gradient) pointers by role: the weights, w_hr (projected), biases.
template <class P>
struct Params {
  P w_ih = nullptr, w_hh = nullptr, w_hr = nullptr, b_ih = nullptr, b_hh = nullptr;

  // From an array in the cell's parameter order (cells/registry.hpp: parameter_name).
  template <class Q>
  static Params from(const cells::CellInfo& info, Q const* a) {
    Params p;
    for (int i = 0; i < cells::parameter_count(info); ++i) {
      const std::string name = cells::parameter_name(info, i);
      P v = static_cast<P>(a[i]);
      if (name == "w_ih") p.w_ih = v;
      else if (name == "w_hh") p.w_hh = v;
      else if (name == "w_hr") p.w_hr = v;
      else if (name == "b_ih") p.b_ih = v;
      else p.b_hh = v;
    }
    return p;
  }
};

// Both calls, generic or per family, after their own checks: cfg has the sizes, P, the
// direction and (from the options, which the per-family functions derive from their
// pointers) whether biases and lengths are given.
template <class S>
void forward_call(const char* fn, const SeqConfig& cfg, S* y, S* h_n, S* c_n,
                  unsigned char* reserve, std::size_t reserve_size, const S* x,
                  const Params<const S*>& w, const S* h0, const S* c0,
                  const std::int64_t* lengths, unsigned char* scratch,
                  std::size_t scratch_size) {
  const cells::CellInfo& info = cells::cell_info(cfg.cell);
  const bool has_c = info.states == 2;
  require(y, fn, "y");
  require(h_n, fn, "h_n");
  if (has_c) require(c_n, fn, "c_n");
  require(x, fn, "x");
  require(w.w_ih, fn, "w_ih");
  require(w.w_hh, fn, "w_hh");
  if (info.projected) require(w.w_hr, fn, "w_hr");
  if ((w.b_ih == nullptr) != (w.b_hh == nullptr))
    fail(FASTSEQ_ERR_NULL_POINTER, fn, "%s is NULL but %s is not: pass both biases or neither",
         w.b_ih ? "b_hh" : "b_ih", w.b_ih ? "b_ih" : "b_hh");
  check_given(fn, cfg, w.b_ih != nullptr, lengths != nullptr, "b_ih and b_hh");
  check_lengths(fn, cfg, lengths);
  const bool training = reserve_size != 0;
  if (training) check_reserve(fn, cfg, sizeof(S), reserve, reserve_size);
  Scratch s(fn, scratch, scratch_size, forward_scratch_bytes(cfg, sizeof(S), training),
            "fastseq_forward_scratch_bytes");

  ForwardArgs<S> a;
  a.y = y;
  a.h_n = h_n;
  a.c_n = has_c ? c_n : nullptr;
  a.reserve = training ? reserve : nullptr;
  a.reserve_size = training ? reserve_size : 0;
  a.x = x;
  a.w_ih = w.w_ih;
  a.w_hh = w.w_hh;
  a.w_hr = info.projected ? w.w_hr : nullptr;
  a.b_ih = w.b_ih;
  a.b_hh = w.b_hh;
  a.h0 = h0;
  a.c0 = has_c ? c0 : nullptr;
  a.lengths = lengths;
  a.scratch = s.data;
  a.scratch_size = s.size;
  sequence_forward<S>(cfg, training, a);
}

template <class S>
void backward_call(const char* fn, const SeqConfig& cfg, bool accumulate, S* dx, S* dh0,
                   S* dc0, const Params<S*>& d, unsigned char* reserve,
                   std::size_t reserve_size, const S* x, const Params<const S*>& w,
                   const std::int64_t* lengths, const S* dy, const S* dh_n, const S* dc_n,
                   unsigned char* scratch, std::size_t scratch_size) {
  const cells::CellInfo& info = cells::cell_info(cfg.cell);
  const bool has_c = info.states == 2;
  require(dx, fn, "dx");
  require(dh0, fn, "dh0");
  if (has_c) require(dc0, fn, "dc0");
  require(d.w_ih, fn, "dw_ih");
  require(d.w_hh, fn, "dw_hh");
  if (info.projected) require(d.w_hr, fn, "dw_hr");
  if ((d.b_ih == nullptr) != (d.b_hh == nullptr))
    fail(FASTSEQ_ERR_NULL_POINTER, fn,
         "%s is NULL but %s is not: pass both bias gradients (the forward had biases) or "
         "neither",
         d.b_ih ? "db_hh" : "db_ih", d.b_ih ? "db_ih" : "db_hh");
  require(x, fn, "x");
  require(w.w_ih, fn, "w_ih");
  require(w.w_hh, fn, "w_hh");
  if (info.projected) require(w.w_hr, fn, "w_hr");
  require(dy, fn, "dy");
  check_given(fn, cfg, d.b_ih != nullptr, lengths != nullptr, "db_ih and db_hh");
  check_lengths(fn, cfg, lengths);
  check_reserve(fn, cfg, sizeof(S), reserve, reserve_size);
  Scratch s(fn, scratch, scratch_size, backward_scratch_bytes(cfg, sizeof(S)),
            "fastseq_backward_scratch_bytes");

  BackwardArgs<S> a;
  a.accumulate = accumulate;
  a.dx = dx;
  a.dh0 = dh0;
  a.dc0 = has_c ? dc0 : nullptr;
  a.dw_ih = d.w_ih;
  a.dw_hh = d.w_hh;
  a.dw_hr = info.projected ? d.w_hr : nullptr;
  a.db_ih = d.b_ih;
  a.db_hh = d.b_hh;
  a.reserve = reserve;
  a.reserve_size = reserve_size;
  a.x = x;
  a.w_ih = w.w_ih;
  a.w_hh = w.w_hh;
  a.w_hr = info.projected ? w.w_hr : nullptr;
  a.lengths = lengths;
  a.dy = dy;
  a.dh_n = dh_n;
  a.dc_n = has_c ? dc_n : nullptr;
  a.scratch = s.data;
  a.scratch_size = s.size;
  sequence_backward<S>(cfg, a);
}

// The per-family functions: their switches and pointers as the generic call's options.
SeqConfig family_config(const char* fn, Family family, int kind_flag, std::int64_t T,
                        std::int64_t B, std::int64_t I, std::int64_t H, int reverse,
                        bool bias, const std::int64_t* lengths) {
  SeqConfig cfg = config(fn, cell_of(family, kind_flag, fn), T, B, I, H);
  cfg.reverse = flag(reverse, fn, "reverse");
  cfg.has_bias = bias;
  cfg.has_lengths = lengths != nullptr;
  return cfg;
}

template <class S>
int forward(const char* fn, Family family, int kind_flag, S* y, S* h_n, S* c_n, unsigned char* reserve,
            std::size_t reserve_size, const S* x, const S* w_ih, const S* w_hh, const S* b_ih,
            const S* b_hh, const S* h0, const S* c0, const std::int64_t* lengths, unsigned char* scratch,
            std::size_t scratch_size, std::int64_t T, std::int64_t B, std::int64_t I,
            std::int64_t H, int reverse) {
  return guarded(fn, [&] {
    const SeqConfig cfg =
        family_config(fn, family, kind_flag, T, B, I, H, reverse, b_ih != nullptr, lengths);
    Params<const S*> w;
    w.w_ih = w_ih;
    w.w_hh = w_hh;
    w.b_ih = b_ih;
    w.b_hh = b_hh;
    forward_call<S>(fn, cfg, y, h_n, c_n, reserve, reserve_size, x, w, h0, c0, lengths, scratch,
                    scratch_size);
  });
}

template <class S>
int backward(const char* fn, Family family, int kind_flag, S* dx, S* dh0, S* dc0, S* dw_ih, S* dw_hh, S* db_ih,
             S* db_hh, unsigned char* reserve, std::size_t reserve_size, const S* x, const S* w_ih,
             const S* w_hh, const std::int64_t* lengths, const S* dy, const S* dh_n,
             const S* dc_n, unsigned char* scratch, std::size_t scratch_size, std::int64_t T,
             std::int64_t B, std::int64_t I, std::int64_t H, int reverse) {
  return guarded(fn, [&] {
    const SeqConfig cfg =
        family_config(fn, family, kind_flag, T, B, I, H, reverse, db_ih != nullptr, lengths);
    Params<S*> d;
    d.w_ih = dw_ih;
    d.w_hh = dw_hh;
    d.b_ih = db_ih;
    d.b_hh = db_hh;
    Params<const S*> w;
    w.w_ih = w_ih;
    w.w_hh = w_hh;
    backward_call<S>(fn, cfg, false, dx, dh0, dc0, d, reserve, reserve_size, x, w, lengths, dy,
                     dh_n, dc_n, scratch, scratch_size);
  });
}

// The generic calls for scalar S: the arrays of pointers read by the cell's order.
template <class S>
void generic_forward(const char* fn, const SeqConfig& cfg, void* y, void* const* states_n,
                     unsigned char* reserve, std::size_t reserve_size, const void* x,
                     const void* const* params, const void* const* states0,
                     const std::int64_t* lengths, unsigned char* scratch,
                     std::size_t scratch_size) {
  const cells::CellInfo& info = cells::cell_info(cfg.cell);
  require(states_n, fn, "states_n");
  require(params, fn, "params");
  const bool has_c = info.states == 2;
  forward_call<S>(fn, cfg, static_cast<S*>(y), static_cast<S*>(states_n[0]),
                  has_c ? static_cast<S*>(states_n[1]) : nullptr, reserve, reserve_size,
                  static_cast<const S*>(x), Params<const S*>::from(info, params),
                  states0 ? static_cast<const S*>(states0[0]) : nullptr,
                  states0 && has_c ? static_cast<const S*>(states0[1]) : nullptr, lengths,
                  scratch, scratch_size);
}

template <class S>
void generic_backward(const char* fn, const SeqConfig& cfg, bool accumulate, void* dx,
                      void* const* dstates0, void* const* dparams, unsigned char* reserve,
                      std::size_t reserve_size, const void* x, const void* const* params,
                      const std::int64_t* lengths, const void* dy,
                      const void* const* dstates_n, unsigned char* scratch,
                      std::size_t scratch_size) {
  const cells::CellInfo& info = cells::cell_info(cfg.cell);
  require(dstates0, fn, "dstates0");
  require(dparams, fn, "dparams");
  require(params, fn, "params");
  const bool has_c = info.states == 2;
  backward_call<S>(fn, cfg, accumulate, static_cast<S*>(dx), static_cast<S*>(dstates0[0]),
                   has_c ? static_cast<S*>(dstates0[1]) : nullptr,
                   Params<S*>::from(info, dparams), reserve, reserve_size,
                   static_cast<const S*>(x), Params<const S*>::from(info, params), lengths,
                   static_cast<const S*>(dy),
                   dstates_n ? static_cast<const S*>(dstates_n[0]) : nullptr,
                   dstates_n && has_c ? static_cast<const S*>(dstates_n[1]) : nullptr, scratch,
                   scratch_size);
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

FASTSEQ_API int fastseq_buffer_bytes(size_t* bytes, int buffer, int cell,
                                     const fastseq_options* opts) {
  const char* fn = "fastseq_buffer_bytes";
  return guarded(fn, [&] {
    require(bytes, fn, "bytes");
    const Options o = read_options(fn, cell, opts);
    switch (buffer) {
      case FASTSEQ_RESERVE: *bytes = fastseq::reserve_bytes(o.cfg, o.scalar); return;
      case FASTSEQ_FORWARD_SCRATCH:
      case FASTSEQ_TRAINING_SCRATCH:
        *bytes = fastseq::forward_scratch_bytes(o.cfg, o.scalar, buffer == FASTSEQ_TRAINING_SCRATCH);
        return;
      case FASTSEQ_BACKWARD_SCRATCH: *bytes = fastseq::backward_scratch_bytes(o.cfg, o.scalar); return;
      default:
        fail(FASTSEQ_ERR_ARGUMENT, fn,
             "buffer = %d is not a fastseq_buffer (FASTSEQ_RESERVE .. FASTSEQ_BACKWARD_SCRATCH "
             "= 1..4)",
             buffer);
    }
  });
}

FASTSEQ_API int fastseq_forward(int cell, const fastseq_options* opts, void* y,
                                void* const* states_n, unsigned char* reserve,
                                size_t reserve_size, const void* x, const void* const* params,
                                const void* const* states0, const int64_t* lengths,
                                unsigned char* scratch, size_t scratch_size) {
  const char* fn = "fastseq_forward";
  return guarded(fn, [&] {
    const Options o = read_options(fn, cell, opts);
    if (o.scalar == sizeof(float))
      generic_forward<float>(fn, o.cfg, y, states_n, reserve, reserve_size, x, params, states0,
                             lengths, scratch, scratch_size);
    else
      generic_forward<double>(fn, o.cfg, y, states_n, reserve, reserve_size, x, params, states0,
                              lengths, scratch, scratch_size);
  });
}

FASTSEQ_API int fastseq_backward(int cell, const fastseq_options* opts, void* dx,
                                 void* const* dstates0, void* const* dparams,
                                 unsigned char* reserve, size_t reserve_size, const void* x,
                                 const void* const* params, const int64_t* lengths,
                                 const void* dy, const void* const* dstates_n,
                                 unsigned char* scratch, size_t scratch_size) {
  const char* fn = "fastseq_backward";
  return guarded(fn, [&] {
    const Options o = read_options(fn, cell, opts);
    if (o.scalar == sizeof(float))
      generic_backward<float>(fn, o.cfg, o.accumulate, dx, dstates0, dparams, reserve,
                              reserve_size, x, params, lengths, dy, dstates_n, scratch,
                              scratch_size);
    else
      generic_backward<double>(fn, o.cfg, o.accumulate, dx, dstates0, dparams, reserve,
                               reserve_size, x, params, lengths, dy, dstates_n, scratch,
                               scratch_size);
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
