// The step product's register tile (csrc/gemm/microkernel.hpp, gemm::tile) timed on its own,
// with its operands in L1: one k-slice (tuning::kKSliceMax rows, the slice a 48 KiB L1d
// gets) of a panel, MR rows of h, for each tile shape worth comparing under the ISA it is
// compiled for. This is the measurement behind gemm::max_rows. Best of 15 timings per
// shape, since machines are shared; compare shapes within one run, not across runs.
//
//   g++ -std=c++17 -O3 -ffp-contract=off -mavx2 -mfma -DFASTSEQ_ISA_AVX2 \
//       -DFASTSEQ_ISA_NS=isa_bench -Icsrc -o /tmp/mk bench/microkernel_rate.cpp && /tmp/mk
//   (AVX-512: add -mavx512f -mavx512bw -mavx512dq -mavx512vl, -DFASTSEQ_ISA_AVX512)
#include <chrono>
#include <cstdio>
#include <vector>

#include "gemm/microkernel.hpp"
#include "loops/tuning.hpp"

namespace {

using fastseq::gemm::lanes;
using fastseq::gemm::max_rows;
using fastseq::gemm::tile;
constexpr int L = lanes<float>;
constexpr std::int64_t K = fastseq::loops::tuning::kKSliceMax;
constexpr std::int64_t kLda = 1000;  // rows of h a little apart, as ldh keeps them

template <int MR, int NV>
double gflops() {
  std::vector<float> a(MR * kLda, 0.5f), p(K * NV * L, 0.25f), out(MR * NV * L);
  const long reps = 400000000L / (2L * MR * NV * L * K);
  double best = 0;
  for (int trial = 0; trial < 15; ++trial) {
    const auto t0 = std::chrono::steady_clock::now();
    for (long r = 0; r < reps; ++r) {
      tile<float, MR, NV, true>(a.data(), kLda, p.data(), NV * L, K, out.data());
      asm volatile("" ::: "memory");
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double g = 2.0 * MR * NV * L * K * reps / s / 1e9;
    if (g > best) best = g;
  }
  return best;
}

template <int MR, int NV>
void row() {
  std::printf("  %2d rows x %d vectors (%2d accumulators): %6.1f GFLOP/s%s\n", MR, NV, MR * NV,
              gflops<MR, NV>(), MR == max_rows<NV> ? "   <- max_rows" : "");
}

}  // namespace

int main() {
  std::printf("float32, %d lanes, %d vector registers, k-slice %lld\n", L, FASTSEQ_VEC_REGS,
              static_cast<long long>(K));
#if FASTSEQ_VEC_REGS == 32
  row<4, 4>(); row<6, 4>(); row<4, 3>(); row<8, 3>(); row<8, 2>(); row<12, 2>(); row<16, 1>();
#else
  row<2, 4>(); row<3, 4>(); row<2, 3>(); row<3, 3>(); row<4, 2>(); row<6, 2>(); row<8, 1>();
  row<12, 1>();
#endif
}
