// The header at the start of every reserve: what configuration wrote it and whether a
// backward has consumed it, so that backward refuses a reserve of another configuration, a
// consumed one, or bytes no forward wrote. Written and checked in loops/kernels.cpp; the
// planes follow it (ReservePlanes::carve in loops/layout.hpp takes its 64 bytes first).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fastseq/kernels.hpp"

namespace fastseq::loops {

struct ReserveHeader {
  std::uint64_t magic;        // kReserveMagic
  std::uint32_t version;      // kReserveVersion: the layout of this header and of the planes
  std::uint16_t cell;         // CellKind
  std::uint16_t scalar_size;  // 4 (float32) or 8 (float64)
  std::uint32_t flags;        // kHasBias | kHasLengths | kReverse
  std::uint32_t P;            // the projection's width, 0 without (validate_config: P < H)
  std::int64_t T, B, I, H;
  std::uint32_t state;        // kWritten by a training forward, kConsumed by its backward
  std::uint32_t checksum;     // FNV-1a of the 60 bytes above
};
static_assert(sizeof(ReserveHeader) == 64, "the reserve header is one cache line");

inline constexpr std::uint64_t kReserveMagic = 0x5271'6573'7473'6166ull;  // "fastseqR" in memory
// 2: the projection's P in the header (cell and scalar_size narrowed to 16 bits for it).
inline constexpr std::uint32_t kReserveVersion = 2;
inline constexpr std::uint32_t kWritten = 0x5449'5257u;   // "WRIT" in memory
inline constexpr std::uint32_t kConsumed = 0x4445'5355u;  // "USED" in memory
inline constexpr std::uint32_t kHasBias = 1, kHasLengths = 2, kReverse = 4;

inline std::uint32_t header_checksum(const ReserveHeader& h) {
  unsigned char bytes[sizeof h];
  std::memcpy(bytes, &h, sizeof h);
  std::uint32_t sum = 2166136261u;
  for (std::size_t i = 0; i < offsetof(ReserveHeader, checksum); ++i)
    sum = (sum ^ bytes[i]) * 16777619u;
  return sum;
}

inline ReserveHeader make_header(const SeqConfig& cfg, std::size_t scalar_size,
                                 std::uint32_t state) {
  ReserveHeader h{};  // zeroed, padding included: the checksum reads every byte
  h.magic = kReserveMagic;
  h.version = kReserveVersion;
  h.cell = static_cast<std::uint16_t>(cfg.cell);
  h.scalar_size = static_cast<std::uint16_t>(scalar_size);
  h.P = static_cast<std::uint32_t>(cfg.P);
  h.flags = (cfg.has_bias ? kHasBias : 0) | (cfg.has_lengths ? kHasLengths : 0) |
            (cfg.reverse ? kReverse : 0);
  h.T = cfg.T;
  h.B = cfg.B;
  h.I = cfg.I;
  h.H = cfg.H;
  h.state = state;
  h.checksum = header_checksum(h);
  return h;
}

// By memcpy: the header's fields are never accessed in place.
inline ReserveHeader read_header(const void* reserve) {
  ReserveHeader h;
  std::memcpy(&h, reserve, sizeof h);
  return h;
}
inline void write_header(void* reserve, const ReserveHeader& h) {
  std::memcpy(reserve, &h, sizeof h);
}

}  // namespace fastseq::loops
