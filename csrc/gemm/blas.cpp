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

}  // namespace fastseq::gemm
