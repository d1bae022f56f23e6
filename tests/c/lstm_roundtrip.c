/* An LSTM forward and backward in float64 through fastseq's C ABI, as a C user writes it:
 * sizes from the queries, caller-owned reserve and scratch, every status checked.
 * Usage: lstm_roundtrip DIR T B I H REVERSE HAS_LENGTHS
 * Reads DIR/in.bin (float64 unless noted, in this order): x (T,B,I), w_ih (4H,I),
 * w_hh (4H,H), b_ih (4H), b_hh (4H), h0 (B,H), c0 (B,H), lengths (B, int64, if HAS_LENGTHS),
 * dy (T,B,H), dh_n (B,H), dc_n (B,H). Writes DIR/out.bin (float64): y, h_n, c_n, dx, dh0,
 * dc0, dw_ih, dw_hh, db_ih, db_hh. The Python test compares them with the reference.
 * Nothing is freed: the process ends. */
#include <fastseq/fastseq.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static FILE* in_file;
static FILE* out_file;

static void die(const char* what) {
  fprintf(stderr, "lstm_roundtrip: %s\n", what);
  exit(2);
}

static void check(int status, const char* call) {
  if (status != FASTSEQ_OK) {
    fprintf(stderr, "lstm_roundtrip: %s returned %d: %s\n", call, status, fastseq_last_error());
    exit(1);
  }
}

static void* alloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (!p) die("out of memory");
  return p;
}

static double* read_f64(size_t n) {
  double* p = alloc(n * sizeof *p);
  if (fread(p, sizeof *p, n, in_file) != n) die("in.bin is too short");
  return p;
}

static void write_f64(const double* p, size_t n) {
  if (fwrite(p, sizeof *p, n, out_file) != n) die("cannot write out.bin");
}

int main(int argc, char** argv) {
  char path[4096];
  int64_t T, B, I, H;
  int reverse, has_lengths, flags;
  size_t G4, reserve_size, fwd_scratch_size, bwd_scratch_size;
  double *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0, *dy, *dh_n, *dc_n;
  double *y, *h_n, *c_n, *dx, *dh0, *dc0, *dw_ih, *dw_hh, *db_ih, *db_hh;
  int64_t* lengths = NULL;
  unsigned char *reserve, *scratch;

  if (argc != 8) die("usage: lstm_roundtrip DIR T B I H REVERSE HAS_LENGTHS");
  T = atoll(argv[2]);
  B = atoll(argv[3]);
  I = atoll(argv[4]);
  H = atoll(argv[5]);
  reverse = atoi(argv[6]);
  has_lengths = atoi(argv[7]);
  G4 = (size_t)(4 * H);

  snprintf(path, sizeof path, "%s/in.bin", argv[1]);
  in_file = fopen(path, "rb");
  if (!in_file) die("cannot open in.bin");
  x = read_f64((size_t)(T * B * I));
  w_ih = read_f64(G4 * (size_t)I);
  w_hh = read_f64(G4 * (size_t)H);
  b_ih = read_f64(G4);
  b_hh = read_f64(G4);
  h0 = read_f64((size_t)(B * H));
  c0 = read_f64((size_t)(B * H));
  if (has_lengths) {
    lengths = alloc((size_t)B * sizeof *lengths);
    if (fread(lengths, sizeof *lengths, (size_t)B, in_file) != (size_t)B) die("in.bin is too short");
  }
  dy = read_f64((size_t)(T * B * H));
  dh_n = read_f64((size_t)(B * H));
  dc_n = read_f64((size_t)(B * H));
  fclose(in_file);

  /* 1. sizes, for this call's options, then every buffer owned here */
  flags = FASTSEQ_BIAS | (has_lengths ? FASTSEQ_LENGTHS : 0) | (reverse ? FASTSEQ_REVERSE : 0);
  check(fastseq_reserve_bytes(&reserve_size, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T, B, I, H,
                              flags),
        "fastseq_reserve_bytes");
  check(fastseq_forward_scratch_bytes(&fwd_scratch_size, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T,
                                      B, I, H, flags, 1),
        "fastseq_forward_scratch_bytes");
  check(fastseq_backward_scratch_bytes(&bwd_scratch_size, FASTSEQ_CELL_LSTM, FASTSEQ_FLOAT64, T,
                                       B, I, H, flags),
        "fastseq_backward_scratch_bytes");
  /* Offset by 8 bytes from malloc's 16: the header asks for a multiple of 8 bytes only. */
  reserve = (unsigned char*)alloc(reserve_size + 8) + 8;
  scratch = (unsigned char*)alloc(8 + (fwd_scratch_size > bwd_scratch_size ? fwd_scratch_size
                                                                            : bwd_scratch_size)) + 8;
  y = alloc((size_t)(T * B * H) * sizeof(double));
  h_n = alloc((size_t)(B * H) * sizeof(double));
  c_n = alloc((size_t)(B * H) * sizeof(double));
  dx = alloc((size_t)(T * B * I) * sizeof(double));
  dh0 = alloc((size_t)(B * H) * sizeof(double));
  dc0 = alloc((size_t)(B * H) * sizeof(double));
  dw_ih = alloc(G4 * (size_t)I * sizeof(double));
  dw_hh = alloc(G4 * (size_t)H * sizeof(double));
  db_ih = alloc(G4 * sizeof(double));
  db_hh = alloc(G4 * sizeof(double));

  /* 2. training forward: fills the reserve */
  check(fastseq_lstm_forward_f64(y, h_n, c_n, reserve, reserve_size, x, w_ih, w_hh, b_ih, b_hh,
                                 h0, c0, lengths, scratch, fwd_scratch_size, T, B, I, H,
                                 reverse),
        "fastseq_lstm_forward_f64");
  if (fastseq_last_error()[0] != '\0') die("the message is not empty after a success");

  /* 3. backward: consumes the reserve */
  check(fastseq_lstm_backward_f64(dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, reserve,
                                  reserve_size, x, w_ih, w_hh, lengths, dy, dh_n, dc_n, scratch,
                                  bwd_scratch_size, T, B, I, H, reverse),
        "fastseq_lstm_backward_f64");

  snprintf(path, sizeof path, "%s/out.bin", argv[1]);
  out_file = fopen(path, "wb");
  if (!out_file) die("cannot open out.bin");
  write_f64(y, (size_t)(T * B * H));
  write_f64(h_n, (size_t)(B * H));
  write_f64(c_n, (size_t)(B * H));
  write_f64(dx, (size_t)(T * B * I));
  write_f64(dh0, (size_t)(B * H));
  write_f64(dc0, (size_t)(B * H));
  write_f64(dw_ih, G4 * (size_t)I);
  write_f64(dw_hh, G4 * (size_t)H);
  write_f64(db_ih, G4);
  write_f64(db_hh, G4);
  if (fclose(out_file) != 0) die("cannot write out.bin");
  printf("fastseq %s: lstm forward and backward ok\n", fastseq_version());
  return 0;
}
