/*
 * Windowed, rotated frames of a regular integer frame grid, in one pass over memory.
 *
 * The grid engine of transform.py takes the rfft of every frame laid out in absolute sample
 * order: column i of frame n holds the sample k ≡ i (mod L) of the frame's support, so that the
 * rfft is Eq. (6) with no phase factor. In PyTorch that frame array costs a padded copy of the
 * signal, a zero fill, a window evaluation (several passes over an N×L array when θ changes per
 * frame) and a product over strided pieces. This module writes each frame once, from the signal
 * and either a table of window values or, for cosine-sum windows, the window length θ itself.
 *
 * Conventions (the caller checks shapes and contiguity; see transform.py):
 *   signal  (B, signal_len) contiguous, s = 0 outside it;
 *   frames  (B, N, L) contiguous outputs, for ω and/or ∂ω/∂θ (either may be absent);
 *   frame n reads s[start0 + n·hop + i], i = 0 … L−1 (i = j + L/2 − 1 for the offset j of
 *   Eq. 25), and writes it, times the window at offset j, to column (start0 + n·hop + i) mod L.
 *
 * Cosine-sum windows g(u) = Σ a_k cos(2πk u) on u = j/θ ∈ (−1/2, 1/2]:
 *   ω = g/θ,  ∂ω/∂θ = −θ⁻² (Σ a_k cos kA − A Σ k a_k sin kA),  A = 2πj/θ.
 * cos A and sin A follow j by rotation (exact start at j = 0, one complex multiply per step in
 * double precision: the error grows by about one rounding per step, ≈ 1e-13 after L/2 steps),
 * the harmonics by the Chebyshev recurrence. Only j ≥ 0 is evaluated: ω and ∂θω are even in j.
 *
 * Threads: the GIL is released, and large jobs are split over PyTorch's own OpenMP threads
 * (built with -fopenmp, the module links libgomp.so.1, and the loader hands it the copy PyTorch
 * has loaded already: one pool, no second set of spinning workers). The split follows the FFT's:
 * thread t of T takes the t-th consecutive range of frames, which is the range MKL's rfft then
 * gives the same thread, so each core transforms, and later reads back, frames that are in its
 * own cache. That is the point more than the parallelism. Measured on the 2-core VM, whose two
 * vCPUs do not share a cache: the rfft of 2×626 frames of 1024 samples took 2.3 times as long
 * when one thread had written them all as when each thread had written its own range (the
 * writing itself is a tenth of that rfft). POSIX threads of our own had been slower
 * still (PyTorch's OpenMP workers spin after each parallel operation and hold the second core).
 * Every row is computed the same way whichever thread computes it: results do not depend on
 * the number of threads, bit for bit.
 */
#define PY_SSIZE_T_CLEAN
#if defined(__GNUC__) && !defined(__clang__)
/* the inlined vector helpers of the per-TF kernels take 32-byte vector arguments */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* jobs from this many elements (16 frames of 512) are split over the threads */
#define PARALLEL_MIN_ELEMENTS (1 << 13)
#include "_parallel.h"

#define MAX_COEFFS 8

typedef struct {
    int is_double;
    const char *signal;
    char *frames;            /* NULL: no ω output */
    char *dframes;           /* NULL: no ∂θω output */
    Py_ssize_t signal_len, batch, n_frames, n_fft, start0, hop;
    /* table mode: window values on the frame columns first … first + width − 1 */
    const char *table;
    Py_ssize_t table_stride; /* elements between rows, 0 when one row is shared */
    Py_ssize_t first, width;
    /* cosine mode */
    const double *theta;
    Py_ssize_t theta_stride; /* 1: θₙ per frame, 0: one θ */
    double coeffs[MAX_COEFFS];
    int n_coeffs;
    int vanishes;            /* g(±1/2) = 0: the half-open support edge does not matter */
} job_t;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__) && \
    __GNUC__ >= 11
/* the hot loops in an x86-64-v4 version (AVX-512: its 32 vector registers hold the per-TF rows'
 * twelve running vectors and their rotations, which spill to the stack with 16), an x86-64-v3
 * version (AVX2 with FMA: the level that AMD and Intel processors since 2013–2015 share) and a
 * baseline version, picked at load time by CPU features, not by vendor */
#define HOT __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#elif defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif

/* a loop over the two halves of a 16-sample step, unrolled so that the halves' running vectors
 * (arrays indexed by the half) stay in registers instead of being stored and reloaded each step */
#if defined(__GNUC__) && !defined(__clang__)
#define UNROLL2 _Pragma("GCC unroll 2")
#else
#define UNROLL2
#endif

/* Write one frame: out[(start + i) mod L] = w[i]·s[start + i], s = 0 outside [0, len).
 * In memory order, the wrapped samples (columns 0 … r−1, i = L−r … L−1) first: stores that
 * run backwards across a row halve the write bandwidth (measured 1.1 vs 0.68 ms for 25 MB). */
#define ROTATED_PRODUCT(T)                                                                        \
    HOT static void rotated_##T(const T *restrict sig, Py_ssize_t len, Py_ssize_t start,          \
                                const T *restrict w, T *restrict out, Py_ssize_t L)               \
    {                                                                                             \
        Py_ssize_t r = start % L;                                                                 \
        if (r < 0) r += L;                                                                        \
        const Py_ssize_t head = L - r;                                                            \
        if (start < 0 || start + L > len) { /* a frame reaching past either end of the signal */  \
            for (Py_ssize_t c = 0; c < r; c++) {                                                  \
                const Py_ssize_t k = start + head + c;                                            \
                out[c] = (k >= 0 && k < len) ? w[head + c] * sig[k] : (T)0;                       \
            }                                                                                     \
            for (Py_ssize_t i = 0; i < head; i++) {                                               \
                const Py_ssize_t k = start + i;                                                   \
                out[r + i] = (k >= 0 && k < len) ? w[i] * sig[k] : (T)0;                          \
            }                                                                                     \
            return;                                                                               \
        }                                                                                         \
        const T *restrict s = sig + start;                                                        \
        const T *restrict w2 = w + head, *restrict s2 = s + head;                                 \
        for (Py_ssize_t i = 0; i < r; i++) out[i] = w2[i] * s2[i];                                \
        T *restrict o1 = out + r;                                                                 \
        for (Py_ssize_t i = 0; i < head; i++) o1[i] = w[i] * s[i];                                \
    }
ROTATED_PRODUCT(float)
ROTATED_PRODUCT(double)

/* cos and sin of 2ᵏ·φ from those of φ, by k angle doublings (each a few roundings in double
 * precision): libm's cos and sin cost more than the rest of a short window's evaluation. */
static void double_angle(double *c, double *s, int k)
{
    for (int i = 0; i < k; i++) {
        const double c2 = *c * *c - *s * *s;
        *s = 2.0 * *s * *c;
        *c = c2;
    }
}

#define LANES 8 /* 2³: see double_angle */

/* ω = θ⁻¹ Σ a_k cos kA, ∂θω = −θ⁻² (Σ a_k cos kA − A Σ k a_k sin kA) and
 * ∂xω = −θ⁻² 2π Σ k a_k sin kA at A = step·x for x = p0 … p0 + n − 1 (n a multiple of LANES),
 * into val, dval and dxval (each may be NULL).
 * LANES independent rotations (by LANES·step) keep the loop free of a long dependency chain
 * (16 or 32 lanes measured no faster). */
HOT static void cosine_values(const double *a, int K, double step, double inv, double p0,
                              Py_ssize_t n, double *restrict val, double *restrict dval,
                              double *restrict dxval)
{
    /* cos and sin of the step from libm (and of the first angle when p0 ≠ 0); the rest follows
     * by rotation and angle doubling */
    double c[LANES], s[LANES], jl[LANES];
    const double c1 = cos(step), s1 = sin(step);
    c[0] = p0 != 0.0 ? cos(step * p0) : 1.0;
    s[0] = p0 != 0.0 ? sin(step * p0) : 0.0;
    for (int l = 1; l < LANES; l++) {
        c[l] = c[l - 1] * c1 - s[l - 1] * s1;
        s[l] = s[l - 1] * c1 + c[l - 1] * s1;
    }
    for (int l = 0; l < LANES; l++) jl[l] = p0 + l;
    double cr = c1, sr = s1; /* rotation by LANES·step = 2³·step */
    double_angle(&cr, &sr, 3);
    const double inv2 = inv * inv, two_pi = 2.0 * M_PI;
    if (K == 2) { /* Hann, Hamming: LANES/4 4-wide vectors of lanes (GCC/Clang vector types) */
        typedef double v4d __attribute__((vector_size(32)));
        enum { V = LANES / 4 };
        v4d cv[V], sv[V], jv[V];
        memcpy(cv, c, sizeof cv);
        memcpy(sv, s, sizeof sv);
        memcpy(jv, jl, sizeof jv);
        const double a0 = a[0], a1 = a[1], sa1 = step * a1, dx1 = -inv2 * two_pi * a1;
        for (Py_ssize_t t = 0; t < n; t += LANES) {
            for (int h = 0; h < V; h++) {
                const v4d g = a0 + a1 * cv[h];
                if (val) {
                    const v4d value = inv * g;
                    memcpy(val + t + 4 * h, &value, sizeof value);
                }
                if (dval) {
                    const v4d dvalue = -inv2 * (g - sa1 * jv[h] * sv[h]);
                    memcpy(dval + t + 4 * h, &dvalue, sizeof dvalue);
                }
                if (dxval) {
                    const v4d dxvalue = dx1 * sv[h];
                    memcpy(dxval + t + 4 * h, &dxvalue, sizeof dxvalue);
                }
                const v4d cn = cv[h] * cr - sv[h] * sr;
                sv[h] = sv[h] * cr + cv[h] * sr;
                cv[h] = cn;
                jv[h] += LANES;
            }
        }
        return;
    }
    for (Py_ssize_t t = 0; t < n; t += LANES) {
        for (int l = 0; l < LANES; l++) {
            const double cj = c[l], sj = s[l];
            double ck_prev = 1.0, sk_prev = 0.0, ck = cj, sk = sj;
            double g = a[0] + a[1] * ck, gs = a[1] * sk;
            for (int k = 2; k < K; k++) { /* Chebyshev recurrence for the harmonics */
                const double ck_next = 2.0 * cj * ck - ck_prev, sk_next = 2.0 * cj * sk - sk_prev;
                ck_prev = ck;
                sk_prev = sk;
                ck = ck_next;
                sk = sk_next;
                g += a[k] * ck;
                gs += (double)k * a[k] * sk;
            }
            if (val) val[t + l] = inv * g;
            if (dval) dval[t + l] = -inv2 * (g - step * jl[l] * gs);
            if (dxval) dxval[t + l] = -inv2 * two_pi * gs;
            c[l] = cj * cr - sj * sr;
            s[l] = sj * cr + cj * sr;
            jl[l] += LANES;
        }
    }
}

/* cosine_values for float32 results and two-term windows (Hann, Hamming): ω and ∂θω at
 * j = 0 … n − 1 (n a multiple of FLANES) into float val and dval (dval may be NULL), at half
 * the vector work of the double-precision loop. FLANES lanes rotate in single precision for at
 * most FSTEPS steps; then every lane restarts from an anchor kept in double precision, so the
 * error never grows past FSTEPS single-precision rotations (measured ≤ 1e-6 of the window's
 * peak for n_fft up to 16384, against 6e-6 without restarts). */
#define FLANES 16 /* 2⁴: see double_angle */
#define FSTEPS 8   /* 2³ */
HOT static void cosine_values_f32(const double *a, double step, double inv, Py_ssize_t n,
                                  float *restrict val, float *restrict dval)
{
    typedef float v8f __attribute__((vector_size(32)));
    enum { V = FLANES / 8 };
    double lane_c[FLANES], lane_s[FLANES]; /* cos, sin of l·step, by rotation in double */
    const double c1 = cos(step), s1 = sin(step);
    lane_c[0] = 1.0;
    lane_s[0] = 0.0;
    for (int l = 1; l < FLANES; l++) {
        lane_c[l] = lane_c[l - 1] * c1 - lane_s[l - 1] * s1;
        lane_s[l] = lane_s[l - 1] * c1 + lane_c[l - 1] * s1;
    }
    double lane_step_c = c1, lane_step_s = s1; /* rotation by FLANES·step = 2⁴·step */
    double_angle(&lane_step_c, &lane_step_s, 4);
    double block_c = lane_step_c, block_s = lane_step_s; /* by FLANES·FSTEPS·step = 2⁷·step */
    double_angle(&block_c, &block_s, 3);
    double anchor_c = 1.0, anchor_s = 0.0; /* cos, sin of the block's first angle */
    const float cr = (float)lane_step_c, sr = (float)lane_step_s;
    const float finv = (float)inv, finv2 = (float)(inv * inv);
    const float a0 = (float)a[0], a1 = (float)a[1], sa1 = (float)(step * a[1]);
    for (Py_ssize_t t0 = 0; t0 < n; t0 += FLANES * FSTEPS) {
        float c[FLANES], s[FLANES], jl[FLANES];
        for (int l = 0; l < FLANES; l++) {
            c[l] = (float)(anchor_c * lane_c[l] - anchor_s * lane_s[l]);
            s[l] = (float)(anchor_s * lane_c[l] + anchor_c * lane_s[l]);
            jl[l] = (float)(t0 + l);
        }
        const double next_c = anchor_c * block_c - anchor_s * block_s;
        anchor_s = anchor_s * block_c + anchor_c * block_s;
        anchor_c = next_c;
        v8f cv[V], sv[V], jv[V];
        memcpy(cv, c, sizeof cv);
        memcpy(sv, s, sizeof sv);
        memcpy(jv, jl, sizeof jv);
        const Py_ssize_t t1 = t0 + FLANES * FSTEPS < n ? t0 + FLANES * FSTEPS : n;
        for (Py_ssize_t t = t0; t < t1; t += FLANES) {
            for (int h = 0; h < V; h++) {
                const v8f g = a0 + a1 * cv[h];
                const v8f value = finv * g;
                memcpy(val + t + 8 * h, &value, sizeof value);
                if (dval) {
                    const v8f dvalue = -finv2 * (g - sa1 * jv[h] * sv[h]);
                    memcpy(dval + t + 8 * h, &dvalue, sizeof dvalue);
                }
                const v8f cn = cv[h] * cr - sv[h] * sr;
                sv[h] = sv[h] * cr + cv[h] * sr;
                cv[h] = cn;
                jv[h] += (float)FLANES;
            }
        }
    }
}

/* dst[t] = src[n − 1 − t]: a reversed copy, a vector register at a time (GCC/Clang vector
 * extensions; GCC leaves the scalar loop scalar, and it was the costliest part of evaluating
 * per-frame windows) */
#if defined(__clang__)
#define REVERSE8(v) __builtin_shufflevector(v, v, 7, 6, 5, 4, 3, 2, 1, 0)
#define REVERSE4(v) __builtin_shufflevector(v, v, 3, 2, 1, 0)
#else
#define REVERSE8(v) __builtin_shuffle(v, (rev8_t){7, 6, 5, 4, 3, 2, 1, 0})
#define REVERSE4(v) __builtin_shuffle(v, (rev4_t){3, 2, 1, 0})
#endif
typedef float v8f_t __attribute__((vector_size(32)));
typedef double v4d_t __attribute__((vector_size(32)));
typedef int32_t rev8_t __attribute__((vector_size(32)));
typedef int64_t rev4_t __attribute__((vector_size(32)));

#define REVERSE_COPY(T, VT, W, REVERSE)                                                           \
    HOT static void reverse_##T(const T *restrict src, T *restrict dst, Py_ssize_t n)             \
    {                                                                                             \
        Py_ssize_t t = 0;                                                                         \
        for (; t + W <= n; t += W) {                                                              \
            VT v;                                                                                 \
            memcpy(&v, src + n - W - t, sizeof v);                                                \
            v = REVERSE(v);                                                                       \
            memcpy(dst + t, &v, sizeof v);                                                        \
        }                                                                                         \
        for (; t < n; t++) dst[t] = src[n - 1 - t];                                               \
    }
REVERSE_COPY(float, v8f_t, 8, REVERSE8)
REVERSE_COPY(double, v4d_t, 4, REVERSE4)

/* o[centre + j] = v[j] for 0 ≤ j ≤ right, o[centre − j] = v[j] for 1 ≤ j ≤ left (left ≤ right),
 * 0 elsewhere: the right half converted forwards, the left half a reversed copy of it. ``o`` holds
 * the window written last, on (previous[0], previous[1]) in the same sense, and zeros outside it:
 * only the columns that leave the support are cleared (clearing the whole row was a third of the
 * cost of a short per-frame window). */
static void clear_outside(char *o, size_t size, Py_ssize_t L, Py_ssize_t left, Py_ssize_t right,
                          const Py_ssize_t *previous)
{
    const Py_ssize_t centre = L / 2 - 1;
    if (previous[0] > left)
        memset(o + (size_t)(centre - previous[0]) * size, 0, (size_t)(previous[0] - left) * size);
    if (previous[1] > right)
        memset(o + (size_t)(centre + right + 1) * size, 0, (size_t)(previous[1] - right) * size);
}

/* mirror_<T>: from double values; mirror_from_float: from the single-precision evaluation */
#define MIRROR(NAME, S, T)                                                                        \
    HOT static void NAME(const S *restrict v, T *restrict o, Py_ssize_t L, Py_ssize_t left,       \
                         Py_ssize_t right, const Py_ssize_t *previous)                            \
    {                                                                                             \
        const Py_ssize_t centre = L / 2 - 1;                                                      \
        clear_outside((char *)o, sizeof(T), L, left, right, previous);                            \
        for (Py_ssize_t j = 0; j <= right; j++) o[centre + j] = (T)v[j];                          \
        reverse_##T(o + centre + 1, o + centre - left, left);                                     \
    }
MIRROR(mirror_float, double, float)
MIRROR(mirror_double, double, double)
MIRROR(mirror_from_float, float, float)

/* ω and/or ∂θω of a cosine-sum window at offsets j = −L/2+1 … L/2 (index i = j + L/2 − 1),
 * written as T into w and dw (either may be NULL); scratch holds 2·(L/2 + 1 + LANES) doubles.
 * Both are even in j: evaluated for j ≥ 0 and mirrored. */
#define COSINE_WINDOW(T)                                                                          \
    HOT static void cosine_window_##T(const job_t *job, double theta, T *restrict w,             \
                                      T *restrict dw, double *restrict scratch,                   \
                                      Py_ssize_t *support)                                        \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, centre = L / 2 - 1;                                      \
        const double half = 0.5 * theta;                                                          \
        /* j ≤ θ/2 is inside on the right, −j for j < θ/2 (half-open support) */                 \
        Py_ssize_t right = (Py_ssize_t)floor(half);                                               \
        if (right > L / 2) right = L / 2;                                                         \
        Py_ssize_t left = ((double)right < half || job->vanishes) ? right : right - 1;            \
        if (left > centre) left = centre;                                                         \
        if (sizeof(T) == sizeof(float) && job->n_coeffs == 2) {                                  \
            const Py_ssize_t n = (right + FLANES) / FLANES * FLANES;                              \
            float *val = (float *)scratch, *dval = dw ? (float *)scratch + n : NULL;              \
            cosine_values_f32(job->coeffs, 2.0 * M_PI / theta, 1.0 / theta, n, val, dval);        \
            if (w) mirror_from_float(val, (float *)w, L, left, right, support);                   \
            if (dw) mirror_from_float(dval, (float *)dw, L, left, right, support);                \
            support[0] = left;                                                                    \
            support[1] = right;                                                                   \
            return;                                                                               \
        }                                                                                         \
        const Py_ssize_t n = (right + LANES) / LANES * LANES;                                     \
        double *val = scratch, *dval = dw ? scratch + n : NULL;                                   \
        cosine_values(job->coeffs, job->n_coeffs, 2.0 * M_PI / theta, 1.0 / theta, 0.0, n, val,  \
                      dval, NULL);                                                                \
        if (w) mirror_##T(val, w, L, left, right, support);                                      \
        if (dw) mirror_##T(dval, dw, L, left, right, support);                                   \
        support[0] = left;                                                                        \
        support[1] = right;                                                                       \
    }
COSINE_WINDOW(float)
COSINE_WINDOW(double)

/* Rows v0 … v1 − 1 of the (B, N) frames, both outputs of a row together (they share the
 * trigonometric work of the window). Each thread keeps its own window buffers, zeroed once: the
 * cosine windows then clear only what leaves their support. */
#define ROW_RANGE(T)                                                                              \
    static int row_range_##T(const job_t *job, Py_ssize_t v0, Py_ssize_t v1)                      \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, N = job->n_frames;                                       \
        T *w = (T *)calloc(2 * (size_t)L, sizeof(T));                                             \
        double *scratch = (double *)malloc(2 * (size_t)(L / 2 + 1 + LANES) * sizeof(double));     \
        if (!w || !scratch) {                                                                     \
            free(w);                                                                              \
            free(scratch);                                                                        \
            return 1;                                                                             \
        }                                                                                         \
        T *dw = w + L;                                                                            \
        const T *table = (const T *)job->table;                                                   \
        const int shared = table ? job->table_stride == 0 : job->theta_stride == 0;               \
        Py_ssize_t support[2] = {0, 0}; /* (left, right) of the window in w and dw */            \
        for (Py_ssize_t row = v0; row < v1; row++) {                                              \
            const Py_ssize_t b = row / N, n = row % N;                                            \
            const Py_ssize_t start = job->start0 + n * job->hop;                                  \
            const T *sig = (const T *)job->signal + b * job->signal_len;                          \
            T *out = job->frames ? (T *)job->frames + row * L : NULL;                             \
            T *dout = job->dframes ? (T *)job->dframes + row * L : NULL;                          \
            if (!shared || row == v0) { /* a shared window is evaluated once per thread */        \
                if (table) {                                                                      \
                    const T *t = table + n * job->table_stride;                                   \
                    for (Py_ssize_t i = 0; i < L; i++) w[i] = 0;                                  \
                    memcpy(w + job->first, t, (size_t)job->width * sizeof(T));                    \
                } else {                                                                          \
                    cosine_window_##T(job, job->theta[n * job->theta_stride], out ? w : NULL,     \
                                      dout ? dw : NULL, scratch, support);                        \
                }                                                                                 \
            }                                                                                     \
            if (out) rotated_##T(sig, job->signal_len, start, w, out, L);                         \
            if (dout) rotated_##T(sig, job->signal_len, start, dw, dout, L);                      \
        }                                                                                         \
        free(w);                                                                                  \
        free(scratch);                                                                            \
        return 0;                                                                                 \
    }
ROW_RANGE(float)
ROW_RANGE(double)

static int check_geometry(const job_t *job)
{
    if (job->n_fft < 2 || job->n_fft % 2 || job->batch < 1 || job->n_frames < 1 ||
        job->hop < 1 || job->signal_len < 1) {
        PyErr_SetString(PyExc_ValueError, "invalid frame geometry");
        return -1;
    }
    return 0;
}

/* NAME(job, r0, r1): the float or double version FN_<T> of a range function, as parallel_ranges
 * calls it */
#define RANGE_DISPATCH(NAME, JOB, FN)                                                             \
    static int NAME(const void *arg, Py_ssize_t r0, Py_ssize_t r1)                               \
    {                                                                                             \
        const JOB *job = (const JOB *)arg;                                                        \
        return job->is_double ? FN##_double(job, r0, r1) : FN##_float(job, r0, r1);              \
    }
RANGE_DISPATCH(row_range, job_t, row_range)

static int run_rows(const void *arg)
{
    const job_t *job = (const job_t *)arg;
    const Py_ssize_t rows = job->batch * job->n_frames;
    return parallel_ranges(job, rows, rows * job->n_fft, row_range);
}

static PyObject *finish(const job_t *job) { return run_released(run_rows, job); }

/* the cosine-sum coefficients a_0 … a_{K−1} (a tuple of 2 to MAX_COEFFS floats) into out */
static int parse_coeffs(PyObject *coeffs, double *out, int *count)
{
    const Py_ssize_t K = PyTuple_GET_SIZE(coeffs);
    if (K < 2 || K > MAX_COEFFS) {
        PyErr_SetString(PyExc_ValueError, "need 2 to 8 cosine coefficients");
        return -1;
    }
    for (Py_ssize_t k = 0; k < K; k++) {
        out[k] = PyFloat_AsDouble(PyTuple_GET_ITEM(coeffs, k));
        if (PyErr_Occurred()) return -1;
    }
    *count = (int)K;
    return 0;
}

/* table_frames(is_double, signal, signal_len, frames, batch, n_frames, n_fft, start0, hop,
 *              table, table_stride, first, width) — addresses as integers */
static PyObject *table_frames(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long signal, frames, table;
    if (!PyArg_ParseTuple(args, "iKnKnnnnnKnnn", &job.is_double, &signal, &job.signal_len,
                          &frames, &job.batch, &job.n_frames, &job.n_fft, &job.start0, &job.hop,
                          &table, &job.table_stride, &job.first, &job.width))
        return NULL;
    if (check_geometry(&job)) return NULL;
    if (job.first < 0 || job.width < 1 || job.first + job.width > job.n_fft || !table || !frames) {
        PyErr_SetString(PyExc_ValueError, "window columns outside the frame");
        return NULL;
    }
    job.signal = (const char *)(uintptr_t)signal;
    job.frames = (char *)(uintptr_t)frames;
    job.table = (const char *)(uintptr_t)table;
    return finish(&job);
}

/* cosine_frames(is_double, signal, signal_len, frames or 0, dframes or 0, batch, n_frames,
 *               n_fft, start0, hop, theta (float64), theta_stride, coefficients, vanishes) */
static PyObject *cosine_frames(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long signal, frames, dframes, theta;
    PyObject *coeffs;
    if (!PyArg_ParseTuple(args, "iKnKKnnnnnKnO!p", &job.is_double, &signal, &job.signal_len,
                          &frames, &dframes, &job.batch, &job.n_frames, &job.n_fft, &job.start0,
                          &job.hop, &theta, &job.theta_stride, &PyTuple_Type, &coeffs,
                          &job.vanishes))
        return NULL;
    if (check_geometry(&job)) return NULL;
    if (!theta || (!frames && !dframes)) {
        PyErr_SetString(PyExc_ValueError, "need θ and an output");
        return NULL;
    }
    if (parse_coeffs(coeffs, job.coeffs, &job.n_coeffs)) return NULL;
    job.signal = (const char *)(uintptr_t)signal;
    job.frames = (char *)(uintptr_t)frames;
    job.dframes = (char *)(uintptr_t)dframes;
    job.theta = (const double *)(uintptr_t)theta;
    return finish(&job);
}

/* frame_dots(is_double, g, g_strides (b, n, m in complex elements), s, batch, n_frames, n_bins,
 *            out) — out[n] = Σ_b Σ_m Re(conj(g[b, n, m])·s[b, n, m]), s contiguous (B, N, M),
 * out (N,) of the same real dtype. One pass over both arrays, no temporary. */
#define FRAME_DOTS(T)                                                                             \
    HOT static void frame_dots_##T(const T *restrict g, Py_ssize_t gb, Py_ssize_t gn,            \
                                   Py_ssize_t gm, const T *restrict s, Py_ssize_t B,             \
                                   Py_ssize_t N, Py_ssize_t M, T *restrict out, Py_ssize_t n0,   \
                                   Py_ssize_t n1)                                                \
    {                                                                                             \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                    \
            double acc = 0.0;                                                                     \
            for (Py_ssize_t b = 0; b < B; b++) {                                                  \
                const T *restrict gr = g + 2 * (b * gb + n * gn);                                 \
                const T *restrict sr = s + 2 * (b * N + n) * M;                                   \
                if (gm == 1) { /* 32-byte vectors of partial sums: a reduction GCC keeps */   \
                    typedef T vec __attribute__((vector_size(32)));                               \
                    enum { W = 32 / sizeof(T) };                                                  \
                    vec part = {0};                                                               \
                    Py_ssize_t k = 0;                                                             \
                    for (; k + W <= 2 * M; k += W) {                                              \
                        vec a, c;                                                                 \
                        memcpy(&a, gr + k, sizeof a);                                             \
                        memcpy(&c, sr + k, sizeof c);                                             \
                        part += a * c;                                                            \
                    }                                                                             \
                    for (int l = 0; l < W; l++) acc += (double)part[l];                           \
                    for (; k < 2 * M; k++) acc += (double)gr[k] * sr[k];                          \
                } else {                                                                          \
                    for (Py_ssize_t m = 0; m < M; m++)                                            \
                        acc += (double)gr[2 * m * gm] * sr[2 * m] +                               \
                               (double)gr[2 * m * gm + 1] * sr[2 * m + 1];                        \
                }                                                                                 \
            }                                                                                     \
            out[n] = (T)acc;                                                                      \
        }                                                                                         \
    }
FRAME_DOTS(float)
FRAME_DOTS(double)

static PyObject *frame_dots(PyObject *self, PyObject *args)
{
    int is_double;
    unsigned long long g, s, out;
    Py_ssize_t gb, gn, gm, B, N, M;
    if (!PyArg_ParseTuple(args, "iKnnnKnnnK", &is_double, &g, &gb, &gn, &gm, &s, &B, &N, &M,
                          &out))
        return NULL;
    if (B < 1 || N < 1 || M < 1 || !g || !s || !out) {
        PyErr_SetString(PyExc_ValueError, "invalid shapes for frame_dots");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    /* frames split between the threads as the rfft split them: each reads what it wrote */
    const int threads = B * N * M >= parallel_min_elements ? max_threads() : 1;
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        const Py_ssize_t t = thread_num(), nt = num_threads();
        const Py_ssize_t n0 = N * t / nt, n1 = N * (t + 1) / nt;
        if (is_double)
            frame_dots_double((const double *)(uintptr_t)g, gb, gn, gm,
                              (const double *)(uintptr_t)s, B, N, M, (double *)(uintptr_t)out,
                              n0, n1);
        else
            frame_dots_float((const float *)(uintptr_t)g, gb, gn, gm, (const float *)(uintptr_t)s,
                             B, N, M, (float *)(uintptr_t)out, n0, n1);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Frames at any integer bases bₙ with fractional offsets fₙ (learnable positions tₙ = bₙ + fₙ).
 *
 * Frame n holds ω(j − fₙ, θₙ)·s[bₙ + j] at column (bₙ + j) mod L, j = −L/2+1 … L/2: its rfft is
 * Eq. (6) with no phase factor, as on the regular grid. The backward pass is handed r, the
 * adjoint of that rfft applied to G, in the same column order, and needs for every frame
 *   Σ_j ∂θω(j − fₙ)·s[bₙ + j]·r[n, (bₙ + j) mod L]   and   Σ_j ∂xω(j − fₙ)·s[bₙ + j]·r[…],
 * summed over the batch: ∂L/∂θₙ and −∂L/∂fₙ (Sec. IV: ∂t through −S computed with ∂xω). Windows
 * are cosine sums, evaluated in double precision on their support only, once per frame for the
 * whole batch.
 */
typedef struct {
    int is_double;
    const char *signal;
    Py_ssize_t signal_len, batch, n_frames, n_fft;
    const int64_t *bases;
    const double *frac;      /* NULL: every fₙ = 0 */
    const double *theta;
    Py_ssize_t theta_stride; /* 1: θₙ per frame, 0: one θ */
    double coeffs[MAX_COEFFS];
    int n_coeffs;
    char *frames;            /* forward output (B, N, L) */
    const char *adjoint;     /* backward input r (B, N, L) */
    double *out_theta, *out_x; /* backward outputs (N,), either may be NULL */
} position_job_t;

/* Frame indices i = j + L/2 − 1 of the support −θ/2 < j − f ≤ θ/2 (the half-open support of
 * windows.py, compared as x against θ/2 in double precision), within the frame: [*lo, *hi];
 * *lo > *hi when the window misses the frame. */
static void support_at(double theta, double f, Py_ssize_t L, Py_ssize_t *lo, Py_ssize_t *hi)
{
    const double half = 0.5 * theta;
    Py_ssize_t j_lo = (Py_ssize_t)floor(f - half) + 1, j_hi = (Py_ssize_t)floor(f + half);
    while ((double)j_lo - f <= -half) j_lo++; /* floor of a rounded sum may be one off */
    while ((double)(j_lo - 1) - f > -half) j_lo--;
    while ((double)j_hi - f > half) j_hi--;
    while ((double)(j_hi + 1) - f <= half) j_hi++;
    if (j_lo < -L / 2 + 1) j_lo = -L / 2 + 1;
    if (j_hi > L / 2) j_hi = L / 2;
    *lo = j_lo + L / 2 - 1;
    *hi = j_hi + L / 2 - 1;
}

/* o[i] = 0 for lo ≤ i ≤ hi (elements of ``size`` bytes; nothing when hi < lo) */
static void clear_range(char *o, size_t size, Py_ssize_t lo, Py_ssize_t hi)
{
    if (hi >= lo) memset(o + (size_t)lo * size, 0, (size_t)(hi - lo + 1) * size);
}

#define POSITION_FRAMES(T)                                                                        \
    static int position_frames_##T(const position_job_t *job, Py_ssize_t n0, Py_ssize_t n1)       \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, N = job->n_frames;                                       \
        T *w = (T *)calloc((size_t)L, sizeof(T)); /* zero outside the support written last */    \
        double *val = (double *)malloc((size_t)(L + LANES) * sizeof(double));                    \
        if (!w || !val) {                                                                         \
            free(w);                                                                              \
            free(val);                                                                            \
            return 1;                                                                             \
        }                                                                                         \
        Py_ssize_t prev_lo = 0, prev_hi = -1;                                                     \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                    \
            const double theta = job->theta[n * job->theta_stride];                              \
            const double f = job->frac ? job->frac[n] : 0.0;                                      \
            Py_ssize_t lo, hi;                                                                    \
            support_at(theta, f, L, &lo, &hi);                                                    \
            clear_range((char *)w, sizeof(T), prev_lo, prev_hi < lo - 1 ? prev_hi : lo - 1);     \
            clear_range((char *)w, sizeof(T), prev_lo > hi + 1 ? prev_lo : hi + 1, prev_hi);     \
            if (lo <= hi) {                                                                       \
                const Py_ssize_t count = (hi - lo + 1 + LANES - 1) / LANES * LANES;               \
                cosine_values(job->coeffs, job->n_coeffs, 2.0 * M_PI / theta, 1.0 / theta,      \
                              (double)(lo - (L / 2 - 1)) - f, count, val, NULL, NULL);            \
                for (Py_ssize_t i = lo; i <= hi; i++) w[i] = (T)val[i - lo];                      \
            }                                                                                     \
            prev_lo = lo;                                                                         \
            prev_hi = hi;                                                                         \
            const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);                     \
            for (Py_ssize_t b = 0; b < job->batch; b++) {                                         \
                const T *sig = (const T *)job->signal + b * job->signal_len;                      \
                rotated_##T(sig, job->signal_len, start, w,                                       \
                            (T *)job->frames + (b * N + n) * L, L);                               \
            }                                                                                     \
        }                                                                                         \
        free(w);                                                                                  \
        free(val);                                                                                \
        return 0;                                                                                 \
    }
POSITION_FRAMES(float)
POSITION_FRAMES(double)

/* Σ a[t]·b[t], four 4-wide vectors of partial sums (the order of a plain loop's additions
 * is one long dependency chain, and the compiler may not reorder it) */
HOT static double dot(const double *restrict a, const double *restrict b, Py_ssize_t n)
{
    typedef double v4d __attribute__((vector_size(32)));
    v4d acc[4] = {{0}, {0}, {0}, {0}};
    Py_ssize_t t = 0;
    for (; t + 16 <= n; t += 16) {
        for (int h = 0; h < 4; h++) {
            v4d x, y;
            memcpy(&x, a + t + 4 * h, sizeof x);
            memcpy(&y, b + t + 4 * h, sizeof y);
            acc[h] += x * y;
        }
    }
    const v4d sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    double total = (sum[0] + sum[1]) + (sum[2] + sum[3]);
    for (; t < n; t++) total += a[t] * b[t];
    return total;
}

/* out[t] = s[t]·r[t] in double precision */
#define PRODUCT(T)                                                                                \
    HOT static void product_##T(const T *restrict s, const T *restrict r, double *restrict out,  \
                                Py_ssize_t n)                                                     \
    {                                                                                             \
        for (Py_ssize_t t = 0; t < n; t++) out[t] = (double)s[t] * (double)r[t];                  \
    }
PRODUCT(float)
PRODUCT(double)

#define POSITION_DOTS(T)                                                                          \
    static int position_dots_##T(const position_job_t *job, Py_ssize_t n0, Py_ssize_t n1)         \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, N = job->n_frames, size = L + LANES;                     \
        double *dth = (double *)malloc(3 * (size_t)size * sizeof(double));                       \
        if (!dth) return 1;                                                                       \
        double *dx = dth + size, *sr = dx + size;                                                 \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                    \
            const double theta = job->theta[n * job->theta_stride];                              \
            const double f = job->frac ? job->frac[n] : 0.0;                                      \
            Py_ssize_t lo, hi;                                                                    \
            support_at(theta, f, L, &lo, &hi);                                                    \
            const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);                     \
            /* the samples k = start + i of the support that lie inside the signal */            \
            Py_ssize_t i0 = lo, i1 = hi;                                                          \
            if (start + i0 < 0) i0 = -start;                                                      \
            if (start + i1 > job->signal_len - 1) i1 = job->signal_len - 1 - start;               \
            double acc_theta = 0.0, acc_x = 0.0;                                                  \
            if (i0 <= i1) {                                                                       \
                const Py_ssize_t count = (i1 - i0 + 1 + LANES - 1) / LANES * LANES;               \
                cosine_values(job->coeffs, job->n_coeffs, 2.0 * M_PI / theta, 1.0 / theta,      \
                              (double)(i0 - (L / 2 - 1)) - f, count, NULL,                        \
                              job->out_theta ? dth : NULL, job->out_x ? dx : NULL);               \
                const Py_ssize_t width = i1 - i0 + 1;                                             \
                Py_ssize_t c = (start + i0) % L;                                                  \
                if (c < 0) c += L;                                                                \
                const Py_ssize_t head = width < L - c ? width : L - c; /* before the wrap */     \
                for (Py_ssize_t b = 0; b < job->batch; b++) {                                     \
                    const T *sig = (const T *)job->signal + b * job->signal_len + start + i0;     \
                    const T *r = (const T *)job->adjoint + (b * N + n) * L;                       \
                    product_##T(sig, r + c, sr, head);                                            \
                    product_##T(sig + head, r, sr + head, width - head);                          \
                    if (job->out_theta) acc_theta += dot(dth, sr, width);                         \
                    if (job->out_x) acc_x += dot(dx, sr, width);                                  \
                }                                                                                 \
            }                                                                                     \
            if (job->out_theta) job->out_theta[n] = acc_theta;                                    \
            if (job->out_x) job->out_x[n] = acc_x;                                                \
        }                                                                                         \
        free(dth);                                                                                \
        return 0;                                                                                 \
    }
POSITION_DOTS(float)
POSITION_DOTS(double)

RANGE_DISPATCH(position_frame_range, position_job_t, position_frames)
RANGE_DISPATCH(position_dot_range, position_job_t, position_dots)

/* frames split over the threads as the rfft (forward) and the irfft (backward) split them */
static int run_position(const position_job_t *job, int (*fn)(const void *, Py_ssize_t, Py_ssize_t))
{
    return parallel_ranges(job, job->n_frames, job->batch * job->n_frames * job->n_fft, fn);
}

static int run_position_frames(const void *arg)
{
    return run_position((const position_job_t *)arg, position_frame_range);
}

static int run_position_dots(const void *arg)
{
    return run_position((const position_job_t *)arg, position_dot_range);
}

/* The arguments of the position and per-TF entry points: is_double, signal, signal_len, batch,
 * n_frames, n_fft, bases (int64), frac (float64 or 0), theta (float64), theta_stride (position
 * entry points only), coefficients, then n_out addresses (0: none) into out[]. */
typedef struct {
    int is_double;
    unsigned long long signal, bases, frac, theta;
    Py_ssize_t signal_len, batch, n_frames, n_fft, theta_stride;
    PyObject *coeffs;
} placed_args_t;

static int parse_placed_args(PyObject *args, int with_stride, unsigned long long *out, int n_out,
                             placed_args_t *a)
{
    const Py_ssize_t head = with_stride ? 11 : 10;
    memset(a, 0, sizeof *a);
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) != head + n_out) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments", head + n_out);
        return -1;
    }
    PyObject *lead = PyTuple_GetSlice(args, 0, 9);
    const int ok = lead && PyArg_ParseTuple(lead, "iKnnnnKKK", &a->is_double, &a->signal,
                                            &a->signal_len, &a->batch, &a->n_frames, &a->n_fft,
                                            &a->bases, &a->frac, &a->theta);
    Py_XDECREF(lead);
    if (!ok) return -1;
    if (with_stride) {
        a->theta_stride = PyLong_AsSsize_t(PyTuple_GET_ITEM(args, 9));
        if (a->theta_stride == -1 && PyErr_Occurred()) return -1;
    }
    a->coeffs = PyTuple_GET_ITEM(args, head - 1);
    if (!PyTuple_Check(a->coeffs)) {
        PyErr_SetString(PyExc_TypeError, "coefficients must be a tuple");
        return -1;
    }
    for (int k = 0; k < n_out; k++) {
        out[k] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(args, head + k));
        if (PyErr_Occurred()) return -1;
    }
    if (a->n_fft < 2 || a->n_fft % 2 || a->batch < 1 || a->n_frames < 1 || a->signal_len < 1 ||
        !a->signal || !a->bases || !a->theta) {
        PyErr_SetString(PyExc_ValueError, "invalid frame geometry");
        return -1;
    }
    return 0;
}

/* NAME(job, args, out, n_out, missing): the arguments (parse_placed_args) into ``job`` (a
 * position_job_t or tf_job_t: the same field names); an error naming ``missing`` when out[0]
 * is 0 or out[1 …] are all 0 (no input or no output). */
#define PARSE_PLACED_JOB(NAME, JOB, WITH_STRIDE)                                                  \
    static int NAME(JOB *job, PyObject *args, unsigned long long *out, int n_out,                 \
                    const char *missing)                                                          \
    {                                                                                             \
        placed_args_t a;                                                                          \
        memset(job, 0, sizeof *job);                                                              \
        if (parse_placed_args(args, WITH_STRIDE, out, n_out, &a)) return -1;                     \
        int outputs = n_out == 1;                                                                 \
        for (int k = 1; k < n_out; k++) outputs |= out[k] != 0;                                   \
        if (!out[0] || !outputs) {                                                                \
            PyErr_SetString(PyExc_ValueError, missing);                                           \
            return -1;                                                                            \
        }                                                                                         \
        if (parse_coeffs(a.coeffs, job->coeffs, &job->n_coeffs)) return -1;                      \
        job->is_double = a.is_double;                                                             \
        job->signal_len = a.signal_len;                                                           \
        job->batch = a.batch;                                                                     \
        job->n_frames = a.n_frames;                                                               \
        job->n_fft = a.n_fft;                                                                     \
        job->signal = (const char *)(uintptr_t)a.signal;                                          \
        job->bases = (const int64_t *)(uintptr_t)a.bases;                                         \
        job->frac = (const double *)(uintptr_t)a.frac;                                            \
        job->theta = (const double *)(uintptr_t)a.theta;                                          \
        PLACED_##WITH_STRIDE##_STRIDE(job, a);                                                    \
        return 0;                                                                                 \
    }
#define PLACED_1_STRIDE(job, a) ((job)->theta_stride = (a).theta_stride)
#define PLACED_0_STRIDE(job, a) ((job)->n_bins = (job)->n_fft / 2 + 1)

/* An entry point NAME(args) of a placed-frame kernel: PARSER fills ``job`` and the N_OUT
 * addresses ``out``, the statements after RUN place them in ``job``, RUN(job) runs without the
 * GIL. */
#define PLACED_ENTRY(NAME, JOB, PARSER, N_OUT, MISSING, RUN, ...)                                  \
    static PyObject *NAME(PyObject *self, PyObject *args)                                         \
    {                                                                                             \
        JOB job;                                                                                  \
        unsigned long long out[N_OUT];                                                            \
        if (PARSER(&job, args, out, N_OUT, MISSING)) return NULL;                                \
        __VA_ARGS__;                                                                              \
        return run_released(RUN, &job);                                                           \
    }

PARSE_PLACED_JOB(parse_position_job, position_job_t, 1)

/* position_frames(is_double, signal, signal_len, batch, n_frames, n_fft, bases, frac or 0,
 *                 theta, theta_stride, coefficients, frames) */
PLACED_ENTRY(position_frames, position_job_t, parse_position_job, 1, "no output",
             run_position_frames, job.frames = (char *)(uintptr_t)out[0])

/* position_dots(is_double, signal, signal_len, batch, n_frames, n_fft, bases, frac or 0, theta,
 *               theta_stride, coefficients, adjoint, out_theta or 0, out_x or 0) — outputs
 * float64 (N,) */
PLACED_ENTRY(position_dots, position_job_t, parse_position_job, 3, "need the adjoint and an output",
             run_position_dots, job.adjoint = (const char *)(uintptr_t)out[0],
             job.out_theta = (double *)(uintptr_t)out[1], job.out_x = (double *)(uintptr_t)out[2])

/* ---------------------------------------------------------------------------------------------
 * Window blocks of the per-bin and per-TF-bin engine: ω, ∂θω and/or ∂xω of a cosine-sum window
 * for every bin m and frame n of a block, at the frame columns first … first + width − 1
 * (x = j − fₙ with j = column − (L/2 − 1)),
 * zero outside the half-open support −θ/2 < x ≤ θ/2 (as windows.py). Rows (m, n) are independent;
 * each is evaluated by the rotation recurrences of cosine_values on its support only, instead
 * of a cos and a sin per element.
 */
typedef struct {
    int is_double;
    const double *theta;     /* (M, nc) contiguous */
    const double *frac;      /* (nc,) or NULL */
    Py_ssize_t n_frames;     /* nc */
    Py_ssize_t width;
    Py_ssize_t n_fft, first;
    double coeffs[MAX_COEFFS];
    int n_coeffs;
    char *w, *dth, *dx;      /* (M, nc, width) outputs, each may be NULL */
} block_job_t;

#define BLOCK_ROWS(T)                                                                             \
    static int block_rows_##T(const block_job_t *job, Py_ssize_t r0, Py_ssize_t r1)              \
    {                                                                                             \
        const Py_ssize_t width = job->width, size = width + LANES;                                \
        double *val = (double *)malloc(3 * (size_t)size * sizeof(double));                       \
        if (!val) return 1;                                                                       \
        double *dval = val + size, *dxval = dval + size;                                          \
        T *outs[3] = {(T *)job->w, (T *)job->dth, (T *)job->dx};                                  \
        double *vals[3] = {val, dval, dxval};                                                     \
        for (Py_ssize_t r = r0; r < r1; r++) {                                                    \
            const double theta = job->theta[r];                                                   \
            const double f = job->frac ? job->frac[r % job->n_frames] : 0.0;                      \
            Py_ssize_t lo, hi;                                                                    \
            /* the support's frame columns, as block columns */                                  \
            support_at(theta, f, job->n_fft, &lo, &hi);                                           \
            lo = lo - job->first < 0 ? 0 : lo - job->first;                                       \
            hi = hi - job->first > width - 1 ? width - 1 : hi - job->first;                       \
            if (lo > hi) lo = width, hi = width - 1; /* none: the whole row is cleared */         \
            if (lo <= hi) {                                                                       \
                const Py_ssize_t count = (hi - lo + 1 + LANES - 1) / LANES * LANES;               \
                cosine_values(job->coeffs, job->n_coeffs, 2.0 * M_PI / theta, 1.0 / theta,      \
                              (double)(job->first + lo - (job->n_fft / 2 - 1)) - f, count,       \
                              job->w ? val : NULL,                                                \
                              job->dth ? dval : NULL, job->dx ? dxval : NULL);                    \
            }                                                                                     \
            for (int k = 0; k < 3; k++) {                                                         \
                if (!outs[k]) continue;                                                           \
                T *o = outs[k] + r * width;                                                       \
                clear_range((char *)o, sizeof(T), 0, lo - 1);                                     \
                for (Py_ssize_t c = lo; c <= hi; c++) o[c] = (T)vals[k][c - lo];                  \
                clear_range((char *)o, sizeof(T), hi + 1, width - 1);                             \
            }                                                                                     \
        }                                                                                         \
        free(val);                                                                                \
        return 0;                                                                                 \
    }
BLOCK_ROWS(float)
BLOCK_ROWS(double)

RANGE_DISPATCH(block_range, block_job_t, block_rows)

/* cosine_block(is_double, theta, n_bins, n_frames, frac or 0, n_fft, first, width, coefficients,
 *              w or 0, dth or 0, dx or 0) — addresses as integers, θ and frac float64 */
static PyObject *cosine_block(PyObject *self, PyObject *args)
{
    block_job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long theta, frac, w, dth, dx;
    Py_ssize_t n_bins;
    PyObject *coeffs;
    if (!PyArg_ParseTuple(args, "iKnnKnnnO!KKK", &job.is_double, &theta, &n_bins, &job.n_frames,
                          &frac, &job.n_fft, &job.first, &job.width, &PyTuple_Type, &coeffs, &w,
                          &dth, &dx))
        return NULL;
    if (n_bins < 1 || job.n_frames < 1 || job.width < 1 || job.n_fft < 2 || job.first < 0 ||
        job.first + job.width > job.n_fft || !theta || (!w && !dth && !dx)) {
        PyErr_SetString(PyExc_ValueError, "invalid window block");
        return NULL;
    }
    if (parse_coeffs(coeffs, job.coeffs, &job.n_coeffs)) return NULL;
    job.theta = (const double *)(uintptr_t)theta;
    job.frac = (const double *)(uintptr_t)frac;
    job.w = (char *)(uintptr_t)w;
    job.dth = (char *)(uintptr_t)dth;
    job.dx = (char *)(uintptr_t)dx;
    const Py_ssize_t rows = n_bins * job.n_frames;
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = parallel_ranges(&job, rows, rows * job.width, block_range);
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------------------------------------
 * Per-bin and per-TF-bin θ, fused: every (bin m, frame n) summed over its own window support,
 *
 *   S[b, m, n] = Σ_i s[start_n + i]·ω(i − (L/2 − 1) − fₙ, θ_{m,n})·e^{−j2π m (start_n + i)/L},
 *
 * start_n = bₙ − (L/2 − 1), i over the half-open support of the window (support_at), and the
 * backward pass of Sec. IV in the same loop structure: with q = Re(conj(G)·e^{−jφ}) per element,
 *   ∂L/∂θ_{m,n} = Σ_b Σ_i s·q·∂θω,   Σ_b Σ_i s·q·∂xω (∂L/∂fₙ is minus its sum over bins),
 *   ∂L/∂frame_b[n, i] = Σ_m ω·q   (overlap-added onto the signal by the caller).
 * Nothing of size M·N·L exists: the window of one (m, n) is evaluated on its support by the
 * rotation recurrences of cosine_values (double precision), the phase e^{−j2π m k/L} by
 * rotations in double precision restarted every PSTEPS·LANES samples from exact table values
 * (the table index (m·k) mod L is an integer), and both are met by the frame at once. Frames are
 * split over the threads; each thread owns its frames' outputs, so no two threads write the
 * same element and results do not depend on the number of threads.
 */
#define PSTEPS 8

typedef struct {
    int is_double;
    const char *signal;       /* (B, signal_len) */
    Py_ssize_t signal_len, batch, n_frames, n_fft, n_bins;
    const int64_t *bases;     /* (N,) */
    const double *frac;       /* (N,) or NULL */
    const double *theta;      /* (M, N) */
    double coeffs[MAX_COEFFS];
    int n_coeffs;
    const double *cos_table, *sin_table; /* cos and sin of 2πr/L, r = 0 … L−1 */
    char *spec;               /* forward: (B, N, M) complex */
    const char *grad;         /* backward: G (B, N, M) complex */
    double *grad_theta;       /* (M, N) or NULL */
    double *grad_frac;        /* (N,): Σ_m Σ_b Σ_i s·q·∂xω, or NULL */
    char *grad_frames;        /* (B, N, L) or NULL */
} tf_job_t;

/* pc[t] = cos φ_t, ps[t] = sin φ_t, φ_t = 2π(r0 + m·t)/L, t = 0 … n − 1 (n a multiple of
 * LANES): LANES lanes rotated by 2π·m·LANES/L, every lane restarted from the table each
 * PSTEPS rotations (so the error never exceeds PSTEPS double-precision roundings). */
HOT static void phase_row(const double *ct, const double *st, Py_ssize_t L, Py_ssize_t r0,
                          Py_ssize_t m, Py_ssize_t n, double *restrict pc, double *restrict ps)
{
    typedef double v4d __attribute__((vector_size(32)));
    enum { V = LANES / 4 };
    const Py_ssize_t rot = (m * LANES) % L;
    const double cr = ct[rot], sr = st[rot];
    for (Py_ssize_t t0 = 0; t0 < n; t0 += LANES * PSTEPS) {
        double c[LANES], s[LANES];
        Py_ssize_t r = (r0 + m * (t0 % L)) % L;
        for (int l = 0; l < LANES; l++) {
            c[l] = ct[r];
            s[l] = st[r];
            r += m;
            if (r >= L) r -= L;
        }
        v4d cv[V], sv[V];
        memcpy(cv, c, sizeof cv);
        memcpy(sv, s, sizeof sv);
        const Py_ssize_t t1 = t0 + LANES * PSTEPS < n ? t0 + LANES * PSTEPS : n;
        for (Py_ssize_t t = t0; t < t1; t += LANES) {
            for (int h = 0; h < V; h++) {
                memcpy(pc + t + 4 * h, &cv[h], sizeof cv[h]);
                memcpy(ps + t + 4 * h, &sv[h], sizeof sv[h]);
                const v4d cn = cv[h] * cr - sv[h] * sr;
                sv[h] = sv[h] * cr + cv[h] * sr;
                cv[h] = cn;
            }
        }
    }
}

/* (Σ s·w·pc, Σ s·w·ps) over t < n, four 4-wide vectors of partial sums each */
HOT static void windowed_phase_dots(const double *restrict s, const double *restrict w,
                                    const double *restrict pc, const double *restrict ps,
                                    Py_ssize_t n, double *re, double *im)
{
    typedef double v4d __attribute__((vector_size(32)));
    v4d ar[2] = {{0}, {0}}, ai[2] = {{0}, {0}};
    Py_ssize_t t = 0;
    for (; t + 8 <= n; t += 8) {
        UNROLL2 for (int h = 0; h < 2; h++) {
            v4d x, y, c, d;
            memcpy(&x, s + t + 4 * h, sizeof x);
            memcpy(&y, w + t + 4 * h, sizeof y);
            memcpy(&c, pc + t + 4 * h, sizeof c);
            memcpy(&d, ps + t + 4 * h, sizeof d);
            const v4d sw = x * y;
            ar[h] += sw * c;
            ai[h] += sw * d;
        }
    }
    const v4d r = ar[0] + ar[1], i = ai[0] + ai[1];
    double sum_r = (r[0] + r[1]) + (r[2] + r[3]), sum_i = (i[0] + i[1]) + (i[2] + i[3]);
    for (; t < n; t++) {
        const double sw = s[t] * w[t];
        sum_r += sw * pc[t];
        sum_i += sw * ps[t];
    }
    *re = sum_r;
    *im = sum_i;
}

/* One frame's samples s[start + i], i = 0 … L−1, as doubles (0 outside the signal). */
#define GATHER_FRAME(T)                                                                           \
    static void gather_frame_##T(const T *sig, Py_ssize_t len, Py_ssize_t start, Py_ssize_t L,    \
                                 double *out)                                                     \
    {                                                                                             \
        for (Py_ssize_t i = 0; i < L; i++) {                                                      \
            const Py_ssize_t k = start + i;                                                       \
            out[i] = (k >= 0 && k < len) ? (double)sig[k] : 0.0;                                  \
        }                                                                                         \
    }
GATHER_FRAME(double)

/* per-thread scratch of the per-TF kernels: B frames, then 6 rows of L + LANES doubles */
static double *tf_scratch(const tf_job_t *job)
{
    const size_t row = (size_t)(job->n_fft + LANES);
    return (double *)calloc((size_t)job->batch * (size_t)job->n_fft + 7 * row, sizeof(double));
}

/* the support of (m, n) and its window values/derivatives and phase row; returns the count of
 * support samples (0: the window misses the frame) and the first frame index in *lo */
static Py_ssize_t tf_row(const tf_job_t *job, Py_ssize_t m, Py_ssize_t n, double *val,
                         double *dval, double *dxval, double *pc, double *ps, Py_ssize_t *lo)
{
    const Py_ssize_t L = job->n_fft;
    const double theta = job->theta[m * job->n_frames + n];
    const double f = job->frac ? job->frac[n] : 0.0;
    Py_ssize_t hi;
    support_at(theta, f, L, lo, &hi);
    if (*lo > hi) return 0;
    const Py_ssize_t count = hi - *lo + 1, padded = (count + LANES - 1) / LANES * LANES;
    cosine_values(job->coeffs, job->n_coeffs, 2.0 * M_PI / theta, 1.0 / theta,
                  (double)(*lo - (L / 2 - 1)) - f, padded, val, dval, dxval);
    Py_ssize_t k = ((Py_ssize_t)job->bases[n] - (L / 2 - 1) + *lo) % L;
    if (k < 0) k += L;
    phase_row(job->cos_table, job->sin_table, L, (m * k) % L, m, padded, pc, ps);
    return count;
}

/* The float32 versions of the per-TF rows: the window and phase recurrences, the product with
 * the frame and the sums in one loop over 8-wide single-precision vectors (TFL lanes), nothing
 * stored but the frame gradient. Every TFL·TFS samples each lane restarts from values computed
 * in double precision (window: an anchor rotated in double, phase: the exact table), so the
 * error never grows past TFS single-precision rotations. */
#define TFL 16 /* 2⁴: see double_angle */
#define TFS_LOG2 5 /* restarts cost as much as a few dozen samples: one per 512 */
#define TFS (1 << TFS_LOG2)

typedef float tf_v8f __attribute__((vector_size(32)));
typedef int32_t tf_v8i __attribute__((vector_size(32)));

typedef struct {
    const double *a;
    int K;
    double theta, step, p0;
    double lane_c[TFL], lane_s[TFL];   /* cos, sin of l·step */
    double plane_c[TFL], plane_s[TFL]; /* cos, sin of 2π·m·l/L, exact from the table */
    double block_c, block_s;           /* window rotation by TFL·TFS·step */
    double anchor_c, anchor_s;         /* cos, sin of step·(p0 + t0) */
    float cr, sr;                      /* window rotation by TFL·step */
    float pcr, psr;                    /* phase rotation by 2π·m·TFL/L */
    const double *ct, *st;
    Py_ssize_t L, r0, m;
} tf_rec_t;

static void tf_rec_init(tf_rec_t *r, const double *a, int K, double theta, double p0,
                        const double *ct, const double *st, Py_ssize_t L, Py_ssize_t r0,
                        Py_ssize_t m)
{
    r->a = a;
    r->K = K;
    r->theta = theta;
    r->step = 2.0 * M_PI / theta;
    r->p0 = p0;
    const double c1 = cos(r->step), s1 = sin(r->step);
    r->lane_c[0] = 1.0;
    r->lane_s[0] = 0.0;
    for (int l = 1; l < TFL; l++) {
        r->lane_c[l] = r->lane_c[l - 1] * c1 - r->lane_s[l - 1] * s1;
        r->lane_s[l] = r->lane_s[l - 1] * c1 + r->lane_c[l - 1] * s1;
    }
    Py_ssize_t idx = 0;
    for (int l = 0; l < TFL; l++) {
        r->plane_c[l] = ct[idx];
        r->plane_s[l] = st[idx];
        idx += m;
        if (idx >= L) idx -= L;
    }
    double c = c1, s = s1;
    double_angle(&c, &s, 4);
    r->cr = (float)c;
    r->sr = (float)s;
    double_angle(&c, &s, TFS_LOG2);
    r->block_c = c;
    r->block_s = s;
    r->anchor_c = cos(r->step * p0);
    r->anchor_s = sin(r->step * p0);
    r->pcr = (float)ct[idx]; /* idx = m·TFL mod L */
    r->psr = (float)st[idx];
    r->ct = ct;
    r->st = st;
    r->L = L;
    r->r0 = r0;
    r->m = m;
}

/* the lanes at sample t0 (a multiple of TFL·TFS reached in order): window cos/sin, x, phase;
 * anchor × lane offsets in double precision (the phase anchor exact from the table) */
static inline __attribute__((always_inline)) void tf_rec_restart(tf_rec_t *r, Py_ssize_t t0,
                                                                  tf_v8f *c, tf_v8f *s, tf_v8f *x,
                                                                  tf_v8f *pc, tf_v8f *ps)
{
    float fc[TFL], fs[TFL], fx[TFL], fpc[TFL], fps[TFL];
    const Py_ssize_t idx = (r->r0 + r->m * (t0 % r->L)) % r->L;
    const double ac = r->anchor_c, as = r->anchor_s, pac = r->ct[idx], pas = r->st[idx];
    const double x0 = r->p0 + (double)t0;
    for (int l = 0; l < TFL; l++) {
        fc[l] = (float)(ac * r->lane_c[l] - as * r->lane_s[l]);
        fs[l] = (float)(as * r->lane_c[l] + ac * r->lane_s[l]);
        fx[l] = (float)(x0 + (double)l);
        fpc[l] = (float)(pac * r->plane_c[l] - pas * r->plane_s[l]);
        fps[l] = (float)(pas * r->plane_c[l] + pac * r->plane_s[l]);
    }
    r->anchor_c = ac * r->block_c - as * r->block_s;
    r->anchor_s = as * r->block_c + ac * r->block_s;
    memcpy(c, fc, sizeof fc);
    memcpy(s, fs, sizeof fs);
    memcpy(x, fx, sizeof fx);
    memcpy(pc, fpc, sizeof fpc);
    memcpy(ps, fps, sizeof fps);
}

/* g = Σ a_k cos kA and gs = Σ k a_k sin kA from c = cos A, s = sin A (Chebyshev) */
static inline __attribute__((always_inline)) void tf_window(const tf_rec_t *r, tf_v8f c, tf_v8f s, tf_v8f *g, tf_v8f *gs)
{
    tf_v8f gv = (float)r->a[0] + (float)r->a[1] * c, gsv = (float)r->a[1] * s;
    tf_v8f ck_prev = c - c + 1.0f, sk_prev = s - s, ck = c, sk = s;
    for (int k = 2; k < r->K; k++) {
        const tf_v8f ck_next = 2.0f * c * ck - ck_prev, sk_next = 2.0f * c * sk - sk_prev;
        ck_prev = ck;
        sk_prev = sk;
        ck = ck_next;
        sk = sk_next;
        gv += (float)r->a[k] * ck;
        gsv += (float)(k * r->a[k]) * sk;
    }
    *g = gv;
    *gs = gsv;
}

static inline __attribute__((always_inline)) tf_v8f tf_mask(tf_v8f v, Py_ssize_t valid)
{
    if (valid >= 8) return v;
    const tf_v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const tf_v8i keep = lane < (int32_t)(valid < 0 ? 0 : valid);
    return (tf_v8f)((tf_v8i)v & keep);
}

static inline __attribute__((always_inline)) float tf_sum(tf_v8f v)
{
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}

/* Σ s·g·pc and Σ s·g·ps over t < n (s padded to a multiple of TFL) */
HOT static void tf_forward_row_f32(tf_rec_t *r, const float *restrict sig, Py_ssize_t n,
                                   double *re, double *im)
{
    tf_v8f c[2], s[2], x[2], pc[2], ps[2], ar[2] = {{0}, {0}}, ai[2] = {{0}, {0}};
    for (Py_ssize_t t0 = 0; t0 < n; t0 += TFL * TFS) {
        tf_rec_restart(r, t0, c, s, x, pc, ps);
        const Py_ssize_t t1 = t0 + TFL * TFS < n ? t0 + TFL * TFS : n;
        for (Py_ssize_t t = t0; t < t1; t += TFL) {
            UNROLL2 for (int h = 0; h < 2; h++) {
                tf_v8f sv, g, gs;
                memcpy(&sv, sig + t + 8 * h, sizeof sv);
                sv = tf_mask(sv, n - t - 8 * h);
                tf_window(r, c[h], s[h], &g, &gs);
                const tf_v8f sg = sv * g;
                ar[h] += sg * pc[h];
                ai[h] += sg * ps[h];
                const tf_v8f cn = c[h] * r->cr - s[h] * r->sr;
                s[h] = s[h] * r->cr + c[h] * r->sr;
                c[h] = cn;
                const tf_v8f pn = pc[h] * r->pcr - ps[h] * r->psr;
                ps[h] = ps[h] * r->pcr + pc[h] * r->psr;
                pc[h] = pn;
            }
        }
    }
    *re = ((double)tf_sum(ar[0]) + (double)tf_sum(ar[1])) / r->theta;
    *im = ((double)tf_sum(ai[0]) + (double)tf_sum(ai[1])) / r->theta;
}

/* with q = (gr·pc − gi·ps)/θ: sums[0] += Σ s·q·g, sums[1] += Σ s·q·x·gs, sums[2] += Σ s·q·gs
 * and gf[t] += g·q = ω·Re(conj(G)e^{−jφ}) (gf may be NULL) */
HOT static void tf_backward_row_f32(tf_rec_t *r, const float *restrict sig, Py_ssize_t n,
                                    double gr, double gi, float *restrict gf, double *sums)
{
    tf_v8f c[2], s[2], x[2], pc[2], ps[2];
    tf_v8f a1[2] = {{0}, {0}}, a2[2] = {{0}, {0}}, a3[2] = {{0}, {0}};
    const float fgr = (float)(gr / r->theta), fgi = (float)(gi / r->theta);
    for (Py_ssize_t t0 = 0; t0 < n; t0 += TFL * TFS) {
        tf_rec_restart(r, t0, c, s, x, pc, ps);
        const Py_ssize_t t1 = t0 + TFL * TFS < n ? t0 + TFL * TFS : n;
        for (Py_ssize_t t = t0; t < t1; t += TFL) {
            UNROLL2 for (int h = 0; h < 2; h++) {
                tf_v8f sv, g, gs;
                memcpy(&sv, sig + t + 8 * h, sizeof sv);
                tf_window(r, c[h], s[h], &g, &gs);
                const tf_v8f q = tf_mask(fgr * pc[h] - fgi * ps[h], n - t - 8 * h);
                const tf_v8f sq = sv * q;
                a1[h] += sq * g;
                a2[h] += sq * x[h] * gs;
                a3[h] += sq * gs;
                if (gf) {
                    tf_v8f o;
                    memcpy(&o, gf + t + 8 * h, sizeof o);
                    o += g * q;
                    memcpy(gf + t + 8 * h, &o, sizeof o);
                }
                const tf_v8f cn = c[h] * r->cr - s[h] * r->sr;
                s[h] = s[h] * r->cr + c[h] * r->sr;
                c[h] = cn;
                const tf_v8f pn = pc[h] * r->pcr - ps[h] * r->psr;
                ps[h] = ps[h] * r->pcr + pc[h] * r->psr;
                pc[h] = pn;
                x[h] += (float)TFL;
            }
        }
    }
    sums[0] += (double)tf_sum(a1[0]) + (double)tf_sum(a1[1]);
    sums[1] += (double)tf_sum(a2[0]) + (double)tf_sum(a2[1]);
    sums[2] += (double)tf_sum(a3[0]) + (double)tf_sum(a3[1]);
}

/* the float32 per-TF kernels (the double ones follow): frames gathered as floats, padded by
 * TFL samples that the masks exclude */
static int tf_forward_float(const tf_job_t *job, Py_ssize_t n0, Py_ssize_t n1)
{
    const Py_ssize_t L = job->n_fft, N = job->n_frames, M = job->n_bins, B = job->batch;
    const Py_ssize_t stride = L + TFL;
    float *frames = (float *)calloc((size_t)(B * stride), sizeof(float));
    if (!frames) return 1;
    for (Py_ssize_t n = n0; n < n1; n++) {
        const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);
        const double f = job->frac ? job->frac[n] : 0.0;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *sig = (const float *)job->signal + b * job->signal_len;
            for (Py_ssize_t i = 0; i < L; i++) {
                const Py_ssize_t k = start + i;
                frames[b * stride + i] = (k >= 0 && k < job->signal_len) ? sig[k] : 0.0f;
            }
        }
        for (Py_ssize_t m = 0; m < M; m++) {
            const double theta = job->theta[m * N + n];
            Py_ssize_t lo, hi;
            support_at(theta, f, L, &lo, &hi);
            tf_rec_t rec;
            Py_ssize_t k = (start + lo) % L;
            if (k < 0) k += L;
            for (Py_ssize_t b = 0; b < B; b++) {
                double re = 0.0, im = 0.0;
                if (lo <= hi) {
                    tf_rec_init(&rec, job->coeffs, job->n_coeffs, theta,
                                (double)(lo - (L / 2 - 1)) - f, job->cos_table, job->sin_table, L,
                                (m * k) % L, m);
                    tf_forward_row_f32(&rec, frames + b * stride + lo, hi - lo + 1, &re, &im);
                }
                float *out = (float *)job->spec + 2 * ((b * N + n) * M + m);
                out[0] = (float)re;
                out[1] = (float)(-im);
            }
        }
    }
    free(frames);
    return 0;
}

static int tf_backward_float(const tf_job_t *job, Py_ssize_t n0, Py_ssize_t n1)
{
    const Py_ssize_t L = job->n_fft, N = job->n_frames, M = job->n_bins, B = job->batch;
    const Py_ssize_t stride = L + TFL;
    float *frames = (float *)calloc((size_t)(2 * B * stride), sizeof(float));
    if (!frames) return 1;
    float *gf = frames + B * stride;
    for (Py_ssize_t n = n0; n < n1; n++) {
        const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);
        const double f = job->frac ? job->frac[n] : 0.0;
        for (Py_ssize_t b = 0; b < B; b++) {
            const float *sig = (const float *)job->signal + b * job->signal_len;
            for (Py_ssize_t i = 0; i < L; i++) {
                const Py_ssize_t k = start + i;
                frames[b * stride + i] = (k >= 0 && k < job->signal_len) ? sig[k] : 0.0f;
            }
        }
        memset(gf, 0, (size_t)(B * stride) * sizeof(float));
        double frac_sum = 0.0;
        for (Py_ssize_t m = 0; m < M; m++) {
            const double theta = job->theta[m * N + n];
            Py_ssize_t lo, hi;
            support_at(theta, f, L, &lo, &hi);
            double sums[3] = {0.0, 0.0, 0.0};
            Py_ssize_t k = (start + lo) % L;
            if (k < 0) k += L;
            for (Py_ssize_t b = 0; lo <= hi && b < B; b++) {
                const float *g = (const float *)job->grad + 2 * ((b * N + n) * M + m);
                tf_rec_t rec;
                tf_rec_init(&rec, job->coeffs, job->n_coeffs, theta,
                            (double)(lo - (L / 2 - 1)) - f, job->cos_table, job->sin_table, L,
                            (m * k) % L, m);
                tf_backward_row_f32(&rec, frames + b * stride + lo, hi - lo + 1, g[0], g[1],
                                    job->grad_frames ? gf + b * stride + lo : NULL, sums);
            }
            /* ∂θω = −θ⁻²(g − step·x·gs), ∂xω = −2π θ⁻² gs; q carries one 1/θ already */
            const double step = 2.0 * M_PI / theta;
            if (job->grad_theta) job->grad_theta[m * N + n] = -(sums[0] - step * sums[1]) / theta;
            frac_sum += -2.0 * M_PI * sums[2] / theta;
        }
        if (job->grad_frac) job->grad_frac[n] = frac_sum;
        if (job->grad_frames)
            for (Py_ssize_t b = 0; b < B; b++)
                memcpy((float *)job->grad_frames + (b * N + n) * L, gf + b * stride,
                       (size_t)L * sizeof(float));
    }
    free(frames);
    return 0;
}

#define TF_FORWARD(T)                                                                             \
    static int tf_forward_##T(const tf_job_t *job, Py_ssize_t n0, Py_ssize_t n1)                  \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, N = job->n_frames, M = job->n_bins, B = job->batch;      \
        const size_t row = (size_t)(L + LANES);                                                   \
        double *frames = tf_scratch(job);                                                         \
        if (!frames) return 1;                                                                    \
        double *val = frames + (size_t)B * L, *pc = val + row, *ps = pc + row;                    \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                    \
            const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);                     \
            for (Py_ssize_t b = 0; b < B; b++)                                                    \
                gather_frame_##T((const T *)job->signal + b * job->signal_len, job->signal_len,  \
                                 start, L, frames + b * L);                                       \
            for (Py_ssize_t m = 0; m < M; m++) {                                                  \
                Py_ssize_t lo;                                                                    \
                const Py_ssize_t count = tf_row(job, m, n, val, NULL, NULL, pc, ps, &lo);         \
                for (Py_ssize_t b = 0; b < B; b++) {                                              \
                    double re = 0.0, im = 0.0;                                                    \
                    if (count)                                                                    \
                        windowed_phase_dots(frames + b * L + lo, val, pc, ps, count, &re, &im);   \
                    T *out = (T *)job->spec + 2 * ((b * N + n) * M + m);                          \
                    out[0] = (T)re;                                                               \
                    out[1] = (T)(-im);                                                            \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        free(frames);                                                                             \
        return 0;                                                                                 \
    }
TF_FORWARD(double)

/* q = gr·pc − gi·ps; Σ s·q·dval, Σ s·q·dxval (either array may be NULL) and gf += val·q */
HOT static void tf_backward_row(const double *restrict s, const double *restrict val,
                                const double *restrict dval, const double *restrict dxval,
                                const double *restrict pc, const double *restrict ps, double gr,
                                double gi, Py_ssize_t n, double *restrict gf, double *acc_theta,
                                double *acc_x)
{
    double at = 0.0, ax = 0.0;
    if (dval && dxval) {
        for (Py_ssize_t t = 0; t < n; t++) {
            const double sq = s[t] * (gr * pc[t] - gi * ps[t]);
            at += sq * dval[t];
            ax += sq * dxval[t];
        }
    } else if (dval) {
        for (Py_ssize_t t = 0; t < n; t++) at += s[t] * (gr * pc[t] - gi * ps[t]) * dval[t];
    } else if (dxval) {
        for (Py_ssize_t t = 0; t < n; t++) ax += s[t] * (gr * pc[t] - gi * ps[t]) * dxval[t];
    }
    if (gf)
        for (Py_ssize_t t = 0; t < n; t++) gf[t] += val[t] * (gr * pc[t] - gi * ps[t]);
    *acc_theta += at;
    *acc_x += ax;
}

#define TF_BACKWARD(T)                                                                            \
    static int tf_backward_##T(const tf_job_t *job, Py_ssize_t n0, Py_ssize_t n1)                 \
    {                                                                                             \
        const Py_ssize_t L = job->n_fft, N = job->n_frames, M = job->n_bins, B = job->batch;      \
        const size_t row = (size_t)(L + LANES);                                                   \
        double *frames = tf_scratch(job);                                                         \
        double *gf = job->grad_frames ? (double *)malloc((size_t)(B * L) * sizeof(double)) : NULL; \
        if (!frames || (job->grad_frames && !gf)) {                                               \
            free(frames);                                                                         \
            free(gf);                                                                             \
            return 1;                                                                             \
        }                                                                                         \
        double *val = frames + (size_t)B * L, *dval = val + row, *dxval = dval + row;             \
        double *pc = dxval + row, *ps = pc + row;                                                 \
        for (Py_ssize_t n = n0; n < n1; n++) {                                                    \
            const Py_ssize_t start = (Py_ssize_t)job->bases[n] - (L / 2 - 1);                     \
            for (Py_ssize_t b = 0; b < B; b++)                                                    \
                gather_frame_##T((const T *)job->signal + b * job->signal_len, job->signal_len,  \
                                 start, L, frames + b * L);                                       \
            if (gf) memset(gf, 0, (size_t)(B * L) * sizeof(double));                              \
            double frac_sum = 0.0;                                                                \
            for (Py_ssize_t m = 0; m < M; m++) {                                                  \
                Py_ssize_t lo;                                                                    \
                const Py_ssize_t count = tf_row(job, m, n, gf ? val : NULL,                       \
                                                job->grad_theta ? dval : NULL,                    \
                                                job->grad_frac ? dxval : NULL, pc, ps, &lo);      \
                double acc_theta = 0.0, acc_x = 0.0;                                              \
                for (Py_ssize_t b = 0; count && b < B; b++) {                                     \
                    const T *g = (const T *)job->grad + 2 * ((b * N + n) * M + m);                \
                    tf_backward_row(frames + b * L + lo, val, job->grad_theta ? dval : NULL,      \
                                    job->grad_frac ? dxval : NULL, pc, ps, (double)g[0],          \
                                    (double)g[1], count, gf ? gf + b * L + lo : NULL,             \
                                    &acc_theta, &acc_x);                                          \
                }                                                                                 \
                if (job->grad_theta) job->grad_theta[m * N + n] = acc_theta;                      \
                frac_sum += acc_x;                                                                \
            }                                                                                     \
            if (job->grad_frac) job->grad_frac[n] = frac_sum;                                     \
            if (gf) {                                                                             \
                for (Py_ssize_t b = 0; b < B; b++) {                                              \
                    T *o = (T *)job->grad_frames + (b * N + n) * L;                               \
                    for (Py_ssize_t i = 0; i < L; i++) o[i] = (T)gf[b * L + i];                   \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        free(frames);                                                                             \
        free(gf);                                                                                 \
        return 0;                                                                                 \
    }
TF_BACKWARD(double)

RANGE_DISPATCH(tf_forward_range, tf_job_t, tf_forward)
RANGE_DISPATCH(tf_backward_range, tf_job_t, tf_backward)

static int run_tf(const tf_job_t *job, int (*fn)(const void *, Py_ssize_t, Py_ssize_t))
{
    const Py_ssize_t L = job->n_fft;
    double *table = (double *)malloc(2 * (size_t)L * sizeof(double));
    if (!table) return 1;
    for (Py_ssize_t r = 0; r < L; r++) {
        table[r] = cos(2.0 * M_PI * (double)r / (double)L);
        table[L + r] = sin(2.0 * M_PI * (double)r / (double)L);
    }
    tf_job_t local = *job;
    local.cos_table = table;
    local.sin_table = table + L;
    const int failed = parallel_ranges(&local, job->n_frames,
                                       job->batch * job->n_frames * job->n_bins * job->n_fft, fn);
    free(table);
    return failed;
}

static int run_tf_forward(const void *arg) { return run_tf((const tf_job_t *)arg, tf_forward_range); }
static int run_tf_backward(const void *arg) { return run_tf((const tf_job_t *)arg, tf_backward_range); }

PARSE_PLACED_JOB(parse_tf_job, tf_job_t, 0)

/* tf_forward(is_double, signal, signal_len, batch, n_frames, n_fft, bases, frac or 0, theta,
 *            coefficients, spec) — spec (B, N, M) complex of the signal's precision */
PLACED_ENTRY(tf_forward, tf_job_t, parse_tf_job, 1, "no output", run_tf_forward,
             job.spec = (char *)(uintptr_t)out[0])

/* tf_backward(is_double, signal, signal_len, batch, n_frames, n_fft, bases, frac or 0, theta,
 *             coefficients, grad, grad_theta or 0, grad_frac or 0, grad_frames or 0) — grad
 * (B, N, M) complex, grad_theta (M, N) and grad_frac (N,) float64, grad_frames (B, N, L) */
PLACED_ENTRY(tf_backward, tf_job_t, parse_tf_job, 4, "need G and an output", run_tf_backward,
             job.grad = (const char *)(uintptr_t)out[0], job.grad_theta = (double *)(uintptr_t)out[1],
             job.grad_frac = (double *)(uintptr_t)out[2],
             job.grad_frames = (char *)(uintptr_t)out[3])

static PyMethodDef methods[] = {
    {"table_frames", table_frames, METH_VARARGS, "Rotated frames times a window table."},
    {"cosine_frames", cosine_frames, METH_VARARGS,
     "Rotated frames times a cosine-sum window of length θ (and/or its θ-derivative)."},
    {"frame_dots", frame_dots, METH_VARARGS, "Per-frame Σ Re(conj(G)·S) over bins and batch."},
    {"position_frames", position_frames, METH_VARARGS,
     "Rotated frames at integer bases with fractional offsets, times a cosine-sum window."},
    {"position_dots", position_dots, METH_VARARGS,
     "Per-frame θ- and x-derivative sums of the window against signal × adjoint."},
    {"cosine_block", cosine_block, METH_VARARGS,
     "ω, ∂θω and/or ∂xω of a cosine-sum window for a block of bins × frames × columns."},
    {"tf_forward", tf_forward, METH_VARARGS,
     "Per-bin / per-TF-bin spectrum, each (bin, frame) over its own window support."},
    {"tf_backward", tf_backward, METH_VARARGS,
     "Gradients of the per-TF-bin spectrum: θ, frame offsets and frames."},
    SET_PARALLEL_THRESHOLD_METHOD,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_frames",
                                    "Windowed rotated frames for the grid and position engines.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__frames(void)
{
    PyObject *m = PyModule_Create(&module);
#ifdef _OPENMP
    const int openmp = 1;
#else
    const int openmp = 0;
#endif
    /* OPENMP: 1 when built with -fopenmp (large jobs split over PyTorch's threads) */
    if (m && PyModule_AddIntConstant(m, "OPENMP", openmp) < 0) Py_CLEAR(m);
    return m;
}
