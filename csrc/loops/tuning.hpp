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
// parts of at least kMinPartExtent rows (or columns), at most kMaxParts, by the shape and
// the machine's CPU count (team_matmul; below). Each part is one OpenBLAS call and re-packs
// the other operand; a power of two shares out evenly over 2, 4, 8... threads. Against the
// split by thread count it replaced (old and new build in separate processes, alternating
// 7-11 rounds, busy host; old/new time, median with IQR): LSTM (50,16,256) 1 thread 0.97-1.00 (IQR spans 1),
// GRU (25,16,512) 1.02, LSTM (25,16,512) training on 2 threads 1.00, RNN (50,64,512)
// inference 0.95 (0.92-0.99) and training 0.96 (0.92-1.00), LSTM (100,32,1024) 0.91
// (0.84-1.02). 512-row parts were no better within that noise, and would leave the RNN's
// (25,16,512) projection (512 columns) to one thread of two. What the parts cost on one
// thread, OpenBLAS alone (scipy-openblas32, 21 rounds alternating, time against one call):
// X·W_ihᵀ (400 × 512)·(512 × 2048) in 2, 4, 8 column parts 1.05, 1.06, 1.13; (800 × 256)·
// (256 × 1024) 1.03, 1.10, 1.19 (each part packs X again). The price of the same bits on
// any thread count, paid by every thread count; fewer, larger parts for every machine would
// cap the projection's threads on a many-core CPU, hence the cap by the CPUs below.
inline constexpr std::int64_t kMinPartExtent = 256;
inline constexpr std::int64_t kMaxParts = 64;
// ... and at most as many parts as the machine has CPUs, rounded up to a power of two
// (runtime/machine_cpus.hpp: a machine fact, never the thread count): parts that no CPU
// could run alongside the others only re-pack. On a 2-vCPU AMD EPYC Zen 4 (3 December
// 2026), one build with 8 parts against 2 (FASTSEQ_MACHINE_CPUS=64 against the default),
// bench/ab.py, 9 rounds, 36 cases: one flagged by the rule, the reset-before GRU
// (25,16,512) inference on 1 thread at 0.95, and 0.98 (IQR 0.95-1.03) when rerun with 15
// rounds; geometric mean 1.03; 1 thread: LSTMP (25,16,512, P = 128) inference 1.05,
// training 1.08, LSTM (50,64,512) inference 1.20. perf of that LSTMP inference: OpenBLAS
// packing X 5.4 % of the call, then 2.4 %. Against torch there (fastseq.bench, 11
// rounds): 1.55x (1.46-1.59) in 2 parts, 1.45x (1.37-1.65) in 8
// (bench/results/parts-by-cpus-zen4-2026-12-03.txt).
inline constexpr std::int64_t most_parts(int machine_cpus) {
  std::int64_t most = 1;
  while (most < kMaxParts && most < machine_cpus) most *= 2;
  return most;
}
// Whether an m x n product is cut along its rows (else its columns): the longer side.
inline constexpr bool cut_rows(std::int64_t m, std::int64_t n) { return m >= n; }
// The parts of an m x n product, cut along its longer side (team.hpp, team_matmul).
inline constexpr std::int64_t product_parts(std::int64_t m, std::int64_t n, int machine_cpus) {
  const std::int64_t extent = cut_rows(m, n) ? m : n;
  const std::int64_t most = most_parts(machine_cpus);
  std::int64_t p = 1;
  while (p < most && extent / (2 * p) >= kMinPartExtent) p *= 2;
  return p;
}

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

// A call of one step of at most kDirectMaxRows sequences (T = 1: a stream fed step by step)
// takes its step products straight from the weights, as OpenBLAS GEMVs, instead of packing
// them into panels first (layout.hpp, direct_products): the panels would serve one step, so
// packing them (a read and a write of W_hh) tripled the bytes the step moves. LSTM, B = 1,
// state passed in, 1 thread, alternating with torch.nn.LSTMCell (2000 calls, median):
// H = 512 948 µs against torch's 516 before, 433 against 519 after; H = 1024 5.0 ms
// against 2.2 before, 2.25 against 2.43 after (docs/performance.md). Not for T > 1: at
// (T, B, H) = (25, 1, 512) the direct products every step against packing once, 5 rounds,
// time packed / direct: LSTM 0.77 (0.71-0.82) on 1 thread, 1.11 (0.93-1.17) on 2; GRU
// 0.75 and 1.10; RNN 0.86 and 0.83 (the panel micro-kernel reads W_hh faster than
// OpenBLAS's GEMV, which more than pays for packing it once). Not for more
// rows: OpenBLAS's GEMM packs W itself, and the panel's micro-kernel is the faster reader.
// Nor, at T > 1 and B = 1, fastseq's own dot products of W_hh's rows with h (tried on an
// AMD EPYC Zen 4, 3 December 2026, not kept: docs/performance.md): they saved the packing
// (14 % of an LSTM (25, 1, 512) call) but read W_hh slower than the tile reads the panels.
inline constexpr std::int64_t kDirectMaxRows = 1;

// An input projection of at most kFewRowsMax rows (T·B: batch 1 over a short sequence)
// runs on fastseq's micro-kernel the other way round, Gxᵀ = W_ih·Xᵀ: X's few rows packed
// k-major as the panel (at most 32 columns), W_ih's rows read once, as they are, as the
// tile's rows (layout.hpp, few_rows_projection). OpenBLAS's GEMM copies and packs all of
// W_ih for those few rows: at (T, B, I, H) = (25, 1, 1024, 1024) with P = 256 it was 31 %
// of the forward (perf), its packing alone 15 %; on the micro-kernel 19 %, and the forward
// 8.4-10.9 ms -> 7.5-9.5 (medians of 150 calls, old and new build alternating, 5 rounds).
// Only where W_ih does not fit in L2 (Choices::few_rows_projection): where it does,
// OpenBLAS's packing stays in cache and its kernel is the faster, e.g. (4, 8, 128, 128)
// 112-128 µs on OpenBLAS against 132-174 on the micro-kernel; (2, 16, 512, 512) (4 MiB of
// W_ih) 2.00-2.12 ms against 1.82-1.85.
// Many rows stay on OpenBLAS. Tried on an AMD EPYC Zen 4 (3 December 2026, AVX-512 on
// 256-bit halves, 1 MiB L2), not kept: W_ihᵀ packed into panels like W_hhᵀ, then all T·B
// rows of x, as they are, through each group's panel in chunks, k-sliced as the step
// product. OpenBLAS spends 7-10 % of an LSTM (50,16,256) forward packing and zeroing
// (perf), but the panels' product ran slower than its kernel (x's rows unpacked), so
// nothing was won. Inference, 1 thread, 5 rounds alternating in one process, median time
// OpenBLAS / panels: LSTM (50,16,256) 0.99, (25,16,512) 0.99-1.03; LSTMP (25,16,512,
// P = 128) 0.99-1.04; GRU (25,16,512) 1.00, (50,16,256) 0.97; RNN (50,64,512) 0.88.
inline constexpr std::int64_t kFewRowsMax = 32;
// ... and only where the rows fill at least half of the panel's first vector (2·N >= lanes),
// and never for one row (kFewRowsMin): a row is a GEMV, which OpenBLAS streams W_ih through
// with whole vectors, where the kernel spends a broadcast per weight on a mostly empty panel.
// LSTM, I = H = 512 (W_ih 4 MiB), inference, 1 thread, B = 1 unless stated, 5 rounds of 60
// calls alternating the kernel (L2 2 MiB) and OpenBLAS (L2 overridden to 64 MiB), median
// time ratio OpenBLAS / kernel (above 1: the kernel pays):
//   AVX-512 (16 lanes): N = 1 0.49, 2 0.73, 4 0.80, 4 (T = 1, B = 4) 0.74; 8 1.08, 16 1.06,
//   25 1.03. AVX2 kernels with OpenBLAS's Haswell kernels (8 lanes): N = 1 0.72; 2 1.20,
//   4 1.13, 4 (T = 1, B = 4) 1.11, 8 1.18, 16 1.03, 25 1.00. AMD Zen 4 (AVX-512 on 256-bit
//   halves, L2 1 MiB), 7 rounds: N = 2 1.04, 4 1.00 (neither taken), 8 1.09, 16 1.15,
//   25 1.03, (T, B) = (2, 16) 1.08, (8, 4) 1.11.
// Half a vector keeps every loss out (N = 4 on AVX-512 at 0.74-0.80 above all) and gives up
// AVX2's N = 2..3 (1.20 at N = 2). One step of one sequence (T = B = 1, a stream fed step by
// step) had been going to the kernel since it came in: 0.49 above, the LSTM step at H = 512
// 793 µs against 389 through OpenBLAS.
inline constexpr std::int64_t kFewRowsMin = 2;
// ... and only where the rows fit the panel widths the kernel is compiled for: at most
// kFewRowsVectors vectors (Forward::project_few_rows instantiates 1..4). Float64 on AVX2
// (4 lanes) and the portable variant (2 or 4) would need up to 16 for 32 rows; those stay on
// OpenBLAS, and the choice says so.
inline constexpr int kFewRowsVectors = 4;

// From kFuseMinRows batch rows on, the LSTM's forward may fold the input projection into the
// step product when there are no lengths (layout.hpp, may_fuse_projection); whether it does
// is Choices::fuse_projection (below), from the size of the fused panel against L2. The
// scratch is sized by this shape rule alone, so a size query and the call agree whatever the
// cache sizes are when each runs (the unfused call leaves the fused panel's extra rows and
// the staging rows of x unused).
// Below 32 rows, measured on an AMD EPYC Zen 4 (1 MiB L2, 32 MiB L3; 3 December 2026) with
// this constant lowered and the choice flipped by the L2 size in force, fused against
// unfused in alternating rounds in one process, 5 rounds, median time unfused/fused:
//   B = 16: LSTM (T, I = H) = (25, 256), 2 MiB panel: 1.07, (50,256) 1.07 / 2 threads 1.03 /
//           training 1.04; (50,384) 4.5 MiB 0.99; (25,512) 8 MiB 1.01; LSTMP (25,512,
//           P = 128) 5 MiB 1.07 / 2 threads 1.08 / training 1.02
//   B = 24: LSTM (25,512) 8 MiB 0.98.   B = 8: LSTM (50,256) 1.00; LSTMP as above 0.98
// Gains of 7 % at 2 and 5 MiB but a loss at 4.5: no rule from the cache sizes that this
// and the Sapphire Rapids rows below agree on, so the shape rule stays at 32 rows.
inline constexpr std::int64_t kFuseMinRows = 32;
// ... and while the fused panel (W_ihᵀ above W_hhᵀ) is at most kFuseL2Multiple · L2 · B / 32
// bytes (see choose()).
inline constexpr std::int64_t kFuseL2Multiple = 3;

// ---- Choices from the cache sizes (runtime/caches.hpp) ----------------------------------
// Computed once per call from the sizes in force (loops/layout.hpp, forward_choices): fixed
// by the shape and the (detected or overridden) sizes, never by the thread count, so the
// same-bits contract holds for any thread count under any sizes. None of them changes a
// buffer's size.

struct Choices {
  std::int64_t k_slice = kKSliceMax;      // KC: panel rows per k-slice of the forward product
  std::int64_t k_block_rows = kKBlockRows;  // batch rows per chunk of the k-blocked product
  bool fuse_projection = false;           // the input projection folded into the steps
  bool few_rows_projection = false;       // ... or on the micro-kernel as W_ih·Xᵀ
};

// What the rules read of a call: the bytes of one k-row of the widest forward panel of the
// cell (vectors per tile row NV times the vector's bytes), the batch rows, and, where the
// shape allows fusion, the bytes of the fused panel (W_ihᵀ above W_hhᵀ).
struct ChoiceInputs {
  std::int64_t panel_row_bytes = 0;
  std::int64_t rows = 0;
  bool may_fuse = false;
  std::int64_t fused_panel_bytes = 0;
  std::int64_t few_rows_weight_bytes = 0;  // W_ih's bytes where the rows are few, else 0
  std::int64_t few_rows = 0;               // ... and those rows (T·B)
  std::int64_t lanes = 0;                  // scalars per vector of the kernel variant
};

// (a) L1d: a k-slice takes at most 2/3 of it, the chunk's partial sums the other third.
//     Arithmetic: Sapphire Rapids, 48 KiB L1d, LSTM float32 AVX-512: a panel row is 4
//     vectors × 64 B = 256 B, 2/3 · 48 KiB = 32 KiB = 128 rows (the measured kKSliceMax),
//     and 64 rows of partial sums × 256 B = 16 KiB = the other third (kKBlockRows). Zen 3,
//     32 KiB L1d, AVX2 (4 × 32 B = 128 B a row): 21.3 KiB / 128 B = 170 → 128 (the cap),
//     10.7 KiB / 128 B = 85 → 64 rows (the cap). An AVX-512 part with 32 KiB of L1d
//     (Skylake-SP): 85 → 80 rows per slice, 42 → 40 rows per chunk.
inline constexpr std::int64_t kL1SliceNum = 2, kL1SliceDen = 3;
// (b) L3: a panel counts as staying in it if it fills at most 3/4 of it (the rest holds
//     what streams past in the same step, and other threads' and processes' data).
inline constexpr std::int64_t kL3ShareNum = 3, kL3ShareDen = 4;

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
  // (b) Fusion: the fused panel is streamed once per step; what of it does not stay in L2
  //     comes from L3 behind the FMAs of the B rows each byte serves, so the panel a step
  //     can afford grows with B: at most kFuseL2Multiple · L2 · B / 32 bytes (3 L2s at 32
  //     rows, 6 at 64), and never more than L3 holds (3/4 of it: past that, every step
  //     reads the panel from memory). Measured on the machine above (2 MiB L2), LSTM
  //     float32 inference, I = H, fused against unfused in alternating rounds in one
  //     process (the override flipping the choice), median time ratio fused/unfused,
  //     1 thread / 2 threads:
  //       B = 32: H = 192 (fused panel 1.2 MiB) 0.92 / 0.92; H = 256 (2 MiB) 0.95 / 0.94;
  //               H = 384 (4.5 MiB) 0.95 / 0.97; H = 512 (8 MiB) 1.05 / 1.00;
  //               H = 1024 (32 MiB) 1.21 (1 thread)
  //       B = 48: H = 256 (2 MiB) 0.89 / 0.85
  //       B = 64: H = 256 (2 MiB) 0.86 / 0.86; H = 512 (8 MiB, the first measurement,
  //               when 64 rows was the only rule) 0.92-0.97 / 0.87-0.95; H = 768 (18 MiB)
  //               0.99 (1 thread); T = 25, H = 1024 (32 MiB) 1.08 / 1.01 (11 rounds, both
  //               IQRs span 1); float64, H = 512 (16 MiB) 1.02 / 1.03
  //     9 rounds each unless stated; the host is shared, IQRs about ±5 %. The 3 L2s at 32
  //     rows sit between the 4.5 MiB that paid and the 8 MiB that did not; the 6 at 64 rows
  //     keep 8 MiB fused and leave 18 and 32 MiB (no gain) apart. Below 32 rows nothing was
  //     measured: the shape rule keeps them unfused. On 2 MiB of L2 the rule fuses every
  //     float32 case the 64-row rule did at H <= 512 (the benchmark grid's LSTM (50,64,512)
  //     among them); it adds B = 32..63 with small panels and drops B = 64 at H >= 768
  //     (I = H), and float64 at H = 512.
  const double l2_budget = double(kFuseL2Multiple) * double(c.l2) * double(in.rows) / 32.0;
  const double l3_budget = double(c.l3 / kL3ShareDen * kL3ShareNum);
  const double panel = double(in.fused_panel_bytes);
  ch.fuse_projection = in.may_fuse && panel <= l2_budget && panel <= l3_budget;
  // (d) Few rows (kFewRowsMax): W_ih read once as it is, where it does not fit in L2,
  //     the rows fill at least half a vector (kFewRowsMin) and fit kFewRowsVectors.
  ch.few_rows_projection = in.few_rows_weight_bytes > c.l2 && in.few_rows >= kFewRowsMin &&
                           2 * in.few_rows >= in.lanes &&
                           in.few_rows <= kFewRowsVectors * in.lanes;
  return ch;
}

}  // namespace fastseq::loops::tuning
