// AlignedBuffer: an owning, 64-byte aligned byte buffer (scratch for one kernel call), and
// Carver, which cuts one buffer into named, aligned pieces. Allocation failure throws
// std::bad_alloc (the bindings turn it into MemoryError); nothing here aborts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "runtime/isa.hpp"

namespace fastseq {

inline constexpr std::size_t kAlign = 64;

inline std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t bytes) {
    if (bytes == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, kAlign, align_up(bytes)) != 0 || p == nullptr) throw std::bad_alloc();
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
