/* fastseq.h: the C ABI of libfastseq. Whole-sequence forward and backward of the Elman RNN
 * (tanh or relu), the LSTM (with or without a projection) and the GRU, in float32 and
 * float64, for C99, C++, Rust, cffi and Numba. These functions run the same compiled kernels
 * as the Python extension fastseq._core. Two ways in: the generic fastseq_forward /
 * fastseq_backward, which take any cell and its parameters as an array, with a versioned
 * options struct (at the end of this file); and the per-family functions, thin wrappers over
 * them. Plain C: no callbacks, no allocation the caller cannot avoid. Not here: layers,
 * stacking, bidirectional (run a second, reversed call), dropout.
 *
 * Conventions
 * -----------
 *   T  steps            B  batch            I  input size         H  hidden size
 *   G  gates: 1 (RNN), 4 (LSTM: i, f, g, o), 3 (GRU: r, z, n)      all sizes int64_t, >= 1
 *
 * - Arrays are dense, row-major (C order) and time-major: x and dx (T, B, I); y and dy
 *   (T, B, H); row (t, b) starts at element (t*B + b) * I or * H. States (B, H).
 * - Weights exactly as PyTorch stores them (a state_dict loads as is): w_ih (G*H, I),
 *   w_hh (G*H, H), b_ih and b_hh (G*H,), gate blocks of H rows stacked in the order above.
 * - One layer, one direction per call. Forward: steps t = 0 .. T-1. reverse = 1: each
 *   sequence is read backwards from its own last valid step (the reverse half of a
 *   bidirectional layer, as with PyTorch's packed sequences).
 * - lengths (B,) int64, optional: sequence b has L_b = lengths[b] valid steps, 1 <= L_b <= T,
 *   in any order. Past its length a sequence's state is frozen, its y rows are written as
 *   zeros and its dy rows are ignored. NULL lengths means every L_b = T.
 * - LSTM: c' = f*c + i*g, h' = o*tanh(c'). GRU: h' = (1-z)*n + z*h, with
 *     reset_after = 1 (PyTorch, cuDNN):  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *     reset_after = 0 (Cho et al.):      n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
 * - The switches reverse, relu, reset_after and training are ints that must be 0 or 1. The
 *   flags of the size queries are fastseq_option values or-ed: the call's bias, lengths, reverse.
 * - Pointers are never NULL unless marked "optional". Optional inputs mean zeros (h0, c0,
 *   dh_n, dc_n) or "absent" (biases: b_ih and b_hh are both NULL or both given; lengths).
 * - Aliasing: an output buffer may not overlap any other buffer. Read-only inputs may
 *   overlap each other (e.g. h0 == c0).
 * - Gradients are written, never accumulated: every d* output is overwritten (except with
 *   fastseq_backward's opts->accumulate, which adds the parameter gradients).
 *
 * Two buffer roles, both byte buffers sized by the queries below, each starting on a multiple
 * of 8 bytes (malloc's and NumPy's buffers do; 64 bytes is fastest; else
 * FASTSEQ_ERR_ALIGNMENT). They are unsigned char *, not void *, because Numba cannot pass its
 * typed pointers as void *:
 * - reserve: filled by a training forward, read (and consumed: overwritten) by the one
 *   backward call that follows. A forward trains iff reserve_size != 0, and reserve_size
 *   must then be exactly what fastseq_reserve_bytes() says; reserve_size == 0 runs inference and
 *   reserve is not touched (may be NULL). Backward needs the same configuration (cell,
 *   sizes, switches, lengths or NULL, bias or not) and the same, unmodified x, w_ih, w_hh and
 *   lengths as the forward that filled its reserve: they are not copied into it. The reserve
 *   opens with a header the forward writes (the configuration, a format version, a checksum)
 *   and backward checks before anything else: a reserve of another configuration, or bytes
 *   no training forward wrote, give FASTSEQ_ERR_RESERVE_MISMATCH. Backward marks the header
 *   consumed, so a second backward on it gives FASTSEQ_ERR_RESERVE_CONSUMED. (Unmodified
 *   inputs are still the caller's promise: the header does not cover them.)
 * - scratch: lives within one call; at least fastseq_forward_scratch_bytes() or
 *   fastseq_backward_scratch_bytes() bytes (asked with the call's options). scratch_size == 0 lets the call allocate its own
 *   (scratch may then be NULL), which can fail with FASTSEQ_ERR_OUT_OF_MEMORY.
 *
 * Errors
 * ------
 * Every function below except fastseq_last_error, fastseq_version and fastseq_get_num_threads
 * returns an int status:
 * FASTSEQ_OK (0) or one of the FASTSEQ_ERR_* codes. Statuses are plain ints, not the enum
 * type, so that every FFI (cffi, Numba, ctypes, Rust) passes them as C ints. All arguments
 * are checked before any output is written; on error nothing has been written, no function
 * aborts and no C++ exception crosses this interface. fastseq_last_error() returns the
 * message of the calling thread's last call (empty after a success). The functions are
 * thread-safe; concurrent calls must not share output, reserve or scratch buffers.
 */
#ifndef FASTSEQ_FASTSEQ_H
#define FASTSEQ_FASTSEQ_H

#include <stddef.h>
#include <stdint.h>

/* Exported from libfastseq.so (built with hidden visibility); empty for users. */
#if defined(FASTSEQ_BUILDING_LIBRARY)
#include "fastseq/export.hpp"
#endif
#ifndef FASTSEQ_API
#define FASTSEQ_API
#endif

/* Bumped when a declaration below changes incompatibly. */
#define FASTSEQ_C_API_VERSION 2

#ifdef __cplusplus
extern "C" {
#endif

/* fastseq.capi (Python) hands the text between FASTSEQ_CDEF_BEGIN and FASTSEQ_CDEF_END to
 * cffi's cdef: keep it plain C declarations, with no preprocessor lines. */
/* FASTSEQ_CDEF_BEGIN */

typedef enum fastseq_status {
  FASTSEQ_OK = 0,
  FASTSEQ_ERR_SIZE = 1,          /* T, B, I or H < 1, or too large (T*B, I, 4*H < 2^31) */
  FASTSEQ_ERR_NULL_POINTER = 2,  /* a required pointer is NULL (or only one bias given) */
  FASTSEQ_ERR_LENGTHS = 3,       /* some lengths[b] outside 0..T */
  FASTSEQ_ERR_RESERVE_SIZE = 4,  /* reserve_size is not this configuration's reserve size */
  FASTSEQ_ERR_SCRATCH_SIZE = 5,  /* scratch_size is smaller than this configuration needs */
  FASTSEQ_ERR_ARGUMENT = 6,      /* a cell, dtype, option or flag value out of range */
  FASTSEQ_ERR_OUT_OF_MEMORY = 7, /* the call could not allocate its scratch */
  FASTSEQ_ERR_INTERNAL = 8,      /* anything else (a bug: please report it) */
  /* backward: the reserve holds no header of a training forward of this configuration
     (another cell, dtype, size or option; zeros, other bytes, a corrupt header) */
  FASTSEQ_ERR_RESERVE_MISMATCH = 9,
  FASTSEQ_ERR_RESERVE_CONSUMED = 10, /* backward: a backward has consumed this reserve */
  FASTSEQ_ERR_ALIGNMENT = 11         /* reserve or scratch not on a multiple of 8 bytes */
} fastseq_status;

/* Cells: of the generic calls; the size queries take every cell but FASTSEQ_CELL_LSTMP. */
typedef enum fastseq_cell {
  FASTSEQ_CELL_RNN_TANH = 0,
  FASTSEQ_CELL_RNN_RELU = 1,
  FASTSEQ_CELL_LSTM = 2,
  FASTSEQ_CELL_GRU = 3,              /* reset_after = 1 */
  FASTSEQ_CELL_GRU_RESET_BEFORE = 4, /* reset_after = 0 */
  FASTSEQ_CELL_LSTMP = 5             /* LSTM with a projection (P wide h): fastseq_forward */
} fastseq_cell;

/* Scalar types, for the size queries. */
typedef enum fastseq_dtype {
  FASTSEQ_FLOAT32 = 1,
  FASTSEQ_FLOAT64 = 2
} fastseq_dtype;

/* Options of a call, or-ed into the flags of the size queries: the sizes may depend on
 * them, so describe the call the buffers are for. */
typedef enum fastseq_option {
  FASTSEQ_BIAS = 1,     /* b_ih and b_hh are given (backward: db_ih and db_hh) */
  FASTSEQ_LENGTHS = 2,  /* lengths is given */
  FASTSEQ_REVERSE = 4   /* reverse = 1 */
} fastseq_option;

/* The library's version, e.g. "0.1.0" (a static string). */
FASTSEQ_API const char* fastseq_version(void);

/* Threads the kernels use, fastseq's own pool (>= 1; not a status): FASTSEQ_NUM_THREADS,
 * else the CPUs this process may run on, until fastseq_set_num_threads. The results do not
 * depend on it (see the README's determinism contract). threadpoolctl finds the library by
 * these two. */
FASTSEQ_API int fastseq_get_num_threads(void);
/* Use n threads from the next kernel call on: FASTSEQ_ERR_ARGUMENT unless 1 <= n <= 4096. */
FASTSEQ_API int fastseq_set_num_threads(int n);

/* The message of this thread's last fastseq call: "" after a success, else it names the
 * function and the argument at fault. Valid until this thread's next fastseq call. */
FASTSEQ_API const char* fastseq_last_error(void);

/* ---- size queries -------------------------------------------------------------------
 * out:  *bytes  the size in bytes for this configuration (written only on success)
 * in:   cell (fastseq_cell), dtype (fastseq_dtype), the sizes T, B, I, H, flags (fastseq_option
 *       values or-ed, 0 for none), and for the forward scratch whether the forward trains
 *       (training: 0 or 1, i.e. reserve_size != 0).
 * A call with other options than the query's may need other sizes: it then fails with
 * FASTSEQ_ERR_RESERVE_SIZE or FASTSEQ_ERR_SCRATCH_SIZE, never reads past a buffer. */
FASTSEQ_API int fastseq_reserve_bytes(size_t* bytes, int cell, int dtype, int64_t T, int64_t B,
                                      int64_t I, int64_t H, int flags);
FASTSEQ_API int fastseq_forward_scratch_bytes(size_t* bytes, int cell, int dtype, int64_t T,
                                              int64_t B, int64_t I, int64_t H, int flags,
                                              int training);
FASTSEQ_API int fastseq_backward_scratch_bytes(size_t* bytes, int cell, int dtype, int64_t T,
                                               int64_t B, int64_t I, int64_t H, int flags);

/* ---- forward ------------------------------------------------------------------------
 * out:     y        (T, B, H)  outputs; zero past each sequence's length
 *          h_n      (B, H)     state after each sequence's last step
 *          c_n      (B, H)     LSTM cell state after the last step
 *          reserve  reserve_size bytes; written when training (reserve_size != 0)
 * in:      x        (T, B, I)
 *          w_ih     (G*H, I),  w_hh (G*H, H)
 *          b_ih, b_hh  (G*H,)  optional, both or neither
 *          h0, c0   (B, H)     optional initial state (zeros)
 *          lengths  (B,)       optional, int64, values in 0..T (0: y zero, h_n = h0)
 * scratch: scratch_size bytes, >= fastseq_forward_scratch_bytes(..., training); or 0: allocated
 * switches: reverse; relu (RNN: 1 relu, 0 tanh); reset_after (GRU: 1 PyTorch, 0 Cho et al.) */
FASTSEQ_API int fastseq_rnn_forward_f32(
    float* y, float* h_n, unsigned char* reserve, size_t reserve_size,
    const float* x, const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
    const float* h0, const int64_t* lengths, unsigned char* scratch, size_t scratch_size,
    int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int relu);
FASTSEQ_API int fastseq_rnn_forward_f64(
    double* y, double* h_n, unsigned char* reserve, size_t reserve_size,
    const double* x, const double* w_ih, const double* w_hh, const double* b_ih,
    const double* b_hh, const double* h0, const int64_t* lengths, unsigned char* scratch,
    size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int relu);

FASTSEQ_API int fastseq_lstm_forward_f32(
    float* y, float* h_n, float* c_n, unsigned char* reserve, size_t reserve_size,
    const float* x, const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
    const float* h0, const float* c0, const int64_t* lengths, unsigned char* scratch,
    size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H, int reverse);
FASTSEQ_API int fastseq_lstm_forward_f64(
    double* y, double* h_n, double* c_n, unsigned char* reserve, size_t reserve_size,
    const double* x, const double* w_ih, const double* w_hh, const double* b_ih,
    const double* b_hh, const double* h0, const double* c0, const int64_t* lengths,
    unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H,
    int reverse);

FASTSEQ_API int fastseq_gru_forward_f32(
    float* y, float* h_n, unsigned char* reserve, size_t reserve_size,
    const float* x, const float* w_ih, const float* w_hh, const float* b_ih, const float* b_hh,
    const float* h0, const int64_t* lengths, unsigned char* scratch, size_t scratch_size,
    int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int reset_after);
FASTSEQ_API int fastseq_gru_forward_f64(
    double* y, double* h_n, unsigned char* reserve, size_t reserve_size,
    const double* x, const double* w_ih, const double* w_hh, const double* b_ih,
    const double* b_hh, const double* h0, const int64_t* lengths, unsigned char* scratch,
    size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int reset_after);

/* ---- backward -----------------------------------------------------------------------
 * out:     dx       (T, B, I)   zero rows past each sequence's length
 *          dh0      (B, H)      gradient at the initial state (also when h0 was NULL)
 *          dc0      (B, H)      LSTM: gradient at the initial cell state
 *          dw_ih    (G*H, I),   dw_hh (G*H, H)
 *          db_ih, db_hh (G*H,)  both iff the forward had biases, else both NULL
 * in/out:  reserve  reserve_size bytes from the training forward; consumed (overwritten)
 * in:      x, w_ih, w_hh, lengths  exactly as given to that forward (lengths optional)
 *          dy       (T, B, H)   gradient at y (rows past each length ignored)
 *          dh_n, dc_n (B, H)    optional gradients at h_n, c_n (zeros)
 * scratch: scratch_size bytes, >= fastseq_backward_scratch_bytes(); or 0: allocated
 * switches: as given to the forward */
FASTSEQ_API int fastseq_rnn_backward_f32(
    float* dx, float* dh0, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh,
    unsigned char* reserve, size_t reserve_size, const float* x, const float* w_ih, const float* w_hh,
    const int64_t* lengths, const float* dy, const float* dh_n, unsigned char* scratch,
    size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H, int reverse, int relu);
FASTSEQ_API int fastseq_rnn_backward_f64(
    double* dx, double* dh0, double* dw_ih, double* dw_hh, double* db_ih, double* db_hh,
    unsigned char* reserve, size_t reserve_size, const double* x, const double* w_ih,
    const double* w_hh, const int64_t* lengths, const double* dy, const double* dh_n,
    unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H,
    int reverse, int relu);

FASTSEQ_API int fastseq_lstm_backward_f32(
    float* dx, float* dh0, float* dc0, float* dw_ih, float* dw_hh, float* db_ih,
    float* db_hh, unsigned char* reserve, size_t reserve_size, const float* x, const float* w_ih,
    const float* w_hh, const int64_t* lengths, const float* dy, const float* dh_n,
    const float* dc_n, unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B, int64_t I,
    int64_t H, int reverse);
FASTSEQ_API int fastseq_lstm_backward_f64(
    double* dx, double* dh0, double* dc0, double* dw_ih, double* dw_hh, double* db_ih,
    double* db_hh, unsigned char* reserve, size_t reserve_size, const double* x, const double* w_ih,
    const double* w_hh, const int64_t* lengths, const double* dy, const double* dh_n,
    const double* dc_n, unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B, int64_t I,
    int64_t H, int reverse);

FASTSEQ_API int fastseq_gru_backward_f32(
    float* dx, float* dh0, float* dw_ih, float* dw_hh, float* db_ih, float* db_hh,
    unsigned char* reserve, size_t reserve_size, const float* x, const float* w_ih, const float* w_hh,
    const int64_t* lengths, const float* dy, const float* dh_n, unsigned char* scratch,
    size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H, int reverse,
    int reset_after);
FASTSEQ_API int fastseq_gru_backward_f64(
    double* dx, double* dh0, double* dw_ih, double* dw_hh, double* db_ih, double* db_hh,
    unsigned char* reserve, size_t reserve_size, const double* x, const double* w_ih,
    const double* w_hh, const int64_t* lengths, const double* dy, const double* dh_n,
    unsigned char* scratch, size_t scratch_size, int64_t T, int64_t B, int64_t I, int64_t H,
    int reverse, int reset_after);

/* ---- generic entry points: any cell, its parameters as an array -----------------------
 * The cell's parameter arrays, in its order (fastseq.cells' Cell.parameters):
 *   FASTSEQ_CELL_LSTMP  w_ih (4H, I), w_hh (4H, P), w_hr (P, H), b_ih (4H,), b_hh (4H,)
 *   every other cell    w_ih (G*H, I), w_hh (G*H, H), b_ih (G*H,), b_hh (G*H,)
 * and its states, in its order: h (B, Hs), then the LSTMs' c (B, H). Hs, the width of h and
 * of y and dy, is P for FASTSEQ_CELL_LSTMP (h = m W_hr^T, m = o*tanh(c') H wide), else H.
 * Pointers to float (FASTSEQ_FLOAT32) or double (FASTSEQ_FLOAT64) data as opts->dtype says;
 * the conventions above hold otherwise. */

/* The options of a generic call. struct_size is the struct's own size: set it to
 * sizeof(fastseq_options). Later versions append fields; a library reads the fields the
 * caller's struct_size covers, so a caller built against this header keeps working with a
 * newer library, and a newer caller's struct is accepted by this library while the fields
 * it does not know are zero (else FASTSEQ_ERR_ARGUMENT). */
typedef struct fastseq_options {
  size_t struct_size;  /* sizeof(fastseq_options) */
  int dtype;           /* fastseq_dtype */
  int flags;           /* fastseq_option values or-ed: they must say what the call gives
                          (biases, lengths) and whether it runs reversed */
  int64_t T, B, I, H;
  int64_t proj_size;   /* P: 0 < P < H for FASTSEQ_CELL_LSTMP, 0 for every other cell */
  int accumulate;      /* fastseq_backward: 1 adds the parameter gradients into dparams
                          (as into a layer's .grad), 0 overwrites them */
} fastseq_options;

/* The buffers fastseq_buffer_bytes sizes. */
typedef enum fastseq_buffer {
  FASTSEQ_RESERVE = 1,           /* a training forward's reserve */
  FASTSEQ_FORWARD_SCRATCH = 2,   /* an inference forward's scratch */
  FASTSEQ_TRAINING_SCRATCH = 3,  /* a training forward's scratch */
  FASTSEQ_BACKWARD_SCRATCH = 4   /* a backward's scratch */
} fastseq_buffer;

/* *bytes: the size of buffer (fastseq_buffer) for a call of cell with opts. */
FASTSEQ_API int fastseq_buffer_bytes(size_t* bytes, int buffer, int cell,
                                     const fastseq_options* opts);

/* out:     y         (T, B, Hs)
 *          states_n  the cell's states after the last step: {h_n} or {h_n, c_n}
 *          reserve   reserve_size bytes; written when training (reserve_size != 0)
 * in:      x         (T, B, I)
 *          params    the cell's parameters; the biases both NULL or both given, as
 *                    opts->flags says (FASTSEQ_BIAS)
 *          states0   optional initial states {h0} or {h0, c0}: NULL, or entries NULL, mean
 *                    zeros
 *          lengths   optional (B,), as opts->flags says (FASTSEQ_LENGTHS)
 * scratch: as the per-family functions' (fastseq_buffer_bytes) */
FASTSEQ_API int fastseq_forward(int cell, const fastseq_options* opts, void* y,
                                void* const* states_n, unsigned char* reserve,
                                size_t reserve_size, const void* x, const void* const* params,
                                const void* const* states0, const int64_t* lengths,
                                unsigned char* scratch, size_t scratch_size);

/* out:     dx        (T, B, I)
 *          dstates0  gradients at the initial states: {dh0} or {dh0, dc0}
 *          dparams   gradients of the cell's parameters, in params order; the bias
 *                    gradients both NULL or both given, as the forward had biases
 * in/out:  reserve   from the training forward; consumed
 * in:      x, params, lengths  as given to that forward (the biases are not read: NULL will
 *                    do); opts as given to it, accumulate aside
 *          dy        (T, B, Hs)
 *          dstates_n optional gradients at the last states: NULL, or entries NULL, mean zeros */
FASTSEQ_API int fastseq_backward(int cell, const fastseq_options* opts, void* dx,
                                 void* const* dstates0, void* const* dparams,
                                 unsigned char* reserve, size_t reserve_size, const void* x,
                                 const void* const* params, const int64_t* lengths,
                                 const void* dy, const void* const* dstates_n,
                                 unsigned char* scratch, size_t scratch_size);

/* FASTSEQ_CDEF_END */

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif /* FASTSEQ_FASTSEQ_H */
