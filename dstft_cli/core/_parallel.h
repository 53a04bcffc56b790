/*
 * Splitting the loops of the C modules (_frames.c, _losses.c) over PyTorch's OpenMP threads.
 *
 * Built with -fopenmp, a module links libgomp.so.1 and the loader hands it the copy PyTorch has
 * loaded already: one pool of threads, no second set of spinning workers. Without OpenMP the
 * same code runs on the calling thread. A job of rows 0 … rows − 1 is split into equal
 * consecutive ranges, one per thread; every row is computed the same way whichever thread
 * computes it, so results do not depend on the number of threads, bit for bit.
 *
 * The including file defines PARALLEL_MIN_ELEMENTS (the default size, in elements, from which
 * a job is split) before including this header; each module keeps its own threshold.
 */
#ifndef DSTFT_PARALLEL_H
#define DSTFT_PARALLEL_H

#include <Python.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static Py_ssize_t parallel_min_elements = PARALLEL_MIN_ELEMENTS; /* set_parallel_threshold */

#ifdef _OPENMP
static int max_threads(void) { return omp_get_max_threads(); }
static int thread_num(void) { return omp_get_thread_num(); }
static int num_threads(void) { return omp_get_num_threads(); }
#else
static int max_threads(void) { return 1; }
static int thread_num(void) { return 0; }
static int num_threads(void) { return 1; }
#endif

/* fn(job, r0, r1) over rows 0 … rows − 1 in one consecutive range per thread; jobs of fewer than
 * parallel_min_elements elements stay on the calling thread. Non-zero from any fn (an
 * allocation failed) is returned. */
static int parallel_ranges(const void *job, Py_ssize_t rows, Py_ssize_t elements,
                           int (*fn)(const void *, Py_ssize_t, Py_ssize_t))
{
    int failed = 0;
    const int threads = elements >= parallel_min_elements && rows > 1 ? max_threads() : 1;
    (void)threads; /* (unused without OpenMP) */
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1) reduction(| : failed)
#endif
    {
        const Py_ssize_t t = thread_num(), nt = num_threads();
        failed |= fn(job, rows * t / nt, rows * (t + 1) / nt);
    }
    return failed;
}

/* fn(job) with the GIL released; non-zero from fn means an allocation failed */
static PyObject *run_released(int (*fn)(const void *), const void *job)
{
    int failed;
    Py_BEGIN_ALLOW_THREADS
    failed = fn(job);
    Py_END_ALLOW_THREADS
    if (failed) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* set_parallel_threshold(elements) -> the previous threshold: jobs of fewer elements stay on the
 * calling thread (the tests lower it to run the threaded split on small inputs) */
static PyObject *set_parallel_threshold(PyObject *self, PyObject *args)
{
    Py_ssize_t elements;
    if (!PyArg_ParseTuple(args, "n", &elements)) return NULL;
    const Py_ssize_t previous = parallel_min_elements;
    parallel_min_elements = elements < 0 ? 0 : elements;
    return PyLong_FromSsize_t(previous);
}

#define SET_PARALLEL_THRESHOLD_METHOD                                                             \
    {"set_parallel_threshold", set_parallel_threshold, METH_VARARGS,                              \
     "Smallest job (in elements) split over PyTorch's OpenMP threads; returns the old value."}

#endif
