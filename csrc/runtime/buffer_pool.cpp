// The buffer pool behind PooledBuffer (runtime/buffer_pool.hpp): a short list of free
// buffers under a mutex. Requests take the smallest kept buffer that fits.
#include "runtime/buffer_pool.hpp"
#include "runtime/per_process.hpp"

#include <pthread.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace fastseq::runtime {
namespace {

struct Pool {
  std::mutex mutex;
  std::vector<AlignedBuffer> kept;  // never more than kMaxKept
  std::size_t bytes = 0;
};

// Never destroyed: buffers may come back during exit. A forked child drops the parent's
// pool (its mutex may have been held by a thread that does not exist there; the kept
// buffers stay mapped, copy-on-write, unused) and starts an empty one.
PerProcess<Pool> g_pool;
[[maybe_unused]] const int kForkHandler =
    pthread_atfork(nullptr, nullptr, [] { g_pool.drop_in_child(); });

Pool& pool() { return g_pool.get(); }

// glibc serves a block above its mmap threshold (128 KiB at start) with a fresh mapping,
// and raises the threshold, and twice it the heap's trim threshold, to the size of each
// such block freed: a program that frees its big temporaries soon gets them from a heap
// that keeps its pages. Kept buffers are never freed, so glibc never learns that blocks
// this big come and go; the ~1 MiB temporaries of whatever runs beside the kernels (torch's
// Adam, the gradients) then went back to the OS at every step and faulted in again: 1460
// faults and ~1.5 ms of a 21 ms LSTM (50, 16, 256) training step of fastseq.torch, none
// with torch's own LSTM, whose workspaces are freed. A block of the new buffer's size freed
// once tells glibc what the pool hides. (glibc raises its thresholds for blocks of up to
// 32 MiB only, so the heap keeps at most 64 MiB free at its top because of this.)
void show_size_to_malloc(std::size_t bytes) {
#if defined(__GLIBC__)
  void* block = std::malloc(bytes);
  asm volatile("" : : "r"(block) : "memory");  // or the compiler drops the pair as dead
  std::free(block);
#else
  (void)bytes;
#endif
}

}  // namespace

AlignedBuffer take_buffer(std::size_t bytes) {
  if (bytes == 0) return AlignedBuffer();
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    std::size_t best = p.kept.size();
    for (std::size_t i = 0; i < p.kept.size(); ++i)
      if (p.kept[i].size() >= bytes && (best == p.kept.size() || p.kept[i].size() < p.kept[best].size()))
        best = i;
    if (best < p.kept.size()) {
      AlignedBuffer out = std::move(p.kept[best]);
      p.kept.erase(p.kept.begin() + static_cast<std::ptrdiff_t>(best));
      p.bytes -= out.size();
      return out;
    }
  }
  show_size_to_malloc(bytes);
  return AlignedBuffer(bytes);
}

void give_buffer(AlignedBuffer&& buffer) noexcept {
  // A buffer not kept stays with the caller, whose destructor frees it.
  if (buffer.size() == 0 || buffer.size() > kMaxKeptBytes) return;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    // Make room by dropping the smallest kept buffers: the big ones are the expensive ones
    // to fault in again.
    while (!p.kept.empty() && (p.kept.size() >= kMaxKept || p.bytes + buffer.size() > kMaxKeptBytes)) {
      std::size_t smallest = 0;
      for (std::size_t i = 1; i < p.kept.size(); ++i)
        if (p.kept[i].size() < p.kept[smallest].size()) smallest = i;
      if (p.kept[smallest].size() > buffer.size()) return;  // the newcomer is the smallest
      p.bytes -= p.kept[smallest].size();
      p.kept.erase(p.kept.begin() + static_cast<std::ptrdiff_t>(smallest));
    }
    try {
      p.kept.reserve(kMaxKept);
    } catch (...) {
      return;
    }
    p.bytes += buffer.size();
    p.kept.push_back(std::move(buffer));
  }
}

std::size_t empty_buffer_pool() {
  std::vector<AlignedBuffer> freed;
  std::size_t bytes;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mutex);
    freed.swap(p.kept);
    bytes = p.bytes;
    p.bytes = 0;
  }
  return bytes;
}

std::size_t buffer_pool_bytes() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.mutex);
  return p.bytes;
}

}  // namespace fastseq::runtime
