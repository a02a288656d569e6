/* torchpool: BlurPool's binomial blur and subsampling, float32, on the CPU, and its input gradient.
 *
 * The input is a stack of (planes, D, H, W) maps, contiguous (1-d and 2-d: D = H = 1 or D = 1).
 * Along each axis the filter has k taps (k = 1 to 7, the caller's binomial taps), the input is
 * padded lo = (k - 1) / 2 cells before and hi = k / 2 after, and every s-th position from the
 * first is kept, so an axis of n cells gives out = ceil(n / s) outputs:
 *
 *     y[o] = sum_{t < k} w[t] * x_padded[o s + t],    x_padded[c + lo] = x[source(c)],
 *
 * source(c) = c inside [0, n); outside it the padding mode: zeros (no cell), reflect (-c, or
 * 2 (n - 1) - c), replicate (the nearest edge) or circular (c + n, or c - n). The caller checks the
 * sizes the modes need (reflect: lo, hi < n; circular: lo, hi <= n), so one reflection or one wrap
 * is enough. The filter is separable and the padding of one axis commutes with the blur of the
 * others, so each output row (od, oh) is computed in two steps:
 *
 *   1. vertical: the window's input rows (d, h) (weights w_d[td] w_h[th], padded rows read from
 *      their source rows, zero-padded ones left out) are summed into a row buffer of the padded
 *      width W + lo + hi; its padding columns are then filled from its own columns, as the mode
 *      fills them;
 *   2. horizontal: the buffer's taps with the stride, LANES outputs at a time in vector registers
 *      (GCC vector extensions; stride 2 deinterleaved by a shuffle of two loads).
 *
 * The gradient is the transpose, per output row: the incoming gradient row upsampled by the
 * stride (zeros between) and correlated with the reversed taps gives the gradient of the padded
 * row buffer; its padding columns are added onto their source columns; the buffer, times each
 * window row's weight, is added onto that input row's gradient. Windows overlap, so the gradient
 * is accumulated a plane at a time (planes split over threads); the forward pass splits output
 * rows. Every output and gradient cell is computed in a fixed order whatever the thread count, so
 * results are bitwise the same for any number of threads. OpenMP is PyTorch's own runtime once
 * torch is loaded.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16
#define MAXK 7
#define INLINE static inline __attribute__((always_inline))

typedef float vfloat __attribute__((vector_size(4 * LANES)));
typedef int32_t vint __attribute__((vector_size(4 * LANES)));

enum { ZEROS = 0, REFLECT = 1, REPLICATE = 2, CIRCULAR = 3 };

INLINE vfloat load(const float *p) {
    vfloat r;
    memcpy(&r, p, sizeof r);
    return r;
}
INLINE void store(float *p, vfloat a) { memcpy(p, &a, sizeof a); }

/* p[0], p[s], ..., p[(LANES - 1) s] */
INLINE vfloat load_strided(const float *p, int64_t s) {
    if (s == 1) return load(p);
    if (s == 2)
        return __builtin_shuffle(load(p), load(p + LANES),
                                 (vint){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30});
    float r[LANES];
    for (int j = 0; j < LANES; j++) r[j] = p[j * s];
    return load(r);
}

/* The geometry from the caller's 13 numbers: size, kernel, stride, out (3 dims each, leading
 * dims 1 for 1-d and 2-d), padding mode; and the taps (3 x MAXK floats, axis-major). */
typedef struct {
    int64_t size[3], kernel[3], stride[3], out[3], mode;
    int64_t lo[3];       /* padding before each axis */
    int64_t padded;      /* W + lo + hi: the row buffer's width */
    int64_t buffer;      /* the row buffer's allocation, with room for a last block's reads */
    const float *taps;   /* taps[axis * MAXK + t] */
} geometry;

static geometry read_geometry(const int64_t *params, const float *taps) {
    geometry g;
    memcpy(&g, params, sizeof(int64_t) * 13);
    for (int a = 0; a < 3; a++) g.lo[a] = (g.kernel[a] - 1) / 2;
    const int64_t W = g.size[2], k = g.kernel[2], s = g.stride[2];
    g.padded = W + k - 1;
    /* the horizontal pass reads up to (OW - 1 + LANES) s + k cells; the backward's upsampled row
     * has k - 1 leading zeros and (OW + LANES) s cells */
    int64_t reads = (g.out[2] + LANES) * s + k, up = (g.out[2] + LANES) * s + 2 * k;
    g.buffer = (reads > up ? reads : up) + g.padded + LANES;
    g.taps = taps;
    return g;
}

/* the cell of an axis of n cells that padded position c (in [-lo, n + hi)) reads; -1: a zero */
INLINE int64_t source(int64_t c, int64_t n, int64_t mode) {
    if (c >= 0 && c < n) return c;
    switch (mode) {
    case REFLECT: return c < 0 ? -c : 2 * (n - 1) - c;
    case REPLICATE: return c < 0 ? 0 : n - 1;
    case CIRCULAR: return c < 0 ? c + n : c - n;
    default: return -1;
    }
}

/* The window rows of output row (od, oh): their offsets in the plane and weights (a padded row
 * read from its source row; a zero row left out); returns their number, at least 1: every window
 * holds the input row o s, its first subsampled position. */
static int window_rows(const geometry *g, int64_t od, int64_t oh, int64_t *offsets, float *weights) {
    int n = 0;
    for (int64_t td = 0; td < g->kernel[0]; td++) {
        int64_t d = source(od * g->stride[0] - g->lo[0] + td, g->size[0], g->mode);
        if (d < 0) continue;
        for (int64_t th = 0; th < g->kernel[1]; th++) {
            int64_t h = source(oh * g->stride[1] - g->lo[1] + th, g->size[1], g->mode);
            if (h < 0) continue;
            offsets[n] = (d * g->size[1] + h) * g->size[2];
            weights[n++] = g->taps[td] * g->taps[MAXK + th];
        }
    }
    return n;
}

/* buf[lo + c] = sum_i weights[i] rows[i][c] for c in [0, W), summed in row order */
static void vertical(float *restrict out, const float *plane, const int64_t *offsets, const float *weights, int n,
                     int64_t W) {
    const float *r0 = plane + offsets[0];
    const float w0 = weights[0];
    if (n == 3) { /* the common 2-d window: one pass */
        const float *r1 = plane + offsets[1], *r2 = plane + offsets[2];
        const float w1 = weights[1], w2 = weights[2];
        for (int64_t c = 0; c < W; c++) out[c] = (w0 * r0[c] + w1 * r1[c]) + w2 * r2[c];
        return;
    }
    for (int64_t c = 0; c < W; c++) out[c] = w0 * r0[c];
    for (int i = 1; i < n; i++) {
        const float *r = plane + offsets[i];
        const float w = weights[i];
        for (int64_t c = 0; c < W; c++) out[c] += w * r[c];
    }
}

/* the padding columns of a row buffer (buf[0] is padded column -lo) filled as the mode fills them */
static void fill_padding(const geometry *g, float *buf) {
    const int64_t W = g->size[2], lo = g->lo[2], hi = g->kernel[2] / 2;
    for (int64_t c = -lo; c < 0; c++) {
        int64_t i = source(c, W, g->mode);
        buf[lo + c] = i < 0 ? 0.0f : buf[lo + i];
    }
    for (int64_t c = W; c < W + hi; c++) {
        int64_t i = source(c, W, g->mode);
        buf[lo + c] = i < 0 ? 0.0f : buf[lo + i];
    }
}

/* y[o] = sum_t taps[t] buf[o s + t], o in [0, OW); K and S constants where dispatched */
INLINE void horizontal(float *y, const float *buf, const float *taps, int64_t OW, int64_t K, int64_t S) {
    vfloat w[MAXK];
    for (int64_t t = 0; t < K; t++) w[t] = (vfloat){0} + taps[t];
    int64_t o = 0;
    for (; o + LANES <= OW; o += LANES) {
        const float *p = buf + o * S;
        vfloat acc = w[0] * load_strided(p, S);
        for (int64_t t = 1; t < K; t++) acc += w[t] * load_strided(p + t, S);
        store(y + o, acc);
    }
    if (o < OW) { /* the last, short block: the buffer has room for a full block's reads */
        const float *p = buf + o * S;
        vfloat acc = w[0] * load_strided(p, S);
        for (int64_t t = 1; t < K; t++) acc += w[t] * load_strided(p + t, S);
        float r[LANES];
        store(r, acc);
        memcpy(y + o, r, sizeof(float) * (size_t)(OW - o));
    }
}

/* CALL(K, S) with compile-time constants for every kernel size and strides 1 and 2 */
#define DISPATCH(k, s, CALL)                                                                          \
    switch ((int)(k) * ((s) == 1 ? 1 : (s) == 2 ? -1 : 0)) {                                           \
    case 1: CALL(1, 1); break;                                                                         \
    case 2: CALL(2, 1); break;                                                                         \
    case 3: CALL(3, 1); break;                                                                         \
    case 4: CALL(4, 1); break;                                                                         \
    case 5: CALL(5, 1); break;                                                                         \
    case 6: CALL(6, 1); break;                                                                         \
    case 7: CALL(7, 1); break;                                                                         \
    case -1: CALL(1, 2); break;                                                                        \
    case -2: CALL(2, 2); break;                                                                        \
    case -3: CALL(3, 2); break;                                                                        \
    case -4: CALL(4, 2); break;                                                                        \
    case -5: CALL(5, 2); break;                                                                        \
    case -6: CALL(6, 2); break;                                                                        \
    case -7: CALL(7, 2); break;                                                                        \
    default: CALL(k, s);                                                                               \
    }

static void horizontal_any(const geometry *g, float *y, const float *buf) {
    const float *taps = g->taps + 2 * MAXK;
#define HORIZONTAL(K, S) horizontal(y, buf, taps, g->out[2], K, S)
    DISPATCH(g->kernel[2], g->stride[2], HORIZONTAL)
#undef HORIZONTAL
}

/* this thread's share [*first, *end) of `count` items */
static void share(int64_t count, int64_t *first, int64_t *end) {
    int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    *first = count * id / threads;
    *end = count * (id + 1) / threads;
}

/* a thread's work space: the window rows' offsets and weights, two row buffers */
typedef struct {
    int64_t offsets[MAXK * MAXK];
    float weights[MAXK * MAXK];
    float *buf, *up;
} scratch;

static int scratch_init(scratch *s, const geometry *g) {
    s->buf = calloc((size_t)(2 * g->buffer), sizeof(float));
    s->up = s->buf ? s->buf + g->buffer : NULL;
    return s->buf == NULL;
}

/* y = the blurred, subsampled x. Returns 0, or 1 if a work space could not be allocated. */
int tp_blur_forward(const float *x, float *y, int64_t planes, const int64_t *params, const float *taps,
                    int threads) {
    const geometry g = read_geometry(params, taps);
    const int64_t in_plane = g.size[0] * g.size[1] * g.size[2];
    const int64_t rows = g.out[0] * g.out[1], OW = g.out[2];
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t r, end;
        share(planes * rows, &r, &end);
        failed |= scratch_init(&s, &g);
        if (!failed && r < end) {
            /* the output rows in order: plane q, then od, then oh (no division per row) */
            int64_t q = r / rows, od = r % rows / g.out[1], oh = r % g.out[1];
            for (; r < end; r++) {
                int n = window_rows(&g, od, oh, s.offsets, s.weights);
                vertical(s.buf + g.lo[2], x + q * in_plane, s.offsets, s.weights, n, g.size[2]);
                fill_padding(&g, s.buf);
                horizontal_any(&g, y + r * OW, s.buf);
                if (++oh == g.out[1]) {
                    oh = 0;
                    if (++od == g.out[0]) {
                        od = 0;
                        q++;
                    }
                }
            }
        }
        free(s.buf);
    }
    return failed;
}

/* gbuf[p] = sum_t taps[t] up[p - t] for p in [0, P): up has K - 1 readable cells before it */
INLINE void correlate_back(float *restrict gbuf, const float *up, const float *taps, int64_t P, int64_t K) {
    for (int64_t p = 0; p < P; p++) gbuf[p] = taps[0] * up[p];
    for (int64_t t = 1; t < K; t++)
        for (int64_t p = 0; p < P; p++) gbuf[p] += taps[t] * up[p - t];
}

/* the gradient of one output row's padded row buffer, its padding columns added onto their
 * source columns (in a fixed order) */
static void row_gradient(const geometry *g, scratch *s, const float *grad) {
    const int64_t OW = g->out[2], S = g->stride[2], K = g->kernel[2], W = g->size[2], lo = g->lo[2];
    const int64_t P = g->padded;
    float *up = s->up + K; /* up[-K .. -1] stay zero */
    if (S == 1) {
        memcpy(up, grad, sizeof(float) * (size_t)OW);
    } else {
        memset(up, 0, sizeof(float) * (size_t)(OW * S));
        for (int64_t o = 0; o < OW; o++) up[o * S] = grad[o];
    }
    /* up[-K .. -1] and up beyond OW s are never written: zero from calloc */
    const float *taps = g->taps + 2 * MAXK;
#define CORRELATE(KK, SS) correlate_back(s->buf, up, taps, P, KK)
    switch (K) {
    case 1: CORRELATE(1, 0); break;
    case 2: CORRELATE(2, 0); break;
    case 3: CORRELATE(3, 0); break;
    case 4: CORRELATE(4, 0); break;
    case 5: CORRELATE(5, 0); break;
    case 6: CORRELATE(6, 0); break;
    default: CORRELATE(7, 0); break;
    }
#undef CORRELATE
    /* the padding columns onto their source columns, left ones first */
    for (int64_t c = -lo; c < 0; c++) {
        int64_t i = source(c, W, g->mode);
        if (i >= 0) s->buf[lo + i] += s->buf[lo + c];
    }
    for (int64_t c = W; c < P - lo; c++) {
        int64_t i = source(c, W, g->mode);
        if (i >= 0) s->buf[lo + i] += s->buf[lo + c];
    }
}

/* gx = the gradient of the blur, from the incoming gradient gy. Returns 0, or 1 as above. */
int tp_blur_backward(const float *gy, float *gx, int64_t planes, const int64_t *params, const float *taps,
                     int threads) {
    const geometry g = read_geometry(params, taps);
    const int64_t in_plane = g.size[0] * g.size[1] * g.size[2], W = g.size[2];
    const int64_t rows = g.out[0] * g.out[1], OW = g.out[2];
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t first, end;
        share(planes, &first, &end);
        failed |= scratch_init(&s, &g);
        for (int64_t q = first; q < end && !failed; q++) {
            float *plane = gx + q * in_plane;
            memset(plane, 0, sizeof(float) * (size_t)in_plane);
            for (int64_t od = 0; od < g.out[0]; od++)
                for (int64_t oh = 0; oh < g.out[1]; oh++) {
                    int n = window_rows(&g, od, oh, s.offsets, s.weights);
                    row_gradient(&g, &s, gy + (q * rows + od * g.out[1] + oh) * OW);
                    const float *b = s.buf + g.lo[2];
                    for (int i = 0; i < n; i++) {
                        float *row = plane + s.offsets[i];
                        const float w = s.weights[i];
                        for (int64_t c = 0; c < W; c++) row[c] += w * b[c];
                    }
                }
        }
        free(s.buf);
    }
    return failed;
}
