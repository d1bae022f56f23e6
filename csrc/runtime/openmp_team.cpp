// Teams on a host's libgomp (openmp_team.hpp): the entry points looked up with dlsym in the
// copy the host loaded, a team's claim counters on the caller's stack, one per call (so
// calls from several threads each have their own), found by its members through a
// thread-local pointer.
#include "runtime/openmp_team.hpp"

#include <dlfcn.h>
#include <pthread.h>

#include <atomic>

namespace fastseq::runtime {
namespace {

using GompParallel = void (*)(void (*fn)(void*), void* data, unsigned num_threads,
                              unsigned flags);
using OmpThreadNum = int (*)();

std::atomic<GompParallel> g_parallel{nullptr};
std::atomic<OmpThreadNum> g_thread_num{nullptr};
std::atomic<bool> g_active{false};

// The largest team run on OpenMP: its claim cursors live on the caller's stack.
constexpr int kMaxTeam = 64;

struct Job {
  TeamFn fn;
  void* ctx;
  int team;
  TeamWork work;
};

thread_local TeamWork* t_work = nullptr;

void member(void* data) {
  Job& job = *static_cast<Job*>(data);
  const int tid = g_thread_num.load(std::memory_order_acquire)();
  if (tid >= job.team) return;
  TeamWork* outer = t_work;
  t_work = &job.work;
  job.fn(job.ctx, tid, job.team);
  t_work = outer;
}

[[maybe_unused]] const int kForkHandler =
    pthread_atfork(nullptr, nullptr, [] { g_active.store(false, std::memory_order_relaxed); });

}  // namespace

bool use_openmp(const char* library) {
  if (!library) return false;
  void* handle = dlopen(library, RTLD_NOW | RTLD_NOLOAD);
  if (!handle) return false;
  auto parallel = reinterpret_cast<GompParallel>(dlsym(handle, "GOMP_parallel"));
  auto thread_num = reinterpret_cast<OmpThreadNum>(dlsym(handle, "omp_get_thread_num"));
  // The handle stays open: the entry points must outlive this call (the host keeps the
  // library loaded anyway; RTLD_NOLOAD took one more reference to it).
  if (!parallel || !thread_num) {
    dlclose(handle);
    return false;
  }
  g_parallel.store(parallel, std::memory_order_release);
  g_thread_num.store(thread_num, std::memory_order_release);
  g_active.store(true, std::memory_order_release);
  return true;
}

void stop_using_openmp() { g_active.store(false, std::memory_order_release); }

bool using_openmp() { return g_active.load(std::memory_order_acquire); }

bool openmp_run(int want, TeamFn fn, void* ctx) {
  if (!g_active.load(std::memory_order_acquire)) return false;
  ClaimCursor cursors[kMaxTeam];
  std::atomic<std::int64_t> done{0};
  Job job{fn, ctx, want < kMaxTeam ? want : kMaxTeam, {cursors, &done}};
  g_parallel.load(std::memory_order_acquire)(&member, &job, unsigned(job.team), 0);
  return true;
}

TeamWork* openmp_team_work() { return t_work; }

}  // namespace fastseq::runtime
