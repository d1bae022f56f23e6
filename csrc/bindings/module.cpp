// The pybind11 module fastseq._core: build facts (version, CPU features, BLAS) and the
// kernel bindings. No maths here: each bind_<topic>.cpp checks arguments and calls csrc/.
#include <pybind11/pybind11.h>

#include "bindings/bind.hpp"
#include "runtime/cpu_features.hpp"

extern "C" int scipy_openblas_get_num_threads(void);

namespace py = pybind11;

namespace {

py::dict cpu_features_dict() {
  const auto& f = fastseq::cpu_features();
  py::dict d;
  d["sse4_2"] = f.sse42;
  d["avx"] = f.avx;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["avx512f"] = f.avx512f;
  d["avx512dq"] = f.avx512dq;
  d["avx512bw"] = f.avx512bw;
  d["avx512vl"] = f.avx512vl;
  return d;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastseq's compiled kernels (C++); use fastseq.functional or the layers instead.";
  m.attr("__version__") = FASTSEQ_VERSION;
  m.def("cpu_features", &cpu_features_dict, "Instruction-set features detected on this CPU.");
  m.def("smoke", [](int a, int b) { return a + b; }, py::arg("a"), py::arg("b"),
        "Adds two integers: proves the extension loads and runs.");
  m.def("blas_num_threads", &scipy_openblas_get_num_threads,
        "Threads the linked OpenBLAS would use (proves the BLAS library is linked and loads).");
  fastseq::bindings::bind_kernels(m);
}
