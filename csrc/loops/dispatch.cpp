// Chooses the kernel table: the best variant the CPU supports, unless FASTSEQ_ISA names
// another available one (an unknown or unsupported name there is ignored).
#include "loops/dispatch.hpp"

#include <atomic>
#include <cstdlib>

#include "runtime/cpu_features.hpp"

namespace fastseq {
namespace loops {
namespace {

struct Entry {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool always() { return true; }
#if defined(FASTSEQ_HAVE_AVX2)
bool has_avx2() {
  const auto& f = cpu_features();
  return f.avx2 && f.fma;
}
#endif
#if defined(FASTSEQ_HAVE_AVX512)
bool has_avx512() {
  const auto& f = cpu_features();
  return f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
}
#endif

// Best first.
const Entry kEntries[] = {
#if defined(FASTSEQ_HAVE_AVX512)
    {"avx512", &table_isa_avx512, &has_avx512},
#endif
#if defined(FASTSEQ_HAVE_AVX2)
    {"avx2", &table_isa_avx2, &has_avx2},
#endif
    {"portable", &table_isa_portable, &always},
};

const KernelTable* find(const std::string& name) {
  for (const Entry& e : kEntries)
    if (name == e.name && e.supported()) return &e.table();
  return nullptr;
}

const KernelTable* initial() {
  if (const char* env = std::getenv("FASTSEQ_ISA"))
    if (const KernelTable* t = find(env)) return t;
  const KernelTable* t = &table_isa_portable();
  for (const Entry& e : kEntries)
    if (e.supported()) return &e.table();
  return t;
}

std::atomic<const KernelTable*>& current() {
  static std::atomic<const KernelTable*> t{initial()};
  return t;
}

}  // namespace

const KernelTable& selected_table() { return *current().load(std::memory_order_acquire); }

}  // namespace loops

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (const loops::Entry& e : loops::kEntries)
    if (e.supported()) out.emplace_back(e.name);
  return out;
}

std::string selected_isa() { return loops::selected_table().name; }

bool set_isa(const std::string& name) {
  const loops::KernelTable* t = loops::find(name);
  if (!t) return false;
  loops::current().store(t, std::memory_order_release);
  return true;
}

}  // namespace fastseq
