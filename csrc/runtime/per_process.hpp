// One object per process, made on first use and never destroyed (kernels may still run in
// daemon threads while the process exits). A forked child must not use its parent's: the
// threads that held its locks or ran its workers do not exist there. The owner drops it in
// the child from a pthread_atfork handler (leaked: a std::thread that was running in the
// parent cannot even be destroyed), and the child's first use makes a fresh one.
#pragma once

#include <atomic>

namespace fastseq::runtime {

template <class T>
class PerProcess {
 public:
  T& get() {
    T* p = p_.load(std::memory_order_acquire);
    if (p) return *p;
    // No lock to make it (a lock held by another thread at a fork would stay held in the
    // child): the first to publish wins; a loser's object was never used.
    T* fresh = new T();
    if (p_.compare_exchange_strong(p, fresh, std::memory_order_acq_rel)) return *fresh;
    delete fresh;
    return *p;
  }

  // From the atfork child handler only (the child has one thread).
  void drop_in_child() { p_.store(nullptr, std::memory_order_relaxed); }

 private:
  std::atomic<T*> p_{nullptr};
};

}  // namespace fastseq::runtime
