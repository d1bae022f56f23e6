// CPU feature detection with cpuid/xgetbv on x86-64; every flag false elsewhere.
#include "runtime/cpu_features.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <cstdint>
#endif

namespace fastseq {
namespace {

#if defined(__x86_64__) || defined(_M_X64)
std::uint64_t read_xcr0() {
  std::uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  f.sse42 = c & bit_SSE4_2;
  const bool osxsave = c & bit_OSXSAVE;
  const bool avx_hw = c & bit_AVX;
  const bool fma_hw = c & bit_FMA;
  // The OS must save YMM (bits 1,2) and, for AVX-512, opmask/ZMM state (bits 5,6,7).
  const std::uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;
  const bool os_avx512 = (xcr0 & 0xE6) == 0xE6;
  f.avx = avx_hw && os_avx;
  f.fma = fma_hw && os_avx;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    f.avx2 = (b & bit_AVX2) && os_avx;
    f.avx512f = (b & bit_AVX512F) && os_avx512;
    f.avx512dq = (b & bit_AVX512DQ) && os_avx512;
    f.avx512bw = (b & bit_AVX512BW) && os_avx512;
    f.avx512vl = (b & bit_AVX512VL) && os_avx512;
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace fastseq
