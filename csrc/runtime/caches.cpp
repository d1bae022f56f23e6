// Cache sizes: detection (cpuid, then Linux sysfs, then defaults), the override, and the
// sizes in force behind a sequence lock, so a kernel on one thread reads a whole set while
// set_cache_sizes runs on another.
#include "runtime/caches.hpp"

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <mutex>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#endif

namespace fastseq::runtime {
namespace {

constexpr std::int64_t KiB = 1024, MiB = 1024 * KiB, GiB = 1024 * MiB;

// The defaults when neither cpuid nor sysfs answers: a common L1d, a middling L2 per core
// and L3 of today's x86-64 parts (the tuning rules then choose as for an average machine).
constexpr std::int64_t kDefault[kCacheLevels] = {32 * KiB, 1 * MiB, 8 * MiB};
// Sizes outside these are read as a misreport (a hypervisor's zero, a field misread):
// detection clamps to them, an override outside them is refused.
constexpr std::int64_t kMin[kCacheLevels] = {4 * KiB, 64 * KiB, 256 * KiB};
constexpr std::int64_t kMax[kCacheLevels] = {4 * MiB, 256 * MiB, 16 * GiB};

struct Found {
  std::int64_t bytes[kCacheLevels] = {0, 0, 0};  // 0: not answered
};

#if defined(__x86_64__) || defined(_M_X64)
// Deterministic cache parameters (Intel leaf 4, AMD leaf 0x8000001D: the same layout): one
// subleaf per cache, until type 0. The size is ways · partitions · line · sets.
void from_cache_leaf(unsigned leaf, Found& f) {
  for (unsigned i = 0; i < 16; ++i) {
    unsigned a, b, c, d;
    __cpuid_count(leaf, i, a, b, c, d);
    const unsigned type = a & 0x1F;  // 1 data, 2 instruction, 3 unified
    if (type == 0) break;
    if (type == 2) continue;
    const unsigned level = (a >> 5) & 0x7;
    const std::int64_t bytes = std::int64_t((b >> 22) + 1) * (((b >> 12) & 0x3FF) + 1) *
                               ((b & 0xFFF) + 1) * (std::int64_t(c) + 1);
    if (level >= 1 && level <= 3 && f.bytes[level - 1] == 0) f.bytes[level - 1] = bytes;
  }
}

Found from_cpuid() {
  Found f;
  unsigned a, b, c, d;
  if (!__get_cpuid(0, &a, &b, &c, &d)) return f;
  const unsigned max_leaf = a;
  const bool amd = (b == 0x68747541 && d == 0x69746E65 && c == 0x444D4163) ||  // AuthenticAMD
                   (b == 0x6F677948 && d == 0x6E65476E && c == 0x656E6975);    // HygonGenuine
  if (!amd) {
    if (max_leaf >= 4) from_cache_leaf(4, f);
    return f;
  }
  const unsigned max_ext = __get_cpuid_max(0x80000000, nullptr);
  // Topology extensions (0x80000001 ECX bit 22) announce leaf 0x8000001D.
  if (max_ext >= 0x8000001D && __get_cpuid(0x80000001, &a, &b, &c, &d) && (c >> 22) & 1)
    from_cache_leaf(0x8000001D, f);
  // The older AMD leaves: L1d KiB in 0x80000005 ECX[31:24]; L2 KiB in 0x80000006
  // ECX[31:16], L3 in units of 512 KiB in EDX[31:18].
  if (f.bytes[0] == 0 && max_ext >= 0x80000005 && __get_cpuid(0x80000005, &a, &b, &c, &d))
    f.bytes[0] = std::int64_t(c >> 24) * KiB;
  if (max_ext >= 0x80000006 && __get_cpuid(0x80000006, &a, &b, &c, &d)) {
    if (f.bytes[1] == 0) f.bytes[1] = std::int64_t(c >> 16) * KiB;
    if (f.bytes[2] == 0) f.bytes[2] = std::int64_t(d >> 18) * 512 * KiB;
  }
  return f;
}
#else
Found from_cpuid() { return Found{}; }
#endif

std::string read_line(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (in) std::getline(in, s);
  return s;
}

// /sys/devices/system/cpu/cpu0/cache/index*/{level,type,size}: size like "48K", "2048K".
Found from_sysfs() {
  Found f;
  const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index";
  for (int i = 0; i < 16; ++i) {
    const std::string base = dir + std::to_string(i) + "/";
    const std::string level = read_line(base + "level");
    if (level.empty()) break;
    const std::string type = read_line(base + "type");
    if (type == "Instruction") continue;
    std::int64_t bytes = 0;
    if (!parse_cache_size(read_line(base + "size"), bytes)) continue;
    const int l = std::atoi(level.c_str());
    if (l >= 1 && l <= 3 && f.bytes[l - 1] == 0) f.bytes[l - 1] = bytes;
  }
  return f;
}

std::int64_t clamp(std::int64_t v, int level) {
  return v < kMin[level] ? kMin[level] : v > kMax[level] ? kMax[level] : v;
}

struct Start {
  CacheSizes detected;
  CacheSource detected_source[kCacheLevels];
  CacheSizes initial;  // detected, with the environment's overrides
  CacheSource initial_source[kCacheLevels];
  std::vector<std::string> rejected;
};

std::int64_t& at(CacheSizes& s, int level) {
  return level == 0 ? s.l1d : level == 1 ? s.l2 : s.l3;
}

Start start() {
  Start st;
  const Found cpu = from_cpuid();
  Found sys;
  bool sys_read = false;
  for (int l = 0; l < kCacheLevels; ++l) {
    std::int64_t v = cpu.bytes[l];
    CacheSource src = CacheSource::cpuid;
    if (v == 0) {
      if (!sys_read) sys = from_sysfs(), sys_read = true;
      v = sys.bytes[l];
      src = CacheSource::sysfs;
    }
    if (v == 0) v = kDefault[l], src = CacheSource::fallback;
    at(st.detected, l) = clamp(v, l);
    st.detected_source[l] = src;
    at(st.initial, l) = at(st.detected, l);
    st.initial_source[l] = src;
    const CacheLevel level = static_cast<CacheLevel>(l);
    const char* env = std::getenv(cache_env_name(level));
    if (env == nullptr || *env == '\0') continue;
    std::int64_t bytes = 0;
    if (!parse_cache_size(env, bytes)) {
      st.rejected.push_back(std::string(cache_env_name(level)) + "='" + env +
                            "' is not a size in bytes (digits, optionally with K, M or G)");
    } else if (bytes < kMin[l] || bytes > kMax[l]) {
      st.rejected.push_back(std::string(cache_env_name(level)) + "=" + env + " is outside " +
                            std::to_string(kMin[l]) + ".." + std::to_string(kMax[l]) + " bytes");
    } else {
      at(st.initial, l) = bytes;
      st.initial_source[l] = CacheSource::override_;
    }
  }
  return st;
}

const Start& process_start() {
  static const Start st = start();
  return st;
}

// The sizes in force behind a sequence lock: a writer (under the mutex) makes seq odd,
// stores, makes it even; a reader retries while seq is odd or moved under it. Lock-free for
// the kernels, and a reader never sees half of a set_cache_sizes.
struct Current {
  std::atomic<std::uint64_t> seq{0};
  std::atomic<std::int64_t> bytes[kCacheLevels];
  std::atomic<int> source[kCacheLevels];
  std::mutex write;

  Current() {
    const Start& st = process_start();
    CacheSizes s = st.initial;
    for (int l = 0; l < kCacheLevels; ++l) {
      bytes[l].store(at(s, l), std::memory_order_relaxed);
      source[l].store(int(st.initial_source[l]), std::memory_order_relaxed);
    }
  }

  void store(const std::int64_t* b, const CacheSource* src) {
    std::lock_guard<std::mutex> lock(write);
    const std::uint64_t s = seq.load(std::memory_order_relaxed);
    seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (int l = 0; l < kCacheLevels; ++l) {
      if (b[l] <= 0) continue;
      bytes[l].store(b[l], std::memory_order_relaxed);
      source[l].store(int(src[l]), std::memory_order_relaxed);
    }
    seq.store(s + 2, std::memory_order_release);
  }

  void load(std::int64_t* b, CacheSource* src) const {
    for (;;) {
      const std::uint64_t s0 = seq.load(std::memory_order_acquire);
      for (int l = 0; l < kCacheLevels; ++l) {
        b[l] = bytes[l].load(std::memory_order_relaxed);
        if (src) src[l] = static_cast<CacheSource>(source[l].load(std::memory_order_relaxed));
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if ((s0 & 1) == 0 && seq.load(std::memory_order_relaxed) == s0) return;
    }
  }
};

Current& current() {
  static Current c;
  return c;
}

}  // namespace

const char* cache_source_name(CacheSource source) {
  switch (source) {
    case CacheSource::cpuid: return "cpuid";
    case CacheSource::sysfs: return "sysfs";
    case CacheSource::fallback: return "default";
    case CacheSource::override_: return "override";
  }
  return "unknown";
}

const char* cache_level_name(CacheLevel level) {
  static const char* const names[kCacheLevels] = {"l1d", "l2", "l3"};
  return names[int(level)];
}

const char* cache_env_name(CacheLevel level) {
  static const char* const names[kCacheLevels] = {"FASTSEQ_L1D_SIZE", "FASTSEQ_L2_SIZE",
                                                  "FASTSEQ_L3_SIZE"};
  return names[int(level)];
}

std::int64_t cache_size_min(CacheLevel level) { return kMin[int(level)]; }
std::int64_t cache_size_max(CacheLevel level) { return kMax[int(level)]; }

bool parse_cache_size(const std::string& text, std::int64_t& bytes) {
  std::size_t i = 0, n = text.size();
  while (i < n && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  while (n > i && std::isspace(static_cast<unsigned char>(text[n - 1]))) --n;
  if (i == n || !std::isdigit(static_cast<unsigned char>(text[i]))) return false;
  std::int64_t v = 0;
  for (; i < n && std::isdigit(static_cast<unsigned char>(text[i])); ++i) {
    if (v > (INT64_MAX - 9) / 10) return false;
    v = v * 10 + (text[i] - '0');
  }
  std::int64_t unit = 1;
  if (i < n) {
    switch (std::toupper(static_cast<unsigned char>(text[i]))) {
      case 'K': unit = KiB; break;
      case 'M': unit = MiB; break;
      case 'G': unit = GiB; break;
      default: return false;
    }
    ++i;
    // "K", "KB", "KiB" (either case) all mean 1024.
    if (i < n && (text[i] == 'i' || text[i] == 'I')) {
      ++i;
      if (i == n) return false;  // "Ki" alone
    }
    if (i < n && (text[i] == 'B' || text[i] == 'b')) ++i;
    if (i != n) return false;
  }
  if (v > INT64_MAX / unit) return false;
  bytes = v * unit;
  return true;
}

CacheSizes cache_sizes() {
  std::int64_t b[kCacheLevels];
  current().load(b, nullptr);
  return CacheSizes{b[0], b[1], b[2]};
}

CacheReport cache_report() {
  CacheReport r;
  std::int64_t b[kCacheLevels];
  current().load(b, r.source);
  r.sizes = CacheSizes{b[0], b[1], b[2]};
  const Start& st = process_start();
  r.detected = st.detected;
  for (int l = 0; l < kCacheLevels; ++l) r.detected_source[l] = st.detected_source[l];
  return r;
}

std::string set_cache_sizes(std::int64_t l1d, std::int64_t l2, std::int64_t l3) {
  const std::int64_t b[kCacheLevels] = {l1d, l2, l3};
  for (int l = 0; l < kCacheLevels; ++l) {
    if (b[l] == 0) continue;
    if (b[l] < kMin[l] || b[l] > kMax[l])
      return std::string(cache_level_name(CacheLevel(l))) + " must be between " +
             std::to_string(kMin[l]) + " and " + std::to_string(kMax[l]) + " bytes; got " +
             std::to_string(b[l]);
  }
  const CacheSource src[kCacheLevels] = {CacheSource::override_, CacheSource::override_,
                                         CacheSource::override_};
  current().store(b, src);
  return "";
}

void reset_cache_sizes() {
  const Start& st = process_start();
  const std::int64_t b[kCacheLevels] = {st.initial.l1d, st.initial.l2, st.initial.l3};
  current().store(b, st.initial_source);
}

std::vector<std::string> cache_env_rejected() { return process_start().rejected; }

}  // namespace fastseq::runtime
