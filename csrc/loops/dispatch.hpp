// The kernel table: one entry per compiled instruction set (loops/sequence_isa.cpp built
// once per ISA), filled portable-first and overridden by the best the CPU supports, or by
// FASTSEQ_ISA / set_isa. Only the selection lives here; the kernels are in the ISA files.
#pragma once

#include <string>
#include <vector>

#include "fastseq/export.hpp"
#include "fastseq/kernels.hpp"
#include "loops/tuning.hpp"

namespace fastseq {

namespace loops {

struct KernelTable {
  const char* name;
  int vec_bytes;  // the variant's vector width (its tuning choices depend on it)
  void (*forward_f)(const SeqConfig&, bool, const ForwardArgs<float>&);
  void (*forward_d)(const SeqConfig&, bool, const ForwardArgs<double>&);
  void (*backward_f)(const SeqConfig&, const BackwardArgs<float>&);
  void (*backward_d)(const SeqConfig&, const BackwardArgs<double>&);
};

const KernelTable& table_isa_portable();
#if defined(FASTSEQ_HAVE_AVX2)
const KernelTable& table_isa_avx2();
#endif
#if defined(FASTSEQ_HAVE_AVX512)
const KernelTable& table_isa_avx512();
#endif

// The table the kernels run with now.
const KernelTable& selected_table();

// The tuning choices (tuning.hpp) a forward call with cfg and scalars of scalar_size bytes
// would make now: the selected variant under the cache sizes in force (validates cfg).
FASTSEQ_API tuning::Choices forward_choices_now(const SeqConfig& cfg, std::size_t scalar_size);

}  // namespace loops

// Names of the variants this CPU can run, best first ("avx512", "avx2", "portable").
FASTSEQ_API std::vector<std::string> available_isas();
// The variant in use.
FASTSEQ_API std::string selected_isa();
// Use the named variant from now on; false (nothing changes) if it is unknown or the CPU
// cannot run it.
FASTSEQ_API bool set_isa(const std::string& name);

}  // namespace fastseq
