// Cache sizes: what the CPU reports (cpuid, else Linux sysfs, else a default), an override
// (FASTSEQ_L1D_SIZE / FASTSEQ_L2_SIZE / FASTSEQ_L3_SIZE, or set_cache_sizes), and the
// sizes in force, which the kernels read once per call. Only the sizes live here; the
// tuning choices that follow from them are in loops/tuning.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "fastseq/export.hpp"

namespace fastseq::runtime {

// The three levels the tuning rules use. l2 is one core's L2 (the size of the L2 that cpu0
// sits on: on a hybrid Intel part's E-core cluster, the cluster's), l3 the last-level cache
// cpu0 shares.
enum class CacheLevel : int { l1d = 0, l2 = 1, l3 = 2 };
inline constexpr int kCacheLevels = 3;

// Where a size came from: "cpuid", "sysfs", "default" (neither answered) or "override"
// (the environment or set_cache_sizes).
enum class CacheSource : int { cpuid = 0, sysfs = 1, fallback = 2, override_ = 3 };
FASTSEQ_API const char* cache_source_name(CacheSource source);
FASTSEQ_API const char* cache_level_name(CacheLevel level);       // "l1d", "l2", "l3"
FASTSEQ_API const char* cache_env_name(CacheLevel level);         // "FASTSEQ_L1D_SIZE", ...

struct CacheSizes {
  std::int64_t l1d = 0, l2 = 0, l3 = 0;  // bytes
};

struct CacheReport {
  CacheSizes sizes;                      // in force
  CacheSource source[kCacheLevels]{};    // of each size in force
  CacheSizes detected;                   // what the CPU reported (clamped), or the defaults
  CacheSource detected_source[kCacheLevels]{};
};

// The sizes in force, one consistent set (a set_cache_sizes on another thread is seen
// whole or not at all). A kernel calls this once per call and derives its choices from it.
// The first call of any function here detects the sizes and reads the environment.
FASTSEQ_API CacheSizes cache_sizes();
FASTSEQ_API CacheReport cache_report();

// The sizes a level accepts, in bytes (detection clamps to them; an override outside them
// is refused): L1d 4 KiB..4 MiB, L2 64 KiB..256 MiB, L3 256 KiB..16 GiB.
FASTSEQ_API std::int64_t cache_size_min(CacheLevel level);
FASTSEQ_API std::int64_t cache_size_max(CacheLevel level);

// Parses a size in bytes: decimal digits, optionally followed by K, M or G (powers of 1024,
// either case, an optional trailing "B" or "iB": "512K", "2MiB", "49152"). False if the text
// is anything else or overflows.
FASTSEQ_API bool parse_cache_size(const std::string& text, std::int64_t& bytes);

// Overrides the sizes of the levels whose value is > 0 (0 leaves a level as it is). Every
// value is checked against its level's range first; on failure nothing changes and the
// message names the level and the range. Returns "" on success.
FASTSEQ_API std::string set_cache_sizes(std::int64_t l1d, std::int64_t l2, std::int64_t l3);
// Back to the sizes the process started with: the environment's overrides, else detected.
FASTSEQ_API void reset_cache_sizes();

// The environment overrides that were ignored (not a size, or out of range), one message
// each naming the variable; fastseq.caches warns with them as fastseq.isa does for
// FASTSEQ_ISA.
FASTSEQ_API std::vector<std::string> cache_env_rejected();

}  // namespace fastseq::runtime
