// gemm::matmul on OpenBLAS from scipy-openblas32 (cblas symbols prefixed scipy_), always on
// the calling thread: the library is set to one thread when libfastseq loads, because an
// idle OpenBLAS worker spins for ~100 ms after a threaded call and would fight fastseq's
// own threads for the cores. (scipy_openblas_set_num_threads_local is declared by the
// wheel's cblas.h but not exported, so the global setting is the only one there is.)
#include <cblas.h>

#include "gemm/gemm.hpp"

namespace fastseq::gemm {
namespace {

[[maybe_unused]] const int kOneThread = (scipy_openblas_set_num_threads(1), 1);

}  // namespace

// Someone (threadpoolctl, another library sharing this OpenBLAS) may have raised the count
// since: put it back before the kernels call in from several threads.
void ensure_single_threaded() {
  if (scipy_openblas_get_num_threads() != 1) scipy_openblas_set_num_threads(1);
}

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
