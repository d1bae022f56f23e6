// CPU feature detection: which instruction sets this process may use.
// Only detection lives here; choosing kernels from these flags is the dispatch table's job.
#pragma once

#include "fastseq/export.hpp"

namespace fastseq {

struct CpuFeatures {
  bool sse42 = false;
  bool avx = false;
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
};

// Detected once (cpuid + xgetbv, so an OS that does not save AVX state reports no AVX).
FASTSEQ_API const CpuFeatures& cpu_features();

}  // namespace fastseq
