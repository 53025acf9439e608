/* gidx._sketch: the position sketch's per-resolution kernel (gidx/sketch.py), compiled
 * ahead of time. One pass over the intervals: each interval's bins at resolution
 * `res`, their masses, the seeded splitmix64 hash of each bin key and the signed
 * accumulation into `dims` buckets.
 *
 * It reproduces, bit for bit, the numpy formulation it replaced (kept in sketch.py as
 * `_level_numpy`, which tests compare against):
 *   - the same choice between the sparse path (bin by bin per interval) and the dense
 *     path (a per-genome-bin array with a difference array for interior bins);
 *   - every mass computed with the same double operations (integer differences
 *     converted to double, then divided by the double length);
 *   - every sum in the same order as numpy's bincount (sequential, in input order),
 *     elementwise additions and cumsum (sequential);
 * so stored vectors of existing indexes keep matching new queries exactly.
 * The GIL is released while it runs.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

static inline uint64_t splitmix64(uint64_t x)
{
    uint64_t z = x + 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline void add_bin(double *out, int64_t dims, uint64_t salt, uint64_t key, double mass)
{
    uint64_t h = splitmix64(key ^ salt);
    double sign = (h >> 63) ? -1.0 : 1.0;
    out[h % (uint64_t)dims] += sign * mass;
}

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* 0 on success, -1 when out of memory, -2 for a chromosome code without a length */
static int sketch_level(const int32_t *chrom, const int64_t *start, const int64_t *end, int64_t n, int64_t res,
                        int64_t dims, uint64_t salt, const int64_t *lengths, int64_t n_chroms, double *out)
{
    int64_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t last = max64(end[i] - 1, start[i]);
        total += last / res - start[i] / res + 1;
    }
    int64_t genome_bins = 0;
    if (lengths != NULL) {
        int64_t sum = 0;
        for (int64_t c = 0; c < n_chroms; c++)
            sum += lengths[c];
        genome_bins = sum / res + n_chroms;
    }
    int64_t small = max64(4 * n, genome_bins / 2);
    if (lengths == NULL || total <= small) {
        for (int64_t i = 0; i < n; i++) {
            int64_t s = start[i], e = end[i];
            double len = (double)max64(e - s, 1);
            int64_t last = max64(e - 1, s);
            int64_t b0 = s / res, b1 = last / res;
            uint64_t ck = (uint64_t)(int64_t)chrom[i] << 36;
            for (int64_t b = b0; b <= b1; b++) {
                int64_t lo = max64(b * res, s), hi = min64((b + 1) * res, e);
                double mass = e > s ? (double)(hi - lo) / len : 1.0;
                add_bin(out, dims, salt, ck ^ (uint64_t)b, mass);
            }
        }
        return 0;
    }
    for (int64_t i = 0; i < n; i++)
        if (chrom[i] < 0 || chrom[i] >= n_chroms)
            return -2;
    int64_t *offset = malloc((size_t)(n_chroms + 1) * sizeof(int64_t));
    if (offset == NULL)
        return -1;
    offset[0] = 0;
    for (int64_t c = 0; c < n_chroms; c++)
        offset[c + 1] = offset[c] + (lengths[c] + res - 1) / res + 1;
    int64_t m = offset[n_chroms];
    double *a = calloc((size_t)m + 1, sizeof(double)), *b = calloc((size_t)m + 1, sizeof(double));
    double *p = calloc((size_t)m + 1, sizeof(double)), *q = calloc((size_t)m + 1, sizeof(double));
    if (a == NULL || b == NULL || p == NULL || q == NULL) {
        free(offset), free(a), free(b), free(p), free(q);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) { /* first bin of each interval (all of a zero-length one) */
        int64_t s = start[i], e = end[i];
        double len = (double)max64(e - s, 1);
        int64_t b0 = s / res;
        a[offset[chrom[i]] + b0] += e <= s ? 1.0 : (double)(min64(e, (b0 + 1) * res) - s) / len;
    }
    for (int64_t i = 0; i < n; i++) { /* last bin, when it is another */
        int64_t s = start[i], e = end[i];
        int64_t b0 = s / res, b1 = max64(e - 1, s) / res;
        if (b0 != b1)
            b[offset[chrom[i]] + b1] += (double)(e - b1 * res) / (double)max64(e - s, 1);
    }
    for (int64_t i = 0; i < n; i++) { /* interior bins: a difference array of res / length */
        int64_t s = start[i], e = end[i];
        int64_t b0 = s / res, b1 = max64(e - 1, s) / res;
        if (b1 > b0 + 1) {
            double step = (double)res / (double)max64(e - s, 1);
            p[offset[chrom[i]] + b0 + 1] += step;
            q[offset[chrom[i]] + b1] += step;
        }
    }
    double run = 0.0;
    int64_t c = 0;
    for (int64_t j = 0; j < m; j++) {
        run += p[j] - q[j];
        double d = (a[j] + b[j]) + run;
        if (fabs(d) > 1e-15) {
            while (offset[c + 1] <= j)
                c++;
            add_bin(out, dims, salt, ((uint64_t)c << 36) ^ (uint64_t)(j - offset[c]), d);
        }
    }
    free(offset), free(a), free(b), free(p), free(q);
    return 0;
}

PyDoc_STRVAR(sketch_level_doc,
             "sketch_level(chrom, start, end, res, dims, salt, lengths, out) -> None\n\n"
             "Add one resolution's signed bin masses into ``out`` (float64, length dims). ``chrom``\n"
             "int32, ``start``/``end`` int64 (same length, 0 <= start <= end), ``lengths`` int64 chromosome\n"
             "lengths or None (no dense path). Releases the GIL.");

static PyObject *py_sketch_level(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer cb, sb, eb, ob, lb = {0};
    long long res, dims;
    unsigned long long salt;
    PyObject *lengths_obj;
    if (!PyArg_ParseTuple(args, "y*y*y*LLKOw*", &cb, &sb, &eb, &res, &dims, &salt, &lengths_obj, &ob))
        return NULL;
    PyObject *ret = NULL;
    int have_lengths = lengths_obj != Py_None;
    if (have_lengths && PyObject_GetBuffer(lengths_obj, &lb, PyBUF_C_CONTIGUOUS) < 0)
        goto done_noleng;
    int64_t n = cb.len / 4;
    if (cb.len % 4 || sb.len != n * 8 || eb.len != n * 8 || (have_lengths && lb.len % 8)) {
        PyErr_SetString(PyExc_ValueError, "sketch_level(): chrom must be int32 and start/end int64 of one length");
        goto done;
    }
    if (res < 1 || dims < 1 || ob.len != dims * 8) {
        PyErr_SetString(PyExc_ValueError, "sketch_level(): need res >= 1, dims >= 1 and a float64 out of length dims");
        goto done;
    }
    const int64_t *s = sb.buf, *e = eb.buf;
    for (int64_t i = 0; i < n; i++) {
        if (s[i] < 0 || e[i] < s[i]) {
            PyErr_SetString(PyExc_ValueError, "sketch_level(): intervals need 0 <= start <= end");
            goto done;
        }
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = sketch_level(cb.buf, s, e, n, res, dims, salt, have_lengths ? lb.buf : NULL,
                      have_lengths ? lb.len / 8 : 0, ob.buf);
    Py_END_ALLOW_THREADS
    if (rc == -1)
        PyErr_NoMemory();
    else if (rc == -2)
        PyErr_SetString(PyExc_ValueError, "sketch_level(): a chromosome code has no length");
    else
        ret = Py_NewRef(Py_None);
done:
    if (have_lengths)
        PyBuffer_Release(&lb);
done_noleng:
    PyBuffer_Release(&cb), PyBuffer_Release(&sb), PyBuffer_Release(&eb), PyBuffer_Release(&ob);
    return ret;
}

static PyMethodDef methods[] = {
    {"sketch_level", py_sketch_level, METH_VARARGS, sketch_level_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "gidx._sketch", "Compiled kernel of gidx.sketch (one resolution of the position sketch).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sketch(void) { return PyModuleDef_Init(&moduledef); }
