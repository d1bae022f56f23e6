// Every cell's code, and the one place that maps a CellKind to it: with_cell calls f with a
// value of the cell type of that kind, for a scalar S. A new cell adds its type to Cells.
// Compiled per ISA, in FASTSEQ_ISA_NS.
#pragma once

#include "cells/gru.hpp"
#include "cells/lstm.hpp"
#include "cells/rnn.hpp"

namespace fastseq::cells {
inline namespace FASTSEQ_ISA_NS {

template <class... C>
struct CellList {};

template <class S>
using Cells =
    CellList<Rnn<S, false>, Rnn<S, true>, Lstm<S>, GruAfter<S>, GruBefore<S>, Lstmp<S>>;

template <class F, class... C>
void with_cell_in(CellKind kind, F&& f, CellList<C...>) {
  // Exactly one type has this kind (checked below); validate_config rejected any other.
  ((C::kind == kind ? (f(C{}), true) : false) || ...);
}

template <class S, class F>
void with_cell(CellKind kind, F&& f) {
  with_cell_in(kind, f, Cells<S>{});
}

// Every registry entry has exactly one type here, and no type lacks an entry.
template <class... C>
constexpr bool covers_registry(CellList<C...>) {
  for (const CellInfo& info : kCells)
    if (((C::kind == info.kind ? 1 : 0) + ...) != 1) return false;
  return sizeof...(C) == sizeof(kCells) / sizeof(kCells[0]);
}
static_assert(covers_registry(Cells<float>{}), "cells/all.hpp and cells/registry.hpp disagree");

}  // namespace FASTSEQ_ISA_NS
}  // namespace fastseq::cells
