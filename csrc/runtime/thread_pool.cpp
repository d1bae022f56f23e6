// The thread pool behind runtime::parallel_run. Workers are started lazily (never inside a
// kernel's time loop: parallel_run starts them before the team begins), wait for a job by
// spinning briefly then sleeping on a condition variable, join it only while it is open,
// and stay alive for the process.
#include "runtime/thread_pool.hpp"
#include "runtime/openmp_team.hpp"
#include "runtime/per_process.hpp"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FASTSEQ_PAUSE() _mm_pause()
#else
#define FASTSEQ_PAUSE() ((void)0)
#endif

namespace fastseq::runtime {
namespace {

int default_threads() {
  if (const char* env = std::getenv("FASTSEQ_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(env, &end, 10);
    if (end != env && v >= 1 && v <= 4096) return int(v);
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n >= 1) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

std::atomic<int> g_threads{0};

// Spins on an atomic briefly, then yields between checks. The yield is what lets a team
// make progress when two of its threads share one CPU (an oversubscribed or shared machine,
// or a process pinned to fewer CPUs than threads): a thread spinning out its time slice
// there stalls the one it waits for, which is how a step that takes microseconds took a
// whole slice. On an idle CPU sched_yield returns at once, so spinning costs no latency.
// With a deadline it gives up once the deadline has passed (checked every 64 yields) and
// returns false.
constexpr int kSpinsBeforeYield = 128;

using Clock = std::chrono::steady_clock;

template <class Pred>
bool spin_until(Pred done, Clock::time_point deadline = Clock::time_point::max()) {
  const bool bounded = deadline != Clock::time_point::max();
  for (int i = 0; !done(); ++i) {
    if (i < kSpinsBeforeYield) {
      FASTSEQ_PAUSE();
    } else {
      if (bounded && (i & 63) == 0 && Clock::now() > deadline) return false;
      sched_yield();
    }
  }
  return true;
}

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lk(m_);
      stop_ = true;
      gen_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

  bool try_acquire() { return busy_.try_lock(); }
  void release() { busy_.unlock(); }
  bool busy() {
    if (!busy_.try_lock()) return true;
    busy_.unlock();
    return false;
  }

  // Holder of busy_ only. Starting threads may throw (std::system_error): then the caller
  // runs alone (or with the workers it has). The claim cursors grow with the workers, here,
  // never while a team runs.
  int ensure_workers(int n) {
    try {
      if (cursor_count_ < n + 1) {
        cursors_.reset(new ClaimCursor[std::size_t(n) + 1]);
        cursor_count_ = n + 1;
      }
      while (int(workers_.size()) < n) {
        const int idx = int(workers_.size());
        workers_.emplace_back([this, idx] { worker(idx + 1); });
      }
    } catch (...) {
    }
    const int have = int(workers_.size());
    return have < cursor_count_ - 1 ? have : cursor_count_ - 1;
  }

  // Runs fn on the caller as member 0 and on the workers that join in time. A worker joins
  // by counting itself into join_ while the job is open; the caller closes it when its own
  // part returns (by then every item of the work is done: loops/team.hpp), and waits only
  // for the workers that joined. A worker the OS did not schedule before that never runs
  // the job, so it costs the caller nothing.
  void run(int team, TeamFn fn, void* ctx) {
    for (int i = 0; i < team; ++i) cursors_[i].v.store(0, std::memory_order_relaxed);
    items_done_.store(0, std::memory_order_relaxed);
    std::uint64_t g;
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      team_ = team;
      done_.store(0, std::memory_order_relaxed);
      g = gen_.load(std::memory_order_relaxed) + 1;
      join_.store(join_word(g, 0), std::memory_order_relaxed);
      gen_.store(g, std::memory_order_release);
    }
    cv_.notify_all();
    fn(ctx, 0, team);
    const std::uint64_t joined =
        join_.fetch_or(kClosed, std::memory_order_acq_rel) & kCountMask;
    spin_until([&] { return std::uint64_t(done_.load(std::memory_order_acquire)) == joined; });
  }

  TeamWork work() { return {cursors_.get(), &items_done_}; }

 private:
  // join_: the job's generation (low 32 bits) above, closed flag, count of joined workers.
  static constexpr std::uint64_t kClosed = std::uint64_t(1) << 31;
  static constexpr std::uint64_t kCountMask = kClosed - 1;
  static std::uint64_t join_word(std::uint64_t gen, std::uint64_t count) {
    return (gen & 0xffffffffu) << 32 | count;
  }

  // Counts this worker into job `gen` unless it is closed (or already another job).
  bool join(std::uint64_t gen) {
    std::uint64_t v = join_.load(std::memory_order_acquire);
    for (;;) {
      if ((v >> 32) != (gen & 0xffffffffu) || (v & kClosed)) return false;
      if (join_.compare_exchange_weak(v, v + 1, std::memory_order_acq_rel)) return true;
    }
  }

  void worker(int tid) {
    std::uint64_t seen = 0;
    for (;;) {
      // Wait a little for the next job (back-to-back kernel calls, forward then backward),
      // then sleep.
      const auto new_job = [&] { return gen_.load(std::memory_order_acquire) != seen; };
      if (!spin_until(new_job, Clock::now() + std::chrono::milliseconds(2))) {
        std::unique_lock<std::mutex> lk(m_);
        cv_.wait(lk, new_job);
      }
      TeamFn fn;
      void* ctx;
      int team;
      bool stop;
      {
        // The generation and the job it names are read together, under the lock that
        // run() publishes them with: a worker never runs one job twice.
        std::lock_guard<std::mutex> lk(m_);
        seen = gen_.load(std::memory_order_relaxed);
        fn = fn_;
        ctx = ctx_;
        team = team_;
        stop = stop_;
      }
      if (stop) return;
      if (tid < team && join(seen)) {
        fn(ctx, tid, team);
        done_.fetch_add(1, std::memory_order_acq_rel);
      }
    }
  }

  std::mutex busy_;
  std::vector<std::thread> workers_;
  std::unique_ptr<ClaimCursor[]> cursors_;
  int cursor_count_ = 0;
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<std::uint64_t> gen_{0};
  TeamFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int team_ = 1;
  bool stop_ = false;
  std::atomic<int> done_{0};
  alignas(64) std::atomic<std::uint64_t> join_{0};
  alignas(64) std::atomic<std::int64_t> items_done_{0};
};

// Never destroyed: worker threads must not be joined from a static destructor at exit
// (the interpreter may already have torn down state the kernels use). A forked child has
// none of the parent's workers, and the parent's busy_ or m_ may have been held by a thread
// that does not exist there: the child drops that pool (leaked: destroying a std::thread
// that was running in the parent would abort) and makes a fresh one on its next team.
PerProcess<Pool> g_pool;
[[maybe_unused]] const int kForkHandler =
    pthread_atfork(nullptr, nullptr, [] { g_pool.drop_in_child(); });

Pool& pool() { return g_pool.get(); }

}  // namespace

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n == 0) {
    n = default_threads();
    g_threads.store(n, std::memory_order_relaxed);
  }
  return n;
}

void set_num_threads(int n) { g_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

void parallel_run(int want, TeamFn fn, void* ctx) {
  if (want <= 1) {
    fn(ctx, 0, 1);
    return;
  }
  if (openmp_run(want, fn, ctx)) return;
  Pool& p = pool();
  if (!p.try_acquire()) {
    fn(ctx, 0, 1);
    return;
  }
  const int have = p.ensure_workers(want - 1);
  const int team = have + 1 < want ? have + 1 : want;
  if (team <= 1)
    fn(ctx, 0, 1);
  else
    p.run(team, fn, ctx);
  p.release();
}

TeamWork team_work() {
  if (TeamWork* w = openmp_team_work()) return *w;
  return pool().work();
}

void yield_cpu() { sched_yield(); }

bool pool_busy() { return pool().busy(); }

}  // namespace fastseq::runtime
