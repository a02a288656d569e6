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
 * The gradient is the transpose, a plane at a time (windows overlap; planes split over threads,
 * where the forward pass splits output rows). First, per output row, the incoming gradient row
 * upsampled by the stride (zeros between; stride 2: even and odd taps, interleaved) and correlated
 * with the reversed taps gives the gradient of its padded row buffer, whose padding columns are
 * then added onto their source columns. Then each input row is written once: the sum of the row
 * buffers' gradients of the output rows that read it (per-axis reader lists, reflected / wrapped /
 * replicated reads included) times their weights; the plane is streamed out with non-temporal
 * stores. Every output and gradient cell is computed in a fixed order whatever the thread count,
 * so results are bitwise the same for any number of threads. OpenMP is PyTorch's own runtime once
 * torch is loaded.
 *
 * MaxBlurPool (the end of the file) runs the dense max pool and this blur a plane at a time, the
 * dense plane in a work buffer; its gradient recomputes each dense cell's chosen input cell.
 */
#if defined(__SSE2__)
#include <immintrin.h>
#endif
#include <stdlib.h>

#include "vector.h"

#define MAXK 7

enum { ZEROS = 0, REFLECT = 1, REPLICATE = 2, CIRCULAR = 3 };

/* a non-temporal store of a block at a 64-byte-aligned address (a plain store without SSE) */
#if defined(__AVX512F__)
INLINE void store_stream(float *p, vfloat a) {
    __m512 v;
    memcpy(&v, &a, sizeof v);
    _mm512_stream_ps(p, v);
}
#elif defined(__AVX__)
INLINE void store_stream(float *p, vfloat a) {
    __m256 v[2];
    memcpy(v, &a, sizeof v);
    _mm256_stream_ps(p, v[0]);
    _mm256_stream_ps(p + 8, v[1]);
}
#elif defined(__SSE2__)
INLINE void store_stream(float *p, vfloat a) {
    __m128 v[4];
    memcpy(v, &a, sizeof v);
    for (int j = 0; j < 4; j++) _mm_stream_ps(p + 4 * j, v[j]);
}
#else
INLINE void store_stream(float *p, vfloat a) { store(p, a); }
#endif

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

/* one output row's blur: the window rows into the row buffer, the horizontal taps into y */
static void forward_row(const geometry *g, scratch *s, const float *plane, float *y, int64_t od, int64_t oh) {
    int n = window_rows(g, od, oh, s->offsets, s->weights);
    vertical(s->buf + g->lo[2], plane, s->offsets, s->weights, n, g->size[2]);
    fill_padding(g, s->buf);
    horizontal_any(g, y, s->buf);
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
                forward_row(&g, &s, x + q * in_plane, y + r * OW, od, oh);
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

/* correlate_back for stride 2 without the upsampled row: up holds the incoming gradient row itself
 * (zeros around it); the even and odd positions 2 o + r, r = 0, 1, are sums of the taps t = r mod 2
 * times up[o - (t - r) / 2] (taps in order), LANES values of o at a time, then interleaved */
INLINE void correlate_back_2(float *gbuf, const float *up, const float *taps, int64_t P, int64_t K) {
    const vint low = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const vint high = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    for (int64_t o = 0; 2 * o < P; o += LANES) {
        vfloat even = {0}, odd = {0};
        for (int64_t t = 0; t < K; t++) {
            if (t % 2 == 0) even += taps[t] * load(up + o - t / 2);
            else odd += taps[t] * load(up + o - (t - 1) / 2);
        }
        store(gbuf + 2 * o, __builtin_shuffle(even, odd, low));
        store(gbuf + 2 * o + LANES, __builtin_shuffle(even, odd, high));
    }
}

/* the gradient of one output row's padded row buffer into out[0 .. P), its padding columns then
 * added onto their source columns (in a fixed order). For strides 1 and 2, `up` is the incoming
 * gradient row with zeros around it (K before, at least K + 2 LANES after); other strides pass
 * NULL and the row is upsampled here from `grad` */
static void row_gradient(const geometry *g, scratch *s, const float *up, const float *grad, float *out) {
    const int64_t OW = g->out[2], S = g->stride[2], K = g->kernel[2], W = g->size[2], lo = g->lo[2];
    const int64_t P = g->padded;
    const float *taps = g->taps + 2 * MAXK;
    if (!up) {
        float *u = s->up + K; /* u[-K .. -1] and u beyond OW S are never written: zero from calloc */
        memset(u, 0, sizeof(float) * (size_t)(OW * S));
        for (int64_t o = 0; o < OW; o++) u[o * S] = grad[o];
        up = u;
    }
#define STRIDE_TWO(KK, SS) correlate_back_2(out, up, taps, P, KK)
#define CORRELATE(KK, SS) correlate_back(out, up, taps, P, KK)
#define BY_KERNEL(CALL)                                                                                \
    switch (K) {                                                                                       \
    case 1: CALL(1, 0); break;                                                                         \
    case 2: CALL(2, 0); break;                                                                         \
    case 3: CALL(3, 0); break;                                                                         \
    case 4: CALL(4, 0); break;                                                                         \
    case 5: CALL(5, 0); break;                                                                         \
    case 6: CALL(6, 0); break;                                                                         \
    default: CALL(7, 0); break;                                                                        \
    }
    if (S == 2) BY_KERNEL(STRIDE_TWO)
    else BY_KERNEL(CORRELATE)
#undef STRIDE_TWO
#undef CORRELATE
#undef BY_KERNEL
    /* the padding columns onto their source columns, left ones first */
    for (int64_t c = -lo; c < 0; c++) {
        int64_t i = source(c, W, g->mode);
        if (i >= 0) out[lo + i] += out[lo + c];
    }
    for (int64_t c = W; c < P - lo; c++) {
        int64_t i = source(c, W, g->mode);
        if (i >= 0) out[lo + i] += out[lo + c];
    }
}

/* dst[0 .. n) = src[0 .. n), the 64-byte-aligned middle with non-temporal stores: the gradient
 * is written once and not read again here, so it need not be read into the cache first */
static void stream_copy(float *dst, const float *src, int64_t n) {
    int64_t i = 0;
    for (; i < n && ((uintptr_t)(dst + i) & 63); i++) dst[i] = src[i];
    for (; i + LANES <= n; i += LANES) store_stream(dst + i, load(src + i));
    for (; i < n; i++) dst[i] = src[i];
}

/* the non-temporal stores ordered before what follows (the end of the parallel region) */
static void stream_fence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* The readers of an axis: for each of its n cells i, the (output, tap) pairs whose padded
 * position o s - lo + t reads it (its own position, or as a reflected / replicated / wrapped
 * copy), in order of output, then tap: pairs [start[i], start[i + 1]). */
typedef struct {
    int64_t *start;
    int64_t *out, *tap;
} readers;

static int readers_init(readers *r, const geometry *g, int axis) {
    const int64_t n = g->size[axis], k = g->kernel[axis], outs = g->out[axis];
    r->start = calloc((size_t)(n + 2), sizeof(int64_t));
    r->out = malloc(sizeof(int64_t) * (size_t)(outs * k + 1));
    r->tap = malloc(sizeof(int64_t) * (size_t)(outs * k + 1));
    if (!r->start || !r->out || !r->tap) return 1;
    for (int64_t o = 0; o < outs; o++) /* count each cell's pairs into start[i + 2] */
        for (int64_t t = 0; t < k; t++) {
            int64_t i = source(o * g->stride[axis] - g->lo[axis] + t, n, g->mode);
            if (i >= 0) r->start[i + 2]++;
        }
    for (int64_t i = 2; i <= n + 1; i++) r->start[i] += r->start[i - 1];
    for (int64_t o = 0; o < outs; o++) /* place them, advancing start[i + 1] to its final value */
        for (int64_t t = 0; t < k; t++) {
            int64_t i = source(o * g->stride[axis] - g->lo[axis] + t, n, g->mode);
            if (i < 0) continue;
            int64_t j = r->start[i + 1]++;
            r->out[j] = o;
            r->tap[j] = t;
        }
    return 0;
}

static void readers_free(readers *r) {
    free(r->start);
    free(r->out);
    free(r->tap);
}

/* A thread's work space for the gradient of a plane: the row buffers' gradients of its output
 * rows (stride `row`), its incoming gradient rows with zeros around them (stride `grad`, strides 1
 * and 2), and the plane's gradient before it is streamed out */
typedef struct {
    int64_t row, grad;
    float *rows, *grads, *plane;
} plane_work;

static int plane_work_init(plane_work *w, const geometry *g, int64_t in_plane, int64_t extra) {
    const int64_t n = g->out[0] * g->out[1];
    w->row = g->padded + 2 * LANES;
    w->grad = g->out[2] + 2 * g->kernel[2] + 2 * LANES;
    w->rows = calloc((size_t)(n * (w->row + w->grad) + in_plane + extra), sizeof(float));
    w->grads = w->rows ? w->rows + n * w->row : NULL;
    w->plane = w->grads ? w->grads + n * w->grad : NULL;
    return w->rows == NULL;
}

/* The gradient of one plane: first the gradient of every output row's row buffer, then each
 * input row once, the sum of the rows of the outputs that read it times their weights, in the
 * readers' order (a row no window reads: zero). */
static void backward_plane(const geometry *g, scratch *s, const readers *rd, const float *gy, plane_work *w,
                           float *plane) {
    const int64_t W = g->size[2], OW = g->out[2], OH = g->out[1], n = g->out[0] * OH, K = g->kernel[2];
    const int small = g->stride[2] <= 2;
    if (small) /* all rows copied first: no load right after the store it reads */
        for (int64_t r = 0; r < n; r++) memcpy(w->grads + r * w->grad + K, gy + r * OW, sizeof(float) * (size_t)OW);
    for (int64_t r = 0; r < n; r++)
        row_gradient(g, s, small ? w->grads + r * w->grad + K : NULL, gy + r * OW, w->rows + r * w->row);
    const float *rows = w->rows + g->lo[2];
    for (int64_t d = 0; d < g->size[0]; d++)
        for (int64_t h = 0; h < g->size[1]; h++) {
            float *restrict row = plane + (d * g->size[1] + h) * W;
            int first = 1;
            for (int64_t a = rd[0].start[d]; a < rd[0].start[d + 1]; a++)
                for (int64_t b = rd[1].start[h]; b < rd[1].start[h + 1]; b++) {
                    const float *src = rows + (rd[0].out[a] * OH + rd[1].out[b]) * w->row;
                    const float wt = g->taps[rd[0].tap[a]] * g->taps[MAXK + rd[1].tap[b]];
                    if (first)
                        for (int64_t c = 0; c < W; c++) row[c] = wt * src[c];
                    else
                        for (int64_t c = 0; c < W; c++) row[c] += wt * src[c];
                    first = 0;
                }
            if (first) memset(row, 0, sizeof(float) * (size_t)W);
        }
}

/* the readers of the D and H axes (2 each); returns 1 if they could not be allocated */
static int readers_pair(readers *rd, const geometry *g) {
    int failed = readers_init(&rd[0], g, 0);
    return readers_init(&rd[1], g, 1) | failed;
}

/* gx = the gradient of the blur, from the incoming gradient gy. Returns 0, or 1 as above. */
int tp_blur_backward(const float *gy, float *gx, int64_t planes, const int64_t *params, const float *taps,
                     int threads) {
    const geometry g = read_geometry(params, taps);
    const int64_t in_plane = g.size[0] * g.size[1] * g.size[2];
    const int64_t out_plane = g.out[0] * g.out[1] * g.out[2];
    readers rd[2];
    int failed = readers_pair(rd, &g);
    if (failed) {
        readers_free(&rd[0]);
        readers_free(&rd[1]);
        return failed;
    }
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t first, end;
        share(planes, &first, &end);
        failed |= scratch_init(&s, &g);
        plane_work w;
        failed |= plane_work_init(&w, &g, in_plane, 0);
        for (int64_t q = first; q < end && !failed; q++) {
            backward_plane(&g, &s, rd, gy + q * out_plane, &w, w.plane);
            stream_copy(gx + q * in_plane, w.plane, in_plane);
        }
        stream_fence();
        free(s.buf);
        free(w.rows);
    }
    readers_free(&rd[0]);
    readers_free(&rd[1]);
    return failed;
}

/* ---------------------------------------------------------------------------------------------
 * MaxBlurPool: the dense max pool (window m per axis, stride 1, no padding: each axis of n cells
 * gives n - m + 1) and then the blur above, a plane at a time so the dense plane stays in cache.
 *
 * The max follows PyTorch's CPU max pooling cell by cell: the window is scanned in order (d, then
 * h, then w) and a cell replaces the running one if it is greater or NaN, so the max is the first
 * largest cell, or the last NaN. The gradient goes to that one cell (recomputed in the backward
 * pass): each dense cell's gradient is added onto its chosen input cell.
 */

typedef struct {
    int64_t m[3];       /* the max window */
    int64_t size[3];    /* the input's size (the dense map's plus m - 1) */
    int64_t rows;       /* m[0] m[1]: the window's rows */
} dense;

static dense read_dense(const int64_t *params, const geometry *g) {
    dense d;
    for (int a = 0; a < 3; a++) {
        d.m[a] = params[13 + a];
        d.size[a] = g->size[a] + d.m[a] - 1;
    }
    d.rows = d.m[0] * d.m[1];
    return d;
}

/* the window rows of dense row (dd, dh): offsets in the input plane, in scan order */
static void dense_rows(const dense *d, int64_t dd, int64_t dh, int64_t *offsets) {
    int n = 0;
    for (int64_t td = 0; td < d->m[0]; td++)
        for (int64_t th = 0; th < d->m[1]; th++) offsets[n++] = ((dd + td) * d->size[1] + dh + th) * d->size[2];
}

INLINE vint pick(vfloat v, vfloat best) { return (v > best) | (v != v); }

/* one dense row: out[c] = the window max of dense column c, c in [0, Wd); `index` (if not NULL)
 * gets the chosen cell's position in the window's scan order */
INLINE void dense_row_n(const float *plane, const int64_t *offsets, int64_t Wd, float *out, int32_t *index,
                        int64_t rows, int64_t mw) {
    int64_t c = 0;
    for (int last = 0; c < Wd && Wd >= LANES && !last; c += LANES) {
        if (c + LANES >= Wd) { /* the last block, moved back to end at Wd (cells computed twice) */
            c = Wd - LANES;
            last = 1;
        }
        vfloat best = load(plane + offsets[0] + c);
        vint id = {0};
        int32_t t = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t tw = 0; tw < mw; tw++, t++) {
                if (t == 0) continue;
                vfloat v = load(plane + offsets[i] + c + tw);
                vint take = pick(v, best);
                best = (vfloat)((take & (vint)v) | (~take & (vint)best));
                id = (take & t) | (~take & id);
            }
        store(out + c, best);
        if (index) memcpy(index + c, &id, sizeof id);
    }
    for (; c < Wd; c++) { /* a row shorter than a block, cell by cell (no branch on the values) */
        float best = plane[offsets[0] + c];
        int32_t id = 0, t = 0;
        for (int64_t i = 0; i < rows; i++)
            for (int64_t tw = 0; tw < mw; tw++, t++) {
                float v = plane[offsets[i] + c + tw];
                int take = (v > best) | (v != v);
                best = take ? v : best;
                id = take ? t : id;
            }
        out[c] = best;
        if (index) index[c] = id;
    }
}

/* dense_row_n with constants for the 2 x 2 and 3 x 3 windows */
static void dense_row(const dense *d, const float *plane, const int64_t *offsets, int64_t Wd, float *out,
                      int32_t *index) {
    if (d->rows == 2 && d->m[2] == 2) dense_row_n(plane, offsets, Wd, out, index, 2, 2);
    else if (d->rows == 3 && d->m[2] == 3) dense_row_n(plane, offsets, Wd, out, index, 3, 3);
    else dense_row_n(plane, offsets, Wd, out, index, d->rows, d->m[2]);
}

/* the dense max of one input plane */
static void dense_plane(const dense *d, const geometry *g, const float *plane, float *out, int64_t *offsets) {
    const int64_t Hd = g->size[1], Wd = g->size[2];
    for (int64_t dd = 0; dd < g->size[0]; dd++)
        for (int64_t dh = 0; dh < Hd; dh++) {
            dense_rows(d, dd, dh, offsets);
            dense_row(d, plane, offsets, Wd, out + (dd * Hd + dh) * Wd, NULL);
        }
}

/* params: the blur's 13 numbers for the dense map, then the max window m (3) */
int tp_max_blur_forward(const float *x, float *y, int64_t planes, const int64_t *params, const float *taps,
                        int threads) {
    const geometry g = read_geometry(params, taps);
    const dense d = read_dense(params, &g);
    const int64_t in_plane = d.size[0] * d.size[1] * d.size[2], dense_size = g.size[0] * g.size[1] * g.size[2];
    const int64_t out_plane = g.out[0] * g.out[1] * g.out[2], OW = g.out[2];
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t first, end;
        share(planes, &first, &end);
        failed |= scratch_init(&s, &g);
        float *dplane = malloc(sizeof(float) * (size_t)dense_size);
        int64_t *offsets = malloc(sizeof(int64_t) * (size_t)d.rows);
        failed |= !dplane || !offsets;
        for (int64_t q = first; q < end && !failed; q++) {
            dense_plane(&d, &g, x + q * in_plane, dplane, offsets);
            for (int64_t od = 0; od < g.out[0]; od++)
                for (int64_t oh = 0; oh < g.out[1]; oh++)
                    forward_row(&g, &s, dplane, y + q * out_plane + (od * g.out[1] + oh) * OW, od, oh);
        }
        free(s.buf);
        free(dplane);
        free(offsets);
    }
    return failed;
}

/* row[c] (= if `first`, else +=) the dense cells' gradients that chose input cell c as cell
 * (i, tw) of their window, for c in [0, W): dense cells c - tw, tw < MW (grad and index rows
 * padded by MW cells each side: index -1, grad 0), added in the order of tw */
INLINE void gather_row(float *restrict row, const float *grad, const int32_t *index, int64_t W, int64_t i, int first,
                       int64_t MW) {
    for (int64_t c = 0; c < W; c++) {
        float acc = 0.0f;
        for (int64_t tw = 0; tw < MW; tw++) acc += index[c - tw] == (int32_t)(i * MW + tw) ? grad[c - tw] : 0.0f;
        row[c] = first ? acc : row[c] + acc;
    }
}

/* gx from x and the incoming gradient gy: the blur's gradient of the dense plane; then every dense
 * row's choices, and each input row once, the sum of the gradients of the dense cells that chose
 * its cells (dense rows in order of window row). Returns 0, or 1 as above. */
int tp_max_blur_backward(const float *x, const float *gy, float *gx, int64_t planes, const int64_t *params,
                         const float *taps, int threads) {
    const geometry g = read_geometry(params, taps);
    const dense d = read_dense(params, &g);
    const int64_t in_plane = d.size[0] * d.size[1] * d.size[2], dense_size = g.size[0] * g.size[1] * g.size[2];
    const int64_t out_plane = g.out[0] * g.out[1] * g.out[2], Dd = g.size[0], Hd = g.size[1], Wd = g.size[2];
    const int64_t mw = d.m[2], W = d.size[2], padded = Wd + 2 * mw;
    readers rd[2];
    int failed = readers_pair(rd, &g);
    if (failed) {
        readers_free(&rd[0]);
        readers_free(&rd[1]);
        return failed;
    }
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t first, end;
        share(planes, &first, &end);
        failed |= scratch_init(&s, &g);
        /* the blur's row gradients and the dense plane's gradient; the dense plane's gradient and
         * choices again in padded rows; a dense row's max (unused) */
        plane_work w;
        failed |= plane_work_init(&w, &g, dense_size, Dd * Hd * padded + Wd + in_plane);
        float *work = w.rows ? w.plane + dense_size : NULL; /* after the plane, in the same block */
        int32_t *index = malloc(sizeof(int32_t) * (size_t)(Dd * Hd * padded));
        int64_t *offsets = malloc(sizeof(int64_t) * (size_t)d.rows);
        failed |= !work || !index || !offsets;
        float *gdense = w.plane, *gpad = work, *max = gpad + Dd * Hd * padded;
        float *local = max + Wd; /* the plane's gradient, then streamed out */
        if (!failed)
            for (int64_t c = 0; c < Dd * Hd * padded; c++) {
                index[c] = -1;
                gpad[c] = 0.0f;
            }
        for (int64_t q = first; q < end && !failed; q++) {
            const float *xq = x + q * in_plane;
            backward_plane(&g, &s, rd, gy + q * out_plane, &w, gdense);
            for (int64_t dd = 0, r = 0; dd < Dd; dd++)
                for (int64_t dh = 0; dh < Hd; dh++, r++) {
                    memcpy(gpad + r * padded + mw, gdense + r * Wd, sizeof(float) * (size_t)Wd);
                    dense_rows(&d, dd, dh, offsets);
                    dense_row(&d, xq, offsets, Wd, max, index + r * padded + mw);
                }
            for (int64_t i0 = 0; i0 < d.size[0]; i0++)
                for (int64_t i1 = 0; i1 < d.size[1]; i1++) {
                    float *row = local + (i0 * d.size[1] + i1) * W;
                    int first_row = 1;
                    for (int64_t td = 0; td < d.m[0]; td++)
                        for (int64_t th = 0; th < d.m[1]; th++) {
                            const int64_t dd = i0 - td, dh = i1 - th, i = td * d.m[1] + th;
                            if (dd < 0 || dd >= Dd || dh < 0 || dh >= Hd) continue;
                            const float *gr = gpad + (dd * Hd + dh) * padded + mw;
                            const int32_t *ir = index + (dd * Hd + dh) * padded + mw;
                            switch (mw) {
                            case 1: gather_row(row, gr, ir, W, i, first_row, 1); break;
                            case 2: gather_row(row, gr, ir, W, i, first_row, 2); break;
                            case 3: gather_row(row, gr, ir, W, i, first_row, 3); break;
                            default: gather_row(row, gr, ir, W, i, first_row, mw);
                            }
                            first_row = 0;
                        }
                }
            stream_copy(gx + q * in_plane, local, in_plane);
        }
        stream_fence();
        free(s.buf);
        free(w.rows);
        free(index);
        free(offsets);
    }
    readers_free(&rd[0]);
    readers_free(&rd[1]);
    return failed;
}
