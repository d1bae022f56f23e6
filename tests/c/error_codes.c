/* Every error status of fastseq's C ABI, provoked from C: one line per case on stdout,
 * "<case> <status name> <fastseq_last_error()>". The Python test holds the expected status
 * of each case. Valid baseline: an LSTM (float64, T=3, B=2, I=2, H=2), one argument spoilt
 * per case. */
#include <fastseq/fastseq.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 3
#define B0 2
#define I0 2
#define H0 2
#define OPTIONS (FASTSEQ_BIAS | FASTSEQ_LENGTHS) /* what the baseline calls give */

static double x[T0 * B0 * I0], w_ih[4 * H0 * I0], w_hh[4 * H0 * H0], b[4 * H0];
static double h0[B0 * H0], c0[B0 * H0], dy[T0 * B0 * H0], dh_n[B0 * H0], dc_n[B0 * H0];
static double y[T0 * B0 * H0], h_n[B0 * H0], c_n[B0 * H0];
static double dx[T0 * B0 * I0], dh0[B0 * H0], dc0[B0 * H0];
static double dw_ih[4 * H0 * I0], dw_hh[4 * H0 * H0], db_ih[4 * H0], db_hh[4 * H0];
static int64_t lengths[B0] = {3, 2};
static unsigned char* reserve;
static unsigned char* scratch;
static size_t reserve_size, scratch_size;

static const char* status_name(int status) {
  switch (status) {
    case FASTSEQ_OK: return "FASTSEQ_OK";
    case FASTSEQ_ERR_SIZE: return "FASTSEQ_ERR_SIZE";
    case FASTSEQ_ERR_NULL_POINTER: return "FASTSEQ_ERR_NULL_POINTER";
    case FASTSEQ_ERR_LENGTHS: return "FASTSEQ_ERR_LENGTHS";
    case FASTSEQ_ERR_RESERVE_SIZE: return "FASTSEQ_ERR_RESERVE_SIZE";
    case FASTSEQ_ERR_SCRATCH_SIZE: return "FASTSEQ_ERR_SCRATCH_SIZE";
    case FASTSEQ_ERR_ARGUMENT: return "FASTSEQ_ERR_ARGUMENT";
    case FASTSEQ_ERR_OUT_OF_MEMORY: return "FASTSEQ_ERR_OUT_OF_MEMORY";
    case FASTSEQ_ERR_INTERNAL: return "FASTSEQ_ERR_INTERNAL";
    case FASTSEQ_ERR_RESERVE_MISMATCH: return "FASTSEQ_ERR_RESERVE_MISMATCH";
    case FASTSEQ_ERR_RESERVE_CONSUMED: return "FASTSEQ_ERR_RESERVE_CONSUMED";
    case FASTSEQ_ERR_ALIGNMENT: return "FASTSEQ_ERR_ALIGNMENT";
    default: return "UNKNOWN";
  }
}

static void report(const char* name, int status) {
  printf("%s %s %s\n", name, status_name(status), fastseq_last_error());
}

/* The arguments of one LSTM forward / backward call, valid unless a case changes one. */
typedef struct {
  double *y, *h_n, *c_n;
  unsigned char* reserve;
  size_t reserve_size;
  const double *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0;
  const int64_t* lengths;
  unsigned char* scratch;
  size_t scratch_size;
  int64_t T, B, I, H;
  int reverse;
} Forward;

typedef struct {
  double *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh;
  unsigned char* reserve;
  size_t reserve_size;
  const double *x, *w_ih, *w_hh;
  const int64_t* lengths;
  const double *dy, *dh_n, *dc_n;
  unsigned char* scratch;
  size_t scratch_size;
  int64_t T, B, I, H;
  int reverse;
} Backward;

static Forward forward_args(void) {
  Forward a = {y, h_n, c_n, NULL, 0, x, w_ih, w_hh, b, b, h0, c0, lengths, NULL, 0,
               T0, B0, I0, H0, 0};
  a.reserve = reserve;
  a.reserve_size = reserve_size;
  a.scratch = scratch;
  a.scratch_size = scratch_size;
  return a;
}

static Backward backward_args(void) {
  Backward a = {dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, NULL, 0, x, w_ih, w_hh, lengths,
                dy, dh_n, dc_n, NULL, 0, T0, B0, I0, H0, 0};
  a.reserve = reserve;
  a.reserve_size = reserve_size;
  a.scratch = scratch;
  a.scratch_size = scratch_size;
  return a;
}

static int forward(const Forward* a) {
  return fastseq_lstm_forward_f64(a->y, a->h_n, a->c_n, a->reserve, a->reserve_size, a->x,
                                  a->w_ih, a->w_hh, a->b_ih, a->b_hh, a->h0, a->c0, a->lengths,
                                  a->scratch, a->scratch_size, a->T, a->B, a->I, a->H,
                                  a->reverse);
}

static int backward(const Backward* a) {
  return fastseq_lstm_backward_f64(a->dx, a->dh0, a->dc0, a->dw_ih, a->dw_hh, a->db_ih,
                                   a->db_hh, a->reserve, a->reserve_size, a->x, a->w_ih,
                                   a->w_hh, a->lengths, a->dy, a->dh_n, a->dc_n, a->scratch,
                                   a->scratch_size, a->T, a->B, a->I, a->H, a->reverse);
}

int main(void) {
  Forward f;
  Backward g;
  size_t bytes, fwd_scratch, bwd_scratch;
  int i;
  for (i = 0; i < T0 * B0 * I0; ++i) x[i] = 0.1 * i;
  for (i = 0; i < 4 * H0 * I0; ++i) w_ih[i] = 0.01 * i;
  for (i = 0; i < 4 * H0 * H0; ++i) w_hh[i] = -0.01 * i;

  if (fastseq_reserve_bytes(&reserve_size, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T0, B0, I0, H0,
                            OPTIONS) ||
      fastseq_forward_scratch_bytes(&fwd_scratch, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T0, B0, I0,
                                    H0, OPTIONS, 1) ||
      fastseq_backward_scratch_bytes(&bwd_scratch, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T0, B0,
                                     I0, H0, OPTIONS)) {
    fprintf(stderr, "error_codes: size query failed: %s\n", fastseq_last_error());
    return 1;
  }
  scratch_size = fwd_scratch > bwd_scratch ? fwd_scratch : bwd_scratch;
  reserve = malloc(reserve_size + 8); /* + 8: room for the misaligned cases */
  scratch = malloc(scratch_size + 8);
  if (!reserve || !scratch) return 1;

  /* sizes: zero, negative, too large for the 32-bit BLAS, in a call and in a query */
  f = forward_args(); f.T = 0; report("forward_T_zero", forward(&f));
  f = forward_args(); f.H = -3; report("forward_H_negative", forward(&f));
  f = forward_args(); f.T = (int64_t)1 << 31; report("forward_T_too_large", forward(&f));
  report("query_B_negative",
         fastseq_reserve_bytes(&bytes, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T0, -1, I0, H0, 0));
  g = backward_args(); g.I = 0; report("backward_I_zero", backward(&g));

  /* null pointers where data is needed */
  f = forward_args(); f.x = NULL; report("forward_x_null", forward(&f));
  f = forward_args(); f.y = NULL; report("forward_y_null", forward(&f));
  f = forward_args(); f.c_n = NULL; report("forward_c_n_null", forward(&f));
  f = forward_args(); f.b_hh = NULL; report("forward_one_bias_null", forward(&f));
  f = forward_args(); f.reserve = NULL; report("forward_reserve_null", forward(&f));
  f = forward_args(); f.scratch = NULL; report("forward_scratch_null", forward(&f));
  g = backward_args(); g.dy = NULL; report("backward_dy_null", backward(&g));
  g = backward_args(); g.reserve = NULL; report("backward_reserve_null", backward(&g));
  g = backward_args(); g.db_ih = NULL; report("backward_one_bias_grad_null", backward(&g));
  report("query_bytes_null",
         fastseq_backward_scratch_bytes(NULL, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T0, B0, I0, H0,
                                        OPTIONS));

  /* lengths out of range (0 is in range: an empty sequence) */
  lengths[1] = 0;
  f = forward_args(); report("forward_length_zero_ok", forward(&f));
  lengths[1] = -1;
  f = forward_args(); report("forward_length_negative", forward(&f));
  lengths[1] = T0 + 1;
  f = forward_args(); report("forward_length_above_T", forward(&f));
  lengths[1] = -2;
  g = backward_args(); report("backward_length_negative", backward(&g));
  lengths[1] = 2;

  /* reserve and scratch sizes */
  f = forward_args(); f.reserve_size -= 8; report("forward_reserve_too_small", forward(&f));
  f = forward_args(); f.scratch_size = 16; report("forward_scratch_too_small", forward(&f));
  f = forward_args(); report("forward_ok", forward(&f));
  g = backward_args(); g.reserve_size += 64; report("backward_reserve_too_large", backward(&g));
  g = backward_args(); g.T = 2; g.lengths = NULL;
  report("backward_reserve_of_other_config", backward(&g));
  g = backward_args(); g.reserve_size = 0; report("backward_reserve_size_zero", backward(&g));
  g = backward_args(); g.scratch_size = 8; report("backward_scratch_too_small", backward(&g));

  /* the reserve's header: same size, other configuration (reverse) */
  g = backward_args(); g.reverse = 1; report("backward_reserve_of_other_direction", backward(&g));

  /* alignment: reserve and scratch must start on a multiple of 8 bytes */
  f = forward_args(); f.scratch += 4;
  report("forward_scratch_misaligned", forward(&f));
  g = backward_args(); g.reserve += 1;
  report("backward_reserve_misaligned", backward(&g));

  /* enum and flag values out of range */
  report("query_bad_cell",
         fastseq_reserve_bytes(&bytes, 9, FASTSEQ_FLOAT64, T0, B0, I0, H0, 0));
  report("query_bad_dtype",
         fastseq_reserve_bytes(&bytes, FASTSEQ_CELL_GRU, 8, T0, B0, I0, H0, 0));
  report("query_bad_flags",
         fastseq_reserve_bytes(&bytes, FASTSEQ_CELL_GRU, FASTSEQ_FLOAT64, T0, B0, I0, H0, 16));
  report("query_bad_training",
         fastseq_forward_scratch_bytes(&bytes, FASTSEQ_CELL_GRU, FASTSEQ_FLOAT32, T0, B0, I0, H0,
                                       0, 2));
  f = forward_args(); f.reverse = 2; report("forward_bad_reverse", forward(&f));
  report("rnn_bad_relu",
         fastseq_rnn_forward_f64(y, h_n, NULL, 0, x, w_ih, w_hh, NULL, NULL, NULL, NULL, NULL, 0,
                                 T0, B0, I0, H0, 0, 7));
  report("gru_bad_reset_after",
         fastseq_gru_backward_f32(NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL,
                                  NULL, NULL, NULL, NULL, 0, T0, B0, I0, H0, 0, -1));

  /* out of memory: an inference forward that allocates its own scratch of 2^49 bytes
     (more than any x86-64 user address space), failing before any pointer is read */
  f = forward_args();
  f.reserve = NULL;
  f.reserve_size = 0;
  f.scratch = NULL;
  f.scratch_size = 0;
  f.lengths = NULL;
  f.T = (int64_t)1 << 15;
  f.B = (int64_t)1 << 15;
  f.H = (int64_t)1 << 14;
  report("forward_out_of_memory", forward(&f));

  /* a success clears the message; the training forward above left a valid reserve */
  f = forward_args(); report("forward_ok_again", forward(&f));
  g = backward_args(); report("backward_ok", backward(&g));

  /* backward consumed the reserve; zero bytes were never a reserve */
  g = backward_args(); report("backward_reserve_consumed", backward(&g));
  memset(reserve, 0, reserve_size);
  g = backward_args(); report("backward_reserve_zeroed", backward(&g));

  free(reserve);
  free(scratch);
  return 0;
}
