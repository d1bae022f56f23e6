// What the forward and backward loops share: the team that gives out their work (Team: phases
// of items, claimed), the zig-zag visiting order, lengths (time_of, zero_padding), the large
// products cut into thread-count-independent parts (team_matmul), the team's size, and the
// call of a cell's epilogue for a full or a partial block. Compiled per ISA, in FASTSEQ_ISA_NS.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fastseq/kernels.hpp"
#include "gemm/gemm.hpp"
#include "loops/tuning.hpp"
#include "runtime/isa.hpp"
#include "runtime/machine_cpus.hpp"
#include "runtime/thread_pool.hpp"

namespace fastseq::loops {
inline namespace FASTSEQ_ISA_NS {

using gemm::Op;

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

// [lo, hi): member tid's share of n items.
inline void share(std::int64_t n, int tid, int nt, std::int64_t& lo, std::int64_t& hi) {
  lo = n * tid / nt;
  hi = n * (tid + 1) / nt;
}

// Items of the phases that copy or zero whole rows (of B) or entries of a vector: a claim
// (one compare-exchange) is nothing beside copying 4 rows, and B = 16 still splits 4 ways.
inline constexpr std::int64_t kRowChunk = 4;
inline constexpr std::int64_t kVectorChunk = 256;

// Groups of w adjacent blocks (the last one narrower) out of nb, fixed by position. Items
// of a phase are whole groups, so a unit's tile, and with it the order of its sums, never
// depends on the thread count or on which thread runs it.
inline std::int64_t group_count(std::int64_t nb, std::int64_t w) { return (nb + w - 1) / w; }

// One thread's view of its team's work. The loops' work comes in phases of items (groups of
// units of a step, parts of a product, rows); each(n, fn) runs fn(i) for items i of the next
// phase, sync() waits until every item handed out so far is done (where a barrier was).
// Member tid takes the items of its own share, in order (the share a static split gives it:
// its panels stay in its core's caches step after step); then the shares of members that
// have not started theirs. So a member the OS has not scheduled (a spinning OpenMP worker of
// the host program on its CPU, a shared host's load) holds nobody up: its share is done by
// the others, and it catches up by finding nothing left. A share its owner has started is
// left to it: taking its last items would cost the taker their panels, cold in another
// core's cache, and the owner the room they take in the taker's (LSTM (25,1,512), 2 threads,
// when any share could be taken: 0.71x the barrier's speed, IQR 0.30-0.94). An item's values
// never depend on who runs it.
//
// Protocol: per member a cursor (runtime::TeamWork): the phase it was last opened for (high
// 32 bits), whether a thief opened it (bit 31), and the items left in that phase's share (low
// 31 bits). A claim is one compare-exchange. Every phase opens every cursor, an empty share
// too (by its owner, or by a thief if the owner is not there), and only from the phase just
// before it with nothing left: so an owner still busy with an earlier phase (phases without a
// sync between them) keeps its cursor, and no phase of any share is ever skipped. A thread
// leaves a phase when its own share is exhausted and no other is free to take; sync()
// compares the team's count of finished items with the total of the phases so far.
class Team {
 public:
  Team(int tid, int nt) : tid_(tid), nt_(nt) {
    if (nt > 1) work_ = runtime::team_work();
  }
  // fn(i) for every item i in [0, n) of the next phase; backwards: each share from its end
  // (the zig-zag order of a step's groups). fn is reached through one pointer: its body is
  // then compiled once per call site, and the claim loop once per ISA, not inlined into every
  // cell x dtype x variant (that doubled the library's size; an indirect call per item costs
  // nothing beside an item's work).
  template <class Fn>
  void each(std::int64_t n, Fn&& fn, bool backwards = false) {
    using F = std::remove_reference_t<Fn>;
    run(n, backwards, [](void* f, std::int64_t i) { (*static_cast<F*>(f))(i); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // fn(jb, nv) for every group of w adjacent blocks out of nb (group_count): jb its first
  // block, nv its width (w, the last one maybe fewer); one item each.
  template <class Fn>
  void each_group(std::int64_t nb, std::int64_t w, Fn&& fn, bool backwards = false) {
    each(
        group_count(nb, w),
        [&](std::int64_t q) {
          const std::int64_t jb = q * w;
          fn(jb, int(nb - jb < w ? nb - jb : w));
        },
        backwards);
  }

  // fn(lo, hi) over [0, n) in chunks of `chunk` items (copies and zeroing of rows).
  template <class Fn>
  void each_chunk(std::int64_t n, std::int64_t chunk, Fn&& fn) {
    each((n + chunk - 1) / chunk, [&](std::int64_t c) {
      const std::int64_t lo = c * chunk;
      fn(lo, n - lo < chunk ? n : lo + chunk);
    });
  }

  void sync() const {
    if (nt_ == 1) return;
    runtime::wait_until(
        [&] { return work_.done->load(std::memory_order_acquire) >= handed_out_; });
  }

 private:
  static constexpr std::uint64_t kStolen = std::uint64_t(1) << 31;
  static constexpr std::uint64_t kLeft = kStolen - 1;
  // A member that worked the phase before gets this many pauses (about 20-40 µs) to start
  // its share before a thief takes it: a partner a few microseconds late (waking, finishing
  // its last item) is not absent, and taking its whole share (GRU (25,16,512) inference,
  // 2 threads: its half of the input projection) cost 0.67x. One absent the phase before
  // (its cursor opened by a thief) gets none.
  static constexpr int kGraceSpins = 512;
  enum class Claim { got, none, not_yet };
  using Item = void (*)(void*, std::int64_t);

  [[gnu::noinline]] void run(std::int64_t n, bool backwards, Item fn, void* f) {
    ++phase_;
    if (nt_ == 1) {
      for (std::int64_t q = 0; q < n; ++q) fn(f, backwards ? n - 1 - q : q);
      return;
    }
    std::int64_t lo, hi, i;
    for (int k = 0; k < nt_; ++k) {
      const int owner = (tid_ + k) % nt_;
      share(n, owner, nt_, lo, hi);
      int waited = 0;
      for (;;) {
        const Claim r = claim(owner, k != 0, waited >= kGraceSpins, lo, hi, i);
        if (r == Claim::none) break;
        if (r == Claim::not_yet) {
          runtime::pause_cpu();
          ++waited;
          continue;
        }
        fn(f, backwards ? lo + hi - 1 - i : i);
        work_.done->fetch_add(1, std::memory_order_release);
      }
    }
    handed_out_ += n;
  }

  // The next item of owner's share [lo, hi) in this phase; a thief's only from a share its
  // owner has not started (not_yet: the owner worked the phase before and may still come;
  // `now` takes it anyway). Opens the cursor for this phase if it is free to open.
  Claim claim(int owner, bool thief, bool now, std::int64_t lo, std::int64_t hi,
              std::int64_t& item) {
    std::atomic<std::uint64_t>& c = work_.cursors[owner].v;
    std::uint64_t v = c.load(std::memory_order_acquire);
    for (;;) {
      const std::uint64_t tag = v >> 32;
      std::int64_t left = std::int64_t(v & kLeft);
      bool stolen = (v & kStolen) != 0;
      if (tag > phase_) return Claim::none;  // opened for a later phase: this one is done
      if (tag == phase_) {
        if (left == 0 || (thief && !stolen)) return Claim::none;
      } else {
        // Open it for this phase: only from the phase before, exhausted (else its owner is
        // still at work in an earlier phase, or the phase before is not opened yet).
        if (tag + 1 != phase_ || left != 0) return Claim::none;
        if (thief && !stolen && !now && hi > lo) return Claim::not_yet;
        left = hi - lo;
        stolen = thief;
        if (left == 0) {  // an empty share: open it, nothing to claim
          if (c.compare_exchange_weak(v, std::uint64_t(phase_) << 32 | (stolen ? kStolen : 0),
                                      std::memory_order_acq_rel, std::memory_order_acquire))
            return Claim::none;
          continue;
        }
      }
      const std::uint64_t next =
          std::uint64_t(phase_) << 32 | (stolen ? kStolen : 0) | std::uint64_t(left - 1);
      if (c.compare_exchange_weak(v, next, std::memory_order_acq_rel,
                                  std::memory_order_acquire)) {
        item = hi - left;
        return Claim::got;
      }
    }
  }

  int tid_, nt_;
  runtime::TeamWork work_;
  std::uint64_t phase_ = 0;
  std::int64_t handed_out_ = 0;
};

// Whether step s visits its groups backwards (Team::each): odd steps do. The panels a step
// used last are then the first the next step needs, so whatever part of them is still in L2
// is hit before it is evicted; a sweep in the same order every step through more panel than
// L2 holds (LSTM H = 512 in float32: 4 MiB against 2 MiB) misses on every line. The order of
// the groups changes no value.
inline bool zigzag_backwards(std::int64_t s) { return s % 2 == 1; }

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
// the product's shape and the machine's CPU count, never by the thread count. Each part is
// one OpenBLAS call, and OpenBLAS's bits for a row depend on the call it is in (its AVX2
// kernels give a block of rows other bits than the whole product: edge tiles and
// small-matrix kernels sum in other orders), so the same parts on 1 or 64 threads are what
// makes every output the same bits.
inline std::int64_t matmul_parts(std::int64_t m, std::int64_t n) {
  return tuning::product_parts(m, n, runtime::machine_cpus().count);
}

// C (m x n) = op(A)·op(B) (+ beta·C) as one phase of the team: rows of C if m >= n, else
// columns, cut into matmul_parts parts, one item each.
template <class S>
void team_matmul(Team& team, Op oa, Op ob, std::int64_t m, std::int64_t n, std::int64_t k,
                 const S* a, std::int64_t lda, const S* b, std::int64_t ldb, S* c,
                 std::int64_t ldc, S beta = S(0)) {
  const bool by_rows = tuning::cut_rows(m, n);
  const std::int64_t extent = by_rows ? m : n;
  const std::int64_t parts = matmul_parts(m, n);
  team.each(parts, [&](std::int64_t p) {
    std::int64_t lo, hi;
    share(extent, int(p), int(parts), lo, hi);
    if (hi <= lo) return;
    if (by_rows)
      gemm::matmul<S>(oa, ob, hi - lo, n, k, oa == Op::N ? a + lo * lda : a + lo, lda, b, ldb,
                      beta, c + lo * ldc, ldc);
    else
      gemm::matmul<S>(oa, ob, m, hi - lo, k, a, lda, ob == Op::N ? b + lo : b + lo * ldb, ldb,
                      beta, c + lo, ldc);
  });
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
