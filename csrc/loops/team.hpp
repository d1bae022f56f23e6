// What the forward and backward loops share: a thread's share of rows, units and groups of
// units, the zig-zag visiting order, lengths (time_of, zero_padding), the large products
// cut into thread-count-independent parts (team_matmul), the team's size, and the call of a
// cell's epilogue for a full or a partial block. Compiled per ISA, in FASTSEQ_ISA_NS.
#pragma once

#include <cstdint>
#include <cstring>

#include "fastseq/kernels.hpp"
#include "gemm/gemm.hpp"
#include "loops/tuning.hpp"
#include "runtime/isa.hpp"
#include "runtime/thread_pool.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

using gemm::Op;
using runtime::team_barrier;

template <class S>
inline void zero(S* p, std::int64_t n) {
  if (n > 0) std::memset(static_cast<void*>(p), 0, sizeof(S) * static_cast<std::size_t>(n));
}

template <class S>
inline void copy(S* dst, const S* src, std::int64_t n) {
  if (n > 0) std::memcpy(dst, src, sizeof(S) * static_cast<std::size_t>(n));
}

template <class S>
inline void copy_or_zero(S* dst, const S* src, std::int64_t n) {
  if (src)
    copy(dst, src, n);
  else
    zero(dst, n);
}

// [lo, hi): this thread's share of n items.
inline void share(std::int64_t n, int tid, int nt, std::int64_t& lo, std::int64_t& hi) {
  lo = n * tid / nt;
  hi = n * (tid + 1) / nt;
}

// Groups of w adjacent blocks (the last one narrower) out of nb, fixed by position; and this
// thread's share of whole groups, as blocks [jb0, jb1). Threads own whole groups so that a
// unit's tile, and with it the order of its sums, never depends on the thread count.
inline std::int64_t group_count(std::int64_t nb, std::int64_t w) { return (nb + w - 1) / w; }
inline void share_groups(std::int64_t nb, std::int64_t w, int tid, int nt, std::int64_t& jb0,
                         std::int64_t& jb1) {
  share(group_count(nb, w), tid, nt, jb0, jb1);
  jb0 *= w;
  jb1 = jb1 * w < nb ? jb1 * w : nb;
}

// The q-th of n groups of blocks to visit at step s: odd steps go backwards. The panels a
// step used last are then the first the next step needs, so whatever part of them is still
// in L2 is hit before it is evicted; a sweep in the same order every step through more
// panel than L2 holds (LSTM H = 512 in float32: 4 MiB against 2 MiB) misses on every line.
// The order of the blocks changes no value.
inline std::int64_t zigzag(std::int64_t s, std::int64_t q, std::int64_t n) {
  return s % 2 == 0 ? q : n - 1 - q;
}

// Zero rows (t, b), t >= lengths[b], of a (T*B, width) plane (row stride ld), b in [b0, b1).
template <class S>
void zero_padding(S* plane, std::int64_t ld, std::int64_t width, const SeqConfig& cfg,
                  const std::int64_t* lengths, std::int64_t b0, std::int64_t b1) {
  for (std::int64_t b = b0; b < b1; ++b)
    for (std::int64_t t = lengths[b]; t < cfg.T; ++t) zero(plane + (t * cfg.B + b) * ld, width);
}

// Time index of row b at step s, or -1 once the sequence has ended.
template <bool HasLengths>
inline std::int64_t time_of(std::int64_t s, std::int64_t b, std::int64_t T, bool reverse,
                            const std::int64_t* lengths) {
  if constexpr (HasLengths) {
    const std::int64_t L = lengths[b];
    if (s >= L) return -1;
    return reverse ? L - 1 - s : s;
  } else {
    (void)b;
    (void)lengths;
    return reverse ? T - 1 - s : s;
  }
}

// The parts team_matmul splits a product into along its longer side (tuning.hpp): fixed by
// the product's shape alone, never by the thread count. Each part is one OpenBLAS call, and
// OpenBLAS's bits for a row depend on the call it is in (its AVX2 kernels give a block of
// rows other bits than the whole product: edge tiles and small-matrix kernels sum in other
// orders), so the same parts on 1 or 64 threads are what makes every output the same bits.
inline std::int64_t matmul_parts(std::int64_t extent) {
  std::int64_t p = 1;
  while (p < tuning::kMaxParts && extent / (2 * p) >= tuning::kMinPartExtent) p *= 2;
  return p;
}

// This thread's parts of C (m x n) = op(A)·op(B) (+ beta·C): rows of C if m >= n, else
// columns, cut by matmul_parts; the team shares out whole parts.
template <class S>
void team_matmul(int tid, int nt, Op oa, Op ob, std::int64_t m, std::int64_t n, std::int64_t k,
                 const S* a, std::int64_t lda, const S* b, std::int64_t ldb, S* c,
                 std::int64_t ldc, S beta = S(0)) {
  const bool by_rows = m >= n;
  const std::int64_t extent = by_rows ? m : n;
  const std::int64_t parts = matmul_parts(extent);
  std::int64_t p0, p1, lo, hi;
  share(parts, tid, nt, p0, p1);
  for (std::int64_t p = p0; p < p1; ++p) {
    share(extent, int(p), int(parts), lo, hi);
    if (hi <= lo) continue;
    if (by_rows)
      gemm::matmul<S>(oa, ob, hi - lo, n, k, oa == Op::N ? a + lo * lda : a + lo, lda, b, ldb,
                      beta, c + lo * ldc, ldc);
    else
      gemm::matmul<S>(oa, ob, m, hi - lo, k, a, lda, ob == Op::N ? b + lo : b + lo * ldb, ldb,
                      beta, c + lo, ldc);
  }
}

// Threads for one call: no more than the parts (blocks or groups of blocks) the units are
// shared out in, and one when a step is too small for a barrier to pay.
template <class S>
inline int team_size(const SeqConfig& cfg, std::int64_t parts) {
  // The recurrent product (K = Hs) and a projection's (m·W_hrᵀ: H × P more per row).
  const double Hs = double(state_width(cfg)), H = double(cfg.H), P = double(cfg.P);
  const double step_flops = 2.0 * double(cfg.B) * (gate_count(cfg.cell) * H * Hs + H * P);
  int nt = runtime::num_threads();
  if (nt > parts) nt = int(parts);
  if (step_flops < tuning::kMinTeamStepFlops) nt = 1;
  return nt < 1 ? 1 : nt;
}

// Calls Cell's epilogue fn for a full or a partial block.
#define FASTSEQ_EPILOGUE(call, n, L) \
  do {                               \
    if ((n) == (L)) {                \
      call(true);                    \
    } else {                         \
      call(false);                   \
    }                                \
  } while (0)

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::loops
