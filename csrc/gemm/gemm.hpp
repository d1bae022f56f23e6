// The matrix products the time loops use, behind one interface: large products (input
// projection, weight gradients) and the per-step recurrent products. Today every one goes
// to OpenBLAS (scipy-openblas32); the performance work replaces the per-step pair with
// packed-weight micro-kernels without touching the loops.
#pragma once

#include <cstdint>

namespace fastseq::gemm {

enum class Op { N, T };

// C (m x n) = op(A) · op(B) + beta · C, row-major. op(A) is m x k, op(B) is k x n.
// beta = 0 overwrites C without reading it.
template <class S>
void matmul(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, const S* a,
            std::int64_t lda, const S* b, std::int64_t ldb, S beta, S* c, std::int64_t ldc);

// Forward step: out (B x n) = h (B x k) · Wᵀ, with W the n x k block of w_hh at w (row
// stride ldw). out is dense scratch (row stride ldo).
template <class S>
void step_forward(std::int64_t B, std::int64_t n, std::int64_t k, const S* h, std::int64_t ldh,
                  const S* w, std::int64_t ldw, S* out, std::int64_t ldo);

// Backward step: dh (B x k) = dg (B x n) · W + beta · dh, with W the n x k block of w_hh.
template <class S>
void step_backward(std::int64_t B, std::int64_t n, std::int64_t k, const S* dg,
                   std::int64_t lddg, const S* w, std::int64_t ldw, S beta, S* dh,
                   std::int64_t lddh);

}  // namespace fastseq::gemm
