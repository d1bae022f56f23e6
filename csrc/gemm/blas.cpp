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

// One row of C (a single step of a single sequence: streaming calls, T = B = 1) is a GEMV:
// c = op(B)ᵀ·a. OpenBLAS's GEMM would copy and pack the whole of B for that one row (its
// Haswell path spends 12 K instructions on a 1 × 32 · 32 × 128 product); its GEMV streams
// B once. beta = 0 must not read C (it may hold a reused buffer's NaNs): this OpenBLAS
// does not, and C is zeroed first for a BLAS that would scale it (0 · NaN = NaN). A row's
// bits then differ from the same row inside a taller product, which the README's
// determinism contract allows (a row's bits when other rows change); the choice depends on
// the shape alone, never on the thread count. (One row of A needs no lda.)
template <class S, class Gemv>
bool single_row(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k, const S* a,
                const S* b, std::int64_t ldb, S beta, S* c, Gemv gemv) {
  if (m != 1 || op_a != Op::N) return false;
  if (beta == S(0))
    for (std::int64_t j = 0; j < n; ++j) c[j] = S(0);
  // op(B) = Bᵀ (B is n x k): c = B·a; op(B) = B (k x n): c = Bᵀ·a.
  if (op_b == Op::T)
    gemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), S(1), b, blasint(ldb), a, 1,
         beta, c, 1);
  else
    gemv(CblasRowMajor, CblasTrans, blasint(k), blasint(n), S(1), b, blasint(ldb), a, 1, beta,
         c, 1);
  return true;
}

// Sizes were checked against the 32-bit blasint by validate_config.
template <>
void matmul<float>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   const float* a, std::int64_t lda, const float* b, std::int64_t ldb,
                   float beta, float* c, std::int64_t ldc) {
  if (single_row(op_a, op_b, m, n, k, a, b, ldb, beta, c, scipy_cblas_sgemv)) return;
  scipy_cblas_sgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), blasint(m), blasint(n),
                    blasint(k), 1.0f, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

template <>
void matmul<double>(Op op_a, Op op_b, std::int64_t m, std::int64_t n, std::int64_t k,
                    const double* a, std::int64_t lda, const double* b, std::int64_t ldb,
                    double beta, double* c, std::int64_t ldc) {
  if (single_row(op_a, op_b, m, n, k, a, b, ldb, beta, c, scipy_cblas_dgemv)) return;
  scipy_cblas_dgemm(CblasRowMajor, to_cblas(op_a), to_cblas(op_b), blasint(m), blasint(n),
                    blasint(k), 1.0, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc));
}

}  // namespace fastseq::gemm
