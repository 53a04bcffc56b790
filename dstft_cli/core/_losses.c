/*
 * Losses of a spectrogram in one pass over S for the value and one for the gradient, without
 * temporaries: the entropy-type losses, the frame kurtosis and the total variation of a map.
 *
 * Entropies. losses.py normalises m = |S|^q (q = 1: magnitude, q = 2: energy) to p = m / Σm per
 * group (one group = the last two dims of S for one leading index) and needs, per group,
 *   moments:  T = Σ m,  U = Σ m·log m,  log max m                      (Shannon, Rényi)
 *             W = Σ exp(β·(log m − c))  with c = log max m, so W ∈ [1, K] (Rényi of any order)
 * in one pass (W is summed per block relative to the block's own largest m and rescaled as the
 * largest m grows), and, for the backward pass, the elementwise vector-Jacobian product
 *   ∂L/∂m = A + B·log m + C·exp(D·(log m − c))        (m > 0 and p ≥ tiny)
 *         = Z                                           (m = 0 or p < tiny: the clamped limit)
 * times ∂m/∂x: S·q·|S|^(q−2) for complex S (PyTorch's convention, ∂L/∂Re + i·∂L/∂Im), 0 at
 * S = 0 as abs() gives; q·v^(q−1) for a real magnitude v.
 *
 * Inputs are read as m = b^e with b = Re² + Im² (complex, e = q/2) or b = v (real, e = q), so
 * log m = e·log b is one logarithm and the square root is taken only where m itself is needed.
 * The powers exp(β·(log m − c)) are (b / max b)^(β·e); when 2β·e is a small integer (Rényi of
 * order 2 or 3, Stanković's p = 2) they are products of b / max b and its square root instead
 * of an exponential. In single precision the logarithm and exponential are Cephes' polynomials
 * (about 1 ulp), written so that the loops vectorise; sums are accumulated in double precision.
 * Elements whose b leaves the normal float range (|S| < 1e−19 or > 1e19 but non-zero) make the
 * whole call rerun in double precision, so that tiny spectra behave exactly like abs() does.
 *
 * Sums are formed per chunk of CHUNK elements and the chunks added in order: results do not
 * depend on the number of threads. Chunks, frames (kurtosis) and rows (total variation) are
 * split over PyTorch's OpenMP threads (_parallel.h), with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PARALLEL_MIN_ELEMENTS (1 << 15)
#include "_parallel.h"

#define CHUNK 8192

/* Every kernel exists three times: for AVX-512 (F, VL, DQ, BW) on 512-bit vectors, for AVX2
 * with FMA, and for the baseline instruction set; the best one the CPU has is picked at load
 * time (instruction_set() reads or lowers the choice, so that tests can run every variant). On
 * 512-bit vectors the entropy kernels ran about twice as fast as on 256-bit ones on an AMD EPYC
 * (Zen 4) machine: twice the lanes, and 32 vector registers instead of 16, which keeps the
 * polynomial constants of the logarithm out of memory. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FAST_TARGET __attribute__((target("avx2,fma")))
#define WIDE_TARGET                                                                              \
    __attribute__((target("avx2,fma,avx512f,avx512vl,avx512dq,avx512bw,prefer-vector-width=512")))
#define HAVE_FAST_TARGET 1
#else
#define FAST_TARGET
#define WIDE_TARGET
#define HAVE_FAST_TARGET 0
#endif
enum { ISA_BASE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };
static int isa = ISA_BASE, isa_max = ISA_BASE;

enum { MOMENTS = 0, GRAD = 1 };

typedef struct {
    int is_double, is_complex, op;
    int promote;             /* compute in double precision although the data are float */
    double e;                /* m = b^e: 0.5, 1 or 2 */
    const char *data;
    char *out;               /* GRAD: the gradient, laid out like data */
    Py_ssize_t groups, count; /* count: elements per group */
    double beta;             /* MOMENTS: the power sum's exponent (0: none) */
    const double *coef;      /* GRAD, per group: A, B, C, c, Z, log(tiny·T) */
    double D;                /* GRAD: the tail's exponent */
    int half;                /* 2β·e (MOMENTS) or 2D·e (GRAD) when an integer in [−1, 15] */
    int tail;                /* how the power tail is evaluated: tail_kind(half) */
    double *partial;         /* MOMENTS, per chunk: T, U, max log m, out-of-range count, W */
} job_t;

/* ---------------------------------------------------------------- single-precision log and exp */
static inline float log_f(float x)
{
    /* x normal, positive: x = f·2^k, f ∈ [√½, √2), log x = log1p(f − 1) + k·log 2 (Cephes logf) */
    union { float f; uint32_t i; } u = {x};
    float k = (float)((int32_t)((u.i >> 23) & 0xff) - 126);
    u.i = (u.i & 0x007fffffu) | 0x3f000000u;
    float f = u.f;
    const int low = f < 0.707106781186547524f;
    k = low ? k - 1.0f : k;
    f = low ? f + f - 1.0f : f - 1.0f;
    const float z = f * f;
    float y = 7.0376836292e-2f;
    y = y * f - 1.1514610310e-1f;
    y = y * f + 1.1676998740e-1f;
    y = y * f - 1.2420140846e-1f;
    y = y * f + 1.4249322787e-1f;
    y = y * f - 1.6668057665e-1f;
    y = y * f + 2.0000714765e-1f;
    y = y * f - 2.4999993993e-1f;
    y = y * f + 3.3333331174e-1f;
    y = y * f * z;
    y += -2.12194440e-4f * k;
    y += -0.5f * z;
    return f + y + 0.693359375f * k;
}

static inline float exp_f(float x)
{
    /* Cephes expf; arguments below −87 give about 1e−38 (callers only add such terms) */
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.0f ? -87.0f : x;
    /* n = x/log 2 rounded to the nearest integer (adding and removing 1.5·2²³ does it) */
    const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    x -= n * 0.693359375f;
    x -= n * -2.12194440e-4f;
    const float z = x * x;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * z + x + 1.0f;
    union { uint32_t i; float f; } scale = {(uint32_t)((int32_t)n + 127) << 23};
    return y * scale.f;
}

static inline double log_d(double x) { return log(x); }
static inline double exp_d(double x) { return exp(x); }

/* ------------------------------------------------------------------------------- chunk kernels */
/* The elements of a chunk go through blocks of BLOCK: an elementwise loop (vectorised, no
 * reduction) writes each element's terms to small arrays, a second loop adds them in double
 * precision. */
#define BLOCK 256

static inline float sqrt_f(float x) { return sqrtf(x); }
static inline double sqrt_d(double x) { return sqrt(x); }

/* One element: b, whether it is in range (else m = 0) and log m. */
#define ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, i)                                                \
    const C re = (C)d[(CX) ? 2 * (i) : (i)], im = (CX) ? (C)d[2 * (i) + 1] : (C)0;             \
    const C b = (CX) ? re * re + im * im : re;                                                 \
    const int ok = (b >= (C)BMIN) & (b <= (C)BMAX);                                                \
    const C bs = ok ? b : (C)1;                                                                \
    const C lm = (C)(EV) * log_##SFX(bs);                                                      \
    const C m = (EV) == 0.5 ? sqrt_##SFX(bs) : ((EV) == 1.0 ? bs : bs * bs);

/* t^(k/2) of t = b/b_ref ≤ 1 (b_ref the largest b, so no overflow) for a loop-invariant integer
 * k = 2n or 2n + 1, n ≤ 7: products of t, t², t⁴ and, for odd k, root = √t (which is
 * m/m_ref when m = √b, else one square root). Cheaper than exp(k/2 · log t), and exact to a
 * few roundings. */
#define POWER_EVEN(C, t, n)                                                                       \
    (((n) & 1 ? (t) : (C)1) * ((n) & 2 ? (t) * (t) : (C)1) * ((n) & 4 ? (t) * (t) * ((t) * (t)) : (C)1))
#define ROOT(SFX, EV, t, m, inv_mref) ((EV) == 0.5 ? (m) * (inv_mref) : sqrt_##SFX(t))

/* How the power tail of a kernel is evaluated: by exp of the logarithm (any exponent), or by
 * POWER_EVEN and ROOT for an exponent k/2 of b with k an integer in [−1, 15]. */
/* |log b_ref| beyond which 1/b_ref is not a normal number of the compute type: exp instead */
#define LOG_REF_MAX_f 80.0
#define LOG_REF_MAX_d 700.0
enum { TAIL_NONE = 0, TAIL_EXP = 1, TAIL_EVEN = 2, TAIL_ODD = 3, TAIL_INVERSE_ROOT = 4 };
#define HALF_POWER_MAX 15

static int tail_kind(int half)
{
    if (half < -1 || half > HALF_POWER_MAX) return TAIL_EXP;
    return half == -1 ? TAIL_INVERSE_ROOT : (half % 2 ? TAIL_ODD : TAIL_EVEN);
}

/* LOAD: stored type; C: compute type (SFX picks its log/exp/sqrt); BMIN, BMAX: the normal range
 * of C for b; CX: complex input; EV: the exponent e. Each kernel handles elements [i0, i1) of
 * group g. */
#define KERNELS(NAME, ATTR, LOAD, C, SFX, BMIN, BMAX, CX, EV)                                      \
    /* Σ exp(β(tl − top)) over a block of log m (−∞ for m = 0), top its largest finite value */   \
    ATTR static double block_power_##NAME(C *tw, int n, const LOAD *restrict d, Py_ssize_t j0,   \
                                          C top, double beta, int tail, int half)                \
    {                                                                                            \
        const C beta_c = (C)beta;                                                                \
        const C inv_ref = (C)exp(-(double)top / (EV)), inv_mref = (C)exp(-(double)top);         \
        const int nh = half >> 1;                                                                \
        if (tail == TAIL_EXP || fabs((double)top / (EV)) > LOG_REF_MAX_##SFX) {                  \
            for (int j = 0; j < n; j++) {                                                        \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, j0 + j)                                   \
                (void)m;                                                                         \
                const C diff = lm - top; /* ≤ 0; β·diff with β up to 1e300: never ∞·0 */         \
                const C t = diff < (C)0 ? beta_c * diff : (C)0;                                  \
                tw[j] = ok ? exp_##SFX(t) : (C)0;                                                \
            }                                                                                    \
        } else {                                                                                 \
            for (int j = 0; j < n; j++) {                                                        \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, j0 + j)                                   \
                (void)lm;                                                                        \
                const C t = bs * inv_ref;                                                        \
                const C y = POWER_EVEN(C, t, nh);                                                \
                tw[j] = ok ? (tail == TAIL_ODD ? y * ROOT(SFX, EV, t, m, inv_mref) : y) : (C)0;  \
            }                                                                                    \
        }                                                                                        \
        double W = 0.0;                                                                          \
        _Pragma("omp simd reduction(+ : W)")                                                     \
        for (int j = 0; j < n; j++) W += (double)tw[j];                                          \
        return W;                                                                                \
    }                                                                                            \
                                                                                                 \
    /* Per block of BLOCK elements the sums are formed in the compute type, on the vector lanes  \
     * (each lane adds BLOCK / lanes values), then added in double precision; the block's         \
     * largest log m is the logarithm of its largest b. */                                       \
    ATTR static void moments_##NAME(const job_t *job, Py_ssize_t g, Py_ssize_t i0, Py_ssize_t i1, \
                                   double *res)                                                  \
    {                                                                                            \
        const LOAD *restrict d = (const LOAD *)job->data + ((CX) ? 2 : 1) * g * job->count;      \
        C tw[BLOCK];                                                                             \
        double T = 0.0, U = 0.0, bad = 0.0, mx = -INFINITY, W = 0.0;                             \
        for (Py_ssize_t j0 = i0; j0 < i1; j0 += BLOCK) {                                         \
            const int n = (int)(i1 - j0 < BLOCK ? i1 - j0 : BLOCK);                              \
            C bT = (C)0, bU = (C)0, bbad = (C)0, bmax = (C)0;                                    \
            _Pragma("omp simd reduction(+ : bT, bU, bbad) reduction(max : bmax)")                \
            for (int j = 0; j < n; j++) {                                                        \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, j0 + j)                                   \
                bT += ok ? m : (C)0;                                                             \
                bU += ok ? m * lm : (C)0;                                                        \
                bbad += ((!ok) & ((re != (C)0) | (im != (C)0))) ? (C)1 : (C)0;                   \
                const C bo = ok ? b : (C)0;                                                      \
                bmax = bo > bmax ? bo : bmax;                                                    \
            }                                                                                    \
            T += (double)bT;                                                                     \
            U += (double)bU;                                                                     \
            bad += (double)bbad;                                                                 \
            if (bmax > (C)0) {                                                                   \
                /* the same logarithm as the elements' (log m of the largest element exactly) */ \
                const C one = bmax;                                                              \
                const C bmx = (C)(EV) * log_##SFX(one);                                          \
                if (job->beta != 0.0) {                                                          \
                    const double wb = block_power_##NAME(tw, n, d, j0, bmx, job->beta,           \
                                                         job->tail, job->half);                  \
                    W = add_power(W, mx, wb, (double)bmx, job->beta);                            \
                }                                                                                \
                mx = (double)bmx > mx ? (double)bmx : mx;                                        \
            }                                                                                    \
        }                                                                                        \
        res[0] = T;                                                                              \
        res[1] = U;                                                                              \
        res[2] = mx;                                                                             \
        res[3] = bad;                                                                            \
        res[4] = W;                                                                              \
    }                                                                                            \
                                                                                                 \
    ATTR static void grad_##NAME(const job_t *job, Py_ssize_t g, Py_ssize_t i0, Py_ssize_t i1)    \
    {                                                                                            \
        const Py_ssize_t off = ((CX) ? 2 : 1) * g * job->count;                                  \
        const LOAD *restrict d = (const LOAD *)job->data + off;                                  \
        LOAD *restrict o = (LOAD *)job->out + off;                                               \
        const double *k = job->coef + 6 * g;                                                     \
        const C A = (C)k[0], B = (C)k[1], Cc = (C)k[2], c = (C)k[3];                             \
        const C Z = (C)k[4], lmin = (C)k[5], D = (C)job->D;                                      \
        /* the power tail C·(m/max m)^D = C·t^(D·e), t = b / max b */                           \
        const C inv_ref = (C)exp(-k[3] / (EV)), inv_mref = (C)exp(-k[3]);                        \
        const int nh = job->half >> 1;                                                           \
        const int by_exp = fabs(k[3] / (EV)) > LOG_REF_MAX_##SFX;                                \
        switch (k[2] == 0.0 ? TAIL_NONE : (by_exp ? TAIL_EXP : job->tail)) {                     \
        case TAIL_NONE: GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV, (C)0) break;                \
        case TAIL_EXP: /* D·diff with D up to 1e300: never ∞·0 */                               \
            GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV,                                          \
                      Cc * exp_##SFX(lm != c ? D * (lm - c) : (C)0)) break;                      \
        case TAIL_EVEN: GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV, Cc * POWER_EVEN(C, t, nh)) break; \
        case TAIL_ODD:                                                                           \
            GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV,                                          \
                      Cc * POWER_EVEN(C, t, nh) * ROOT(SFX, EV, t, m, inv_mref)) break;          \
        default: GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV, Cc / ROOT(SFX, EV, t, m, inv_mref)) break; \
        }                                                                                        \
    }

/* ∂L/∂m = A + B·log m + tail (Z where p < tiny) times ∂m/∂x: complex x, 2e·m/b·x (x/|x| for
 * e = ½, 2x for e = 1, 0 at x = 0); real x = b, e·b^(e−1) (1, or 2x) */
#define GRAD_LOOP(C, SFX, LOAD, BMIN, BMAX, CX, EV, TAIL)                                        \
    for (Py_ssize_t i = i0; i < i1; i++) {                                                       \
        ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, i)                                                \
        const C t = bs * inv_ref;                                                                \
        (void)t;                                                                                 \
        const C dm = (ok & (lm >= lmin)) ? A + B * lm + (TAIL) : Z;                              \
        if (CX) {                                                                                \
            const C f = ok ? dm * (C)(2.0 * (EV)) * m / bs : (C)0;                               \
            o[2 * i] = (LOAD)(f * re);                                                           \
            o[2 * i + 1] = (LOAD)(f * im);                                                       \
        } else {                                                                                 \
            o[i] = (LOAD)((EV) == 2.0 ? dm * (C)2 * re : dm);                                    \
        }                                                                                        \
    }

/* W·e^{β(w_top − top)} + wb·e^{β(top_b − top)} with top = max(w_top, top_b): two power sums,
 * each relative to its own largest log m, relative to the larger one */
static inline double add_power(double W, double w_top, double wb, double top_b, double beta)
{
    if (top_b > w_top) return (W > 0.0 ? W * exp(beta * (w_top - top_b)) : 0.0) + wb;
    return W + (top_b < w_top ? wb * exp(beta * (top_b - w_top)) : wb);
}

/* instances: stored type × compute type × (complex, e = ½ or 1; real, e = 1 or 2) × target */
#define PRECISIONS(CXE, CX, EV, SUFFIX, ATTR)                                                    \
    KERNELS(ff_##CXE##SUFFIX, ATTR, float, float, f, FLT_MIN, FLT_MAX, CX, EV)                   \
    KERNELS(fd_##CXE##SUFFIX, ATTR, float, double, d, DBL_MIN, DBL_MAX, CX, EV)                  \
    KERNELS(dd_##CXE##SUFFIX, ATTR, double, double, d, DBL_MIN, DBL_MAX, CX, EV)
#define VARIANTS(SUFFIX, ATTR)                                                                   \
    PRECISIONS(c1, 1, 0.5, SUFFIX, ATTR)                                                         \
    PRECISIONS(c2, 1, 1.0, SUFFIX, ATTR)                                                         \
    PRECISIONS(r1, 0, 1.0, SUFFIX, ATTR)                                                         \
    PRECISIONS(r2, 0, 2.0, SUFFIX, ATTR)
VARIANTS(_base, )
VARIANTS(_fast, FAST_TARGET)
VARIANTS(_wide, WIDE_TARGET)

/* ------------------------------------------------------------------------------------- driver */
#define PARTIAL 5 /* per chunk: T, U, max log m, out-of-range count, W */

static void run_chunk(const job_t *job, Py_ssize_t chunk)
{
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    const Py_ssize_t g = chunk / per_group, c = chunk % per_group;
    const Py_ssize_t i0 = c * CHUNK, i1 = i0 + CHUNK < job->count ? i0 + CHUNK : job->count;
    double *res = job->partial + PARTIAL * chunk;
    const int kind = job->is_double ? 2 : (job->promote ? 1 : 0);
#define DISPATCH(NAME)                                                                           \
    if (job->op == MOMENTS) moments_##NAME(job, g, i0, i1, res);                                 \
    else grad_##NAME(job, g, i0, i1);
#define VARIANT_FOR(P, SUFFIX)                                                                   \
    if (job->is_complex) {                                                                       \
        if (job->e == 0.5) { DISPATCH(P##_c1##SUFFIX) } else { DISPATCH(P##_c2##SUFFIX) }        \
    } else {                                                                                     \
        if (job->e == 1.0) { DISPATCH(P##_r1##SUFFIX) } else { DISPATCH(P##_r2##SUFFIX) }        \
    }
#define VARIANT(P)                                                                               \
    if (isa == ISA_AVX512) {                                                                     \
        VARIANT_FOR(P, _wide)                                                                    \
    } else if (isa == ISA_AVX2) {                                                                \
        VARIANT_FOR(P, _fast)                                                                    \
    } else {                                                                                     \
        VARIANT_FOR(P, _base)                                                                    \
    }
    if (kind == 0) {
        VARIANT(ff)
    } else if (kind == 1) {
        VARIANT(fd)
    } else {
        VARIANT(dd)
    }
#undef VARIANT
#undef VARIANT_FOR
#undef DISPATCH
}

static int chunk_range(const void *arg, Py_ssize_t c0, Py_ssize_t c1)
{
    for (Py_ssize_t k = c0; k < c1; k++) run_chunk((const job_t *)arg, k);
    return 0;
}

static Py_ssize_t chunk_count(const job_t *job) { return (job->count + CHUNK - 1) / CHUNK * job->groups; }

static int run_job(const void *arg)
{
    const job_t *job = (const job_t *)arg;
    return parallel_ranges(job, chunk_count(job), job->groups * job->count, chunk_range);
}

/* per group (T, U, log max m, out-of-range count, W relative to max m), the chunks added in
 * order */
static PyObject *reduce(const job_t *job)
{
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    PyObject *result = PyList_New(job->groups);
    if (!result) return NULL;
    for (Py_ssize_t g = 0; g < job->groups; g++) {
        double acc[PARTIAL] = {0.0, 0.0, -INFINITY, 0.0, 0.0};
        for (Py_ssize_t c = 0; c < per_group; c++) {
            const double *r = job->partial + PARTIAL * (g * per_group + c);
            acc[0] += r[0];
            acc[1] += r[1];
            acc[3] += r[3];
            if (r[2] > -INFINITY) acc[4] = add_power(acc[4], acc[2], r[4], r[2], job->beta);
            acc[2] = r[2] > acc[2] ? r[2] : acc[2];
        }
        PyObject *item = Py_BuildValue("(ddddd)", acc[0], acc[1], acc[2], acc[3], acc[4]);
        if (!item) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, g, item);
    }
    return result;
}

static PyObject *execute(job_t *job)
{
    if (job->groups < 0 || job->count < 0 || !job->data || (job->op == GRAD && !job->out)
        || !(job->is_complex ? (job->e == 0.5 || job->e == 1.0) : (job->e == 1.0 || job->e == 2.0))) {
        PyErr_SetString(PyExc_ValueError, "invalid loss job");
        return NULL;
    }
    job->tail = tail_kind(job->half);
    const Py_ssize_t chunks = chunk_count(job);
    job->partial = (double *)calloc((size_t)(chunks > 0 ? chunks : 1) * PARTIAL, sizeof(double));
    if (!job->partial) return PyErr_NoMemory();
    PyObject *result = run_released(run_job, job);
    if (result && job->op == MOMENTS) {
        Py_DECREF(result);
        result = reduce(job);
    }
    free(job->partial);
    return result;
}

/* moments(is_double, is_complex, promote, e, data, groups, count, beta, half)
 *   -> [(T, U, log max m, out-of-range count, W)] per group; W = Σ exp(β(log m − log max m))
 *   when β ≠ 0 (half = 2β·e when that is an integer in [0, 15], else any value above 15) */
static PyObject *moments(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data;
    if (!PyArg_ParseTuple(args, "iiidKnndi", &job.is_double, &job.is_complex, &job.promote, &job.e,
                          &data, &job.groups, &job.count, &job.beta, &job.half))
        return NULL;
    job.data = (const char *)(uintptr_t)data;
    job.op = MOMENTS;
    return execute(&job);
}

/* grad(is_double, is_complex, promote, e, data, groups, count, out, coef (float64 (groups, 6):
 *      A, B, C, c, Z, log m below which p < tiny), D, half = 2D·e when that is an integer in
 *      [−1, 15], else any value above 15) */
static PyObject *grad(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data, out, coef;
    if (!PyArg_ParseTuple(args, "iiidKnnKKdi", &job.is_double, &job.is_complex, &job.promote,
                          &job.e, &data, &job.groups, &job.count, &out, &coef, &job.D, &job.half))
        return NULL;
    job.data = (const char *)(uintptr_t)data;
    job.out = (char *)(uintptr_t)out;
    job.coef = (const double *)(uintptr_t)coef;
    job.op = GRAD;
    return execute(&job);
}

/* ------------------------------------------------------------------------------------ kurtosis
 * Frame kurtosis kₙ = M·Σₘ w² / (Σₘ w)² of w = |x'|², x' = σₙ·x: one pass writes per frame
 * (Σw, Σw², σₙ); the gradient pass writes Pₙ·(w − Qₙ)·x' for per-frame Pₙ, Qₙ (see losses.py).
 * Float data are computed in double precision, where |x|⁴ of any float neither overflows nor
 * underflows (σₙ = 1); double data are scaled per frame by the power of two σₙ that brings
 * max |Re|, |Im| into [½, 1). Frames are contiguous in memory ((…, N, M), frame_major) or are
 * the columns of (…, M, N); tasks are runs of KURT_FRAMES frames of one group. */
#define KURT_FRAMES 64

typedef struct {
    int is_double, is_complex, frame_major;
    const char *data;
    char *out;
    Py_ssize_t groups, bins, frames;
    double *stats;           /* per frame: Σw, Σw², σ */
    const double *coef;      /* per frame: P, Q */
} kurt_job_t;

static double frame_scale(double peak)
{
    int exponent;
    if (!(peak > 0.0) || !isfinite(peak)) return 1.0;
    frexp(peak, &exponent);
    return ldexp(1.0, -exponent);
}

/* Element i of the data at frame scale σ: x' = σ·x, w = |x'|² (CX: complex data) */
#define KURT_ELEMENT(LOAD, CX, d, i, sigma)                                                       \
    const double re = (double)d[(CX) ? 2 * (i) : (i)] * (sigma);                                  \
    const double im = (CX) ? (double)d[2 * (i) + 1] * (sigma) : 0.0;                              \
    const double w = re * re + im * im;

/* the largest |Re|, |Im| of element i into peak */
#define KURT_PEAK(d, CX, i, peak)                                                                 \
    {                                                                                             \
        const double a = fabs((double)d[(CX) ? 2 * (i) : (i)]);                                   \
        const double b = (CX) ? fabs((double)d[2 * (i) + 1]) : 0.0;                               \
        const double c = a > b ? a : b;                                                           \
        peak = c > peak ? c : peak;                                                               \
    }

/* P·(w − Q)·x' of element i into out */
#define KURT_GRAD_ELEMENT(LOAD, CX, d, o, i, sigma, P, Q)                                         \
    {                                                                                             \
        KURT_ELEMENT(LOAD, CX, d, i, sigma)                                                       \
        const double f = (P) * (w - (Q));                                                         \
        o[(CX) ? 2 * (i) : (i)] = (LOAD)(f * re);                                                 \
        if (CX) o[2 * (i) + 1] = (LOAD)(f * im);                                                  \
    }

/* stats of frames [n0, n1) of group g; SCALE: σ per frame (else 1) */
#define KURT_STATS(NAME, LOAD, CX, SCALE)                                                         \
    static void kurt_stats_##NAME(const kurt_job_t *job, Py_ssize_t g, Py_ssize_t n0, Py_ssize_t n1) \
    {                                                                                             \
        const Py_ssize_t M = job->bins, N = job->frames, nj = n1 - n0;                            \
        const LOAD *restrict d = (const LOAD *)job->data + ((CX) ? 2 : 1) * g * M * N;           \
        double *st = job->stats + 3 * (g * N + n0);                                               \
        double s2[KURT_FRAMES] = {0.0}, s4[KURT_FRAMES] = {0.0}, sg[KURT_FRAMES];                 \
        for (Py_ssize_t j = 0; j < nj; j++) sg[j] = 1.0;                                          \
        if (job->frame_major) {                                                                   \
            for (Py_ssize_t j = 0; j < nj; j++) {                                                 \
                const LOAD *restrict f = d + ((CX) ? 2 : 1) * (n0 + j) * M;                       \
                if (SCALE) {                                                                      \
                    double peak = 0.0;                                                            \
                    _Pragma("omp simd reduction(max : peak)")                                     \
                    for (Py_ssize_t m = 0; m < M; m++) KURT_PEAK(f, CX, m, peak)                  \
                    sg[j] = frame_scale(peak);                                                    \
                }                                                                                 \
                const double sigma = sg[j];                                                       \
                double a2 = 0.0, a4 = 0.0;                                                        \
                _Pragma("omp simd reduction(+ : a2, a4)")                                         \
                for (Py_ssize_t m = 0; m < M; m++) {                                              \
                    KURT_ELEMENT(LOAD, CX, f, m, sigma)                                           \
                    a2 += w;                                                                      \
                    a4 += w * w;                                                                  \
                }                                                                                 \
                s2[j] = a2;                                                                       \
                s4[j] = a4;                                                                       \
            }                                                                                     \
        } else {                                                                                  \
            if (SCALE) {                                                                          \
                double peak[KURT_FRAMES] = {0.0};                                                 \
                for (Py_ssize_t m = 0; m < M; m++) {                                              \
                    const LOAD *restrict row = d + ((CX) ? 2 : 1) * (m * N + n0);                 \
                    for (Py_ssize_t j = 0; j < nj; j++) KURT_PEAK(row, CX, j, peak[j])            \
                }                                                                                 \
                for (Py_ssize_t j = 0; j < nj; j++) sg[j] = frame_scale(peak[j]);                 \
            }                                                                                     \
            for (Py_ssize_t m = 0; m < M; m++) {                                                  \
                const LOAD *restrict row = d + ((CX) ? 2 : 1) * (m * N + n0);                     \
                for (Py_ssize_t j = 0; j < nj; j++) {                                             \
                    KURT_ELEMENT(LOAD, CX, row, j, sg[j])                                         \
                    s2[j] += w;                                                                   \
                    s4[j] += w * w;                                                               \
                }                                                                                 \
            }                                                                                     \
        }                                                                                         \
        for (Py_ssize_t j = 0; j < nj; j++) {                                                     \
            st[3 * j] = s2[j];                                                                    \
            st[3 * j + 1] = s4[j];                                                                \
            st[3 * j + 2] = sg[j];                                                                \
        }                                                                                         \
    }

/* the gradient of frames [n0, n1) of group g: P·(w − Q)·x' with x' = σ·x */
#define KURT_GRAD(NAME, LOAD, CX)                                                                 \
    static void kurt_grad_##NAME(const kurt_job_t *job, Py_ssize_t g, Py_ssize_t n0, Py_ssize_t n1) \
    {                                                                                             \
        const Py_ssize_t M = job->bins, N = job->frames, off = ((CX) ? 2 : 1) * g * M * N;        \
        const LOAD *restrict d = (const LOAD *)job->data + off;                                   \
        LOAD *restrict o = (LOAD *)job->out + off;                                                \
        const double *st = job->stats + 3 * (g * N), *k = job->coef + 2 * (g * N);               \
        if (job->frame_major) {                                                                   \
            for (Py_ssize_t n = n0; n < n1; n++) {                                                \
                const Py_ssize_t base = ((CX) ? 2 : 1) * n * M;                                   \
                const double sigma = st[3 * n + 2], P = k[2 * n], Q = k[2 * n + 1];               \
                const LOAD *restrict f = d + base;                                                \
                LOAD *restrict of = o + base;                                                     \
                for (Py_ssize_t m = 0; m < M; m++) KURT_GRAD_ELEMENT(LOAD, CX, f, of, m, sigma, P, Q) \
            }                                                                                     \
        } else {                                                                                  \
            for (Py_ssize_t m = 0; m < M; m++) {                                                  \
                const LOAD *restrict row = d + ((CX) ? 2 : 1) * m * N;                            \
                LOAD *restrict orow = o + ((CX) ? 2 : 1) * m * N;                                 \
                for (Py_ssize_t n = n0; n < n1; n++)                                              \
                    KURT_GRAD_ELEMENT(LOAD, CX, row, orow, n, st[3 * n + 2], k[2 * n], k[2 * n + 1]) \
            }                                                                                     \
        }                                                                                         \
    }
KURT_STATS(fc, float, 1, 0)
KURT_STATS(fr, float, 0, 0)
KURT_STATS(dc, double, 1, 1)
KURT_STATS(dr, double, 0, 1)
KURT_GRAD(fc, float, 1)
KURT_GRAD(fr, float, 0)
KURT_GRAD(dc, double, 1)
KURT_GRAD(dr, double, 0)

static Py_ssize_t kurt_tasks_per_group(const kurt_job_t *job)
{
    return (job->frames + KURT_FRAMES - 1) / KURT_FRAMES;
}

static int kurt_range(const void *arg, Py_ssize_t t0, Py_ssize_t t1)
{
    const kurt_job_t *job = (const kurt_job_t *)arg;
    const Py_ssize_t per_group = kurt_tasks_per_group(job);
    for (Py_ssize_t t = t0; t < t1; t++) {
        const Py_ssize_t g = t / per_group, n0 = (t % per_group) * KURT_FRAMES;
        const Py_ssize_t n1 = n0 + KURT_FRAMES < job->frames ? n0 + KURT_FRAMES : job->frames;
        if (job->coef) {
            if (job->is_double) (job->is_complex ? kurt_grad_dc : kurt_grad_dr)(job, g, n0, n1);
            else (job->is_complex ? kurt_grad_fc : kurt_grad_fr)(job, g, n0, n1);
        } else {
            if (job->is_double) (job->is_complex ? kurt_stats_dc : kurt_stats_dr)(job, g, n0, n1);
            else (job->is_complex ? kurt_stats_fc : kurt_stats_fr)(job, g, n0, n1);
        }
    }
    return 0;
}

static int run_kurt(const void *arg)
{
    const kurt_job_t *job = (const kurt_job_t *)arg;
    return parallel_ranges(job, kurt_tasks_per_group(job) * job->groups,
                           job->groups * job->bins * job->frames, kurt_range);
}

/* kurtosis(is_double, is_complex, data, groups, bins, frames, frame_major, stats, coef or 0,
 *          out or 0): with coef 0, per frame (Σw, Σw², σ) into stats (float64 (groups·frames,
 *          3)); with coef (float64 (groups·frames, 2): P, Q), the gradient into out */
static PyObject *kurtosis(PyObject *self, PyObject *args)
{
    kurt_job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data, stats, coef, out;
    if (!PyArg_ParseTuple(args, "iiKnnniKKK", &job.is_double, &job.is_complex, &data, &job.groups,
                          &job.bins, &job.frames, &job.frame_major, &stats, &coef, &out))
        return NULL;
    if (job.groups < 0 || job.bins < 1 || job.frames < 0 || !data || !stats || (coef && !out)) {
        PyErr_SetString(PyExc_ValueError, "invalid kurtosis job");
        return NULL;
    }
    job.data = (const char *)(uintptr_t)data;
    job.stats = (double *)(uintptr_t)stats;
    job.coef = (const double *)(uintptr_t)coef;
    job.out = (char *)(uintptr_t)out;
    return run_released(run_kurt, &job);
}

/* ----------------------------------------------------------------------------- total variation
 * Isotropic TV of a (rows, cols) map θ: normₘₙ = √((θₘₙ − θₘ₊₁ₙ)² + (θₘₙ − θₘₙ₊₁)² + ε²), zero
 * differences past the edges; the value is Σ norm − ε·rows·cols, each row summed in double
 * precision and the rows added in order. The gradient of row m is
 *   uₘₙ + vₘₙ − vₘₙ₋₁ − uₘ₋₁ₙ,  u = (θₘₙ − θₘ₊₁ₙ)/normₘₙ,  v = (θₘₙ − θₘₙ₊₁)/normₘₙ,
 * with u and v of the rows recomputed from θ (nothing is kept between the passes). */
typedef struct {
    int is_double;
    const char *theta;
    char *out;               /* gradient, or NULL for the value */
    Py_ssize_t rows, cols;
    double eps, scale;       /* scale: the incoming gradient */
    double *row_sums;        /* value: per row */
} tv_job_t;

#define TV_KERNELS(T)                                                                             \
    /* u (may be NULL) and v of row m, and Σ norm of the row */                                   \
    static double tv_row_##T(const tv_job_t *job, Py_ssize_t m, T *u, T *v)                      \
    {                                                                                             \
        const Py_ssize_t C = job->cols;                                                           \
        const T *restrict a = (const T *)job->theta + m * C;                                      \
        const T *restrict below = m + 1 < job->rows ? a + C : a; /* the last row: no step */     \
        const T e2 = (T)(job->eps * job->eps);                                                    \
        double sum = 0.0;                                                                         \
        _Pragma("omp simd reduction(+ : sum)")                                                    \
        for (Py_ssize_t n = 0; n < C; n++) {                                                      \
            const T dm = a[n] - below[n];                                                         \
            const T dn = n + 1 < C ? a[n] - a[n + 1] : (T)0;                                      \
            const T norm = (T)sqrt(dm * dm + dn * dn + e2);                                       \
            sum += (double)norm;                                                                  \
            if (u) u[n] = dm / norm;                                                              \
            if (v) v[n] = dn / norm;                                                              \
        }                                                                                         \
        return sum;                                                                               \
    }                                                                                             \
                                                                                                  \
    static int tv_range_##T(const tv_job_t *job, Py_ssize_t r0, Py_ssize_t r1)                   \
    {                                                                                             \
        const Py_ssize_t C = job->cols;                                                           \
        if (!job->out) {                                                                          \
            for (Py_ssize_t m = r0; m < r1; m++) job->row_sums[m] = tv_row_##T(job, m, NULL, NULL); \
            return 0;                                                                             \
        }                                                                                         \
        T *buf = (T *)malloc(3 * (size_t)C * sizeof(T));                                          \
        if (!buf) return 1;                                                                       \
        T *u_above = buf, *u = buf + C, *v = buf + 2 * C;                                         \
        if (r0 > 0) tv_row_##T(job, r0 - 1, u_above, v);                                          \
        else memset(u_above, 0, (size_t)C * sizeof(T));                                           \
        const T scale = (T)job->scale;                                                            \
        for (Py_ssize_t m = r0; m < r1; m++) {                                                    \
            tv_row_##T(job, m, u, v);                                                             \
            T *restrict g = (T *)job->out + m * C;                                                \
            g[0] = (u[0] + v[0] - u_above[0]) * scale;                                            \
            for (Py_ssize_t n = 1; n < C; n++) g[n] = (u[n] + v[n] - v[n - 1] - u_above[n]) * scale; \
            T *swap = u_above;                                                                    \
            u_above = u;                                                                          \
            u = swap;                                                                             \
        }                                                                                         \
        free(buf);                                                                                \
        return 0;                                                                                 \
    }
TV_KERNELS(float)
TV_KERNELS(double)

static int tv_range(const void *arg, Py_ssize_t r0, Py_ssize_t r1)
{
    const tv_job_t *job = (const tv_job_t *)arg;
    return job->is_double ? tv_range_double(job, r0, r1) : tv_range_float(job, r0, r1);
}

static int run_tv(const void *arg)
{
    const tv_job_t *job = (const tv_job_t *)arg;
    return parallel_ranges(job, job->rows, job->rows * job->cols, tv_range);
}

/* total_variation(is_double, theta, rows, cols, eps, out or 0, scale) -> the value Σ norm − ε·rows·cols
 * (out 0), or None with scale times the gradient in out */
static PyObject *total_variation(PyObject *self, PyObject *args)
{
    tv_job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long theta, out;
    if (!PyArg_ParseTuple(args, "iKnndKd", &job.is_double, &theta, &job.rows, &job.cols, &job.eps,
                          &out, &job.scale))
        return NULL;
    if (job.rows < 1 || job.cols < 1 || !theta) {
        PyErr_SetString(PyExc_ValueError, "invalid total-variation job");
        return NULL;
    }
    job.theta = (const char *)(uintptr_t)theta;
    job.out = (char *)(uintptr_t)out;
    if (job.out) return run_released(run_tv, &job);
    job.row_sums = (double *)calloc((size_t)job.rows, sizeof(double));
    if (!job.row_sums) return PyErr_NoMemory();
    PyObject *done = run_released(run_tv, &job);
    double total = 0.0;
    for (Py_ssize_t m = 0; m < job.rows; m++) total += job.row_sums[m];
    free(job.row_sums);
    if (!done) return NULL;
    Py_DECREF(done);
    return PyFloat_FromDouble(total - job.eps * (double)job.rows * (double)job.cols);
}

/* instruction_set(level = -1) -> (level in use, highest level the CPU has), after setting the
 * level (0 baseline, 1 AVX2 + FMA, 2 AVX-512) when one is given; a level above the CPU's is
 * refused. The entropy kernels only; results agree to rounding between levels. */
static PyObject *instruction_set(PyObject *self, PyObject *args)
{
    int level = -1;
    if (!PyArg_ParseTuple(args, "|i", &level)) return NULL;
    if (level > isa_max || level < -1) {
        PyErr_Format(PyExc_ValueError, "instruction set level %d not available (0 to %d)", level,
                     isa_max);
        return NULL;
    }
    if (level >= 0) isa = level;
    return Py_BuildValue("(ii)", isa, isa_max);
}

static PyMethodDef methods[] = {
    {"instruction_set", instruction_set, METH_VARARGS,
     "(level in use, highest available) of the entropy kernels, after setting it if given."},
    {"moments", moments, METH_VARARGS,
     "Per group Σm, Σm·log m, log max m of m = b^e, and Σ exp(β(log m − log max m))."},
    {"grad", grad, METH_VARARGS, "Elementwise vector-Jacobian product of an entropy-type loss."},
    {"kurtosis", kurtosis, METH_VARARGS, "Per-frame power sums of a spectrogram, or the gradient."},
    {"total_variation", total_variation, METH_VARARGS, "Total variation of a map, or its gradient."},
    SET_PARALLEL_THRESHOLD_METHOD,
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_losses",
                                    "Losses of a spectrogram in a few passes.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__losses(void)
{
#if HAVE_FAST_TARGET
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa_max = ISA_AVX2;
    if (isa_max == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw"))
        isa_max = ISA_AVX512;
    isa = isa_max;
#endif
    return PyModule_Create(&module);
}
