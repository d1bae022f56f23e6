// One instruction-set variant of the kernels: compiled three times by CMake, with the ISA's
// flags and FASTSEQ_ISA_NS = isa_portable / isa_avx2 / isa_avx512, each copy exporting its
// table (loops/dispatch.hpp) under its own name.
#include "cells/all.hpp"
#include "loops/backward.hpp"
#include "loops/dispatch.hpp"
#include "loops/forward.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {
namespace {

using cells::with_cell;

template <class S>
void forward_entry(const SeqConfig& cfg, bool training, const ForwardArgs<S>& a) {
  with_cell<S>(cfg.cell, [&](auto cell) {
    using Cell = decltype(cell);
    if (training) {
      if (cfg.has_lengths) forward_loop<S, Cell, true, true>(cfg, a);
      else forward_loop<S, Cell, true, false>(cfg, a);
    } else {
      if (cfg.has_lengths) forward_loop<S, Cell, false, true>(cfg, a);
      else forward_loop<S, Cell, false, false>(cfg, a);
    }
  });
}

template <class S>
void backward_entry(const SeqConfig& cfg, const BackwardArgs<S>& a) {
  with_cell<S>(cfg.cell, [&](auto cell) {
    using Cell = decltype(cell);
    if (cfg.has_lengths) backward_loop<S, Cell, true>(cfg, a);
    else backward_loop<S, Cell, false>(cfg, a);
  });
}

}  // namespace
}  // namespace FASTSEQ_ISA_NS

#define FASTSEQ_CAT2(a, b) a##b
#define FASTSEQ_CAT(a, b) FASTSEQ_CAT2(a, b)
#define FASTSEQ_STR2(a) #a
#define FASTSEQ_STR(a) FASTSEQ_STR2(a)

const KernelTable& FASTSEQ_CAT(table_, FASTSEQ_ISA_NS)() {
  static const KernelTable t{FASTSEQ_STR(FASTSEQ_ISA_NS) + 4,  // drop "isa_"
                             FASTSEQ_VEC_BYTES,
                             &FASTSEQ_ISA_NS::forward_entry<float>,
                             &FASTSEQ_ISA_NS::forward_entry<double>,
                             &FASTSEQ_ISA_NS::backward_entry<float>,
                             &FASTSEQ_ISA_NS::backward_entry<double>};
  return t;
}

}  // namespace fastseq::loops
