// The pybind11 module fastseq._core: build facts (version, CPU features, BLAS) and the
// kernel bindings. No maths here: each bind_<topic>.cpp checks arguments and calls csrc/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "bindings/bind.hpp"
#include "cells/registry.hpp"
#include "loops/dispatch.hpp"
#include "runtime/buffer_pool.hpp"
#include "runtime/caches.hpp"
#include "runtime/cpu_features.hpp"
#include "runtime/machine_cpus.hpp"
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

py::dict cache_sizes_dict() {
  namespace rt = fastseq::runtime;
  const rt::CacheReport r = rt::cache_report();
  const std::int64_t now[] = {r.sizes.l1d, r.sizes.l2, r.sizes.l3};
  const std::int64_t detected[] = {r.detected.l1d, r.detected.l2, r.detected.l3};
  py::dict d, sources, found, found_sources;
  for (int l = 0; l < rt::kCacheLevels; ++l) {
    const char* name = rt::cache_level_name(rt::CacheLevel(l));
    d[name] = now[l];
    sources[name] = rt::cache_source_name(r.source[l]);
    found[name] = detected[l];
    found_sources[name] = rt::cache_source_name(r.detected_source[l]);
  }
  d["source"] = sources;
  d["detected"] = found;
  d["detected_source"] = found_sources;
  return d;
}

// The choices a forward call of this shape would make now (selected variant, sizes in force).
py::dict tuning_choices(const std::string& cell, int scalar_size, std::int64_t T,
                        std::int64_t B, std::int64_t I, std::int64_t H, std::int64_t P) {
  const fastseq::cells::CellInfo* info = nullptr;
  for (const auto& c : fastseq::cells::kCells)
    if (cell == c.name) info = &c;
  if (info == nullptr) throw py::value_error("cell: unknown cell '" + cell + "'");
  if (scalar_size != 4 && scalar_size != 8)
    throw py::value_error("scalar_size must be 4 (float32) or 8 (float64)");
  fastseq::SeqConfig cfg;
  cfg.cell = info->kind;
  cfg.T = T, cfg.B = B, cfg.I = I, cfg.H = H, cfg.P = P;
  fastseq::loops::tuning::Choices ch;
  try {
    ch = fastseq::loops::forward_choices_now(cfg, std::size_t(scalar_size));
  } catch (const std::invalid_argument& e) {
    throw py::value_error(e.what());
  }
  py::dict d;
  d["isa"] = fastseq::selected_isa();
  d["k_slice"] = ch.k_slice;
  d["k_block_rows"] = ch.k_block_rows;
  d["fuse_projection"] = ch.fuse_projection;
  d["few_rows_projection"] = ch.few_rows_projection;
  // The OpenBLAS calls of the input projection X·W_ihᵀ (team_matmul), none on the kernel's.
  const bool on_blas = !ch.fuse_projection && !ch.few_rows_projection;
  d["projection_parts"] =
      on_blas ? fastseq::loops::tuning::product_parts(T * B, info->gates * H,
                                                      fastseq::runtime::machine_cpus().count)
              : 0;
  return d;
}

py::dict machine_cpus_dict() {
  const fastseq::runtime::MachineCpus& m = fastseq::runtime::machine_cpus();
  py::dict d;
  d["count"] = m.count;
  d["detected"] = m.detected;
  d["source"] = m.overridden ? "override" : "sysconf";
  d["rejected"] = m.rejected;
  d["most_parts"] = fastseq::loops::tuning::most_parts(m.count);  // of any large product
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
  m.def("cache_sizes", &cache_sizes_dict,
        "Cache sizes in force (bytes: l1d, l2, l3), where each came from, and what was "
        "detected.");
  m.def("set_cache_sizes", [](std::int64_t l1d, std::int64_t l2, std::int64_t l3) {
        const std::string err = fastseq::runtime::set_cache_sizes(l1d, l2, l3);
        if (!err.empty()) throw py::value_error(err);
      }, py::arg("l1d") = 0, py::arg("l2") = 0, py::arg("l3") = 0,
      "Override the cache sizes (bytes) the tuning rules use; 0 leaves a level as it is.");
  m.def("reset_cache_sizes", &fastseq::runtime::reset_cache_sizes,
        "Back to the cache sizes the process started with (environment overrides, else "
        "detected).");
  m.def("parse_cache_size", [](const std::string& text) -> py::object {
        std::int64_t bytes = 0;
        if (!fastseq::runtime::parse_cache_size(text, bytes)) return py::none();
        return py::int_(bytes);
      }, py::arg("text"), "Bytes of a size like '512K', '2MiB', '49152'; None if it is not one.");
  m.def("cache_size_range", [](const std::string& level) {
        namespace rt = fastseq::runtime;
        for (int l = 0; l < rt::kCacheLevels; ++l)
          if (level == rt::cache_level_name(rt::CacheLevel(l)))
            return py::make_tuple(rt::cache_size_min(rt::CacheLevel(l)),
                                  rt::cache_size_max(rt::CacheLevel(l)));
        throw py::value_error("level must be 'l1d', 'l2' or 'l3'; got '" + level + "'");
      }, py::arg("level"), "The (min, max) bytes a cache level's size may be.");
  m.def("cache_env_rejected", &fastseq::runtime::cache_env_rejected,
        "Why each ignored FASTSEQ_L*_SIZE environment variable was ignored.");
  m.def("machine_cpus", &machine_cpus_dict,
        "The CPU count the tuning rules read (count), what sysconf reported (detected), "
        "where count came from ('sysconf' or 'override': FASTSEQ_MACHINE_CPUS) and why "
        "FASTSEQ_MACHINE_CPUS was ignored ('' if it was not), and the most parts a large "
        "product is cut into on that count (most_parts).");
  m.def("tuning_choices", &tuning_choices, py::arg("cell"), py::arg("scalar_size"),
        py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("P") = 0,
        "The tuning choices (k_slice, k_block_rows, fuse_projection, few_rows_projection, "
        "projection_parts) a "
        "forward call of this "
        "shape would make now.");
  m.def("empty_buffer_pool", &fastseq::runtime::empty_buffer_pool,
        "Frees the scratch and reserve buffers kept for reuse; returns the bytes freed.");
  m.def("buffer_pool_bytes", &fastseq::runtime::buffer_pool_bytes,
        "Bytes of scratch and reserve buffers kept for reuse right now.");
  fastseq::bindings::bind_kernels(m);
}
