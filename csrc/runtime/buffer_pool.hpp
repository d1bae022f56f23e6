// Big kernel buffers (scratch, reserve) recycled between calls. Memory fresh from the OS
// costs a page fault and a page of zeroing per 4 KiB on first touch: for an LSTM forward at
// (T, B, H) = (50, 64, 512) that was 15-20 % of the call. A loop of calls (training,
// inference over batches) asks for the same sizes again and again, so a buffer given back is
// kept and handed to the next request it fits.
//
// At most kMaxKept buffers and kMaxKeptBytes are kept; empty_buffer_pool() frees them.
// A recycled buffer holds whatever its last user wrote: the kernels never rely on zeroed
// memory (they zero what they read before writing it).
#pragma once

#include <cstddef>
#include <utility>

#include "fastseq/export.hpp"
#include "runtime/aligned_buffer.hpp"

namespace fastseq::runtime {

inline constexpr std::size_t kMaxKept = 8;
inline constexpr std::size_t kMaxKeptBytes = std::size_t(1) << 30;

// A buffer of at least `bytes` (size() is exactly `bytes`), from the pool when one fits,
// else fresh; its destructor gives it back. Throws std::bad_alloc.
class PooledBuffer {
 public:
  PooledBuffer() = default;
  explicit PooledBuffer(std::size_t bytes);
  PooledBuffer(PooledBuffer&& o) noexcept : buffer_(std::move(o.buffer_)), size_(o.size_) {
    o.size_ = 0;
  }
  PooledBuffer& operator=(PooledBuffer&& o) noexcept;
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  ~PooledBuffer();

  void* data() const { return buffer_.data(); }
  std::size_t size() const { return size_; }

 private:
  AlignedBuffer buffer_;
  std::size_t size_ = 0;
};

// The pool's own entry points (PooledBuffer uses them; the tests watch them).
FASTSEQ_API AlignedBuffer take_buffer(std::size_t bytes);
FASTSEQ_API void give_buffer(AlignedBuffer&& buffer) noexcept;
// Frees every kept buffer; returns the bytes freed.
FASTSEQ_API std::size_t empty_buffer_pool();
// Bytes kept right now.
FASTSEQ_API std::size_t buffer_pool_bytes();

inline PooledBuffer::PooledBuffer(std::size_t bytes) : buffer_(take_buffer(bytes)), size_(bytes) {}

inline PooledBuffer& PooledBuffer::operator=(PooledBuffer&& o) noexcept {
  if (this != &o) {
    give_buffer(std::move(buffer_));
    buffer_ = std::move(o.buffer_);
    size_ = o.size_;
    o.size_ = 0;
  }
  return *this;
}

inline PooledBuffer::~PooledBuffer() { give_buffer(std::move(buffer_)); }

}  // namespace fastseq::runtime
