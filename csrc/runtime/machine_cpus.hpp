// The CPUs the machine has online: a machine fact the tuning rules read, as they read the
// cache sizes (loops/tuning.hpp, most_parts). Read once per process (sysconf), or taken from
// FASTSEQ_MACHINE_CPUS. Never the thread count in use, nor the CPUs this process may run
// on (taskset and cgroups change those): what is read here decides how a large product is
// cut, and the same-bits contract needs that fixed, whatever threads the call gets.
#pragma once

#include <string>

#include "fastseq/export.hpp"

namespace fastseq::runtime {

inline constexpr int kMachineCpusMax = 4096;  // as FASTSEQ_NUM_THREADS

struct MachineCpus {
  int count = 1;           // in force: 1..kMachineCpusMax
  int detected = 1;        // what sysconf reported (1 if it did not answer)
  bool overridden = false; // count came from FASTSEQ_MACHINE_CPUS
  std::string rejected;    // why FASTSEQ_MACHINE_CPUS was ignored, else ""
};

// The first call detects and reads the environment; later calls return the same answer.
FASTSEQ_API const MachineCpus& machine_cpus();

}  // namespace fastseq::runtime
