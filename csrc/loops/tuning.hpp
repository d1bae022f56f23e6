// The tuning constants of the time loops, in one place, each with the measurement (and the
// machine: a 2-vCPU Intel Sapphire Rapids KVM guest, AVX-512, 48 KiB L1d and 2 MiB L2 per
// core, unless stated) that chose it, and the rules that choose from the cache sizes in
// force (Choices, at the end). None of them changes a value the kernels compute for a given
// configuration on a given machine with given cache sizes; several decide which order sums
// run in, which is why the same-bits contract depends on them being fixed per shape (and
// per cache sizes), never per thread count.
#pragma once

#include <cstdint>

#include "runtime/caches.hpp"

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

// k-blocking of the forward step product, from kKBlockMinRows batch rows on and when the
// panel is deeper than one k-slice (Choices::k_slice, from the L1d size: choose() below): a
// slice of the panel stays in L1 while the row tiles of a chunk of rows (at most
// kKBlockRows, Choices::k_block_rows) pass over it; the partial sums of a chunk live on the
// stack, kKBlockRows rows deep. kKSliceMax is the depth measured on the 48 KiB L1d of the
// machine above (128), kept as a cap: no deeper slice has been measured.
inline constexpr std::int64_t kKSliceMax = 128;
inline constexpr std::int64_t kKBlockRows = 64;
inline constexpr std::int64_t kKBlockMinRows = 16;

// From kFuseMinRows batch rows on, the LSTM's forward may fold the input projection into the
// step product when there are no lengths (layout.hpp, may_fuse_projection; whether it does
// is Choices::fuse_projection, below): measured in alternation with the unfused loop, LSTM
// (50,64,512) inference 3-8 % faster on 1 thread, 5-13 % on 2; with fewer rows the fused
// panel, twice W_hh's, streams from L3 at every step for fewer FMAs per byte (LSTM
// (100,32,1024): 16-27 % slower). The scratch is sized by this shape rule alone, so a size
// query and the call agree whatever the cache sizes are when each runs.
inline constexpr std::int64_t kFuseMinRows = 64;

// ---- Choices from the cache sizes (runtime/caches.hpp) ----------------------------------
// Computed once per call from the sizes in force (loops/layout.hpp, forward_choices): fixed
// by the shape and the (detected or overridden) sizes, never by the thread count, so the
// same-bits contract holds for any thread count under any sizes. None of them changes a
// buffer's size.

struct Choices {
  std::int64_t k_slice = kKSliceMax;      // KC: panel rows per k-slice of the forward product
  std::int64_t k_block_rows = kKBlockRows;  // batch rows per chunk of the k-blocked product
  bool fuse_projection = false;           // the input projection folded into the steps
};

// What the rules read of a call: the bytes of one k-row of the widest forward panel of the
// cell (vectors per tile row NV times the vector's bytes), and, where the shape allows
// fusion, the bytes of the whole W_hhᵀ panel and of the fused one (W_ihᵀ above W_hhᵀ).
struct ChoiceInputs {
  std::int64_t panel_row_bytes = 0;
  bool may_fuse = false;
  std::int64_t recurrent_panel_bytes = 0;
  std::int64_t fused_panel_bytes = 0;
};

// The share of a cache a panel may take and still be counted as staying there: the rest
// holds what streams past it in the same step (the rows of h and x, the partial sums, the
// lines of Gx, y and the reserve the epilogues touch).
//
// (a) L1d: a k-slice takes at most 2/3 of it, the chunk's partial sums the other third.
//     Arithmetic: Sapphire Rapids, 48 KiB L1d, LSTM float32 AVX-512: a panel row is 4
//     vectors × 64 B = 256 B, 2/3 · 48 KiB = 32 KiB = 128 rows (the measured kKSliceMax),
//     and 64 rows of partial sums × 256 B = 16 KiB = the other third (kKBlockRows). Zen 3,
//     32 KiB L1d, AVX2 (4 × 32 B = 128 B a row): 21.3 KiB / 128 B = 170 → 128 (the cap),
//     10.7 KiB / 128 B = 85 → 64 rows (the cap). An AVX-512 part with 32 KiB of L1d
//     (Skylake-SP): 85 → 80 rows per slice, 42 → 40 rows per chunk.
inline constexpr std::int64_t kL1SliceNum = 2, kL1SliceDen = 3;
// (b) L2 and L3: a panel counts as staying in a level if it fills at most 3/4 of it. The
//     RNN's measurement (layout.hpp): its W_hh panel at H = 512, 1 MiB, stays in the 2 MiB
//     L2 and the fused one, 2 MiB, does not: 3/4 · 2 MiB = 1.5 MiB separates the two.
inline constexpr std::int64_t kCacheShareNum = 3, kCacheShareDen = 4;

// The level a panel of `bytes` streams from at every step: 2 (L2), 3 (L3) or 4 (memory).
// Judged against one core's L2, as on one thread: a choice may not depend on the thread
// count (on more threads each one's share of the panel is smaller).
inline int panel_level(std::int64_t bytes, const runtime::CacheSizes& c) {
  if (bytes <= c.l2 / kCacheShareDen * kCacheShareNum) return 2;
  if (bytes <= c.l3 / kCacheShareDen * kCacheShareNum) return 3;
  return 4;
}

inline Choices choose(const ChoiceInputs& in, const runtime::CacheSizes& c) {
  Choices ch;
  // (a) KC: the deepest multiple of 16 rows (a whole 64-byte line of a float32 row of h or
  //     x per slice) whose slice fits 2/3 of L1d, at least 16, at most kKSliceMax.
  const std::int64_t row = in.panel_row_bytes > 0 ? in.panel_row_bytes : 1;
  std::int64_t kc = c.l1d / kL1SliceDen * kL1SliceNum / row / 16 * 16;
  ch.k_slice = kc < 16 ? 16 : kc > kKSliceMax ? kKSliceMax : kc;
  // (c) The chunk of rows whose partial sums (rows × one panel row) share L1d with the
  //     slice: the remaining third, a multiple of 8 rows, at least 8, at most kKBlockRows.
  //     (The partial sums of a row do not depend on the chunk it is in: same bits.)
  std::int64_t rows = c.l1d / kL1SliceDen / row / 8 * 8;
  ch.k_block_rows = rows < 8 ? 8 : rows > kKBlockRows ? kKBlockRows : rows;
  // (b) Fusion pays from kFuseMinRows rows on when the fused panel streams from the same
  //     level as W_hh's alone (LSTM (50,64,512) float32 on the machine above: 4 and 8 MiB,
  //     both from L3: fused, as measured); not when folding W_ih in pushes the panel out of
  //     a level W_hh's fits in (the RNN's 1 → 2 MiB out of a 2 MiB L2, measured no gain and
  //     up to 5 % slower; an L3 the fused panel overflows turns every step into a read
  //     from memory).
  ch.fuse_projection = in.may_fuse && panel_level(in.fused_panel_bytes, c) ==
                                          panel_level(in.recurrent_panel_bytes, c);
  return ch;
}

}  // namespace fastseq::loops::tuning
