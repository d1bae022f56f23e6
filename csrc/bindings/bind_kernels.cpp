// Bindings of the sequence kernels: rnn/lstm/gru _forward/_backward with the argument names,
// order and results of the backend contract (fastseq/backends/__init__.py), and the opaque
// Reserve a training forward returns. Here: argument checks, allocation (all of it before
// the GIL is released), GIL release around the kernel. No maths.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bindings/arrays.hpp"
#include "bindings/bind.hpp"
#include "cells/registry.hpp"
#include "fastseq/kernels.hpp"
#include "runtime/buffer_pool.hpp"

namespace fastseq::bindings {
namespace {

// What a training forward hands to its backward: the configuration (checked against the
// backward's arguments), the reserve bytes, and references to the forward's own inputs that
// backward needs (x, w_ih, w_hh, w_hr, lengths) — references, not copies, as in every
// framework: change them in place between forward and backward and the gradients are wrong.
struct Reserve {
  SeqConfig cfg;
  bool is_double = false;
  runtime::PooledBuffer buffer;  // back to the pool as soon as backward has used it
  std::size_t nbytes = 0;
  py::object x, w_ih, w_hh, w_hr, lengths;  // w_hr: None unless projected
  bool consumed = false;
};

const char* family(CellKind cell) { return cells::cell_info(cell).family; }
bool has_c(CellKind cell) { return cells::cell_info(cell).states == 2; }

// Runs fn with the GIL released. Not py::gil_scoped_release: its destructor takes the GIL
// back, and a daemon thread that does so while the interpreter finalizes is ended by
// pthread_exit, whose unwinding through a destructor (noexcept) aborts the whole process
// ("terminate called without an active exception"). A thread that finds the interpreter
// finalizing waits here for the process to end instead, as Python 3.14 itself does; the
// GIL is taken back in the ordinary flow, so even the race past that check unwinds cleanly.
template <class Fn>
void without_gil(Fn&& fn) {
  PyThreadState* state = PyEval_SaveThread();
  try {
    fn();
  } catch (...) {
    PyEval_RestoreThread(state);
    throw;
  }
#if PY_VERSION_HEX >= 0x030D0000
  while (Py_IsFinalizing()) std::this_thread::sleep_for(std::chrono::hours(1));
#else
  while (_Py_IsFinalizing()) std::this_thread::sleep_for(std::chrono::hours(1));
#endif
  PyEval_RestoreThread(state);
}

template <class S>
py::dtype dtype_of() {
  return py::dtype::of<S>();
}

// Checked optional (B, H) state: None or a contiguous array of dtype S. letters: how the
// shape is spelled in the error ("(B, H)", or "(B, P)" for a projected h).
template <class S>
py::object optional_state(const py::object& obj, const std::string& fn, const char* name,
                          std::int64_t B, std::int64_t H, const char* letters = "(B, H)") {
  if (obj.is_none()) return py::none();
  py::array a = require_ndarray(obj, fn, name);
  require_dtype(a, dtype_of<S>(), fn, name, " (the dtype of x)");
  require_shape(a, {B, H}, fn, name, letters);
  return contiguous<S>(a);
}

template <class S>
const S* data_or_null(const py::object& obj) {
  if (obj.is_none()) return nullptr;
  return py::reinterpret_borrow<py::array_t<S, py::array::c_style>>(obj).data();
}

template <class S>
py::array_t<S> new_array(std::initializer_list<py::ssize_t> shape) {
  return py::array_t<S>(std::vector<py::ssize_t>(shape));
}

// cell: the family's cell without the projection; with w_hr_o not None, its projected
// variant (the LSTM's: lstmp), whose state h is P = w_hr.shape[0] wide.
template <class S>
py::tuple forward_typed(const std::string& fn, CellKind cell, const py::array& x_in,
                        const py::object& w_ih_o, const py::object& w_hh_o,
                        const py::object& b_ih_o, const py::object& b_hh_o,
                        const py::object& h0_o, const py::object& c0_o,
                        const py::object& lengths_o, bool reverse, bool training,
                        const py::object& w_hr_o) {
  const py::dtype dt = dtype_of<S>();
  const char* same = " (the dtype of x)";
  if (x_in.ndim() != 3)
    throw py::value_error(fn + ": x has shape " + shape_str(x_in) + ", expected (T, B, I)");
  const std::int64_t T = x_in.shape(0), B = x_in.shape(1), I = x_in.shape(2);
  if (T < 1 || B < 1 || I < 1)
    throw py::value_error(fn + ": x has shape " + shape_str(x_in) +
                          ": T, B and I must all be >= 1");
  const std::int64_t G = gate_count(cell);

  // The projection, if any: w_hr (P, H) fixes both widths, w_hh is then (G*H, P).
  const bool projected = !w_hr_o.is_none();
  py::object w_hr = py::none();
  std::int64_t H = 0, P = 0;
  if (projected) {
    py::array a = require_ndarray(w_hr_o, fn, "w_hr");
    require_dtype(a, dt, fn, "w_hr", same);
    if (a.ndim() != 2 || a.shape(0) < 1 || a.shape(0) >= a.shape(1))
      throw py::value_error(fn + ": w_hr has shape " + shape_str(a) +
                            ", expected (P, H) with 0 < P < H");
    P = a.shape(0);
    H = a.shape(1);
    w_hr = contiguous<S>(a);
    for (const cells::CellInfo& c : cells::kCells)
      if (c.projected && std::string(c.family) == family(cell)) cell = c.kind;
  }

  py::array w_hh_a = require_ndarray(w_hh_o, fn, "w_hh");
  require_dtype(w_hh_a, dt, fn, "w_hh", same);
  if (projected) {
    require_shape(w_hh_a, {G * H, P}, fn, "w_hh", "(G*H, P)");
  } else {
    if (w_hh_a.ndim() != 2 || w_hh_a.shape(1) < 1)
      throw py::value_error(fn + ": w_hh has shape " + shape_str(w_hh_a) +
                            ", expected (G*H, H) with G = " + std::to_string(G) + " and H >= 1");
    H = w_hh_a.shape(1);
    require_shape(w_hh_a, {G * H, H}, fn, "w_hh", "(G*H, H)");
  }
  const std::int64_t S_w = projected ? P : H;  // the state width Hs
  py::array w_ih_a = require_ndarray(w_ih_o, fn, "w_ih");
  require_dtype(w_ih_a, dt, fn, "w_ih", same);
  require_shape(w_ih_a, {G * H, I}, fn, "w_ih", "(G*H, I)");

  if (b_ih_o.is_none() != b_hh_o.is_none())
    throw py::value_error(fn + ": b_ih and b_hh must both be None or both be arrays (got " +
                          (b_ih_o.is_none() ? "b_ih None" : "b_hh None") + ")");
  const bool has_bias = !b_ih_o.is_none();
  py::object b_ih = py::none(), b_hh = py::none();
  if (has_bias) {
    py::array a = require_ndarray(b_ih_o, fn, "b_ih");
    require_dtype(a, dt, fn, "b_ih", same);
    require_shape(a, {G * H}, fn, "b_ih", "(G*H,)");
    py::array c = require_ndarray(b_hh_o, fn, "b_hh");
    require_dtype(c, dt, fn, "b_hh", same);
    require_shape(c, {G * H}, fn, "b_hh", "(G*H,)");
    b_ih = contiguous<S>(a);
    b_hh = contiguous<S>(c);
  }
  const py::object h0 =
      optional_state<S>(h0_o, fn, "h0", B, S_w, projected ? "(B, P)" : "(B, H)");
  const py::object c0 = has_c(cell) ? optional_state<S>(c0_o, fn, "c0", B, H)
                                               : py::object(py::none());

  py::object lengths = py::none();
  if (!lengths_o.is_none()) {
    py::array a = require_ndarray(lengths_o, fn, "lengths");
    require_dtype(a, py::dtype::of<std::int64_t>(), fn, "lengths", "");
    require_shape(a, {B}, fn, "lengths", "(B,)");
    auto c = contiguous<std::int64_t>(a);
    const std::int64_t* l = c.data();
    for (std::int64_t b = 0; b < B; ++b)
      if (l[b] < 0 || l[b] > T)
        throw py::value_error(fn + ": lengths[" + std::to_string(b) + "] = " +
                              std::to_string(l[b]) + " is outside 0..T = 0.." +
                              std::to_string(T));
    lengths = c;
  }

  SeqConfig cfg;
  cfg.cell = cell;
  cfg.T = T;
  cfg.B = B;
  cfg.I = I;
  cfg.H = H;
  cfg.P = P;
  cfg.has_bias = has_bias;
  cfg.has_lengths = !lengths.is_none();
  cfg.reverse = reverse;
  try {
    validate_config(cfg);
  } catch (const std::invalid_argument& e) {
    throw py::value_error(fn + ": " + e.what());
  }

  auto x = contiguous<S>(x_in);
  auto w_ih = contiguous<S>(w_ih_a);
  auto w_hh = contiguous<S>(w_hh_a);

  // Every allocation happens here, with the GIL held; the kernel itself never allocates.
  auto y = new_array<S>({T, B, S_w});
  auto h_n = new_array<S>({B, S_w});
  py::object c_n = py::none();
  if (has_c(cell)) c_n = new_array<S>({B, H});
  std::unique_ptr<Reserve> reserve;
  if (training) {
    reserve = std::make_unique<Reserve>();
    reserve->cfg = cfg;
    reserve->is_double = sizeof(S) == 8;
    reserve->nbytes = reserve_bytes(cfg, sizeof(S));
    reserve->buffer = runtime::PooledBuffer(reserve->nbytes);
    reserve->x = x;
    reserve->w_ih = w_ih;
    reserve->w_hh = w_hh;
    reserve->w_hr = w_hr;
    reserve->lengths = lengths;
  }
  runtime::PooledBuffer scratch(forward_scratch_bytes(cfg, sizeof(S), training));

  ForwardArgs<S> a;
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = c_n.is_none() ? nullptr
                        : py::reinterpret_borrow<py::array_t<S>>(c_n).mutable_data();
  a.reserve = reserve ? reserve->buffer.data() : nullptr;
  a.reserve_size = reserve ? reserve->buffer.size() : 0;
  a.x = x.data();
  a.w_ih = w_ih.data();
  a.w_hh = w_hh.data();
  a.w_hr = data_or_null<S>(w_hr);
  a.b_ih = data_or_null<S>(b_ih);
  a.b_hh = data_or_null<S>(b_hh);
  a.h0 = data_or_null<S>(h0);
  a.c0 = data_or_null<S>(c0);
  a.lengths = data_or_null<std::int64_t>(lengths);
  a.scratch = scratch.data();
  a.scratch_size = scratch.size();
  without_gil([&] { sequence_forward<S>(cfg, training, a); });

  py::object res = reserve ? py::cast(std::move(reserve)) : py::object(py::none());
  if (has_c(cell)) return py::make_tuple(y, h_n, c_n, res);
  return py::make_tuple(y, h_n, res);
}

py::tuple forward(const std::string& fn, CellKind cell, const py::object& x_o,
                  const py::object& w_ih, const py::object& w_hh, const py::object& b_ih,
                  const py::object& b_hh, const py::object& h0, const py::object& c0,
                  const py::object& lengths, bool reverse, bool training,
                  const py::object& w_hr = py::none()) {
  py::array x = require_ndarray(x_o, fn, "x");
  if (x.dtype().equal(py::dtype::of<float>()))
    return forward_typed<float>(fn, cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse,
                                training, w_hr);
  if (x.dtype().equal(py::dtype::of<double>()))
    return forward_typed<double>(fn, cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0, lengths, reverse,
                                 training, w_hr);
  throw py::type_error(fn + ": x has dtype " + dtype_str(x.dtype()) +
                       ", expected float32 or float64");
}

// Where the kernel writes the parameter gradients dw_ih, dw_hh (dw_hr iff the forward was
// projected; db_ih, db_hh iff it had biases), and what backward returns for them. Without
// accumulate: fresh arrays. With accumulate, {"dw_ih": ..., ...}: the caller's arrays,
// added into; each must be a writeable array of dtype S and the parameter's shape, any
// strides. The kernel adds straight into those that are C-contiguous, aligned and share no
// memory with an input or another target; the others get a zeroed array that is added into
// them afterwards, as grad += g would.
template <class S>
struct ParamGrads {
  struct Entry {
    const char* key;
    std::vector<std::int64_t> shape;
    const char* letters;
  };
  std::vector<Entry> entries;     // the gradients this configuration has
  std::vector<py::array> out;     // what backward returns, in entries order
  std::vector<py::array> kernel;  // what the kernel writes: out[i] or a zeroed array
  bool accumulate = false;

  ParamGrads(const py::object& acc, const std::string& fn, const SeqConfig& cfg,
             std::int64_t G, std::initializer_list<py::object> inputs) {
    const std::int64_t GH = G * cfg.H, Hs = state_width(cfg);
    entries = {{"dw_ih", {GH, cfg.I}, "(G*H, I)"},
               {"dw_hh", {GH, Hs}, cfg.P ? "(G*H, P)" : "(G*H, H)"}};
    if (cfg.P) entries.push_back({"dw_hr", {cfg.P, cfg.H}, "(P, H)"});
    if (cfg.has_bias)
      entries.insert(entries.end(), {{"db_ih", {GH}, "(G*H,)"}, {"db_hh", {GH}, "(G*H,)"}});
    const std::size_t count = entries.size();
    if (acc.is_none()) {
      for (const Entry& e : entries) out.push_back(py::array_t<S>(e.shape));
      kernel = out;
      return;
    }
    if (!py::isinstance<py::dict>(acc))
      throw py::type_error(fn + ": accumulate must be None or a dict of the parameter "
                                "gradients to add into, got " + type_name(acc));
    const py::dict d = py::reinterpret_borrow<py::dict>(acc);
    std::string wanted;
    for (std::size_t i = 0; i < count; ++i)
      wanted += std::string(i == 0 ? "" : i + 1 == count ? " and " : ", ") + entries[i].key;
    if (!cfg.has_bias) wanted += " (the forward had no biases)";
    for (auto item : d) {
      const std::string key = py::str(item.first).cast<std::string>();
      bool known = false;
      for (const Entry& e : entries) known = known || key == e.key;
      if (!known)
        throw py::value_error(fn + ": accumulate has key '" + key + "', expected " + wanted);
    }
    for (const Entry& e : entries) {
      const std::string name = std::string("accumulate['") + e.key + "']";
      if (!d.contains(e.key))
        throw py::value_error(fn + ": accumulate has no '" + e.key + "'; it needs " + wanted);
      py::array a = require_ndarray(d[e.key], fn, name.c_str());
      require_dtype(a, py::dtype::of<S>(), fn, name.c_str(), " (the dtype of the forward)");
      if (e.shape.size() == 2)
        require_shape(a, {e.shape[0], e.shape[1]}, fn, name.c_str(), e.letters);
      else
        require_shape(a, {e.shape[0]}, fn, name.c_str(), e.letters);
      if (!a.writeable())
        throw py::value_error(fn + ": " + name + " is read-only; it is added into in place");
      out.push_back(a);
    }
    constexpr int kDirect = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                            py::detail::npy_api::NPY_ARRAY_ALIGNED_;
    for (std::size_t i = 0; i < count; ++i) {
      bool direct = (out[i].flags() & kDirect) == kDirect;
      for (const py::object& in : inputs)
        direct = direct &&
                 (in.is_none() || !may_overlap(out[i], py::reinterpret_borrow<py::array>(in)));
      for (std::size_t j = 0; j < count; ++j)
        direct = direct && (j == i || !may_overlap(out[i], out[j]));
      if (direct) {
        kernel.push_back(out[i]);
      } else {  // zeros: the kernel adds into it
        auto fresh = new_array<S>({out[i].size()});
        std::fill_n(fresh.mutable_data(), fresh.size(), S(0));
        kernel.push_back(fresh);
      }
    }
    accumulate = true;
  }

  // The kernel's pointer for gradient key, or null where this configuration has none.
  S* data(const char* key) {
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (std::string(entries[i].key) == key) return static_cast<S*>(kernel[i].mutable_data());
    return nullptr;
  }

  // The result dict's parameter gradients: every entry; db_ih and db_hh None without biases.
  void put_results(py::dict& d) const {
    for (const char* key : {"dw_ih", "dw_hh", "db_ih", "db_hh"}) d[key] = py::none();
    for (std::size_t i = 0; i < entries.size(); ++i) d[entries[i].key] = out[i];
  }

  // Targets that got a zeroed array: out += it (with the GIL).
  void add_back() const {
    for (std::size_t i = 0; i < out.size(); ++i)
      if (!out[i].is(kernel[i]))
        out[i].attr("__iadd__")(kernel[i].attr("reshape")(out[i].attr("shape")));
  }
};

template <class S>
py::dict backward_typed(const std::string& fn, Reserve& r, const py::object& dy_o,
                        const py::object& dh_n_o, const py::object& dc_n_o,
                        const py::object& accumulate_o, bool need_dx) {
  const SeqConfig& cfg = r.cfg;
  const std::int64_t T = cfg.T, B = cfg.B, I = cfg.I, H = cfg.H, G = gate_count(cfg.cell);
  const std::int64_t Hs = state_width(cfg);
  const py::dtype dt = dtype_of<S>();
  const char* same = " (the dtype of the forward)";
  py::array dy_a = require_ndarray(dy_o, fn, "dy");
  require_dtype(dy_a, dt, fn, "dy", same);
  require_shape(dy_a, {T, B, Hs}, fn, "dy", cfg.P ? "(T, B, P)" : "(T, B, H)");
  py::object dh_n = py::none(), dc_n = py::none();
  if (!dh_n_o.is_none()) {
    py::array a = require_ndarray(dh_n_o, fn, "dh_n");
    require_dtype(a, dt, fn, "dh_n", same);
    require_shape(a, {B, Hs}, fn, "dh_n", cfg.P ? "(B, P)" : "(B, H)");
    dh_n = contiguous<S>(a);
  }
  if (has_c(cfg.cell) && !dc_n_o.is_none()) {
    py::array a = require_ndarray(dc_n_o, fn, "dc_n");
    require_dtype(a, dt, fn, "dc_n", same);
    require_shape(a, {B, H}, fn, "dc_n", "(B, H)");
    dc_n = contiguous<S>(a);
  }
  auto dy = contiguous<S>(dy_a);
  ParamGrads<S> grads(accumulate_o, fn, cfg, G,
                      {r.x, r.w_ih, r.w_hh, r.w_hr, r.lengths, dy, dh_n, dc_n});

  py::object dx = py::none();
  if (need_dx) dx = new_array<S>({T, B, I});
  auto dh0 = new_array<S>({B, Hs});
  py::object dc0 = py::none();
  if (has_c(cfg.cell)) dc0 = new_array<S>({B, H});
  runtime::PooledBuffer scratch(backward_scratch_bytes(cfg, sizeof(S)));
  auto mut = [](const py::object& o) -> S* {
    return o.is_none() ? nullptr : py::reinterpret_borrow<py::array_t<S>>(o).mutable_data();
  };

  BackwardArgs<S> a;
  a.dx = mut(dx);
  a.dh0 = dh0.mutable_data();
  a.dc0 = mut(dc0);
  a.accumulate = grads.accumulate;
  a.dw_ih = grads.data("dw_ih");
  a.dw_hh = grads.data("dw_hh");
  a.dw_hr = grads.data("dw_hr");
  a.db_ih = grads.data("db_ih");
  a.db_hh = grads.data("db_hh");
  a.reserve = r.buffer.data();
  a.reserve_size = r.buffer.size();
  a.x = data_or_null<S>(r.x);
  a.w_ih = data_or_null<S>(r.w_ih);
  a.w_hh = data_or_null<S>(r.w_hh);
  a.w_hr = data_or_null<S>(r.w_hr);
  a.lengths = data_or_null<std::int64_t>(r.lengths);
  a.dy = dy.data();
  a.dh_n = data_or_null<S>(dh_n);
  a.dc_n = data_or_null<S>(dc_n);
  a.scratch = scratch.data();
  a.scratch_size = scratch.size();
  // Backward overwrites the reserve with dG: mark it used while the GIL is still held, so a
  // second backward (or a concurrent one from another thread) is refused, not wrong.
  r.consumed = true;
  without_gil([&] { sequence_backward<S>(cfg, a); });
  r.buffer = runtime::PooledBuffer();
  grads.add_back();

  py::dict out;
  out["dx"] = dx;
  out["dh0"] = dh0;
  if (has_c(cfg.cell)) out["dc0"] = dc0;
  grads.put_results(out);
  return out;
}

// fam: the family whose forward the reserve must come from, or null (the generic
// backward: any cell's reserve).
py::dict backward(const std::string& fn, const char* fam, const py::object& reserve_o,
                  const py::object& dy, const py::object& dh_n, const py::object& dc_n,
                  const py::object& accumulate, bool need_dx) {
  const std::string forward_name = fam ? std::string(fam) + "_forward" : "forward";
  if (!py::isinstance<Reserve>(reserve_o))
    throw py::type_error(fn + ": reserve must be the Reserve that " + forward_name +
                         "(..., training=True) returned, got " + type_name(reserve_o));
  Reserve& r = reserve_o.cast<Reserve&>();
  if (fam && std::string(family(r.cfg.cell)) != fam)
    throw py::value_error(fn + ": reserve comes from a " + cell_name(r.cfg.cell) +
                          " forward, not from " + forward_name);
  if (!has_c(r.cfg.cell) && !dc_n.is_none())
    throw py::value_error(fn + ": dc_n is given, but a " + std::string(cell_name(r.cfg.cell)) +
                          " cell has no cell state");
  if (r.consumed)
    throw py::value_error(fn + ": this reserve was already used by a backward call (backward "
                               "consumes it); run the forward again");
  if (r.is_double) return backward_typed<double>(fn, r, dy, dh_n, dc_n, accumulate, need_dx);
  return backward_typed<float>(fn, r, dy, dh_n, dc_n, accumulate, need_dx);
}

// The generic entry points: any cell of the registry by its name, its parameters by the
// registry's names. The per-family functions below are the same calls with the cell chosen
// by the family's option; both end in forward() and backward() above.
const cells::CellInfo& cell_named(const std::string& fn, const std::string& name) {
  std::string names;
  for (const cells::CellInfo& c : cells::kCells) {
    if (name == c.name) return c;
    names += std::string(names.empty() ? "" : ", ") + "'" + c.name + "'";
  }
  throw py::value_error(fn + ": cell must be one of " + names + "; got '" + name + "'");
}

py::tuple forward_any(const std::string& name, const py::object& x, const py::dict& params,
                      const py::object& h0, const py::object& c0, const py::object& lengths,
                      bool reverse, bool training) {
  const std::string fn = "forward";
  const cells::CellInfo& c = cell_named(fn, name);
  std::vector<std::string> wanted;
  for (int i = 0; i < cells::parameter_count(c); ++i) wanted.push_back(cells::parameter_name(c, i));
  std::string list;
  for (const std::string& w : wanted) list += (list.empty() ? "" : ", ") + w;
  for (const auto& item : params) {
    const std::string key = py::str(item.first);
    if (std::find(wanted.begin(), wanted.end(), key) == wanted.end())
      throw py::value_error(fn + ": params has '" + key + "', which a " + c.name +
                            " cell does not take (its parameters: " + list + ")");
  }
  const auto get = [&](const char* key, bool required) -> py::object {
    if (params.contains(key)) return params[key];
    if (required)
      throw py::value_error(fn + ": params has no '" + key + "' (a " + c.name +
                            " cell takes " + list + "; the biases are optional)");
    return py::none();
  };
  if (c.states < 2 && !c0.is_none())
    throw py::value_error(fn + ": c0 is given, but a " + std::string(c.name) +
                          " cell has no cell state");
  const py::tuple r = forward(fn, c.kind, x, get("w_ih", true), get("w_hh", true),
                              get("b_ih", false), get("b_hh", false), h0, c0, lengths, reverse,
                              training, c.projected ? get("w_hr", true) : py::none());
  if (c.states == 2) return r;
  return py::make_tuple(r[0], r[1], py::none(), r[2]);
}

py::dict backward_any(const py::object& reserve, const py::object& dy, const py::object& dh_n,
                      const py::object& dc_n, const py::object& accumulate, bool need_dx) {
  return backward("backward", nullptr, reserve, dy, dh_n, dc_n, accumulate, need_dx);
}

CellKind rnn_kind(const std::string& nonlinearity) {
  if (nonlinearity == "tanh") return CellKind::rnn_tanh;
  if (nonlinearity == "relu") return CellKind::rnn_relu;
  throw py::value_error("rnn_forward: nonlinearity must be 'tanh' or 'relu', got '" +
                        nonlinearity + "'");
}

}  // namespace

void bind_kernels(py::module_& m) {
  py::class_<Reserve>(m, "Reserve",
                      "What a training forward keeps for its backward (opaque; consumed by "
                      "the one backward call it is passed to).")
      .def_property_readonly("cell", [](const Reserve& r) { return cell_name(r.cfg.cell); })
      .def_property_readonly("dtype",
                             [](const Reserve& r) {
                               return r.is_double ? py::dtype::of<double>()
                                                  : py::dtype::of<float>();
                             })
      .def_property_readonly("shape",
                             [](const Reserve& r) {
                               return py::make_tuple(r.cfg.T, r.cfg.B, r.cfg.I, r.cfg.H);
                             },
                             "(T, B, I, H)")
      .def_property_readonly("proj_size", [](const Reserve& r) { return r.cfg.P; },
                             "P, the projection's width (0 without a projection)")
      .def_property_readonly("has_bias", [](const Reserve& r) { return r.cfg.has_bias; })
      .def_property_readonly("has_lengths", [](const Reserve& r) { return r.cfg.has_lengths; })
      .def_property_readonly("reverse", [](const Reserve& r) { return r.cfg.reverse; })
      .def_property_readonly("nbytes", [](const Reserve& r) { return r.nbytes; })
      .def_property_readonly("consumed", [](const Reserve& r) { return r.consumed; })
      .def("__repr__", [](const Reserve& r) {
        return std::string("<fastseq._core.Reserve ") + cell_name(r.cfg.cell) +
               (r.is_double ? " float64" : " float32") + " T=" + std::to_string(r.cfg.T) +
               " B=" + std::to_string(r.cfg.B) + " I=" + std::to_string(r.cfg.I) +
               " H=" + std::to_string(r.cfg.H) +
               (r.cfg.P ? " P=" + std::to_string(r.cfg.P) : std::string()) +
               (r.consumed ? " consumed>" : ">");
      });

  const py::none none;
  m.def(
      "rnn_forward",
      [](const py::object& x, const py::object& w_ih, const py::object& w_hh,
         const py::object& b_ih, const py::object& b_hh, const py::object& h0,
         const py::object& lengths, bool reverse, bool training, const std::string& nl) {
        return forward("rnn_forward", rnn_kind(nl), x, w_ih, w_hh, b_ih, b_hh, h0, py::none(),
                       lengths, reverse, training);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = none,
      py::arg("b_hh") = none, py::arg("h0") = none, py::arg("lengths") = none,
      py::arg("reverse") = false, py::arg("training") = false,
      py::arg("nonlinearity") = "tanh",
      "Elman RNN over a whole sequence -> (y, h_n, reserve). See fastseq.backends.");
  m.def(
      "lstm_forward",
      [](const py::object& x, const py::object& w_ih, const py::object& w_hh,
         const py::object& b_ih, const py::object& b_hh, const py::object& h0,
         const py::object& c0, const py::object& lengths, bool reverse, bool training,
         const py::object& w_hr) {
        return forward("lstm_forward", CellKind::lstm, x, w_ih, w_hh, b_ih, b_hh, h0, c0,
                       lengths, reverse, training, w_hr);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = none,
      py::arg("b_hh") = none, py::arg("h0") = none, py::arg("c0") = none,
      py::arg("lengths") = none, py::arg("reverse") = false, py::arg("training") = false,
      py::arg("w_hr") = none,
      "LSTM over a whole sequence -> (y, h_n, c_n, reserve); with w_hr (P, H), the projected "
      "LSTM (torch's proj_size): h, h0, h_n and y are P wide, w_hh is (4H, P). See "
      "fastseq.backends.");
  m.def(
      "gru_forward",
      [](const py::object& x, const py::object& w_ih, const py::object& w_hh,
         const py::object& b_ih, const py::object& b_hh, const py::object& h0,
         const py::object& lengths, bool reverse, bool training, bool reset_after) {
        return forward("gru_forward", reset_after ? CellKind::gru : CellKind::gru_reset_before,
                       x, w_ih, w_hh, b_ih, b_hh, h0, py::none(), lengths, reverse, training);
      },
      py::arg("x"), py::arg("w_ih"), py::arg("w_hh"), py::arg("b_ih") = none,
      py::arg("b_hh") = none, py::arg("h0") = none, py::arg("lengths") = none,
      py::arg("reverse") = false, py::arg("training") = false, py::arg("reset_after") = true,
      "GRU over a whole sequence -> (y, h_n, reserve). See fastseq.backends.");
  // rnn_backward and gru_backward: the same arguments (no cell state), another family.
  for (const char* fam : {"rnn", "gru"}) {
    const std::string name = std::string(fam) + "_backward";
    const std::string doc = "Backward of " + std::string(fam) +
                            "_forward -> dict(dx, dh0, dw_ih, dw_hh, db_ih, db_hh); with "
                            "accumulate, the parameter gradients are added into its arrays; "
                            "need_dx=False: dx is None, its product skipped "
                            "(see fastseq.backends).";
    m.def(
        name.c_str(),
        [name, fam](const py::object& reserve, const py::object& dy, const py::object& dh_n,
                    const py::object& accumulate, bool need_dx) {
          return backward(name, fam, reserve, dy, dh_n, py::none(), accumulate, need_dx);
        },
        py::arg("reserve"), py::arg("dy"), py::arg("dh_n") = none, py::kw_only(),
        py::arg("accumulate") = none, py::arg("need_dx") = true, doc.c_str());
  }
  m.def("forward", &forward_any, py::arg("cell"), py::arg("x"), py::arg("params"),
        py::kw_only(), py::arg("h0") = none, py::arg("c0") = none, py::arg("lengths") = none,
        py::arg("reverse") = false, py::arg("training") = false,
        "Any cell of cell_registry() by name over a whole sequence -> (y, h_n, c_n, reserve), "
        "c_n None for a cell without a cell state; params maps the cell's parameter names "
        "(w_ih, w_hh, w_hr when projected, b_ih and b_hh, both or neither) to arrays. The same "
        "kernels and bits as the family's function (rnn_forward, lstm_forward, gru_forward).");
  m.def("backward", &backward_any, py::arg("reserve"), py::arg("dy"), py::arg("dh_n") = none,
        py::arg("dc_n") = none, py::kw_only(), py::arg("accumulate") = none,
        py::arg("need_dx") = true,
        "Backward of forward() (or of any family's forward) -> the family backward's dict.");
  m.def(
      "lstm_backward",
      [](const py::object& reserve, const py::object& dy, const py::object& dh_n,
         const py::object& dc_n, const py::object& accumulate, bool need_dx) {
        return backward("lstm_backward", "lstm", reserve, dy, dh_n, dc_n, accumulate, need_dx);
      },
      py::arg("reserve"), py::arg("dy"), py::arg("dh_n") = none, py::arg("dc_n") = none,
      py::kw_only(), py::arg("accumulate") = none, py::arg("need_dx") = true,
      "Backward of lstm_forward -> dict(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh), and dw_hr "
      "when the forward had w_hr; with accumulate, the parameter gradients are added into its "
      "arrays; need_dx=False: dx is None, its product skipped (see fastseq.backends).");
}

}  // namespace fastseq::bindings
