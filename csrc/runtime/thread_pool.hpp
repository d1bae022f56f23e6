// fastseq's own persistent thread pool: one team per kernel call, the caller being thread 0,
// with a spin-then-yield barrier for the per-step synchronisation. A call that finds the
// pool busy (another thread is inside a kernel) runs single-threaded: teams never mix.
// OpenBLAS is kept at one thread (see gemm/blas.cpp) so the two never oversubscribe.
#pragma once

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

// Barrier of the team currently running (call from inside fn, with every team member).
// A team of one returns at once.
FASTSEQ_API void team_barrier(int nthreads);

// Whether the pool is in use right now (tests).
FASTSEQ_API bool pool_busy();

}  // namespace fastseq::runtime
