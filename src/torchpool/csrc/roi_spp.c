/* torchpool: the max mode of SPP on regions (roi_spatial_pyramid_pool), float32, on the CPU.
 *
 * The bins are torchvision's roi_pool bins, computed the same way in float32:
 *     x1' = round(x1 * scale) (half away from zero), likewise y1', x2', y2';
 *     roi_h = max(y2' - y1' + 1, 1), b = (float) roi_h / (float) n;
 *     bin i spans rows [floor(i * b) + y1', ceil((i + 1) * b) + y1'), clipped to [0, H];
 * columns alike. Each bin gives the max of its cells, its first in row-major order among ties
 * (torchvision's rule: a strict > scanning rows, then columns), a NaN if it holds one (the first
 * NaN: PyTorch's max pools propagate NaN), 0 if it is empty. With each max the kernel can give its
 * cell ((n * C + c) * H + h) * W + w in the map (N * C * H * W for an empty bin).
 *
 * Work unit: one image and a block of LANES channels (the SIMD axis, GCC vector extensions). The
 * block's cells are copied to a buffer of channel vectors [H][W][LANES] (a 16 x 16 transposition
 * in registers from an NCHW map; straight copies from a channels-last one), in the thread's
 * cache, then every box of that image is pooled from it, level by level, finest first. A level
 * whose bins are, for that box, exactly unions of a finer level's bins (levels (1, 2, 4): 2 from
 * 4, 1 from 2) is the max over those bins' maxima, its cell the smallest cell among the tied
 * ones (so, the first in row-major order again); the others are pooled from the buffer. Units are
 * split over OpenMP threads (PyTorch's own runtime once torch is loaded).
 *
 * The backward adds each bin's incoming gradient to its max's cell, units of channels split over
 * threads (overlapping boxes add to the same cells: each channel is one thread's).
 */
#include <math.h>
#include <stdlib.h>

#include "vector.h"

#define EMPTY INT32_MAX /* the cell of an empty bin, larger than any real cell (ties: smallest) */

typedef int64_t vlong __attribute__((vector_size(8 * LANES)));

INLINE vint splati(int32_t a) { return (vint){0} + a; }
INLINE vint choosei(vint mask, vint a, vint b) { return (a & mask) | (b & ~mask); }
INLINE vint loadi(const int32_t *p) {
    vint r;
    memcpy(&r, p, sizeof r);
    return r;
}
INLINE void storei(int32_t *p, vint a) { memcpy(p, &a, sizeof a); }

/* rows[i] <- zip_lo(rows[i], rows[i + 8]), zip_hi(...) into rows 2i, 2i + 1: applied four times,
 * a 16 x 16 transposition (each pass rotates the 8 bits of (row, column) left by one) */
static void transpose16(vfloat *rows) {
    const vint lo = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
    const vint hi = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    for (int pass = 0; pass < 4; pass++) {
        vfloat t[LANES];
        for (int i = 0; i < LANES / 2; i++) {
            t[2 * i] = __builtin_shuffle(rows[i], rows[i + LANES / 2], lo);
            t[2 * i + 1] = __builtin_shuffle(rows[i], rows[i + LANES / 2], hi);
        }
        memcpy(rows, t, sizeof t);
    }
}

typedef struct {
    int32_t start, end; /* [start, end), clipped to the map */
} span;

/* the n bins of one axis of a box, torchvision's way (float32 arithmetic, int64 corners) */
static void axis_bins(float lo, float hi, float scale, int64_t n, int64_t size, span *out) {
    const int64_t a = (int64_t)roundf(lo * scale), b = (int64_t)roundf(hi * scale);
    const int64_t extent = b - a + 1 > 1 ? b - a + 1 : 1;
    const float step = (float)extent / (float)n;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = (int64_t)floorf((float)i * step) + a, e = (int64_t)ceilf((float)(i + 1) * step) + a;
        s = s < 0 ? 0 : (s > size ? size : s);
        e = e < 0 ? 0 : (e > size ? size : e);
        out[i].start = (int32_t)s;
        out[i].end = (int32_t)e;
    }
}

/* The levels and, per box, its bins and how each level is pooled. */
typedef struct {
    int64_t N, C, H, W, strides[4];
    int64_t K, L, rows_total, cols_total, bins_total;
    const int64_t *levels;   /* (nh, nw) pairs */
    int64_t *order;          /* the levels, most bins first */
    int64_t *row_off, *col_off, *bin_off; /* per level: its first row bin / column bin / bin */
    span *rows, *cols;       /* (K, rows_total), (K, cols_total) */
    int32_t *source;         /* (K, L): the finer level a level is derived from, or -1 */
    int64_t *image;          /* (K): the box's image */
    int64_t *by_image, *first; /* boxes sorted by image; first[n] .. first[n + 1] */
} plan;

static int same_union(const plan *p, int64_t k, int64_t coarse, int64_t fine) {
    const int64_t mh = p->levels[2 * coarse], mw = p->levels[2 * coarse + 1];
    const int64_t nh = p->levels[2 * fine], nw = p->levels[2 * fine + 1];
    if (nh % mh || nw % mw) return 0;
    const int64_t rh = nh / mh, rw = nw / mw;
    const span *cr = p->rows + k * p->rows_total + p->row_off[coarse], *fr = p->rows + k * p->rows_total + p->row_off[fine];
    const span *cc = p->cols + k * p->cols_total + p->col_off[coarse], *fc = p->cols + k * p->cols_total + p->col_off[fine];
    for (int64_t i = 0; i < mh; i++)
        if (cr[i].start != fr[i * rh].start || cr[i].end != fr[i * rh + rh - 1].end) return 0;
    for (int64_t j = 0; j < mw; j++)
        if (cc[j].start != fc[j * rw].start || cc[j].end != fc[j * rw + rw - 1].end) return 0;
    return 1;
}

static void plan_free(plan *p) {
    free(p->order);
    free(p->rows);
    free(p->cols);
    free(p->source);
    free(p->image);
    free(p->by_image);
}

/* shape: N, C, H, W and their strides (elements); rois (K, 5) contiguous */
static int plan_init(plan *p, const int64_t *shape, const float *rois, int64_t K, const int64_t *levels, int64_t L,
                     float scale) {
    memset(p, 0, sizeof *p);
    p->N = shape[0], p->C = shape[1], p->H = shape[2], p->W = shape[3];
    memcpy(p->strides, shape + 4, sizeof p->strides);
    p->K = K, p->L = L, p->levels = levels;
    p->order = malloc(sizeof(int64_t) * (size_t)(4 * L + 3));
    p->rows_total = p->cols_total = p->bins_total = 0;
    if (!p->order) return 1;
    p->row_off = p->order + L, p->col_off = p->row_off + L + 1, p->bin_off = p->col_off + L + 1;
    for (int64_t l = 0; l < L; l++) {
        p->row_off[l] = p->rows_total, p->col_off[l] = p->cols_total, p->bin_off[l] = p->bins_total;
        p->rows_total += levels[2 * l], p->cols_total += levels[2 * l + 1];
        p->bins_total += levels[2 * l] * levels[2 * l + 1];
    }
    p->bin_off[L] = p->bins_total;
    for (int64_t l = 0; l < L; l++) p->order[l] = l; /* insertion sort: most bins first, stable */
    for (int64_t a = 1; a < L; a++)
        for (int64_t b = a; b > 0; b--) {
            int64_t u = p->order[b - 1], v = p->order[b];
            if (levels[2 * u] * levels[2 * u + 1] >= levels[2 * v] * levels[2 * v + 1]) break;
            p->order[b - 1] = v, p->order[b] = u;
        }
    p->rows = malloc(sizeof(span) * (size_t)(K * p->rows_total + 1));
    p->cols = malloc(sizeof(span) * (size_t)(K * p->cols_total + 1));
    p->source = malloc(sizeof(int32_t) * (size_t)(K * L + 1));
    p->image = malloc(sizeof(int64_t) * (size_t)(K + 1));
    p->by_image = malloc(sizeof(int64_t) * (size_t)(K + p->N + 2));
    if (!p->rows || !p->cols || !p->source || !p->image || !p->by_image) return 1;
    p->first = p->by_image + K;
    for (int64_t k = 0; k < K; k++) {
        const float *r = rois + 5 * k;
        p->image[k] = (int64_t)r[0];
        for (int64_t l = 0; l < L; l++) {
            axis_bins(r[2], r[4], scale, levels[2 * l], p->H, p->rows + k * p->rows_total + p->row_off[l]);
            axis_bins(r[1], r[3], scale, levels[2 * l + 1], p->W, p->cols + k * p->cols_total + p->col_off[l]);
        }
        /* a level from the finer level with the fewest bins whose bins it unites (itself derived or not) */
        for (int64_t a = 0; a < L; a++) {
            const int64_t coarse = p->order[a];
            p->source[k * L + coarse] = -1;
            for (int64_t b = a - 1; b >= 0; b--)
                if (same_union(p, k, coarse, p->order[b])) {
                    p->source[k * L + coarse] = (int32_t)p->order[b];
                    break;
                }
        }
    }
    for (int64_t n = 0; n <= p->N + 1; n++) p->first[n] = 0; /* counting sort by image */
    for (int64_t k = 0; k < K; k++) p->first[p->image[k] + 1]++;
    for (int64_t n = 0; n < p->N; n++) p->first[n + 1] += p->first[n];
    int64_t *next = malloc(sizeof(int64_t) * (size_t)(p->N + 1));
    if (!next) return 1;
    memcpy(next, p->first, sizeof(int64_t) * (size_t)(p->N + 1));
    for (int64_t k = 0; k < K; k++) p->by_image[next[p->image[k]]++] = k;
    free(next);
    return 0;
}

/* the block of channels [c0, c0 + LANES) of image n (lanes past C zero) as channel vectors, buf[h W + w];
 * whether it holds a NaN */
static int load_block(const plan *p, const float *x, int64_t n, int64_t c0, vfloat *buf) {
    const int64_t sN = p->strides[0], sC = p->strides[1], sH = p->strides[2], sW = p->strides[3];
    const int64_t H = p->H, W = p->W, HW = H * W, cw = p->C - c0 < LANES ? p->C - c0 : LANES;
    const float *base = x + n * sN + c0 * sC;
    if (sW == 1 && sH == W && cw == LANES) { /* NCHW planes: transposed 16 cells at a time */
        int64_t q = 0;
        for (; q + LANES <= HW; q += LANES) {
            vfloat rows[LANES];
            for (int c = 0; c < LANES; c++) rows[c] = load(base + c * sC + q);
            transpose16(rows);
            memcpy(buf + q, rows, sizeof rows);
        }
        for (; q < HW; q++)
            for (int c = 0; c < LANES; c++) buf[q][c] = base[c * sC + q];
    } else {
        for (int64_t h = 0; h < H; h++)
            for (int64_t w = 0; w < W; w++) {
                const float *cell = base + h * sH + w * sW;
                vfloat v = {0};
                if (sC == 1)
                    memcpy(&v, cell, sizeof(float) * (size_t)cw);
                else
                    for (int64_t c = 0; c < cw; c++) v[c] = cell[c * sC];
                buf[h * W + w] = v;
            }
    }
    vint nan = {0};
    for (int64_t q = 0; q < HW; q++) nan |= buf[q] != buf[q];
    for (int c = 0; c < LANES; c++)
        if (nan[c]) return 1;
    return 0;
}

/* one bin pooled from the buffer: its max and cell (-inf and EMPTY where the bin is empty). The
 * general loop, for blocks holding a NaN (the first NaN wins) */
static void nan_bin(const vfloat *buf, int64_t W, span r, span c, vfloat *max_out, vint *cell_out) {
    vfloat m = splat(-INFINITY);
    vint at = splati(EMPTY);
    if (r.start < r.end && c.start < c.end) {
        at = splati((int32_t)(r.start * W + c.start));
        for (int64_t h = r.start; h < r.end; h++)
            for (int64_t w = c.start; w < c.end; w++) {
                const vfloat a = buf[h * W + w];
                const vint take = (a > m) | ((a != a) & (m == m)); /* larger, or the first NaN */
                m = choose(take, a, m);
                at = choosei(take, splati((int32_t)(h * W + w)), at);
            }
    }
    *max_out = m;
    *cell_out = at;
}


/* the same without NaN: two running maxima (even and odd columns), each replaced only by a larger
 * value, so each keeps its first max; the odd one wins if larger, or equal at an earlier cell */
INLINE void direct_bin(const vfloat *buf, int64_t W, span r, span c, vfloat *max_out, vint *cell_out) {
    vfloat m0 = splat(-INFINITY), m1 = m0;
    vint at0 = splati(EMPTY), at1 = at0;
    if (r.start < r.end && c.start < c.end) {
        at0 = splati((int32_t)(r.start * W + c.start));
        const int32_t pairs = (c.end - c.start) / 2, odd = (c.end - c.start) & 1;
        for (int32_t h = r.start; h < r.end; h++) {
            const vfloat *row = buf + h * W;
            int32_t w = c.start;
            for (int32_t i = 0; i < pairs; i++, w += 2) {
                const vfloat a0 = row[w], a1 = row[w + 1];
                at0 = choosei(a0 > m0, splati(h * (int32_t)W + w), at0);
                at1 = choosei(a1 > m1, splati(h * (int32_t)W + w + 1), at1);
                m0 = larger(a0, m0);
                m1 = larger(a1, m1);
            }
            if (odd) {
                const vfloat a0 = row[w];
                at0 = choosei(a0 > m0, splati(h * (int32_t)W + w), at0);
                m0 = larger(a0, m0);
            }
        }
    }
    const vint take = (m1 > m0) | ((m1 == m0) & (at1 < at0));
    *max_out = choose(take, m1, m0);
    *cell_out = choosei(take, at1, at0);
}

/* (v, c) replaces (m, at): a NaN over a number, else the larger; among equals (NaN or not) the
 * smaller cell */
INLINE vint takes(vfloat v, vint c, vfloat m, vint at) {
    const vint vnan = v != v, earlier = c < at;
    return (vnan & ((m == m) | earlier)) | (~vnan & ((v > m) | ((v == m) & earlier)));
}

/* one box's levels for the block (tile: values and cells per bin, bin_off order) */
static void pool_box(const plan *p, const vfloat *buf, int nan, int64_t k, vfloat *val, vint *cell) {
    const int64_t W = p->W;
    for (int64_t a = 0; a < p->L; a++) {
        const int64_t l = p->order[a], nh = p->levels[2 * l], nw = p->levels[2 * l + 1];
        const int64_t src = p->source[k * p->L + l];
        vfloat *lv = val + p->bin_off[l];
        vint *lc = cell + p->bin_off[l];
        if (src < 0) {
            const span *rows = p->rows + k * p->rows_total + p->row_off[l];
            const span *cols = p->cols + k * p->cols_total + p->col_off[l];
            for (int64_t i = 0; i < nh; i++)
                for (int64_t j = 0; j < nw; j++) {
                    if (nan)
                        nan_bin(buf, W, rows[i], cols[j], lv + i * nw + j, lc + i * nw + j);
                    else
                        direct_bin(buf, W, rows[i], cols[j], lv + i * nw + j, lc + i * nw + j);
                }
            continue;
        }
        const int64_t fw = p->levels[2 * src + 1], rh = p->levels[2 * src] / nh, rw = fw / nw;
        const vfloat *fv = val + p->bin_off[src];
        const vint *fc = cell + p->bin_off[src];
        for (int64_t i = 0; i < nh; i++)
            for (int64_t j = 0; j < nw; j++) {
                vfloat m = splat(-INFINITY);
                vint at = splati(EMPTY);
                for (int64_t u = i * rh; u < (i + 1) * rh; u++)
                    for (int64_t v = j * rw; v < (j + 1) * rw; v++) {
                        const vint take = takes(fv[u * fw + v], fc[u * fw + v], m, at);
                        m = choose(take, fv[u * fw + v], m);
                        at = choosei(take, fc[u * fw + v], at);
                    }
                lv[i * nw + j] = m;
                lc[i * nw + j] = at;
            }
    }
}

/* the box's bins out: values (0 where empty) at values[l] + k * stride[l] + c * nbins + bin, and
 * with cells its cells in the map */
static void write_box(const plan *p, int64_t k, int64_t n, int64_t c0, const vfloat *val, const vint *cell,
                      float *const *values, const int64_t *stride, int64_t *const *cells) {
    const int64_t cw = p->C - c0 < LANES ? p->C - c0 : LANES, area = p->H * p->W;
    const int64_t none = p->N * p->C * area, at0 = (n * p->C + c0) * area;
    for (int64_t l = 0; l < p->L; l++) {
        const int64_t nb = p->levels[2 * l] * p->levels[2 * l + 1], off = p->bin_off[l];
        float *dst = values[l] + k * stride[l] + c0 * nb;
        if (nb == 1 && cw == LANES) { /* one bin: the channels in a row */
            store(dst, choose(cell[off] != EMPTY, val[off], splat(0.0f)));
            if (!cells) continue;
            const vint at = cell[off];
            const vlong lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
            const vlong wide = __builtin_convertvector(at, vlong) + at0 + lane * area;
            const vlong empty = __builtin_convertvector(at == EMPTY, vlong);
            const vlong out = (wide & ~empty) | (((vlong){0} + none) & empty);
            memcpy(cells[l] + k * p->C + c0, &out, sizeof out);
            continue;
        }
        if (nb == LANES && cw == LANES) {
            vfloat t[LANES];
            for (int b = 0; b < LANES; b++) t[b] = choose(cell[off + b] != EMPTY, val[off + b], splat(0.0f));
            transpose16(t);
            memcpy(dst, t, sizeof t);
        } else {
            for (int64_t b = 0; b < nb; b++) {
                const vfloat v = choose(cell[off + b] != EMPTY, val[off + b], splat(0.0f));
                for (int64_t c = 0; c < cw; c++) dst[c * nb + b] = v[c];
            }
        }
        if (!cells) continue;
        int64_t *where = cells[l] + k * p->C * nb + c0 * nb;
        if (nb == LANES && cw == LANES) { /* transposed: channel c's 16 cells, widened to int64 */
            vfloat t[LANES];
            for (int b = 0; b < LANES; b++) t[b] = (vfloat)cell[off + b];
            transpose16(t);
            for (int c = 0; c < LANES; c++) {
                const vint at = (vint)t[c];
                const vlong wide = __builtin_convertvector(at, vlong) + (at0 + c * area);
                const vlong empty = __builtin_convertvector(at == EMPTY, vlong);
                const vlong out = (wide & ~empty) | (((vlong){0} + none) & empty);
                memcpy(where + c * LANES, &out, sizeof out);
            }
            continue;
        }
        for (int64_t b = 0; b < nb; b++) {
            const vint at = cell[off + b];
            for (int64_t c = 0; c < cw; c++) where[c * nb + b] = at[c] == EMPTY ? none : at0 + c * area + at[c];
        }
    }
}

/* Pools every box at every level. shape: N, C, H, W, then their strides; rois: (K, 5) float32
 * (batch index, x1, y1, x2, y2); levels: L pairs (nh, nw); values[l]: (K, C, nh, nw) floats whose
 * boxes lie stride[l] apart; cells: NULL, or L arrays (K, C, nh, nw) of int64. Returns 0, or 1
 * if its work space could not be allocated. */
int tp_roi_spp_max_forward(const float *x, const int64_t *shape, const float *rois, int64_t K, const int64_t *levels,
                           int64_t L, float scale, float *const *values, const int64_t *stride,
                           int64_t *const *cells, int threads) {
    plan p;
    int failed = plan_init(&p, shape, rois, K, levels, L, scale);
    if (failed) {
        plan_free(&p);
        return 1;
    }
    const int64_t blocks = (p.C + LANES - 1) / LANES, units = p.N * blocks;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        vfloat *buf = aligned_alloc(64, sizeof(vfloat) * (size_t)(p.H * p.W));
        vfloat *val = aligned_alloc(64, sizeof(vfloat) * (size_t)p.bins_total);
        vint *cell = aligned_alloc(64, sizeof(vint) * (size_t)p.bins_total);
        failed = !buf || !val || !cell;
#pragma omp for schedule(dynamic)
        for (int64_t u = 0; u < units; u++) {
            const int64_t n = u / blocks, c0 = (u % blocks) * LANES;
            if (failed || p.first[n] == p.first[n + 1]) continue;
            const int nan = load_block(&p, x, n, c0, buf);
            for (int64_t i = p.first[n]; i < p.first[n + 1]; i++) {
                const int64_t k = p.by_image[i];
                pool_box(&p, buf, nan, k, val, cell);
                write_box(&p, k, n, c0, val, cell, values, stride, cells);
            }
        }
        free(buf);
        free(val);
        free(cell);
    }
    plan_free(&p);
    return failed;
}

/* The gradient of the map (N, C, H, W) contiguous, written whole: each bin's incoming gradient
 * grads[l] (K, C, nh, nw), boxes stride[l] apart, added to its cell cells[l] (contiguous) (skipped where N * C * H * W: an
 * empty bin). Blocks of LANES channels are split over threads (each channel is one thread's: no
 * races where boxes overlap); in a block, boxes and levels in order, so the sums do not depend on
 * the number of threads. */
int tp_roi_spp_max_backward(float *grad_x, const int64_t *shape, int64_t K, const int64_t *levels, int64_t L,
                            const float *const *grads, const int64_t *stride, const int64_t *const *cells,
                            int threads) {
    const int64_t N = shape[0], C = shape[1], area = shape[2] * shape[3], none = N * C * area;
    const int64_t blocks = (C + LANES - 1) / LANES;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
    for (int64_t block = 0; block < blocks; block++) {
        const int64_t c0 = block * LANES, cw = C - c0 < LANES ? C - c0 : LANES;
        for (int64_t n = 0; n < N; n++) memset(grad_x + (n * C + c0) * area, 0, sizeof(float) * (size_t)(cw * area));
        for (int64_t k = 0; k < K; k++)
            for (int64_t l = 0; l < L; l++) {
                const int64_t nb = levels[2 * l] * levels[2 * l + 1];
                const float *g = grads[l] + k * stride[l] + c0 * nb;
                const int64_t *at = cells[l] + (k * C + c0) * nb;
                for (int64_t b = 0; b < cw * nb; b++)
                    if (at[b] < none) grad_x[at[b]] += g[b];
            }
    }
    return 0;
}
