// fastseq's own persistent thread pool: one team per kernel call, the caller being thread 0.
// A team's work is claimed, not assigned (TeamWork below; loops/team.hpp gives it out): a
// member the OS has not scheduled holds nobody up. A call that finds the pool busy (another
// thread is inside a kernel) runs single-threaded: teams never mix. OpenBLAS is kept at one
// thread (see gemm/blas.cpp) so the two never oversubscribe.
#pragma once

#include <atomic>
#include <cstdint>

#include "fastseq/export.hpp"

namespace fastseq::runtime {

// fn(ctx, tid, nthreads) runs once on each of nthreads threads (tid 0 = the caller).
using TeamFn = void (*)(void* ctx, int tid, int nthreads);

// Threads fastseq's kernels may use (>= 1). Default: FASTSEQ_NUM_THREADS, else the CPUs
// this process may run on.
FASTSEQ_API int num_threads();
FASTSEQ_API void set_num_threads(int n);

// Runs fn on a team of up to `want` threads and returns when all are done. Uses the pool if
// it is free, else runs fn(ctx, 0, 1) on the calling thread. fn must not throw.
FASTSEQ_API void parallel_run(int want, TeamFn fn, void* ctx);

// The shared counters of the team currently running (call from inside fn, nthreads > 1):
// one claim cursor per member (its share's next item, tagged with the phase it belongs to)
// and the count of items done so far. Zeroed before each team starts. loops/team.hpp is
// their only user and documents the protocol.
struct alignas(64) ClaimCursor {
  std::atomic<std::uint64_t> v{0};
};
struct TeamWork {
  ClaimCursor* cursors = nullptr;
  std::atomic<std::int64_t>* done = nullptr;
};
FASTSEQ_API TeamWork team_work();

FASTSEQ_API void yield_cpu();  // sched_yield
inline void pause_cpu() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Waits until pred() holds: spins briefly, then yields the CPU between checks (a waiter
// spinning out its time slice would stall the thread it waits for when both share a CPU).
template <class Pred>
void wait_until(Pred pred) {
  for (int i = 0; !pred(); ++i) {
    if (i < 128)
      pause_cpu();
    else
      yield_cpu();
  }
}

// Whether the pool is in use right now (tests).
FASTSEQ_API bool pool_busy();

}  // namespace fastseq::runtime
