/*
 * Entropy-type losses of a spectrogram in a few passes over S, without temporaries.
 *
 * losses.py normalises m = |S|^q (q = 1: magnitude, q = 2: energy) to p = m / Σm per group
 * (one group = the last two dims of S for one leading index) and needs, per group,
 *   moments:  T = Σ m,  U = Σ m·log m,  log max m                      (Shannon, Rényi)
 *   powsum:   W = Σ exp(β·(log m − c))  with c = log max m, so W ∈ [1, K] (Rényi of any order)
 * and, for the backward pass, the elementwise vector-Jacobian product
 *   ∂L/∂m = A + B·log m + C·exp(D·(log m − c))        (m > 0 and p ≥ tiny)
 *         = Z                                           (m = 0 or p < tiny: the clamped limit)
 * times ∂m/∂x: S·q·|S|^(q−2) for complex S (PyTorch's convention, ∂L/∂Re + i·∂L/∂Im), 0 at
 * S = 0 as abs() gives; q·v^(q−1) for a real magnitude v.
 *
 * Inputs are read as m = b^e with b = Re² + Im² (complex, e = q/2) or b = v (real, e = q), so
 * log m = e·log b is one logarithm and the square root is taken only where m itself is needed.
 * In single precision the logarithm and exponential are Cephes' polynomials (about 1 ulp),
 * written so that the loops vectorise; sums are accumulated in double precision. Elements
 * whose b leaves the normal float range (|S| < 1e−19 or > 1e19 but non-zero) make the whole
 * call rerun in double precision, so that tiny spectra behave exactly like abs() does.
 *
 * Sums are formed per chunk of CHUNK elements and the chunks added in order: results do not
 * depend on the number of threads. Chunks are split over PyTorch's OpenMP threads (the module
 * links libgomp, the copy PyTorch has loaded), with the GIL released.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK 8192

/* Every kernel exists twice: for AVX2 with FMA (picked at load time when the CPU has both) and
 * for the baseline instruction set. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define FAST_TARGET __attribute__((target("avx2,fma")))
#define HAVE_FAST_TARGET 1
#else
#define FAST_TARGET
#define HAVE_FAST_TARGET 0
#endif
static int use_fast = 0;

enum { MOMENTS = 0, POWSUM = 1, GRAD = 2 };

typedef struct {
    int is_double, is_complex, op;
    int promote;             /* compute in double precision although the data are float */
    double e;                /* m = b^e: 0.5, 1 or 2 */
    const char *data;
    char *out;               /* GRAD: the gradient, laid out like data */
    Py_ssize_t groups, count; /* count: elements per group */
    double beta;             /* POWSUM exponent */
    const double *coef;      /* per group: POWSUM c; GRAD A, B, C, c, Z, log(tiny·T) */
    double D;                /* GRAD exponent */
    double *partial;         /* per chunk: T, U, max log m, out-of-range count (or W) */
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

/* One element: b, whether it is in range (else m = 0) and log m. */
#define ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, i)                                                \
    const C re = (C)d[(CX) ? 2 * (i) : (i)], im = (CX) ? (C)d[2 * (i) + 1] : (C)0;             \
    const C b = (CX) ? re * re + im * im : re;                                                 \
    const int ok = (b >= (C)BMIN) & (b <= (C)BMAX);                                                \
    const C bs = ok ? b : (C)1;                                                                \
    const C lm = (C)(EV) * log_##SFX(bs);                                                      \
    const C m = (EV) == 0.5 ? sqrt_##SFX(bs) : ((EV) == 1.0 ? bs : bs * bs);

/* LOAD: stored type; C: compute type (SFX picks its log/exp/sqrt); BMIN, BMAX: the normal range
 * of C for b; CX: complex input; EV: the exponent e. Each kernel handles elements [i0, i1) of
 * group g. */
#define KERNELS(NAME, ATTR, LOAD, C, SFX, BMIN, BMAX, CX, EV)                                      \
    ATTR static void moments_##NAME(const job_t *job, Py_ssize_t g, Py_ssize_t i0, Py_ssize_t i1, \
                                   double *res)                                                  \
    {                                                                                            \
        const LOAD *restrict d = (const LOAD *)job->data + ((CX) ? 2 : 1) * g * job->count;      \
        C tm[BLOCK], tu[BLOCK], tl[BLOCK], tb[BLOCK];                                            \
        double T = 0.0, U = 0.0, bad = 0.0, mx = -INFINITY;                                      \
        for (Py_ssize_t j0 = i0; j0 < i1; j0 += BLOCK) {                                         \
            const int n = (int)(i1 - j0 < BLOCK ? i1 - j0 : BLOCK);                              \
            for (int j = 0; j < n; j++) {                                                        \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, j0 + j)                                   \
                tm[j] = ok ? m : (C)0;                                                           \
                tu[j] = ok ? m * lm : (C)0;                                                      \
                tl[j] = ok ? lm : -(C)INFINITY;                                                  \
                tb[j] = ((!ok) & ((re != (C)0) | (im != (C)0))) ? (C)1 : (C)0;                       \
            }                                                                                    \
            C bmx = -(C)INFINITY;                                                                \
            _Pragma("omp simd reduction(+ : T, U, bad) reduction(max : bmx)")                    \
            for (int j = 0; j < n; j++) {                                                        \
                T += (double)tm[j];                                                              \
                U += (double)tu[j];                                                              \
                bad += (double)tb[j];                                                            \
                bmx = tl[j] > bmx ? tl[j] : bmx;                                                 \
            }                                                                                    \
            mx = (double)bmx > mx ? (double)bmx : mx;                                            \
        }                                                                                        \
        res[0] = T;                                                                              \
        res[1] = U;                                                                              \
        res[2] = mx;                                                                             \
        res[3] = bad;                                                                            \
    }                                                                                            \
                                                                                                 \
    ATTR static void powsum_##NAME(const job_t *job, Py_ssize_t g, Py_ssize_t i0, Py_ssize_t i1,  \
                                  double *res)                                                   \
    {                                                                                            \
        const LOAD *restrict d = (const LOAD *)job->data + ((CX) ? 2 : 1) * g * job->count;      \
        const C beta = (C)job->beta, c = (C)job->coef[g];                                        \
        C tw[BLOCK];                                                                             \
        double W = 0.0;                                                                          \
        for (Py_ssize_t j0 = i0; j0 < i1; j0 += BLOCK) {                                         \
            const int n = (int)(i1 - j0 < BLOCK ? i1 - j0 : BLOCK);                              \
            for (int j = 0; j < n; j++) {                                                        \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, j0 + j)                                   \
                (void)m;                                                                         \
                const C diff = lm - c; /* ≤ 0; β·diff with β up to 1e300: never ∞·0 */          \
                const C t = diff < (C)0 ? beta * diff : (C)0;                                    \
                tw[j] = ok ? exp_##SFX(t) : (C)0;                                                \
            }                                                                                    \
            _Pragma("omp simd reduction(+ : W)")                                                 \
            for (int j = 0; j < n; j++) W += (double)tw[j];                                      \
        }                                                                                        \
        res[0] = W;                                                                              \
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
        if (k[2] != 0.0) {                                                                       \
            for (Py_ssize_t i = i0; i < i1; i++) {                                               \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, i)                                        \
                const C diff = lm - c; /* D·diff with D up to 1e300: never ∞·0 */               \
                const C tail = Cc * exp_##SFX(diff != (C)0 ? D * diff : (C)0);                   \
                const C dm = (ok & (lm >= lmin)) ? A + B * lm + tail : Z;                           \
                GRAD_STORE(C, SFX, LOAD, CX, EV)                                                 \
            }                                                                                    \
        } else {                                                                                 \
            for (Py_ssize_t i = i0; i < i1; i++) {                                               \
                ELEMENT(C, SFX, BMIN, BMAX, CX, EV, d, i)                                        \
                const C dm = (ok & (lm >= lmin)) ? A + B * lm : Z;                                  \
                GRAD_STORE(C, SFX, LOAD, CX, EV)                                                 \
            }                                                                                    \
        }                                                                                        \
    }

/* ∂L/∂m times ∂m/∂x: complex x, 2e·m/b·x (x/|x| for e = ½, 2x for e = 1, 0 at x = 0);
 * real x = b, e·b^(e−1) (1, or 2x) */
#define GRAD_STORE(C, SFX, LOAD, CX, EV)                                                              \
    if (CX) {                                                                                    \
        const C f = ok ? dm * (C)(2.0 * (EV)) * m / bs : (C)0;                                   \
        o[2 * i] = (LOAD)(f * re);                                                               \
        o[2 * i + 1] = (LOAD)(f * im);                                                           \
    } else {                                                                                     \
        o[i] = (LOAD)((EV) == 2.0 ? dm * (C)2 * re : dm);                                        \
    }

static inline float sqrt_f(float x) { return sqrtf(x); }
static inline double sqrt_d(double x) { return sqrt(x); }

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

/* ------------------------------------------------------------------------------------- driver */
static void run_chunk(const job_t *job, Py_ssize_t chunk)
{
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    const Py_ssize_t g = chunk / per_group, c = chunk % per_group;
    const Py_ssize_t i0 = c * CHUNK, i1 = i0 + CHUNK < job->count ? i0 + CHUNK : job->count;
    double *res = job->partial + 4 * chunk;
    const int kind = job->is_double ? 2 : (job->promote ? 1 : 0);
#define DISPATCH(NAME)                                                                           \
    switch (job->op) {                                                                           \
    case MOMENTS: moments_##NAME(job, g, i0, i1, res); break;                                    \
    case POWSUM: powsum_##NAME(job, g, i0, i1, res); break;                                      \
    default: grad_##NAME(job, g, i0, i1); break;                                                 \
    }
#define VARIANT_FOR(P, SUFFIX)                                                                   \
    if (job->is_complex) {                                                                       \
        if (job->e == 0.5) { DISPATCH(P##_c1##SUFFIX) } else { DISPATCH(P##_c2##SUFFIX) }        \
    } else {                                                                                     \
        if (job->e == 1.0) { DISPATCH(P##_r1##SUFFIX) } else { DISPATCH(P##_r2##SUFFIX) }        \
    }
#define VARIANT(P)                                                                               \
    if (use_fast) {                                                                              \
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

static Py_ssize_t parallel_min_elements = 1 << 15; /* set_parallel_threshold */

static void run_job(const job_t *job)
{
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    const Py_ssize_t chunks = per_group * job->groups;
#ifdef _OPENMP
    const int parallel = job->groups * job->count >= parallel_min_elements
                         && omp_get_max_threads() > 1 && chunks > 1;
#pragma omp parallel for schedule(static) if (parallel)
#endif
    for (Py_ssize_t k = 0; k < chunks; k++) run_chunk(job, k);
}

/* per group (T, U, log max m, out-of-range count) or (W), the chunks added in order */
static PyObject *reduce(const job_t *job, int width)
{
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    PyObject *result = PyList_New(job->groups);
    if (!result) return NULL;
    for (Py_ssize_t g = 0; g < job->groups; g++) {
        double acc[4] = {0.0, 0.0, -INFINITY, 0.0};
        if (width == 1) acc[0] = 0.0;
        for (Py_ssize_t c = 0; c < per_group; c++) {
            const double *r = job->partial + 4 * (g * per_group + c);
            acc[0] += r[0];
            if (width == 4) {
                acc[1] += r[1];
                acc[2] = r[2] > acc[2] ? r[2] : acc[2];
                acc[3] += r[3];
            }
        }
        PyObject *item = width == 4 ? Py_BuildValue("(dddd)", acc[0], acc[1], acc[2], acc[3])
                                    : PyFloat_FromDouble(acc[0]);
        if (!item) {
            Py_DECREF(result);
            return NULL;
        }
        PyList_SET_ITEM(result, g, item);
    }
    return result;
}

static PyObject *execute(job_t *job, int width)
{
    if (job->groups < 0 || job->count < 0 || !job->data || (job->op == GRAD && !job->out)
        || !(job->is_complex ? (job->e == 0.5 || job->e == 1.0) : (job->e == 1.0 || job->e == 2.0))) {
        PyErr_SetString(PyExc_ValueError, "invalid loss job");
        return NULL;
    }
    const Py_ssize_t per_group = (job->count + CHUNK - 1) / CHUNK;
    const Py_ssize_t chunks = per_group * job->groups;
    job->partial = (double *)calloc((size_t)(chunks > 0 ? chunks : 1) * 4, sizeof(double));
    if (!job->partial) return PyErr_NoMemory();
    Py_BEGIN_ALLOW_THREADS
    run_job(job);
    Py_END_ALLOW_THREADS
    PyObject *result = width ? reduce(job, width) : (Py_INCREF(Py_None), Py_None);
    free(job->partial);
    return result;
}

/* moments(is_double, is_complex, promote, e, data, groups, count)
 *   -> [(T, U, log max m, out-of-range count)] per group */
static PyObject *moments(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data;
    if (!PyArg_ParseTuple(args, "iiidKnn", &job.is_double, &job.is_complex, &job.promote, &job.e,
                          &data, &job.groups, &job.count))
        return NULL;
    job.data = (const char *)(uintptr_t)data;
    job.op = MOMENTS;
    return execute(&job, 4);
}

/* powsum(is_double, is_complex, promote, e, data, groups, count, beta, c (float64 per group))
 *   -> [W] per group */
static PyObject *powsum(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data, coef;
    if (!PyArg_ParseTuple(args, "iiidKnndK", &job.is_double, &job.is_complex, &job.promote,
                          &job.e, &data, &job.groups, &job.count, &job.beta, &coef))
        return NULL;
    job.data = (const char *)(uintptr_t)data;
    job.coef = (const double *)(uintptr_t)coef;
    job.op = POWSUM;
    return execute(&job, 1);
}

/* grad(is_double, is_complex, promote, e, data, groups, count, out, coef (float64 (groups, 6):
 *      A, B, C, c, Z, log m below which p < tiny), D) */
static PyObject *grad(PyObject *self, PyObject *args)
{
    job_t job;
    memset(&job, 0, sizeof job);
    unsigned long long data, out, coef;
    if (!PyArg_ParseTuple(args, "iiidKnnKKd", &job.is_double, &job.is_complex, &job.promote,
                          &job.e, &data, &job.groups, &job.count, &out, &coef, &job.D))
        return NULL;
    job.data = (const char *)(uintptr_t)data;
    job.out = (char *)(uintptr_t)out;
    job.coef = (const double *)(uintptr_t)coef;
    job.op = GRAD;
    return execute(&job, 0);
}

static PyObject *set_parallel_threshold(PyObject *self, PyObject *args)
{
    Py_ssize_t elements;
    if (!PyArg_ParseTuple(args, "n", &elements)) return NULL;
    const Py_ssize_t previous = parallel_min_elements;
    parallel_min_elements = elements < 0 ? 0 : elements;
    return PyLong_FromSsize_t(previous);
}

static PyMethodDef methods[] = {
    {"moments", moments, METH_VARARGS, "Per group Σm, Σm·log m, log max m of m = b^e."},
    {"powsum", powsum, METH_VARARGS, "Per group Σ exp(β(log m − c))."},
    {"grad", grad, METH_VARARGS, "Elementwise vector-Jacobian product of an entropy-type loss."},
    {"set_parallel_threshold", set_parallel_threshold, METH_VARARGS,
     "Smallest job (in elements) split over PyTorch's OpenMP threads; returns the old value."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_losses",
                                    "Entropy-type losses of a spectrogram in a few passes.", -1,
                                    methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__losses(void)
{
#if HAVE_FAST_TARGET
    __builtin_cpu_init();
    use_fast = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return PyModule_Create(&module);
}
