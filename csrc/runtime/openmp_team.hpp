// Teams on the host program's OpenMP threads instead of fastseq's pool: inside PyTorch, whose
// OpenMP workers spin for milliseconds after each of its operations, a pool thread of ours
// would share a CPU with one of them for most of a training step; run on those very workers,
// the kernels find them awake and the CPUs free. Only GNU libgomp (what PyTorch's Linux
// wheels bundle), already loaded by the host: fastseq never loads an OpenMP runtime itself.
#pragma once

#include "fastseq/export.hpp"
#include "runtime/thread_pool.hpp"

namespace fastseq::runtime {

// Uses the libgomp that `library` (a path or a soname) names, if the process has already
// loaded it and it has the entry points needed; false otherwise (nothing changes).
FASTSEQ_API bool use_openmp(const char* library);
// Back to fastseq's own pool. A forked child starts there too.
FASTSEQ_API void stop_using_openmp();
FASTSEQ_API bool using_openmp();

// Runs fn on an OpenMP team of `want` threads if use_openmp is in force (and returns true),
// else returns false. Member tid is the OpenMP thread number; members the runtime does not
// provide (a thread limit, a nested region) never run, which the claimed work allows.
bool openmp_run(int want, TeamFn fn, void* ctx);

// The claim counters of the OpenMP team the calling thread is in, or null.
TeamWork* openmp_team_work();

}  // namespace fastseq::runtime
