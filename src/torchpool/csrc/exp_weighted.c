/* torchpool: the exp-weighted window mean of SoftPool and LIP, float32, on the CPU.
 *
 * For every window of a (planes, D, H, W) map, zero padding carrying no weight:
 *     y = sum_i e_i v_i / sum_i e_i,   e_i = exp(l_i - m),   m = the window's max of l
 * (SoftPool: l = v; LIP: l = the importance logit). The window's own max makes it exact for any
 * magnitude and sign: every exponent is <= 0. A NaN in a window gives NaN, and so does a window
 * whose max is +inf or whose cells are all -inf (as exp(inf - inf) does in the formula).
 *
 * Work unit: a block of LANES consecutive outputs of one output row, in vector registers (GCC
 * vector extensions: AVX-512, AVX2 or SSE as the CPU has). Each window cell is one strided load
 * of the block. Blocks whose cells all lie inside the input read it in place (the last one moved
 * back to end at the last such output); the others (the borders, short rows) read a copy of their
 * columns in which padding holds v = 0 and l = -FLT_MAX (weight exactly 0). The backward pass
 * computes the block's windows again (one exp per cell and window, kept in registers), then
 *     dy/dv_i = e_i / den,   dy/dl_i = e_i (v_i - y) / den   (SoftPool: their sum),
 * so nothing is kept between the passes but the inputs.
 * Output rows (forward) or planes (backward: overlapping windows add to the same cells) are split
 * over OpenMP threads; OpenMP is PyTorch's own runtime once torch is loaded.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include "vector.h"

/* p[0], p[sw], ..., p[(LANES - 1) sw] */
INLINE vfloat load_strided(const float *p, int64_t sw) {
    if (sw == 1) return load(p);
    if (sw == 2)
        return __builtin_shuffle(load(p), load(p + LANES),
                                 (vint){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30});
    float r[LANES];
    for (int j = 0; j < LANES; j++) r[j] = p[j * sw];
    return load(r);
}

/* p[j sw] += a[j] */
INLINE void add_strided(float *p, int64_t sw, vfloat a) {
    if (sw == 1) {
        store(p, load(p) + a);
    } else if (sw == 2) {
        const vfloat zero = {0};
        store(p, load(p) + __builtin_shuffle(a, zero, (vint){0, 16, 1, 16, 2, 16, 3, 16, 4, 16, 5, 16, 6, 16, 7, 16}));
        store(p + LANES, load(p + LANES) + __builtin_shuffle(a, zero, (vint){8, 16, 9, 16, 10, 16, 11, 16, 12, 16, 13,
                                                                             16, 14, 16, 15, 16}));
    } else {
        float r[LANES];
        store(r, a);
        for (int j = 0; j < LANES; j++) p[j * sw] += r[j];
    }
}

/* exp(t) for t <= 0 or NaN: NaN stays NaN; t below about -87.3 gives 0 (the weight of a cell that
 * far below the window max would be subnormal). Cody-Waite reduction to r in [-ln2/2, ln2/2] (the
 * rounding to the nearest integer n by adding and subtracting 1.5 * 2^23), a degree-5 polynomial
 * fitted for relative error (7.5e-8), times 2^n built in the exponent bits; t is first raised to
 * -104 and n + 127 to 0, so 2^n is 0 where it would be subnormal (a NaN t keeps a NaN polynomial). */
INLINE vfloat exp_nonpositive(vfloat t) {
    const vfloat c = larger(splat(-104.0f), t);
    const vfloat n = (c * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const vfloat r = (c - n * 0.693359375f) + n * 2.12194440e-4f;
    vfloat p = splat(8.29797051846981e-3f);
    p = p * r + 4.191540181636810e-2f;
    p = p * r + 1.666757017374039e-1f;
    p = p * r + 4.999889433383942e-1f;
    p = p * r + 9.999997019767761e-1f;
    p = p * r + 1.000000119209290f;
    const vint bits = larger_int(__builtin_convertvector(n, vint) + 127, (vint){0}) << 23;
    return p * (vfloat)bits;
}

/* A block: for each window row i, v[i] and l[i] point at the block's first column; column
 * j sw + t holds cell t of output j (in place or in a copy). */
typedef struct {
    int nrows;
    const float **v, **l;
    float **gv, **gl; /* the gradient rows, or NULL */
} block;

/* The block's windows' max, sum of weights and weighted sum of v (y = num / den). Called with
 * constant nrows, kw and sw for the common windows, so the loops unroll and the cells loaded by
 * the max pass stay in registers for the exp pass. `cells` and `weights` (NULL, or CACHED
 * vectors each, nrows * kw <= CACHED) receive each cell's l and e for the backward pass. */
#define CACHED 9
INLINE void block_sums(const block *b, int nrows, int64_t kw, int64_t sw, vfloat *max_out, vfloat *den_out,
                       vfloat *num_out, vfloat *cells, vfloat *weights) {
    vfloat m = splat(-INFINITY), den = {0}, num = {0}, own[CACHED];
    vfloat *cell = cells ? cells : own;
    const int cache = nrows * kw <= CACHED;
    for (int i = 0; i < nrows; i++)
        for (int64_t t = 0; t < kw; t++) {
            vfloat a = load_strided(b->l[i] + t, sw);
            if (cache) cell[i * kw + t] = a;
            m = larger(a, m);
        }
    for (int i = 0; i < nrows; i++)
        for (int64_t t = 0; t < kw; t++) {
            vfloat a = cache ? cell[i * kw + t] : load_strided(b->l[i] + t, sw);
            vfloat e = exp_nonpositive(a - m);
            if (weights) weights[i * kw + t] = e;
            den += e;
            num += e * (b->v[i] == b->l[i] ? a : load_strided(b->v[i] + t, sw));
        }
    *max_out = m;
    *den_out = den;
    *num_out = num;
}

/* p[2j] = a[j], p[2j + 1] = b[j] for the active lanes j (the others keep p's values) */
INLINE void store_pair(float *p, vfloat a, vfloat b, vint active, int partial) {
    vfloat lo = __builtin_shuffle(a, b, (vint){0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23});
    vfloat hi = __builtin_shuffle(a, b, (vint){8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31});
    if (partial) {
        lo = choose(__builtin_shuffle(active, (vint){0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7}), lo, load(p));
        hi = choose(__builtin_shuffle(active, (vint){8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15}), hi,
                    load(p + LANES));
    }
    store(p, lo);
    store(p + LANES, hi);
}

/* the gradient of cell t of window row i, whose logit is l and weight e: SoftPool's (in *dv), or
 * LIP's value and logit parts; zero in the inactive lanes */
INLINE void cell_gradient(const block *b, int soft, int i, int64_t t, int64_t sw, vfloat l, vfloat e, vfloat qa,
                          vfloat qb, vint active, int partial, vfloat *dv, vfloat *dl) {
    const vfloat zero = {0};
    if (partial) e = choose(active, e, zero);
    if (soft) {
        *dv = e * (l * qa + qb);
        if (partial) *dv = choose(active, *dv, zero);
        return;
    }
    *dv = e * qa;
    *dl = b->gl ? e * (load_strided(b->v[i] + t, sw) * qa + qb) : zero;
    if (partial) {
        *dv = choose(active, *dv, zero);
        *dl = choose(active, *dl, zero);
    }
}

/* The block's gradient added to its gradient rows: its windows computed again (max, weights, y;
 * each cell's weight kept in registers where the window has at most CACHED cells), then
 * dy/dl_i = e_i (v_i - y) / den and dy/dv_i = e_i / den times the incoming gradient; lanes
 * outside `active` add exactly nothing. `pairs`: 2-cell rows at stride 2 whose cells are in no
 * other window (the windows tile the input): both cells stored at once. */
INLINE void block_backward(const block *b, int nrows, int soft, int64_t kw, int64_t sw, vfloat grad, vint active,
                           int partial, int pairs) {
    vfloat m, den, num, cells[CACHED], weights[CACHED];
    const int cache = nrows * kw <= CACHED;
    block_sums(b, nrows, kw, sw, &m, &den, &num, cache ? cells : NULL, cache ? weights : NULL);
    const vfloat inverse = 1.0f / den, y = num * inverse; /* one division */
    const vfloat qa = grad * inverse, qb = soft ? qa * (1.0f - y) : -qa * y;
#define CELL(i, t, dv, dl)                                                                    \
    {                                                                                         \
        vfloat l_ = cache ? cells[(i) * kw + (t)] : load_strided(b->l[i] + (t), sw);          \
        vfloat e_ = cache ? weights[(i) * kw + (t)] : exp_nonpositive(l_ - m);                \
        cell_gradient(b, soft, i, t, sw, l_, e_, qa, qb, active, partial, dv, dl);            \
    }
    for (int i = 0; i < nrows; i++) {
        if (pairs && kw == 2 && sw == 2) {
            vfloat dv0, dl0 = {0}, dv1, dl1 = {0};
            CELL(i, 0, &dv0, &dl0)
            CELL(i, 1, &dv1, &dl1)
            if (b->gv) store_pair(b->gv[i], dv0, dv1, active, partial);
            if (b->gl) store_pair(b->gl[i], dl0, dl1, active, partial);
            continue;
        }
        for (int64_t t = 0; t < kw; t++) {
            vfloat dv, dl = {0};
            CELL(i, t, &dv, &dl)
            if (b->gv) add_strided(b->gv[i] + t, sw, dv);
            if (b->gl) add_strided(b->gl[i] + t, sw, dl);
        }
    }
#undef CELL
}

typedef struct {
    int64_t size[3], kernel[3], stride[3], padding[3], out[3];
    int64_t lo, hi; /* the output columns whose whole window lies inside the input */
    int tiled;      /* the windows tile the rows exactly: each (d, h) row in one output row */
} geometry;

/* the geometry from the caller's 15 numbers (size, kernel, stride, padding, out; 3 dims each) */
static geometry read_geometry(const int64_t *params) {
    geometry g;
    memcpy(&g, params, sizeof(int64_t) * 15);
    int64_t s = g.stride[2], p = g.padding[2], k = g.kernel[2], W = g.size[2], OW = g.out[2];
    int64_t first = (p + s - 1) / s, last = W - k + p >= 0 ? (W - k + p) / s + 1 : 0;
    g.lo = first < OW ? first : OW;
    g.hi = last < OW ? last : OW;
    if (g.hi < g.lo) g.hi = g.lo;
    g.tiled = 1;
    for (int axis = 0; axis < 2; axis++)
        g.tiled &= g.kernel[axis] == g.stride[axis] && g.padding[axis] == 0 &&
                   g.out[axis] * g.stride[axis] == g.size[axis];
    return g;
}

/* One plane: its maps (and their gradients: NULL where absent), and the current output row of y
 * (forward) or of the incoming gradient (backward; NULL in the forward pass) */
typedef struct {
    const float *v, *l;
    float *gv, *gl;
    int soft;
    float *y;
    const float *grad;
} plane;

/* a thread's work space: the window rows of the current output row, the block's row pointers,
 * and copies of a border block's columns (v, l and their gradients, nrows x span each) */
typedef struct {
    int64_t span, *offsets;
    block b;
    float *copy;
} scratch;

static int scratch_init(scratch *s, const geometry *g) {
    int64_t most = g->kernel[0] * g->kernel[1];
    s->span = (LANES - 1) * g->stride[2] + g->kernel[2];
    s->offsets = malloc(sizeof(int64_t) * (size_t)most);
    s->b.v = malloc(sizeof(float *) * (size_t)most * 4);
    s->copy = malloc(sizeof(float) * (size_t)(most * s->span * 4));
    if (!s->offsets || !s->b.v || !s->copy) return 1;
    s->b.l = s->b.v + most;
    s->b.gv = (float **)(s->b.v + 2 * most);
    s->b.gl = (float **)(s->b.v + 3 * most);
    return 0;
}

static void scratch_free(scratch *s) {
    free(s->offsets);
    free((void *)s->b.v);
    free(s->copy);
}

/* the window rows (d, h) of output row (od, oh) inside the input: their offsets in the plane */
static int window_rows(const geometry *g, int64_t od, int64_t oh, int64_t *offsets) {
    int n = 0;
    for (int64_t td = 0; td < g->kernel[0]; td++) {
        int64_t d = od * g->stride[0] - g->padding[0] + td;
        if (d < 0 || d >= g->size[0]) continue;
        for (int64_t th = 0; th < g->kernel[1]; th++) {
            int64_t h = oh * g->stride[1] - g->padding[1] + th;
            if (h >= 0 && h < g->size[1]) offsets[n++] = (d * g->size[1] + h) * g->size[2];
        }
    }
    return n;
}

/* the columns [a, b) of [c0, c0 + span) that lie inside the input */
static void inside(const geometry *g, const scratch *s, int64_t c0, int64_t *a, int64_t *b) {
    *a = c0 < 0 ? -c0 : 0;
    *b = g->size[2] - c0 < s->span ? g->size[2] - c0 : s->span;
    if (*b < *a) *b = *a;
}

/* the block's rows pointing into the maps at column c0 */
static void in_place(scratch *s, const plane *pl, int64_t c0) {
    for (int i = 0; i < s->b.nrows; i++) {
        s->b.v[i] = pl->v + s->offsets[i] + c0;
        s->b.l[i] = pl->l + s->offsets[i] + c0;
        s->b.gv[i] = pl->gv ? pl->gv + s->offsets[i] + c0 : NULL;
        s->b.gl[i] = pl->gl ? pl->gl + s->offsets[i] + c0 : NULL;
    }
}

/* the block's rows pointing into copies of the columns [c0, c0 + span): cells outside the input
 * are padding (v = 0, l = -FLT_MAX: weight exactly 0); the gradient copies zeroed */
static void copied(const geometry *g, scratch *s, const plane *pl, int64_t c0) {
    const int64_t span = s->span, n = s->b.nrows;
    int64_t a, b;
    inside(g, s, c0, &a, &b);
    for (int i = 0; i < n; i++) {
        float *cv = s->copy + i * span, *cl = cv + n * span, *cgv = cl + n * span, *cgl = cgv + n * span;
        for (int64_t c = 0; c < span; c++) cl[c] = -FLT_MAX;
        memcpy(cl + a, pl->l + s->offsets[i] + c0 + a, sizeof(float) * (size_t)(b - a));
        if (!pl->soft) {
            memset(cv, 0, sizeof(float) * (size_t)span);
            memcpy(cv + a, pl->v + s->offsets[i] + c0 + a, sizeof(float) * (size_t)(b - a));
        }
        memset(cgv, 0, sizeof(float) * (size_t)span);
        memset(cgl, 0, sizeof(float) * (size_t)span);
        s->b.v[i] = pl->soft ? cl : cv;
        s->b.l[i] = cl;
        s->b.gv[i] = cgv;
        s->b.gl[i] = cgl;
    }
}

/* a copied block's gradients added to the maps' columns inside the input */
static void add_back(const geometry *g, scratch *s, const plane *pl, int64_t c0) {
    const int64_t span = s->span, n = s->b.nrows;
    int64_t a, b;
    inside(g, s, c0, &a, &b);
    for (int i = 0; i < n; i++) {
        const float *cgv = s->copy + 2 * n * span + i * span, *cgl = cgv + n * span;
        float *gv = pl->gv ? pl->gv + s->offsets[i] + c0 : NULL, *gl = pl->gl ? pl->gl + s->offsets[i] + c0 : NULL;
        for (int64_t c = a; c < b; c++) {
            if (gv) gv[c] += cgv[c];
            if (gl) gl[c] += cgl[c];
        }
    }
}

/* CALL(nrows, kw, sw) with compile-time constants for 2x2 and 3x3 windows and strides 1 and 2 */
#define DISPATCH(nrows, kw, sw, CALL)                                           \
    if (nrows == 2 && kw == 2 && sw == 2) CALL(2, 2, 2);                        \
    else if (nrows == 3 && kw == 3 && sw == 2) CALL(3, 3, 2);                   \
    else if (nrows == 3 && kw == 3 && sw == 1) CALL(3, 3, 1);                   \
    else if (sw == 1) CALL(nrows, kw, 1);                                       \
    else if (sw == 2) CALL(nrows, kw, 2);                                       \
    else CALL(nrows, kw, sw);

/* lanes [skip, count) of an output-sized row from j0 (the rest: `fill`) */
INLINE vfloat lanes_of(const float *row, int64_t j0, int skip, int count, float fill) {
    if (skip == 0 && count == LANES) return load(row + j0);
    float r[LANES];
    for (int j = 0; j < LANES; j++) r[j] = j >= skip && j < count ? row[j0 + j] : fill;
    return load(r);
}

INLINE void store_lanes(float *row, int64_t j0, int skip, int count, vfloat a) {
    if (skip == 0 && count == LANES) {
        store(row + j0, a);
        return;
    }
    float r[LANES];
    store(r, a);
    memcpy(row + j0 + skip, r + skip, sizeof(float) * (size_t)(count - skip));
}

/* outputs [j0, j0 + LANES) of the row, of which lanes [skip, count) are this block's: forward
 * (pl->grad == NULL: y written) or backward (the gradients added) */
static void run_block(const geometry *g, scratch *s, const plane *pl, int64_t j0, int skip, int count, int copy) {
    const int64_t sw = g->stride[2], kw = g->kernel[2], c0 = j0 * sw - g->padding[2];
    if (copy) copied(g, s, pl, c0);
    else in_place(s, pl, c0);
    if (!pl->grad) {
        vfloat m, den, num;
#define FORWARD(NR, KW, SW) block_sums(&s->b, NR, KW, SW, &m, &den, &num, NULL, NULL)
        DISPATCH(s->b.nrows, kw, sw, FORWARD)
        store_lanes(pl->y, j0, skip, count, num / den);
        return;
    }
    vint active;
    for (int j = 0; j < LANES; j++) active[j] = j >= skip && j < count ? -1 : 0;
    const int partial = skip != 0 || count != LANES;
    const vfloat grad = lanes_of(pl->grad, j0, skip, count, 0.0f);
    block b = s->b;
    const int pairs = g->tiled && !copy;
    if (!pl->gv) b.gv = NULL;
    if (!pl->gl) b.gl = NULL;
#define BACKWARD(NR, KW, SW) block_backward(&b, NR, pl->soft, KW, SW, grad, active, partial, pairs)
    DISPATCH(b.nrows, kw, sw, BACKWARD)
    if (copy) add_back(g, s, pl, c0);
}

/* one output row (od, oh) of the plane */
static void run_row(const geometry *g, scratch *s, const plane *pl, int64_t od, int64_t oh) {
    const int64_t OW = g->out[2], lo = g->lo, hi = g->hi;
    s->b.nrows = window_rows(g, od, oh, s->offsets);
    if (pl->grad && g->tiled) /* the gradient rows zeroed here, while they are about to be used */
        for (int i = 0; i < s->b.nrows; i++) {
            if (pl->gv) memset(pl->gv + s->offsets[i], 0, sizeof(float) * (size_t)g->size[2]);
            if (pl->gl) memset(pl->gl + s->offsets[i], 0, sizeof(float) * (size_t)g->size[2]);
        }
    int64_t j0 = 0;
    for (; j0 < lo; j0 += LANES) /* the left border, in whole copied blocks (fewer blocks per row) */
        run_block(g, s, pl, j0, 0, (int)(OW - j0 < LANES ? OW - j0 : LANES), 1);
    for (; j0 + LANES <= hi; j0 += LANES) run_block(g, s, pl, j0, 0, LANES, 0);
    if (j0 < hi && hi - LANES >= lo) { /* the last inner block, moved back to end at hi */
        run_block(g, s, pl, hi - LANES, (int)(j0 - (hi - LANES)), LANES, 0);
        j0 = hi;
    }
    for (; j0 < OW; j0 += LANES) /* the right border (and short rows) */
        run_block(g, s, pl, j0, 0, (int)(OW - j0 < LANES ? OW - j0 : LANES), 1);
}

/* y = the exp-weighted mean. Returns 0, or 1 if a work space could not be allocated. */
int tp_exp_weighted_forward(const float *v, const float *l, float *y, int soft, int64_t planes, const int64_t *params,
                            int threads) {
    const geometry g = read_geometry(params);
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
                plane pl = {v + q * in_plane, l + q * in_plane, NULL, NULL, soft, y + r * OW, NULL};
                run_row(&g, &s, &pl, od, oh);
                if (++oh == g.out[1]) {
                    oh = 0;
                    if (++od == g.out[0]) {
                        od = 0;
                        q++;
                    }
                }
            }
        }
        scratch_free(&s);
    }
    return failed;
}

/* The gradients (the windows computed again): the value's in gv, the logit's in gl (SoftPool,
 * soft != 0: their sum in gv); either may be NULL. Returns 0, or 1 as above. */
int tp_exp_weighted_backward(const float *v, const float *l, const float *grad, float *gv, float *gl, int soft,
                             int64_t planes, const int64_t *params, int threads) {
    const geometry g = read_geometry(params);
    const int64_t in_plane = g.size[0] * g.size[1] * g.size[2];
    const int64_t rows = g.out[0] * g.out[1], OW = g.out[2];
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        scratch s;
        int64_t first, end;
        share(planes, &first, &end);
        failed |= scratch_init(&s, &g);
        for (int64_t q = first; q < end && !failed; q++) {
            float *gvq = gv ? gv + q * in_plane : NULL, *glq = gl ? gl + q * in_plane : NULL;
            if (gvq && !g.tiled) memset(gvq, 0, sizeof(float) * (size_t)in_plane);
            if (glq && !g.tiled) memset(glq, 0, sizeof(float) * (size_t)in_plane);
            for (int64_t od = 0; od < g.out[0]; od++)
                for (int64_t oh = 0; oh < g.out[1]; oh++) {
                    int64_t r = (q * rows + od * g.out[1] + oh) * OW;
                    plane pl = {v + q * in_plane, l + q * in_plane, gvq, glq, soft, NULL, grad + r};
                    run_row(&g, &s, &pl, od, oh);
                }
        }
        scratch_free(&s);
    }
    return failed;
}
