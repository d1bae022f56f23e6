// The matrix products the time loops use, behind one interface: large products (input
// projection, weight gradients), on OpenBLAS (scipy-openblas32) kept at one thread: the
// loops split them over fastseq's own threads. The per-step products are the packed-panel
// micro-kernel of gemm/microkernel.hpp.
#pragma once

#include <cstdint>

namespace fastseq::gemm {

enum class Op { N, T };

// Sets OpenBLAS back to one thread if anything changed it (called once per kernel call).
void ensure_single_threaded();

// C (m x n) = op(A) · op(B) + beta · C, row-major. op(A) is m x k, op(B) is k x n.
// beta = 0 overwrites C without reading it.
template <class S>
void matmul(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, const S* a,
            std::int64_t lda, const S* b, std::int64_t ldb, S beta, S* c, std::int64_t ldc);

}  // namespace fastseq::gemm
