// The tuning constants of the time loops, in one place, each with the measurement (and the
// machine: a 2-vCPU Intel Sapphire Rapids KVM guest, AVX-512, 2 MiB L2 per core, unless
// stated) that chose it. None of them changes a value the kernels compute for a given
// configuration on a given machine; several decide which order sums run in, which is why
// the same-bits contract depends on them being fixed per shape, never per thread count.
#pragma once

#include <cstdint>

namespace fastseq::loops::tuning {

// Large products (input projection, dx, weight gradients): cut into a power of two of
// parts of at least kMinPartExtent rows (or columns), at most kMaxParts, by shape alone
// (team_matmul). Each part is one OpenBLAS call and re-packs the other operand; a power of
// two shares out evenly over 2, 4, 8... threads. Against the split by thread count it
// replaced (old and new build in separate processes, alternating 7-11 rounds, busy host;
// old/new time, median with IQR): LSTM (50,16,256) 1 thread 0.97-1.00 (IQR spans 1),
// GRU (25,16,512) 1.02, LSTM (25,16,512) training on 2 threads 1.00, RNN (50,64,512)
// inference 0.95 (0.92-0.99) and training 0.96 (0.92-1.00), LSTM (100,32,1024) 0.91
// (0.84-1.02). 512-row parts were no better within that noise, and would leave the RNN's
// (25,16,512) projection (512 columns) to one thread of two.
inline constexpr std::int64_t kMinPartExtent = 256;
inline constexpr std::int64_t kMaxParts = 64;

// A team of threads for a call only where one step's product has at least this many FLOPs:
// below it, a barrier per step (about 1 µs with both threads spinning) costs more than the
// split saves.
inline constexpr double kMinTeamStepFlops = 1.5e5;

// The single-gate RNN puts kRnnBlocksPerPanel blocks of units side by side in one forward
// panel: one block gives (AVX-512) tiles of 16 rows × 1 vector, 17 loads per 16 FMAs,
// load-bound; four give the LSTM's 4 rows × 4 vectors, 8 loads per 16 FMAs.
inline constexpr int kRnnBlocksPerPanel = 4;

// k-blocking of the forward step product, from kKBlockMinRows batch rows on and H > kKSlice:
// a kKSlice-row slice of the panel stays in L1 while the row tiles of a chunk of
// kKBlockRows rows pass over it (the partial sums of a chunk live on the stack).
inline constexpr std::int64_t kKSlice = 128;
inline constexpr std::int64_t kKBlockRows = 64;
inline constexpr std::int64_t kKBlockMinRows = 16;

// From kFuseMinRows batch rows on, the LSTM's forward folds the input projection into the
// step product when there are no lengths (layout.hpp, fuses_projection): measured in
// alternation with the unfused loop, LSTM (50,64,512) inference 3-8 % faster on 1 thread,
// 5-13 % on 2; with fewer rows the fused panel, twice W_hh's, streams from L3 at every step
// for fewer FMAs per byte (LSTM (100,32,1024): 16-27 % slower).
inline constexpr std::int64_t kFuseMinRows = 64;

}  // namespace fastseq::loops::tuning
