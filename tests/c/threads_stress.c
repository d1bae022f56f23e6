/* Concurrent callers of fastseq's C ABI, for ThreadSanitizer (tools/sanitize.sh builds this
 * and libfastseq.so with -fsanitize=thread). No Python: only the C ABI, OpenBLAS and pthreads.
 *
 * Every cell (RNN tanh/relu, LSTM, GRU reset after/before), float32 and float64, training
 * forward + backward and an inference forward, with and without lengths, reverse, caller's
 * scratch and library-allocated scratch, sizes where fastseq's pool runs a team of 2 (the
 * step product is above team_size's threshold; the LSTM case at B = 64 without lengths takes
 * the forward that folds the input projection into the steps). The main thread first runs
 * every case alone (the pool is free: a team of 2); then NTHREADS threads run them all
 * ROUNDS times, each starting at a different case, so different cells and dtypes overlap:
 * one caller at a time gets the pool, the others find it busy and run on their own thread.
 * Inputs (x, weights, ...) are shared by all threads, read-only; outputs, reserve and scratch
 * are each thread's own, as fastseq.h requires. Each thread also provokes an error between
 * calls and checks that fastseq_last_error() is its own.
 *
 * Results must match the main thread's to rounding (1 and 2 threads give the same step-loop
 * bits; the large products may split differently). Exit 0 if everything matched, 1 if not,
 * 2 on a usage or setup error.
 *
 * Usage: threads_stress [NTHREADS [ROUNDS]]   (defaults 4 and 2)
 * Environment: FASTSEQ_NUM_THREADS (default here 2: the pool's size), and
 * OPENBLAS_NUM_THREADS=1 is required (libfastseq sets OpenBLAS to one thread when it loads,
 * but OpenBLAS may have started its own threads before that; they are not instrumented). */
#define _POSIX_C_SOURCE 200112L
#include <fastseq/fastseq.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char* name;
  int cell; /* fastseq_cell */
  int64_t T, B, I, H;
  int lengths, reverse, own_scratch;
} Config;

/* Team of 2 where 2*B*G*H*H >= 1.5e5 (loops/sequence.hpp: team_size). H not a multiple of
 * any vector width, B not a multiple of any tile height. */
static const Config kConfigs[] = {
    {"rnn_tanh", FASTSEQ_CELL_RNN_TANH, 6, 6, 11, 130, 1, 0, 1},
    {"rnn_relu", FASTSEQ_CELL_RNN_RELU, 5, 6, 9, 131, 0, 1, 0},
    {"lstm", FASTSEQ_CELL_LSTM, 6, 6, 11, 70, 1, 1, 0},
    {"lstm_fused", FASTSEQ_CELL_LSTM, 2, 64, 7, 20, 0, 0, 1},
    {"gru", FASTSEQ_CELL_GRU, 6, 6, 11, 70, 1, 0, 1},
    {"gru_reset_before", FASTSEQ_CELL_GRU_RESET_BEFORE, 5, 6, 8, 71, 0, 1, 0},
};
#define NCONFIGS ((int)(sizeof kConfigs / sizeof kConfigs[0]))
#define NCASES (2 * NCONFIGS) /* each config in float32 and float64 */

enum { Y, HN, CN, DX, DH0, DC0, DWIH, DWHH, DBIH, DBHH, YI, HNI, CNI, NOUT };

typedef struct {
  Config cfg;
  int dtype; /* fastseq_dtype */
  size_t es; /* element size */
  int64_t G;
  /* inputs, shared read-only */
  void *x, *w_ih, *w_hh, *b_ih, *b_hh, *h0, *c0, *dy, *dh_n, *dc_n;
  int64_t* lengths;
  size_t reserve_size, fwd_scratch, fwd_scratch_infer, bwd_scratch;
  size_t count[NOUT], offset[NOUT], total; /* outputs, in elements */
  double* expected;                        /* the main thread's results, as double */
} Case;

static Case cases[NCASES];
static int nthreads = 4, rounds = 2;

static void die(const char* what) {
  fprintf(stderr, "threads_stress: %s\n", what);
  exit(2);
}

static void* alloc(size_t bytes) {
  void* p = malloc(bytes ? bytes : 1);
  if (!p) die("out of memory");
  return p;
}

/* Deterministic inputs in [-scale, scale). */
static void fill(void* p, size_t n, size_t es, double scale, unsigned* state) {
  size_t i;
  for (i = 0; i < n; ++i) {
    double v;
    *state = *state * 1664525u + 1013904223u;
    v = scale * ((double)(*state >> 8) / (double)(1u << 24) * 2.0 - 1.0);
    if (es == 4)
      ((float*)p)[i] = (float)v;
    else
      ((double*)p)[i] = v;
  }
}

static void* input(size_t n, size_t es, double scale, unsigned* state) {
  void* p = alloc(n * es);
  fill(p, n, es, scale, state);
  return p;
}

static void setup(Case* c, const Config* cfg, int dtype, unsigned seed) {
  const int64_t T = cfg->T, B = cfg->B, I = cfg->I, H = cfg->H;
  const int flags = FASTSEQ_BIAS | (cfg->lengths ? FASTSEQ_LENGTHS : 0) |
                    (cfg->reverse ? FASTSEQ_REVERSE : 0);
  const double w = 1.0 / sqrt((double)H);
  size_t es, k, at = 0;
  int64_t G, b;
  c->cfg = *cfg;
  c->dtype = dtype;
  c->es = es = dtype == FASTSEQ_FLOAT32 ? 4 : 8;
  c->G = G = cfg->cell == FASTSEQ_CELL_LSTM ? 4 : (cfg->cell >= FASTSEQ_CELL_GRU ? 3 : 1);
  c->x = input((size_t)(T * B * I), es, 1.0, &seed);
  c->w_ih = input((size_t)(G * H * I), es, w, &seed);
  c->w_hh = input((size_t)(G * H * H), es, w, &seed);
  c->b_ih = input((size_t)(G * H), es, w, &seed);
  c->b_hh = input((size_t)(G * H), es, w, &seed);
  c->h0 = input((size_t)(B * H), es, 0.5, &seed);
  c->c0 = input((size_t)(B * H), es, 0.5, &seed);
  c->dy = input((size_t)(T * B * H), es, 1.0, &seed);
  c->dh_n = input((size_t)(B * H), es, 1.0, &seed);
  c->dc_n = input((size_t)(B * H), es, 1.0, &seed);
  c->lengths = NULL;
  if (cfg->lengths) {
    c->lengths = alloc((size_t)B * sizeof *c->lengths);
    for (b = 0; b < B; ++b) c->lengths[b] = T - b % T; /* 1..T, T first */
  }
  if (fastseq_reserve_bytes(&c->reserve_size, cfg->cell, dtype, T, B, I, H, flags) ||
      fastseq_forward_scratch_bytes(&c->fwd_scratch, cfg->cell, dtype, T, B, I, H, flags, 1) ||
      fastseq_forward_scratch_bytes(&c->fwd_scratch_infer, cfg->cell, dtype, T, B, I, H, flags,
                                    0) ||
      fastseq_backward_scratch_bytes(&c->bwd_scratch, cfg->cell, dtype, T, B, I, H, flags)) {
    fprintf(stderr, "threads_stress: size query: %s\n", fastseq_last_error());
    exit(2);
  }
  c->count[Y] = c->count[YI] = (size_t)(T * B * H);
  c->count[HN] = c->count[HNI] = c->count[DH0] = (size_t)(B * H);
  c->count[CN] = c->count[CNI] = c->count[DC0] = G == 4 ? (size_t)(B * H) : 0;
  c->count[DX] = (size_t)(T * B * I);
  c->count[DWIH] = (size_t)(G * H * I);
  c->count[DWHH] = (size_t)(G * H * H);
  c->count[DBIH] = c->count[DBHH] = (size_t)(G * H);
  for (k = 0; k < NOUT; ++k) {
    c->offset[k] = at;
    at += c->count[k];
  }
  c->total = at;
  c->expected = NULL;
}

/* One training forward + backward and one inference forward of case c into out (c->total
 * elements of c->es bytes). Returns the first failing status, with the call's name. */
static int run_case(const Case* c, unsigned char* out, unsigned char* reserve,
                    unsigned char* scratch, const char** failed) {
  const Config* g = &c->cfg;
  const int64_t T = g->T, B = g->B, I = g->I, H = g->H;
  const int rev = g->reverse;
  const int flag = g->cell == FASTSEQ_CELL_RNN_RELU || g->cell == FASTSEQ_CELL_GRU;
  const size_t rs = c->reserve_size;
  const size_t fs = g->own_scratch ? c->fwd_scratch : 0;
  const size_t fsi = g->own_scratch ? c->fwd_scratch_infer : 0;
  const size_t bs = g->own_scratch ? c->bwd_scratch : 0;
  unsigned char* s = g->own_scratch ? scratch : NULL;
  const int64_t* len = c->lengths;
  void* o[NOUT];
  int k, st = FASTSEQ_OK;
  for (k = 0; k < NOUT; ++k) o[k] = out + c->offset[k] * c->es;

#define CALLS(SFX)                                                                             \
  if (g->cell == FASTSEQ_CELL_LSTM) {                                                          \
    *failed = "lstm forward";                                                                  \
    st = fastseq_lstm_forward_##SFX(o[Y], o[HN], o[CN], reserve, rs, c->x, c->w_ih, c->w_hh,   \
                                    c->b_ih, c->b_hh, c->h0, c->c0, len, s, fs, T, B, I, H,    \
                                    rev);                                                      \
    if (st) return st;                                                                         \
    *failed = "lstm backward";                                                                 \
    st = fastseq_lstm_backward_##SFX(o[DX], o[DH0], o[DC0], o[DWIH], o[DWHH], o[DBIH],         \
                                     o[DBHH], reserve, rs, c->x, c->w_ih, c->w_hh, len, c->dy, \
                                     c->dh_n, c->dc_n, s, bs, T, B, I, H, rev);                \
    if (st) return st;                                                                         \
    *failed = "lstm inference";                                                                \
    st = fastseq_lstm_forward_##SFX(o[YI], o[HNI], o[CNI], NULL, 0, c->x, c->w_ih, c->w_hh,    \
                                    c->b_ih, c->b_hh, c->h0, c->c0, len, s, fsi, T, B, I, H,   \
                                    rev);                                                      \
  } else if (g->cell == FASTSEQ_CELL_GRU || g->cell == FASTSEQ_CELL_GRU_RESET_BEFORE) {        \
    *failed = "gru forward";                                                                   \
    st = fastseq_gru_forward_##SFX(o[Y], o[HN], reserve, rs, c->x, c->w_ih, c->w_hh, c->b_ih,  \
                                   c->b_hh, c->h0, len, s, fs, T, B, I, H, rev, flag);         \
    if (st) return st;                                                                         \
    *failed = "gru backward";                                                                  \
    st = fastseq_gru_backward_##SFX(o[DX], o[DH0], o[DWIH], o[DWHH], o[DBIH], o[DBHH],         \
                                    reserve, rs, c->x, c->w_ih, c->w_hh, len, c->dy, c->dh_n,  \
                                    s, bs, T, B, I, H, rev, flag);                             \
    if (st) return st;                                                                         \
    *failed = "gru inference";                                                                 \
    st = fastseq_gru_forward_##SFX(o[YI], o[HNI], NULL, 0, c->x, c->w_ih, c->w_hh, c->b_ih,    \
                                   c->b_hh, c->h0, len, s, fsi, T, B, I, H, rev, flag);        \
  } else {                                                                                     \
    *failed = "rnn forward";                                                                   \
    st = fastseq_rnn_forward_##SFX(o[Y], o[HN], reserve, rs, c->x, c->w_ih, c->w_hh, c->b_ih,  \
                                   c->b_hh, c->h0, len, s, fs, T, B, I, H, rev, flag);         \
    if (st) return st;                                                                         \
    *failed = "rnn backward";                                                                  \
    st = fastseq_rnn_backward_##SFX(o[DX], o[DH0], o[DWIH], o[DWHH], o[DBIH], o[DBHH],         \
                                    reserve, rs, c->x, c->w_ih, c->w_hh, len, c->dy, c->dh_n,  \
                                    s, bs, T, B, I, H, rev, flag);                             \
    if (st) return st;                                                                         \
    *failed = "rnn inference";                                                                 \
    st = fastseq_rnn_forward_##SFX(o[YI], o[HNI], NULL, 0, c->x, c->w_ih, c->w_hh, c->b_ih,    \
                                   c->b_hh, c->h0, len, s, fsi, T, B, I, H, rev, flag);        \
  }

  if (c->es == 4) {
    CALLS(f32)
  } else {
    CALLS(f64)
  }
#undef CALLS
  return st;
}

static double value(const Case* c, const unsigned char* out, size_t i) {
  return c->es == 4 ? (double)((const float*)out)[i] : ((const double*)out)[i];
}

/* Max |got - expected| / max(1, max |expected|) over each output; -1 if the NaN pattern
 * differs. */
static double mismatch(const Case* c, const unsigned char* out) {
  double worst = 0.0;
  int k;
  for (k = 0; k < NOUT; ++k) {
    size_t i, lo = c->offset[k], hi = lo + c->count[k];
    double scale = 1.0, err = 0.0;
    for (i = lo; i < hi; ++i)
      if (fabs(c->expected[i]) > scale) scale = fabs(c->expected[i]);
    for (i = lo; i < hi; ++i) {
      const double got = value(c, out, i), want = c->expected[i];
      if (isnan(got) != isnan(want)) return -1.0;
      if (fabs(got - want) > err) err = fabs(got - want);
    }
    if (err / scale > worst) worst = err / scale;
  }
  return worst;
}

typedef struct {
  int id;
  int failures;
} Worker;

/* Scratch for all three calls of run_case (an inference forward may need the most). */
static size_t scratch_bytes(const Case* c) {
  size_t n = c->fwd_scratch > c->bwd_scratch ? c->fwd_scratch : c->bwd_scratch;
  return n > c->fwd_scratch_infer ? n : c->fwd_scratch_infer;
}

static void* work(void* arg) {
  Worker* w = arg;
  int r, k;
  for (r = 0; r < rounds; ++r) {
    for (k = 0; k < NCASES; ++k) {
      const Case* c = &cases[(k + w->id * 3) % NCASES];
      unsigned char* out = alloc(c->total * c->es);
      unsigned char* reserve = alloc(c->reserve_size);
      unsigned char* scratch = alloc(scratch_bytes(c));
      const char* failed = "";
      const double tol = c->es == 4 ? 1e-5 : 1e-12;
      double err;
      int st;
      /* An error first: the message must be this thread's, and a success must clear it. */
      st = fastseq_rnn_forward_f64(NULL, NULL, NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL, NULL, 0, 1, 1, 1, 1, 0, 2 + w->id);
      if (st != FASTSEQ_ERR_ARGUMENT || !strstr(fastseq_last_error(), "relu must be 0 or 1")) {
        fprintf(stderr, "thread %d: expected FASTSEQ_ERR_ARGUMENT, got %d: %s\n", w->id, st,
                fastseq_last_error());
        w->failures++;
      }
      st = run_case(c, out, reserve, scratch, &failed);
      if (st != FASTSEQ_OK) {
        fprintf(stderr, "thread %d: %s %s (float%d): status %d: %s\n", w->id, c->cfg.name,
                failed, (int)(8 * c->es), st, fastseq_last_error());
        w->failures++;
      } else if (fastseq_last_error()[0] != '\0') {
        fprintf(stderr, "thread %d: last error not cleared: %s\n", w->id, fastseq_last_error());
        w->failures++;
      } else if ((err = mismatch(c, out)) < 0 || err > tol) {
        fprintf(stderr, "thread %d: %s float%d differs from the single caller's: %g\n", w->id,
                c->cfg.name, (int)(8 * c->es), err);
        w->failures++;
      }
      free(out);
      free(reserve);
      free(scratch);
    }
  }
  return NULL;
}

int main(int argc, char** argv) {
  const char* blas = getenv("OPENBLAS_NUM_THREADS");
  pthread_t* threads;
  Worker* workers;
  int k, failures = 0;

  if (argc > 1) nthreads = atoi(argv[1]);
  if (argc > 2) rounds = atoi(argv[2]);
  if (argc > 3 || nthreads < 1 || rounds < 1) die("usage: threads_stress [NTHREADS [ROUNDS]]");
  if (!blas || strcmp(blas, "1") != 0) die("set OPENBLAS_NUM_THREADS=1");
  /* Read by libfastseq at its first kernel call: the pool's size. */
  if (!getenv("FASTSEQ_NUM_THREADS")) setenv("FASTSEQ_NUM_THREADS", "2", 1);

  for (k = 0; k < NCASES; ++k) {
    Case* c = &cases[k];
    unsigned char *out, *reserve, *scratch;
    const char* failed = "";
    size_t i;
    int st;
    setup(c, &kConfigs[k / 2], k % 2 ? FASTSEQ_FLOAT64 : FASTSEQ_FLOAT32, 12345u + 77u * k);
    out = alloc(c->total * c->es);
    reserve = alloc(c->reserve_size);
    scratch = alloc(scratch_bytes(c));
    st = run_case(c, out, reserve, scratch, &failed);
    if (st != FASTSEQ_OK) {
      fprintf(stderr, "threads_stress: %s %s: status %d: %s\n", c->cfg.name, failed, st,
              fastseq_last_error());
      return 1;
    }
    c->expected = alloc(c->total * sizeof(double));
    for (i = 0; i < c->total; ++i) c->expected[i] = value(c, out, i);
    for (i = 0; i < c->total; ++i)
      if (!isfinite(c->expected[i])) die("a single-caller result is not finite");
    free(out);
    free(reserve);
    free(scratch);
  }

  threads = alloc((size_t)nthreads * sizeof *threads);
  workers = alloc((size_t)nthreads * sizeof *workers);
  for (k = 0; k < nthreads; ++k) {
    workers[k].id = k;
    workers[k].failures = 0;
    if (pthread_create(&threads[k], NULL, work, &workers[k]) != 0) die("pthread_create failed");
  }
  for (k = 0; k < nthreads; ++k) {
    pthread_join(threads[k], NULL);
    failures += workers[k].failures;
  }
  printf("threads_stress: fastseq %s, %d cases, %d threads x %d rounds, pool of %s: %d failures\n",
         fastseq_version(), NCASES, nthreads, rounds, getenv("FASTSEQ_NUM_THREADS"), failures);
  return failures ? 1 : 0;
}
