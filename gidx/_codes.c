/* gidx._codes: the scan of gidx.vectors' 1-bit codes (sign bits of a fixed random
 * projection of each stored vector, the SimHash of its direction): Hamming distances
 * of a query's code to every stored code, and the m smallest of them.
 *
 * Distances are uint16 (codes of at most 65,472 bits); a masked-out row (a deleted
 * record, a superseded duplicate) gets SKIP and is never selected. popcount is the
 * POPCNT instruction where the CPU has it (checked at run time: the wheel stays
 * generic x86-64), else the compiler's portable builtin. The GIL is released while
 * it runs.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SKIP 0xFFFF
#define PREFETCH_AHEAD 4 /* dot16: rows fetched this many ahead */

#define HAMMING_BODY                                                                          \
    for (int64_t i = 0; i < n; i++) {                                                         \
        int64_t r = rows ? rows[i] : i;                                                       \
        if (mask && !mask[r]) {                                                               \
            out[i] = SKIP;                                                                    \
            continue;                                                                         \
        }                                                                                     \
        const uint64_t *c = codes + r * stride;                                               \
        unsigned d = 0;                                                                       \
        for (int64_t w = 0; w < words; w++)                                                   \
            d += (unsigned)__builtin_popcountll(c[w] ^ q[w]);                                 \
        out[i] = (uint16_t)d;                                                                 \
    }

static void hamming_portable(const uint64_t *codes, int64_t stride, int64_t n, const uint64_t *q, int64_t words,
                             const uint8_t *mask, const int64_t *rows, uint16_t *out)
{
    HAMMING_BODY
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_POPCNT_PATH 1
__attribute__((target("popcnt"))) static void hamming_popcnt(const uint64_t *codes, int64_t stride, int64_t n,
                                                             const uint64_t *q, int64_t words, const uint8_t *mask,
                                                             const int64_t *rows, uint16_t *out)
{
    HAMMING_BODY
}
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define HAVE_SIMD_PATHS 1
/* 8 words (512 bits) at a time: VPOPCNTQ */
__attribute__((target("avx512f,avx512vpopcntdq"))) static void hamming_avx512(
    const uint64_t *codes, int64_t stride, int64_t n, const uint64_t *q, int64_t words, const uint8_t *mask,
    const int64_t *rows, uint16_t *out)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        if (mask && !mask[r]) {
            out[i] = SKIP;
            continue;
        }
        const uint64_t *c = codes + r * stride;
        __m512i acc = _mm512_setzero_si512();
        for (int64_t w = 0; w < words; w += 8) {
            __m512i x = _mm512_xor_si512(_mm512_loadu_si512((const void *)(c + w)),
                                         _mm512_loadu_si512((const void *)(q + w)));
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(x));
        }
        out[i] = (uint16_t)_mm512_reduce_add_epi64(acc);
    }
}

/* 4 words (256 bits) at a time: nibble lookup (PSHUFB) and byte sums (PSADBW), W. Mula's */
__attribute__((target("avx2"))) static void hamming_avx2(const uint64_t *codes, int64_t stride, int64_t n,
                                                         const uint64_t *q, int64_t words, const uint8_t *mask,
                                                         const int64_t *rows, uint16_t *out)
{
    const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2,
                                         2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = rows ? rows[i] : i;
        if (mask && !mask[r]) {
            out[i] = SKIP;
            continue;
        }
        const uint64_t *c = codes + r * stride;
        __m256i acc = _mm256_setzero_si256();
        for (int64_t w = 0; w < words; w += 4) {
            __m256i x = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(c + w)),
                                         _mm256_loadu_si256((const __m256i *)(q + w)));
            __m256i cnt = _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(x, low)),
                                          _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(x, 4), low)));
            acc = _mm256_add_epi64(acc, _mm256_sad_epu8(cnt, _mm256_setzero_si256()));
        }
        __m128i s = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
        out[i] = (uint16_t)(_mm_cvtsi128_si64(s) + _mm_extract_epi64(s, 1));
    }
}
#endif

/* tests: -1 the CPU's best kernel; 2 / 1 / 0 at most AVX-512 / AVX2 / neither (0 also skips POPCNT) */
static int force_level = -1;

static int simd_level(void) /* 2: AVX-512 VPOPCNTDQ, 1: AVX2, 0: neither */
{
    static int level = -1;
#ifdef HAVE_SIMD_PATHS
    if (level < 0) {
        __builtin_cpu_init();
        level = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq") ? 2
                : __builtin_cpu_supports("avx2")                                                ? 1
                                                                                                : 0;
    }
#else
    level = 0;
#endif
    return level;
}

static void hamming(const uint64_t *codes, int64_t stride, int64_t n, const uint64_t *q, int64_t words,
                    const uint8_t *mask, const int64_t *rows, uint16_t *out)
{
#ifdef HAVE_SIMD_PATHS
    int level = force_level >= 0 ? force_level : simd_level();
    if (level == 2 && words % 8 == 0) {
        hamming_avx512(codes, stride, n, q, words, mask, rows, out);
        return;
    }
    if (level >= 1 && words % 4 == 0) {
        hamming_avx2(codes, stride, n, q, words, mask, rows, out);
        return;
    }
#endif
#ifdef HAVE_POPCNT_PATH
    static int has_popcnt = -1;
    if (has_popcnt < 0) {
        __builtin_cpu_init();
        has_popcnt = __builtin_cpu_supports("popcnt") ? 1 : 0;
    }
    if (has_popcnt && force_level != 0) {
        hamming_popcnt(codes, stride, n, q, words, mask, rows, out);
        return;
    }
#endif
    hamming_portable(codes, stride, n, q, words, mask, rows, out);
}

PyDoc_STRVAR(hamming_doc,
             "hamming(codes, row_words, query, words, out, mask=None, rows=None, hist=None) -> None\n\n"
             "Hamming distances over the first ``words`` uint64 words of each code into ``out``\n"
             "(uint16). ``codes``: C-contiguous rows of ``row_words`` uint64 words; ``query``: at least\n"
             "``words`` words; ``mask``: one byte per code row, 0 = skip (distance 0xFFFF); ``rows``:\n"
             "int64 row numbers to score, in that order (default: every row); ``hist``: int64 (65536)\n"
             "counts per distance, added to (for smallest()). Releases the GIL.");

/* positions i with d[i] < t, ascending, into out (which has room for all of them); returns how many */
static int64_t below_scalar(const uint16_t *d, int64_t n, uint16_t t, int64_t *out)
{
    int64_t got = 0;
    for (int64_t i = 0; i < n; i++) {
        if (d[i] < t)
            out[got++] = i;
    }
    return got;
}

#ifdef HAVE_SIMD_PATHS
/* 16 distances per step: most steps hold none below t (the m smallest of many rows) */
__attribute__((target("avx2"))) static int64_t below_avx2(const uint16_t *d, int64_t n, uint16_t t, int64_t *out)
{
    int64_t got = 0, i = 0;
    if (t == 0)
        return 0;
    const __m256i lim = _mm256_set1_epi16((short)(t - 1));
    for (; i + 16 <= n; i += 16) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(d + i));
        __m256i le = _mm256_cmpeq_epi16(_mm256_min_epu16(x, lim), x); /* x <= t - 1, unsigned */
        if (_mm256_movemask_epi8(le)) {
            for (int64_t j = i; j < i + 16; j++)
                if (d[j] < t)
                    out[got++] = j;
        }
    }
    for (; i < n; i++)
        if (d[i] < t)
            out[got++] = i;
    return got;
}
#endif

static int64_t below_positions(const uint16_t *d, int64_t n, uint16_t t, int64_t *out)
{
#ifdef HAVE_SIMD_PATHS
    int level = force_level >= 0 ? force_level : simd_level();
    if (level >= 1)
        return below_avx2(d, n, t, out);
#endif
    return below_scalar(d, n, t, out);
}

/* hist[d] += 1 for every distance (four interleaved sub-counts measured no faster here) */
static void count(const uint16_t *d, int64_t n, int64_t *hist)
{
    for (int64_t i = 0; i < n; i++)
        hist[d[i]]++;
}

static PyObject *py_hamming(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer cb, qb, ob, mb = {0}, rb = {0}, hb = {0};
    long long row_words, words;
    PyObject *mask_obj = Py_None, *rows_obj = Py_None, *hist_obj = Py_None;
    if (!PyArg_ParseTuple(args, "y*Ly*Lw*|OOO", &cb, &row_words, &qb, &words, &ob, &mask_obj, &rows_obj, &hist_obj))
        return NULL;
    PyObject *ret = NULL;
    int have_mask = mask_obj != Py_None, have_rows = rows_obj != Py_None, have_hist = 0;
    if (hist_obj != Py_None) {
        if (PyObject_GetBuffer(hist_obj, &hb, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) < 0)
            goto done;
        have_hist = 1;
    }
    if (have_mask && PyObject_GetBuffer(mask_obj, &mb, PyBUF_C_CONTIGUOUS) < 0) {
        have_mask = have_rows = 0;
        goto done;
    }
    if (have_rows && PyObject_GetBuffer(rows_obj, &rb, PyBUF_C_CONTIGUOUS) < 0) {
        have_rows = 0;
        goto done;
    }
    if (row_words < 1 || words < 1 || words > row_words || words * 64 >= SKIP || cb.len % (row_words * 8) ||
        qb.len < words * 8) {
        PyErr_SetString(PyExc_ValueError, "hamming(): need 1 <= words <= row_words, codes of whole rows, a query of "
                                          "at least `words` words");
        goto done;
    }
    int64_t n_codes = cb.len / (row_words * 8);
    int64_t n = have_rows ? rb.len / 8 : n_codes;
    if (ob.len != n * 2 || (have_mask && mb.len != n_codes) || (have_rows && rb.len % 8)) {
        PyErr_SetString(PyExc_ValueError, "hamming(): out must be uint16 of one entry per scored row, mask one byte "
                                          "per code row, rows int64");
        goto done;
    }
    const int64_t *rows = have_rows ? rb.buf : NULL;
    for (int64_t i = 0; have_rows && i < n; i++) {
        if (rows[i] < 0 || rows[i] >= n_codes) {
            PyErr_SetString(PyExc_IndexError, "hamming(): a row number is out of range");
            goto done;
        }
    }
    if (have_hist && hb.len != (SKIP + 1) * 8) {
        PyErr_SetString(PyExc_ValueError, "hamming(): hist must be int64 of 65536 entries");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    hamming(cb.buf, row_words, n, qb.buf, words, have_mask ? mb.buf : NULL, rows, ob.buf);
    if (have_hist) /* counts per distance while the distances are in cache (smallest() reuses them) */
        count(ob.buf, n, hb.buf);
    Py_END_ALLOW_THREADS
    ret = Py_NewRef(Py_None);
done:
    if (have_mask)
        PyBuffer_Release(&mb);
    if (have_rows)
        PyBuffer_Release(&rb);
    if (have_hist)
        PyBuffer_Release(&hb);
    PyBuffer_Release(&cb), PyBuffer_Release(&qb), PyBuffer_Release(&ob);
    return ret;
}

PyDoc_STRVAR(smallest_doc,
             "smallest(dist, m, out, hist=None) -> int\n\n"
             "Positions of the ``m`` smallest uint16 distances (0xFFFF never: skipped rows), ties\n"
             "by position, written into ``out`` (int64, at least m) in ascending position order;\n"
             "returns how many (fewer than m when fewer rows are not skipped). One counting pass\n"
             "(none when ``hist``, int64 (65536), already counts ``dist``: hamming() fills it) and one\n"
             "selecting pass. Releases the GIL.");

static PyObject *py_smallest(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer db, ob, hb = {0};
    long long m;
    PyObject *hist_obj = Py_None;
    if (!PyArg_ParseTuple(args, "y*Lw*|O", &db, &m, &ob, &hist_obj))
        return NULL;
    PyObject *ret = NULL;
    int have_hist = 0;
    if (hist_obj != Py_None) {
        if (PyObject_GetBuffer(hist_obj, &hb, PyBUF_C_CONTIGUOUS) < 0)
            goto done;
        have_hist = 1;
        if (hb.len != (SKIP + 1) * 8) {
            PyErr_SetString(PyExc_ValueError, "smallest(): hist must be int64 of 65536 entries");
            goto done;
        }
    }
    if (db.len % 2 || m < 0 || ob.len % 8 || ob.len / 8 < m) {
        PyErr_SetString(PyExc_ValueError, "smallest(): dist must be uint16, out int64 of at least m entries");
        goto done;
    }
    int64_t n = db.len / 2, got = 0;
    const uint16_t *d = db.buf;
    int64_t *out = ob.buf;
    int64_t *hist = have_hist ? hb.buf : calloc(SKIP + 1, sizeof(int64_t));
    if (hist == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    if (!have_hist)
        count(d, n, hist);
    /* threshold t: fewer than m rows below it (`below`), and `room` of the rows at t fit */
    int64_t below = 0, t = 0;
    while (t < SKIP && below + hist[t] < m)
        below += hist[t++];
    int64_t room = t < SKIP ? m - below : 0;
    /* the rows below t, branch-free (out has room: below < m), then the first `room` rows
       at t, merged in position order */
    got = below_positions(d, n, (uint16_t)t, out);
    if (room > 0) {
        int64_t *ties = malloc((size_t)room * sizeof(int64_t)), k = 0;
        if (ties != NULL) {
            for (int64_t i = 0; i < n && k < room; i++)
                if (d[i] == t)
                    ties[k++] = i;
            for (int64_t a = got - 1, b = k - 1, w = got + k - 1; b >= 0; w--) /* merge from the back */
                out[w] = (a >= 0 && out[a] > ties[b]) ? out[a--] : ties[b--];
            got += k;
            free(ties);
        } else {
            got = -1;
        }
    }
    Py_END_ALLOW_THREADS
    if (got < 0) {
        PyErr_NoMemory();
        got = 0;
    }
    if (!have_hist)
        free(hist);
    if (!PyErr_Occurred())
        ret = PyLong_FromLongLong(got);
done:
    if (have_hist)
        PyBuffer_Release(&hb);
    PyBuffer_Release(&db), PyBuffer_Release(&ob);
    return ret;
}


/* ---- dot16: float16 rows . float32 query ---------------------------------------------------- */

static inline float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000 | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void dot16_portable(const uint16_t *rows, int64_t dim, const float *q, const int64_t *idx, int64_t m,
                           float *out, float *sq)
{
    for (int64_t i = 0; i < m; i++) {
        const uint16_t *r = rows + idx[i] * dim;
        float s = 0.0f, n2 = 0.0f;
        for (int64_t j = 0; j < dim; j++) {
            float x = half_to_float(r[j]);
            s += x * q[j];
            n2 += x * x;
        }
        out[i] = s;
        sq[i] = n2;
    }
}

#ifdef HAVE_SIMD_PATHS
#define HAVE_F16C_PATH 1
__attribute__((target("avx2,fma,f16c"))) static inline float hsum256(__m256 v)
{
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s4 = _mm_hadd_ps(s4, s4);
    s4 = _mm_hadd_ps(s4, s4);
    return _mm_cvtss_f32(s4);
}

__attribute__((target("avx2,fma,f16c"))) static void dot16_f16c(const uint16_t *rows, int64_t dim, const float *q,
                                                                 const int64_t *idx, int64_t m, float *out, float *sq)
{
    for (int64_t i = 0; i < m; i++) {
        const uint16_t *r = rows + idx[i] * dim;
        if (i + PREFETCH_AHEAD < m) { /* rows are scattered over the mapping: ask for a later one now */
            const char *next = (const char *)(rows + idx[i + PREFETCH_AHEAD] * dim);
            for (int64_t b = 0; b < dim * 2; b += 64)
                _mm_prefetch(next + b, _MM_HINT_T0);
        }
        __m256 acc = _mm256_setzero_ps(), nrm = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= dim; j += 8) {
            __m256 a = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(r + j)));
            acc = _mm256_fmadd_ps(a, _mm256_loadu_ps(q + j), acc);
            nrm = _mm256_fmadd_ps(a, a, nrm);
        }
        float s = hsum256(acc), n2 = hsum256(nrm);
        for (; j < dim; j++) {
            float x = half_to_float(r[j]);
            s += x * q[j];
            n2 += x * x;
        }
        out[i] = s;
        sq[i] = n2;
    }
}
#endif

PyDoc_STRVAR(dot16_doc,
             "dot16(rows, dim, query, idx, out, sq) -> None\n\n"
             "out[i] = rows[idx[i]] . query and sq[i] = rows[idx[i]] . rows[idx[i]]: ``rows`` C-contiguous\n"
             "float16 (n, dim), ``query`` float32 (dim), ``idx`` int64 row numbers, ``out`` and ``sq``\n"
             "float32 (len(idx)). AVX2/FMA/F16C where the CPU has\n"
             "them, else portable C (sums in another order: results differ in the last bits).\n"
             "Releases the GIL.");

static PyObject *py_dot16(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer rb, qb, ib, ob, sb;
    long long dim;
    if (!PyArg_ParseTuple(args, "y*Ly*y*w*w*", &rb, &dim, &qb, &ib, &ob, &sb))
        return NULL;
    PyObject *ret = NULL;
    if (dim < 1 || rb.len % (dim * 2) || qb.len != dim * 4 || ib.len % 8 || ob.len * 2 != ib.len || sb.len != ob.len) {
        PyErr_SetString(PyExc_ValueError, "dot16(): need float16 rows of dim, a float32 query of dim, int64 idx and "
                                          "a float32 out of its length");
        goto done;
    }
    int64_t n = rb.len / (dim * 2), m = ib.len / 8;
    const int64_t *idx = ib.buf;
    for (int64_t i = 0; i < m; i++) {
        if (idx[i] < 0 || idx[i] >= n) {
            PyErr_SetString(PyExc_IndexError, "dot16(): a row number is out of range");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
#ifdef HAVE_F16C_PATH
    static int fast = -1;
    if (fast < 0) {
        __builtin_cpu_init();
        fast = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    }
    if (fast && force_level != 0)
        dot16_f16c(rb.buf, dim, qb.buf, idx, m, ob.buf, sb.buf);
    else
#endif
        dot16_portable(rb.buf, dim, qb.buf, idx, m, ob.buf, sb.buf);
    Py_END_ALLOW_THREADS
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&rb), PyBuffer_Release(&qb), PyBuffer_Release(&ib), PyBuffer_Release(&ob), PyBuffer_Release(&sb);
    return ret;
}

static PyObject *py_kernel(PyObject *self, PyObject *args)
{
    (void)self;
    int level = -2;
    if (!PyArg_ParseTuple(args, "|i", &level))
        return NULL;
    if (level >= -1 && level <= 2)
        force_level = level;
    int best = simd_level();
    int used = force_level >= 0 && force_level < best ? force_level : best;
    return PyLong_FromLong(used);
}

static PyMethodDef methods[] = {
    {"kernel", py_kernel, METH_VARARGS, "kernel([level]) -> int: the SIMD level hamming() uses (2 AVX-512, 1 AVX2, "
                                        "0 scalar); a level caps it (-1: the CPU's best). For tests."},
    {"hamming", py_hamming, METH_VARARGS, hamming_doc},
    {"smallest", py_smallest, METH_VARARGS, smallest_doc},
    {"dot16", py_dot16, METH_VARARGS, dot16_doc},
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
    PyModuleDef_HEAD_INIT, "gidx._codes", "Compiled kernel of gidx.vectors (Hamming scan of 1-bit codes).",
    0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__codes(void) { return PyModuleDef_Init(&moduledef); }
