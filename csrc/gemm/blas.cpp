// gemm::matmul on OpenBLAS from scipy-openblas32 (cblas symbols prefixed scipy_). The
// library keeps its own thread pool; its level-3 routines split only the m and n
// dimensions, so results do not depend on how many of its threads run.
#include <cblas.h>

#include "gemm/gemm.hpp"

namespace fastseq::gemm {
namespace {

CBLAS_TRANSPOSE to_cblas(Op op) { return op == Op::N ? CblasNoTrans : CblasTrans; }

}  // namespace

// Sizes were checked against the 32-bit blasint by validate_config.
template <>
void matmul<float>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), blasint(m), blasint(n),
                    blasint(k), 1.0f, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

template <>
void matmul<double>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k,
                    const double* a, std::int64_t lda, const double* b, std::int64_t ldb,
                    double beta, double* c, std::int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), blasint(m), blasint(n),
                    blasint(k), 1.0, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

// At B = 1 the step products are matrix-vector products: OpenBLAS's gemm would repack the
// whole weight block on every call, its gemv streams it once.
template <>
void step_forward<float>(std::int64_t B, std::int64_t n, std::int64_t k, const float* h,
                         std::int64_t ldh, const float* w, std::int64_t ldw, float* out,
                         std::int64_t ldo) {
  if (B == 1)
    scipy_cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), 1.0f, w, blasint(ldw),
                      h, 1, 0.0f, out, 1);
  else
    matmul<float>(Op::N, Op::T, B, n, k, h, ldh, w, ldw, 0.0f, out, ldo);
}

template <>
void step_forward<double>(std::int64_t B, std::int64_t n, std::int64_t k, const double* h,
                          std::int64_t ldh, const double* w, std::int64_t ldw, double* out,
                          std::int64_t ldo) {
  if (B == 1)
    scipy_cblas_dgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), 1.0, w, blasint(ldw),
                      h, 1, 0.0, out, 1);
  else
    matmul<double>(Op::N, Op::T, B, n, k, h, ldh, w, ldw, 0.0, out, ldo);
}

template <>
void step_backward<float>(std::int64_t B, std::int64_t n, std::int64_t k, const float* dg,
                          std::int64_t lddg, const float* w, std::int64_t ldw, float beta,
                          float* dh, std::int64_t lddh) {
  if (B == 1)
    scipy_cblas_sgemv(CblasRowMajor, CblasTrans, blasint(n), blasint(k), 1.0f, w, blasint(ldw),
                      dg, 1, beta, dh, 1);
  else
    matmul<float>(Op::N, Op::N, B, k, n, dg, lddg, w, ldw, beta, dh, lddh);
}

template <>
void step_backward<double>(std::int64_t B, std::int64_t n, std::int64_t k, const double* dg,
                           std::int64_t lddg, const double* w, std::int64_t ldw, double beta,
                           double* dh, std::int64_t lddh) {
  if (B == 1)
    scipy_cblas_dgemv(CblasRowMajor, CblasTrans, blasint(n), blasint(k), 1.0, w, blasint(ldw),
                      dg, 1, beta, dh, 1);
  else
    matmul<double>(Op::N, Op::N, B, k, n, dg, lddg, w, ldw, beta, dh, lddh);
}

}  // namespace fastseq::gemm
