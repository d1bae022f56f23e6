// The machine's CPU count: sysconf's online CPUs, or FASTSEQ_MACHINE_CPUS, read once.
#include "runtime/machine_cpus.hpp"

#include <cerrno>
#include <cstdlib>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

namespace fastseq::runtime {
namespace {

MachineCpus read_machine_cpus() {
  MachineCpus m;
#if defined(_SC_NPROCESSORS_ONLN)
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  if (online >= 1) m.detected = online > kMachineCpusMax ? kMachineCpusMax : int(online);
#endif
  m.count = m.detected;
  if (const char* env = std::getenv("FASTSEQ_MACHINE_CPUS")) {
    char* end = nullptr;
    errno = 0;
    const long v = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && errno == 0 && v >= 1 && v <= kMachineCpusMax) {
      m.count = int(v);
      m.overridden = true;
    } else {
      m.rejected = "FASTSEQ_MACHINE_CPUS='" + std::string(env) + "' is not an integer in 1.." +
                   std::to_string(kMachineCpusMax);
    }
  }
  return m;
}

}  // namespace

const MachineCpus& machine_cpus() {
  static const MachineCpus m = read_machine_cpus();
  return m;
}

}  // namespace fastseq::runtime
