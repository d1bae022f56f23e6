// The pybind11 module fastseq._core: build facts (version, CPU features, BLAS) and the
// kernel bindings. No maths here: each bind_<topic>.cpp checks arguments and calls csrc/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/bind.hpp"
#include "cells/registry.hpp"
#include "loops/dispatch.hpp"
#include "runtime/buffer_pool.hpp"
#include "runtime/cpu_features.hpp"
#include "runtime/openmp_team.hpp"
#include "runtime/thread_pool.hpp"

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
  // pybind11 looks NumPy's C API up on first use, releasing the GIL meanwhile and taking it
  // back in a destructor. A daemon thread whose first kernel call came while the interpreter
  // was exiting was ended there by pthread_exit, and the unwinding through that destructor
  // aborted the process (1 exit in ~200 under load). Look it up now, at import.
  py::detail::npy_api::get();
  m.doc() = "fastseq's compiled kernels (C++); use fastseq.functional or the layers instead.";
  m.attr("__version__") = FASTSEQ_VERSION;
  m.def("cpu_features", &cpu_features_dict, "Instruction-set features detected on this CPU.");
  m.def("cell_registry", [] {
        py::list out;
        for (const fastseq::cells::CellInfo& c : fastseq::cells::kCells) {
          py::dict d;
          d["name"] = c.name;
          d["family"] = c.family;
          d["gates"] = c.gates;
          d["states"] = c.states;
          d["projected"] = c.projected;
          py::list params;
          for (int i = 0; i < fastseq::cells::parameter_count(c); ++i)
            params.append(fastseq::cells::parameter_name(c, i));
          d["parameters"] = py::tuple(params);
          out.append(d);
        }
        return out;
      }, "The C++ list of cells (csrc/cells/registry.hpp): name, family, gates, states, "
         "projected, parameters.");
  m.def("smoke", [](int a, int b) { return a + b; }, py::arg("a"), py::arg("b"),
        "Adds two integers: proves the extension loads and runs.");
  m.def("blas_num_threads", &scipy_openblas_get_num_threads,
        "Threads the linked OpenBLAS would use (proves the BLAS library is linked and loads).");
  m.def("set_num_threads", [](int n) {
        if (n < 1) throw py::value_error("n must be >= 1");
        fastseq::runtime::set_num_threads(n);
      }, py::arg("n"), "Threads fastseq's kernels use from now on (its own pool; OpenBLAS stays at 1).");
  m.def("get_num_threads", &fastseq::runtime::num_threads, "Threads fastseq's kernels use.");
  m.def("use_openmp", [](const std::string& library) {
        return fastseq::runtime::use_openmp(library.c_str());
      }, py::arg("library"),
        "Run kernel teams on the threads of the already loaded libgomp `library` (a path or "
        "soname; PyTorch's). False, and no change, if it is not loaded or lacks GOMP_parallel.");
  m.def("stop_using_openmp", &fastseq::runtime::stop_using_openmp,
        "Run kernel teams on fastseq's own pool again.");
  m.def("using_openmp", &fastseq::runtime::using_openmp,
        "Whether kernel teams run on a host's OpenMP threads (use_openmp).");
  m.def("pool_busy", &fastseq::runtime::pool_busy,
        "Whether a kernel is using the thread pool right now (a second caller runs alone).");
  m.def("available_isas", &fastseq::available_isas,
        "Kernel variants (instruction sets) this CPU can run, best first.");
  m.def("selected_isa", &fastseq::selected_isa, "The kernel variant in use.");
  m.def("set_isa", [](const std::string& name) {
        if (!fastseq::set_isa(name)) {
          std::string names;
          for (const auto& n : fastseq::available_isas()) names += (names.empty() ? "" : ", ") + n;
          throw py::value_error("unknown or unsupported ISA '" + name + "'; available: " + names);
        }
      }, py::arg("name"), "Use the named kernel variant from now on.");
  m.def("empty_buffer_pool", &fastseq::runtime::empty_buffer_pool,
        "Frees the scratch and reserve buffers kept for reuse; returns the bytes freed.");
  m.def("buffer_pool_bytes", &fastseq::runtime::buffer_pool_bytes,
        "Bytes of scratch and reserve buffers kept for reuse right now.");
  fastseq::bindings::bind_kernels(m);
}
