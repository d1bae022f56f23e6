// Argument checks shared by the kernel bindings: each raises TypeError (not an ndarray,
// wrong dtype) or ValueError (wrong shape) naming the function, the argument, what it got
// and what was expected. Nothing here converts dtypes: a float64 array given where float32
// is expected is an error, not a silent cast.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <initializer_list>
#include <string>

namespace fastseq::bindings {

namespace py = pybind11;

inline std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    if (i) s += ", ";
    s += std::to_string(a.shape(i));
  }
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string shape_str(std::initializer_list<std::int64_t> dims) {
  std::string s = "(";
  bool first = true;
  for (auto d : dims) {
    if (!first) s += ", ";
    s += std::to_string(d);
    first = false;
  }
  if (dims.size() == 1) s += ",";
  return s + ")";
}

inline std::string type_name(const py::handle& obj) {
  return py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

inline std::string dtype_str(const py::dtype& dt) { return py::str(dt).cast<std::string>(); }

// obj must be a numpy.ndarray (any strides, any order).
inline py::array require_ndarray(const py::handle& obj, const std::string& fn,
                                 const char* name) {
  if (!py::isinstance<py::array>(obj))
    throw py::type_error(fn + ": " + name + " must be a numpy.ndarray, got " + type_name(obj));
  return py::reinterpret_borrow<py::array>(obj);
}

// The dtype must be exactly `want` (native byte order), no cast.
inline void require_dtype(const py::array& a, const py::dtype& want, const std::string& fn,
                          const char* name, const char* why) {
  if (!a.dtype().equal(want))
    throw py::type_error(fn + ": " + name + " has dtype " + dtype_str(a.dtype()) +
                         ", expected " + dtype_str(want) + why);
}

inline void require_shape(const py::array& a, std::initializer_list<std::int64_t> want,
                          const std::string& fn, const char* name, const char* letters) {
  bool ok = a.ndim() == static_cast<py::ssize_t>(want.size());
  if (ok) {
    py::ssize_t i = 0;
    for (auto d : want) ok = ok && a.shape(i++) == d;
  }
  if (!ok)
    throw py::value_error(fn + ": " + name + " has shape " + shape_str(a) + ", expected " +
                          letters + " = " + shape_str(want));
}

// Whether the bytes of a's and b's elements can overlap (any strides; numpy's byte bounds).
inline bool may_overlap(const py::array& a, const py::array& b) {
  const auto extent = [](const py::array& x, std::intptr_t& lo, std::intptr_t& hi) {
    lo = hi = reinterpret_cast<std::intptr_t>(x.data());
    if (x.size() == 0) return false;
    for (py::ssize_t i = 0; i < x.ndim(); ++i) {
      const std::intptr_t span = std::intptr_t(x.shape(i) - 1) * std::intptr_t(x.strides(i));
      (span < 0 ? lo : hi) += span;
    }
    hi += x.itemsize();
    return true;
  };
  std::intptr_t alo, ahi, blo, bhi;
  if (!extent(a, alo, ahi) || !extent(b, blo, bhi)) return false;
  return alo < bhi && blo < ahi;
}

// A C-contiguous, aligned array of a's data (a already has dtype S): a itself when it is
// one, else a fresh copy (any strides, order or misalignment is accepted).
template <class S>
py::array_t<S, py::array::c_style> contiguous(const py::array& a) {
  constexpr int kWanted = py::detail::npy_api::NPY_ARRAY_C_CONTIGUOUS_ |
                          py::detail::npy_api::NPY_ARRAY_ALIGNED_;
  if ((a.flags() & kWanted) == kWanted)
    return py::reinterpret_borrow<py::array_t<S, py::array::c_style>>(a);
  py::object copy = py::module_::import("numpy").attr("array")(a, py::arg("order") = "C",
                                                              py::arg("copy") = true);
  return py::reinterpret_steal<py::array_t<S, py::array::c_style>>(copy.release());
}

}  // namespace fastseq::bindings
