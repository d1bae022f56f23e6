// AlignedBuffer: an owning, 64-byte aligned byte buffer (scratch for one kernel call), and
// Carver, which cuts one buffer into named, aligned pieces. Allocation failure throws
// std::bad_alloc (the bindings turn it into MemoryError); nothing here aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "runtime/isa.hpp"

namespace fastseq {

inline constexpr std::size_t kAlign = 64;

inline constexpr std::size_t kHugePage = std::size_t(2) << 20;  // x86-64's transparent huge page
inline constexpr std::size_t kHugeFrom = std::size_t(4) << 20;

inline std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    const bool huge = bytes >= kHugeFrom;
    const std::size_t align = huge ? kHugePage : kAlign;
    if (posix_memalign(&p, align, align_up(bytes)) != 0 || p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    // Buffers from 4 MiB on (Gx, reserves, big panels) ask for transparent huge pages: the
    // first touch faults once per 2 MiB instead of once per 4 KiB (LSTM (50,64,512): 570 ->
    // 130 faults per call, counting the pool's first fill), and the row-at-a-time walks of
    // OpenBLAS and the epilogues, each row on another 4 KiB page, miss the TLB less. A small
    // gain (about 2 % there). Advice only: where huge pages are off, nothing changes.
    if (huge) madvise(p, align_up(bytes), MADV_HUGEPAGE);
#endif
    data_ = p;
    size_ = bytes;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = o.data_;
      size_ = o.size_;
      o.data_ = nullptr;
      o.size_ = 0;
    }
    return *this;
  }
  ~AlignedBuffer() { std::free(data_); }

  void* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

inline namespace FASTSEQ_ISA_NS {

// Hands out consecutive pieces of a buffer, each starting on a 64-byte boundary relative
// to the buffer's start. With base == nullptr it only counts (used by the size queries), so
// the sizes and the layout come from the same code.
class Carver {
 public:
  explicit Carver(void* base = nullptr) : base_(static_cast<unsigned char*>(base)) {}

  template <class S>
  S* take(std::size_t count) {
    S* p = base_ ? reinterpret_cast<S*>(base_ + used_) : nullptr;
    used_ += align_up(count * sizeof(S));
    return p;
  }
  std::size_t used() const { return used_; }

 private:
  unsigned char* base_;
  std::size_t used_ = 0;
};

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq
