// Scalar nonlinearities shared by the cells, written so that they stay finite and saturate
// exactly for inputs of any magnitude (exp overflows to inf, and 1/(1+inf) = 0), and let
// NaN through. Vectorised versions with stated error bounds belong to the performance work.
#pragma once

#include <cmath>

namespace fastseq::cells {

template <class S>
inline S sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

template <class S>
inline S tanh_(S x) {
  return std::tanh(x);
}

// NaN < 0 is false, so NaN passes through as in NumPy's maximum(x, 0).
template <class S>
inline S relu(S x) {
  return x < S(0) ? S(0) : x;
}

}  // namespace fastseq::cells
