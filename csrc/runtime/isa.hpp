// The instruction-set namespace. Everything a per-ISA translation unit compiles from a header
// (cells, micro-kernels, loops, layout) lives in fastseq::<part>::FASTSEQ_ISA_NS, so the
// linker can never merge an AVX-512 copy of an inline function into the portable path.
// FASTSEQ_ISA_NS is set per translation unit by CMake (isa_portable, isa_avx2, isa_avx512);
// the ISA-neutral files (sizes, dispatch) see isa_neutral.
#pragma once

#ifndef FASTSEQ_ISA_NS
#define FASTSEQ_ISA_NS isa_neutral
#endif

// Vector width and register count of the target the translation unit is compiled for.
#if defined(FASTSEQ_ISA_AVX512)
#define FASTSEQ_VEC_BYTES 64
#define FASTSEQ_VEC_REGS 32
#elif defined(FASTSEQ_ISA_AVX2)
#define FASTSEQ_VEC_BYTES 32
#define FASTSEQ_VEC_REGS 16
#else
#define FASTSEQ_VEC_BYTES 16
#define FASTSEQ_VEC_REGS 16
#endif

namespace fastseq {
// The widest vector any compiled variant uses: scratch sizes are computed with it, so one
// size query serves every ISA.
inline constexpr int kMaxVecBytes = 64;
}  // namespace fastseq
