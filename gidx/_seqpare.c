/* gidx._seqpare: the kernels of gidx/seqpare.py (joins, deferred-acceptance matching,
 * teo sums), compiled ahead of time so that a query process imports them in about a
 * millisecond (no JIT import or compile on the query path).
 *
 * The conventions (J in float32, tie rules, teo summed in target order) are those of
 * gidx/seqpare.py's module docstring; this file must reproduce them bit for bit:
 *   - J and teo use `float` arithmetic only, and the build passes -ffp-contract=off
 *     (never -ffast-math), so every float32 operation is rounded as written;
 *   - the order of every float32 sum and of every tie-breaking comparison is the
 *     one of the former numba kernels.
 *
 * Arrays come in through the buffer protocol (C-contiguous, with their format, no
 * numpy headers); dtypes, dimensions and lengths are checked, and index values read
 * from the arrays are checked where they are used, so a wrong call raises TypeError
 * or ValueError instead of reading or writing out of bounds. Python allocates the
 * outputs it can size (tc and the teo tallies); the variable-length list of targets
 * taken comes back as bytes (int64). The GIL is released while a kernel runs: the
 * only memory several threads may share is the caller's held_j/held_p scratch, and
 * concurrent workers of one search touch disjoint targets of it.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TILE 64       /* queries per tile of the class join */
#define INIT_CAP 4096 /* first size of the growing pair and touched buffers */

typedef enum { E_OK = 0, E_NOMEM, E_VALUE } err_t;

/* message of the last E_VALUE of a kernel (a static string; set without the GIL) */
typedef struct {
    const char *msg;
} Err;

static err_t value_error(Err *e, const char *msg)
{
    e->msg = msg;
    return E_VALUE;
}

/* ------------------------------------------------------------------------- */
/* small helpers                                                              */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* A pair matches only if its float32 J is strictly above this: float32(1e-7), the
 * double 1e-7 rounded to float as numpy does. */
static const double ACCEPT_J_DOUBLE = 1e-7;
#define ACCEPT_J ((float)ACCEPT_J_DOUBLE)

/* float32 J of two overlapping intervals, operation for operation as the reference:
 * the three integer lengths converted to float32, (|q| + |t|) - |q^t| in float32, then
 * a float32 division. */
static inline float jaccard32(int64_t qs, int64_t qe, int64_t ts, int64_t te)
{
    float inter = (float)(min64(qe, te) - max64(qs, ts));
    float sum = (float)(qe - qs) + (float)(te - ts);
    float denom = sum - inter;
    return inter / denom;
}

/* First index in sorted a[lo:hi] whose value is > key (hi if none). */
static inline int64_t first_greater(const int64_t *a, int64_t lo, int64_t hi, int64_t key)
{
    while (lo < hi) {
        int64_t mid = (lo + hi) >> 1;
        if (a[mid] <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index >= p in sorted a[:hi] whose value is > key: a few linear steps, then
 * galloping, so long jumps cost log(distance). */
static inline int64_t advance(const int64_t *a, int64_t p, int64_t hi, int64_t key)
{
    for (int i = 0; i < 8; i++) {
        if (p >= hi || a[p] > key)
            return p;
        p++;
    }
    int64_t step = 8;
    while (p + step < hi && a[p + step] <= key)
        step <<= 1;
    return first_greater(a, p, min64(p + step, hi), key);
}

/* Grow *buf (elements of size elem, capacity *cap) to hold at least need elements. */
static int grow_buf(void **buf, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    int64_t n = max64(2 * *cap, need);
    if ((uint64_t)n > SIZE_MAX / elem)
        return -1;
    void *p = realloc(*buf, (size_t)n * elem);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* growing buffers of one join's acceptable pairs                             */

typedef struct {
    int64_t *pos;  /* target position (record layout) */
    int32_t *rec;  /* record */
    float *j;      /* J */
    int32_t *next; /* circular chain of one query's pairs with one record */
    int64_t cap;
} Pairs;

static void pairs_free(Pairs *P)
{
    free(P->pos);
    free(P->rec);
    free(P->j);
    free(P->next);
    P->pos = NULL;
    P->rec = NULL;
    P->j = NULL;
    P->next = NULL;
    P->cap = 0;
}

static err_t pairs_init(Pairs *P)
{
    P->cap = INIT_CAP;
    P->pos = malloc(INIT_CAP * sizeof(int64_t));
    P->rec = malloc(INIT_CAP * sizeof(int32_t));
    P->j = malloc(INIT_CAP * sizeof(float));
    P->next = malloc(INIT_CAP * sizeof(int32_t));
    if (!P->pos || !P->rec || !P->j || !P->next) {
        pairs_free(P);
        return E_NOMEM;
    }
    return E_OK;
}

/* room for at least need pairs; pair indices live in int32 arrays (held_p, next) */
static err_t pairs_reserve(Pairs *P, int64_t need, Err *e)
{
    if (need <= P->cap)
        return E_OK;
    if (need > INT32_MAX)
        return value_error(e, "more than 2^31 acceptable pairs in one chromosome or record");
    int64_t n = max64(2 * P->cap, need);
    if (n > INT32_MAX)
        n = INT32_MAX;
    void *a = realloc(P->pos, (size_t)n * sizeof(int64_t));
    if (!a)
        return E_NOMEM;
    P->pos = a;
    a = realloc(P->rec, (size_t)n * sizeof(int32_t));
    if (!a)
        return E_NOMEM;
    P->rec = a;
    a = realloc(P->j, (size_t)n * sizeof(float));
    if (!a)
        return E_NOMEM;
    P->j = a;
    a = realloc(P->next, (size_t)n * sizeof(int32_t));
    if (!a)
        return E_NOMEM;
    P->next = a;
    P->cap = n;
    return E_OK;
}

/* ------------------------------------------------------------------------- */
/* matching                                                                   */

/* Per-record matching scratch (best_p is -2 between uses) and the teo tallies (the
 * caller's arrays: count 0, min INT64_MAX, max -1 at the start). */
typedef struct {
    int64_t *best_p, *best_t, *first_p, *last_p, *seen;
    float *best_j;
    int64_t *count, *min, *max;
} State;

static void state_free(State *s)
{
    free(s->best_p);
    free(s->best_t);
    free(s->first_p);
    free(s->last_p);
    free(s->seen);
    free(s->best_j);
}

static err_t state_init(State *s, int64_t n_rec, int64_t *count, int64_t *mn, int64_t *mx)
{
    size_t n = (size_t)n_rec + 1; /* never malloc(0) */
    s->best_p = malloc(n * sizeof(int64_t));
    s->best_t = malloc(n * sizeof(int64_t));
    s->first_p = malloc(n * sizeof(int64_t));
    s->last_p = malloc(n * sizeof(int64_t));
    s->seen = malloc(n * sizeof(int64_t));
    s->best_j = malloc(n * sizeof(float));
    s->count = count;
    s->min = mn;
    s->max = mx;
    if (!s->best_p || !s->best_t || !s->first_p || !s->last_p || !s->seen || !s->best_j) {
        state_free(s);
        memset(s, 0, sizeof(*s));
        return E_NOMEM;
    }
    for (int64_t r = 0; r < n_rec; r++)
        s->best_p[r] = -2;
    return E_OK;
}

/* Best pair on the circular chain through pair `start` (one query's pairs with one
 * record): the largest J among targets that are free or held with a strictly smaller
 * J; equal J: the later target in target order (larger start, then later line), which
 * the reference's descending scan meets first. -1 if none. */
static int64_t best_in_chain(int64_t start, const Pairs *P, const float *held_j)
{
    int64_t best = -1, best_t = -1;
    float best_j = 0.0f;
    int64_t p = start;
    for (;;) {
        float j = P->j[p];
        int64_t t = P->pos[p];
        if (j > best_j || (j == best_j && t > best_t)) {
            float h = held_j[t];
            if (h == 0 || j > h) {
                best = p;
                best_t = t;
                best_j = j;
            }
        }
        p = P->next[p];
        if (p == start)
            return best;
    }
}

/* Deferred-acceptance matching, all records at once (they are independent).
 *
 * Run x holds the acceptable pairs of one query, [run_off[x], run_off[x+1]); runs of a
 * chromosome are in processing order. held_j[t] (0 = free; accepted J are > 0) and
 * held_p[t] (the holding pair) say what target t holds. P->next links each query's
 * pairs with one record into a circular chain, so a displaced query looks again at its
 * own candidates in that record only. Targets taken for the first time go to touched
 * (the caller makes room for one per pair). */
static err_t match_runs(const int64_t *run_off, int64_t n_runs, int64_t n_pairs, Pairs *P, float *held_j,
                        int32_t *held_p, State *st, int64_t *touched, int64_t *n_touched, Err *e)
{
    int64_t nt = *n_touched;
    for (int64_t x = 0; x < n_runs; x++) {
        /* each record's best target for this query, in one pass (rule of best_in_chain) */
        int64_t n_seen = 0;
        for (int64_t p = run_off[x]; p < run_off[x + 1]; p++) {
            int64_t r = P->rec[p];
            if (st->best_p[r] == -2) {
                st->seen[n_seen++] = r;
                st->best_p[r] = -1;
                st->best_t[r] = -1;
                st->best_j[r] = 0.0f;
                st->first_p[r] = p;
            } else {
                P->next[st->last_p[r]] = (int32_t)p;
            }
            st->last_p[r] = p;
            float j = P->j[p];
            int64_t t = P->pos[p];
            if (j > st->best_j[r] || (j == st->best_j[r] && t > st->best_t[r])) {
                float h = held_j[t];
                if (h == 0 || j > h) {
                    st->best_p[r] = p;
                    st->best_t[r] = t;
                    st->best_j[r] = j;
                }
            }
        }
        for (int64_t s = 0; s < n_seen; s++) {
            int64_t r = st->seen[s];
            P->next[st->last_p[r]] = (int32_t)st->first_p[r];
            int64_t p = st->best_p[r];
            st->best_p[r] = -2;
            while (p >= 0) { /* p's query takes p's target; a query it displaces looks again */
                int64_t t = P->pos[p];
                int64_t displaced = -1;
                if (held_j[t] == 0) {
                    touched[nt++] = t;
                    st->count[r] += 1;
                    if (t < st->min[r])
                        st->min[r] = t;
                    if (t > st->max[r])
                        st->max[r] = t;
                } else {
                    displaced = held_p[t];
                    if (displaced < 0 || displaced >= n_pairs) {
                        *n_touched = nt;
                        return value_error(e, "held_j/held_p scratch was not all zero at the start of the search");
                    }
                }
                held_j[t] = P->j[p];
                held_p[t] = (int32_t)p;
                if (displaced < 0)
                    break;
                p = best_in_chain(displaced, P, held_j);
            }
        }
    }
    *n_touched = nt;
    return E_OK;
}

/* ------------------------------------------------------------------------- */
/* class join                                                                 */

typedef struct {
    const int64_t *runs; /* (n_runs, 2): first rank, end rank */
    int64_t n_runs;
    const int32_t *q_chrom;
    const int64_t *q_start, *q_end;
    int64_t n_q;
    const int64_t *chrom_blk_lo, *chrom_blk_hi;
    int64_t n_codes;
    const int64_t *blk_off, *blk_maxlen;
    int64_t n_blocks;
    const int64_t *t_start, *t_end;
    const int32_t *t_rec;
    const int64_t *t_pos;
    int64_t n_cls;
    const uint8_t *rec_ok;
    int64_t n_rec;
    float *held_j;
    int32_t *held_p;
    int64_t n_held;
    int64_t *tc, *st_count, *st_min, *st_max;
} ClassArgs;

static err_t class_check(const ClassArgs *A, Err *e)
{
    for (int64_t ri = 0; ri < A->n_runs; ri++) {
        int64_t i = A->runs[2 * ri], end = A->runs[2 * ri + 1];
        if (i < 0 || i > end || end > A->n_q)
            return value_error(e, "runs: a run outside the query");
    }
    for (int64_t c = 0; c < A->n_codes; c++) {
        if (A->chrom_blk_lo[c] < 0 || A->chrom_blk_lo[c] > A->chrom_blk_hi[c] || A->chrom_blk_hi[c] > A->n_blocks)
            return value_error(e, "chrom_blk_lo/chrom_blk_hi: a block range outside the blocks");
    }
    if (A->blk_off[0] < 0 || A->blk_off[A->n_blocks] > A->n_cls)
        return value_error(e, "blk_off: offsets outside the class layout");
    for (int64_t b = 0; b < A->n_blocks; b++) {
        if (A->blk_off[b] > A->blk_off[b + 1])
            return value_error(e, "blk_off: offsets must not decrease");
    }
    return E_OK;
}

/* Acceptable pairs of the queries [ta, tb) with the length-class blocks [b0, b1) of
 * their chromosome, appended per query as runs; overlapping pairs are counted into tc.
 * The tile's candidates in a block lie in one window (start in (first query start -
 * maxlen, largest end)); only blocks whose window is not empty are visited, and each
 * query scans its part of the window. */
static err_t join_tile(const ClassArgs *A, int64_t ta, int64_t tb, int64_t b0, int64_t b1, int64_t *ptr,
                       int64_t *act_b, int64_t *act_p, Pairs *P, int64_t *n_pairs, int64_t *n_runs,
                       int64_t *run_off, Err *e)
{
    const int64_t *q_start = A->q_start, *q_end = A->q_end, *blk_off = A->blk_off, *blk_maxlen = A->blk_maxlen;
    const int64_t *t_start = A->t_start, *t_end = A->t_end, *t_pos = A->t_pos;
    const int32_t *t_rec = A->t_rec;
    const uint8_t *rec_ok = A->rec_ok;
    int64_t *tc = A->tc;
    const int64_t n_rec = A->n_rec, n_held = A->n_held;

    int64_t e_max = q_end[ta];
    for (int64_t k = ta + 1; k < tb; k++)
        e_max = max64(e_max, q_end[k]);
    int64_t n_act = 0;
    for (int64_t b = b0; b < b1; b++) {
        int64_t hi = blk_off[b + 1];
        int64_t p = advance(t_start, ptr[b], hi, q_start[ta] - blk_maxlen[b]);
        ptr[b] = p; /* no later query can overlap the targets before p */
        if (p < hi && t_start[p] < e_max) {
            act_b[n_act] = b;
            act_p[n_act] = p;
            n_act++;
        }
    }
    if (n_act == 0)
        return E_OK;
    int64_t n = *n_pairs, runs = *n_runs;
    err_t err;
    for (int64_t k = ta; k < tb; k++) {
        int64_t qs = q_start[k], qe = q_end[k];
        int64_t n_before = n;
        for (int64_t a = 0; a < n_act; a++) {
            int64_t b = act_b[a];
            int64_t hi = blk_off[b + 1];
            int64_t p = advance(t_start, act_p[a], hi, qs - blk_maxlen[b]);
            act_p[a] = p;
            while (p < hi && t_start[p] < qe) {
                int64_t te = t_end[p];
                if (te > qs) {
                    int64_t r = t_rec[p];
                    if (r < 0 || r >= n_rec) {
                        *n_pairs = n;
                        *n_runs = runs;
                        return value_error(e, "t_rec: a record index out of range");
                    }
                    if (rec_ok[r]) {
                        tc[r] += 1;
                        float j = jaccard32(qs, qe, t_start[p], te);
                        if (j > ACCEPT_J) {
                            int64_t tp = t_pos[p];
                            if (tp < 0 || tp >= n_held) {
                                *n_pairs = n;
                                *n_runs = runs;
                                return value_error(e, "t_pos: a target position out of range");
                            }
                            if (n >= P->cap && (err = pairs_reserve(P, n + 1, e)) != E_OK) {
                                *n_pairs = n;
                                *n_runs = runs;
                                return err;
                            }
                            P->pos[n] = tp;
                            P->rec[n] = (int32_t)r;
                            P->j[n] = j;
                            n++;
                        }
                    }
                }
                p++;
            }
        }
        if (n > n_before) {
            runs++;
            run_off[runs] = n;
        }
    }
    *n_pairs = n;
    *n_runs = runs;
    return E_OK;
}

/* Join (join_tile, tile by tile) and match the query chromosome runs. Fills tc and
 * the tallies; *touched (malloc'ed, the caller frees it) gets the targets taken. */
static err_t class_worker_c(const ClassArgs *A, int64_t **touched_out, int64_t *n_touched_out, Err *e)
{
    err_t err = class_check(A, e);
    if (err != E_OK)
        return err;
    State st;
    Pairs P;
    memset(&st, 0, sizeof(st));
    memset(&P, 0, sizeof(P));
    int64_t *touched = NULL, *run_off = NULL, *ptr = NULL, *act_b = NULL, *act_p = NULL;
    int64_t touched_cap = INIT_CAP, n_touched = 0;

    int64_t max_run = 1;
    for (int64_t ri = 0; ri < A->n_runs; ri++)
        max_run = max64(max_run, A->runs[2 * ri + 1] - A->runs[2 * ri]);

    if ((err = state_init(&st, A->n_rec, A->st_count, A->st_min, A->st_max)) != E_OK)
        goto done;
    if ((err = pairs_init(&P)) != E_OK)
        goto done;
    touched = malloc(INIT_CAP * sizeof(int64_t));
    run_off = malloc((size_t)(max_run + 1) * sizeof(int64_t));
    ptr = malloc((size_t)(A->n_blocks + 1) * sizeof(int64_t));
    act_b = malloc((size_t)(A->n_blocks + 1) * sizeof(int64_t));
    act_p = malloc((size_t)(A->n_blocks + 1) * sizeof(int64_t));
    if (!touched || !run_off || !ptr || !act_b || !act_p) {
        err = E_NOMEM;
        goto done;
    }

    for (int64_t ri = 0; ri < A->n_runs; ri++) {
        int64_t i = A->runs[2 * ri], run_end = A->runs[2 * ri + 1];
        if (i >= run_end)
            continue;
        int64_t c = A->q_chrom[i];
        if (c < 0 || c >= A->n_codes || A->chrom_blk_lo[c] == A->chrom_blk_hi[c])
            continue;
        int64_t b0 = A->chrom_blk_lo[c], b1 = A->chrom_blk_hi[c];
        for (int64_t b = b0; b < b1; b++)
            ptr[b] = A->blk_off[b];
        int64_t n_pairs = 0, n_runs = 0;
        run_off[0] = 0;
        for (int64_t ta = i; ta < run_end; ta += TILE) {
            int64_t tb = min64(ta + TILE, run_end);
            if ((err = join_tile(A, ta, tb, b0, b1, ptr, act_b, act_p, &P, &n_pairs, &n_runs, run_off, e)) != E_OK)
                goto done;
        }
        if (grow_buf((void **)&touched, &touched_cap, n_touched + n_pairs, sizeof(int64_t)) < 0) {
            err = E_NOMEM;
            goto done;
        }
        if ((err = match_runs(run_off, n_runs, n_pairs, &P, A->held_j, A->held_p, &st, touched, &n_touched, e))
            != E_OK)
            goto done;
    }

done:
    state_free(&st);
    pairs_free(&P);
    free(run_off);
    free(ptr);
    free(act_b);
    free(act_p);
    if (err != E_OK) {
        free(touched);
        touched = NULL;
        n_touched = 0;
    }
    *touched_out = touched;
    *n_touched_out = n_touched;
    return err;
}

/* ------------------------------------------------------------------------- */
/* sweep join                                                                 */

typedef struct {
    const int64_t *recs;
    int64_t n_recs;
    const int64_t *rec_off;
    int64_t n_rec;
    const int32_t *t_chrom;
    const int64_t *t_start, *t_end;
    int64_t n_t;
    const int64_t *q_start, *q_end;
    int64_t n_q;
    const int64_t *q_run_lo, *q_run_hi, *q_maxlen;
    int64_t n_codes;
    float *held_j;
    int32_t *held_p;
    int64_t *tc, *st_count, *st_min, *st_max;
} SweepArgs;

static err_t sweep_check(const SweepArgs *A, Err *e)
{
    for (int64_t x = 0; x < A->n_recs; x++) {
        int64_t r = A->recs[x];
        if (r < 0 || r >= A->n_rec)
            return value_error(e, "recs: a record index out of range");
        if (A->rec_off[r] < 0 || A->rec_off[r] > A->rec_off[r + 1] || A->rec_off[r + 1] > A->n_t)
            return value_error(e, "rec_off: a record's offsets outside the record layout");
    }
    for (int64_t c = 0; c < A->n_codes; c++) {
        if (A->q_run_lo[c] < 0 || A->q_run_lo[c] > A->q_run_hi[c] || A->q_run_hi[c] > A->n_q)
            return value_error(e, "q_run_lo/q_run_hi: a run outside the query");
    }
    return E_OK;
}

/* Acceptable pairs of the record at positions [a, b) with the query, by a sweep.
 *
 * q_run_lo[c]:q_run_hi[c] is the query's run on chromosome code c, q_maxlen[c] its
 * longest interval. In each of the record's chromosome runs (sorted by start) a query
 * meets the targets that started at or before it and are still open (an active list,
 * pruned as it is scanned) plus the targets starting inside it, so pairs come out per
 * query, as runs. Queries far from any target are skipped by galloping. active has
 * room for the record's longest chromosome run, run_off for run_cap runs. */
static err_t sweep_join(const SweepArgs *A, int64_t a, int64_t b, int64_t *active, Pairs *P, int64_t *run_off,
                        int64_t run_cap, int64_t *n_pairs, int64_t *n_runs_out, int64_t *n_tc_out, Err *e)
{
    const int32_t *t_chrom = A->t_chrom;
    const int64_t *t_start = A->t_start, *t_end = A->t_end, *q_start = A->q_start, *q_end = A->q_end;
    int64_t n = 0, n_runs = 0, n_tc = 0;
    err_t err = E_OK;
    run_off[0] = 0;
    int64_t ta = a;
    while (ta < b) {
        int64_t c = t_chrom[ta];
        int64_t tb = ta;
        while (tb < b && t_chrom[tb] == c)
            tb++;
        if (c >= 0 && c < A->n_codes && A->q_run_lo[c] < A->q_run_hi[c]) {
            int64_t n_active = 0, k = ta;
            int64_t i = A->q_run_lo[c], i_end = A->q_run_hi[c];
            int64_t maxlen = A->q_maxlen[c];
            while (i < i_end) {
                if (n_active == 0) {
                    /* nothing open: skip the queries that end before the next target
                     * starts (a query is at most q_maxlen long) */
                    if (k >= tb)
                        break;
                    int64_t key = t_start[k] - maxlen;
                    if (q_start[i] <= key) {
                        i = advance(q_start, i, i_end, key);
                        if (i >= i_end)
                            break;
                    }
                }
                int64_t qs = q_start[i], qe = q_end[i];
                while (k < tb && t_start[k] <= qs)
                    active[n_active++] = k++;
                int64_t w = 0;
                for (int64_t x = 0; x < n_active; x++) { /* keep the targets still open at qs */
                    int64_t t = active[x];
                    if (t_end[t] > qs)
                        active[w++] = t;
                }
                n_active = w;
                /* candidates: open active targets (start < qe fails only for a
                 * zero-length query at their start), then targets starting in (qs, qe) */
                int64_t n_before = n;
                int64_t x = 0, p = k;
                for (;;) {
                    int64_t t;
                    if (x < n_active) {
                        t = active[x++];
                        if (t_start[t] >= qe)
                            continue;
                    } else if (p < tb && t_start[p] < qe) {
                        t = p++;
                    } else {
                        break;
                    }
                    n_tc++;
                    float j = jaccard32(qs, qe, t_start[t], t_end[t]);
                    if (j > ACCEPT_J) {
                        if (n >= P->cap && (err = pairs_reserve(P, n + 1, e)) != E_OK)
                            goto out;
                        P->pos[n] = t;
                        P->j[n] = j;
                        n++;
                    }
                }
                if (n > n_before) {
                    if (n_runs + 1 >= run_cap) {
                        err = value_error(e, "t_chrom: a record's chromosome in two runs (not in target order)");
                        goto out;
                    }
                    n_runs++;
                    run_off[n_runs] = n;
                }
                i++;
            }
        }
        ta = tb;
    }
out:
    *n_pairs = n;
    *n_runs_out = n_runs;
    *n_tc_out = n_tc;
    return err;
}

/* Join (sweep_join) and match the records recs, one at a time. */
static err_t sweep_worker_c(const SweepArgs *A, int64_t **touched_out, int64_t *n_touched_out, Err *e)
{
    err_t err = sweep_check(A, e);
    if (err != E_OK)
        return err;
    State st;
    Pairs P;
    memset(&st, 0, sizeof(st));
    memset(&P, 0, sizeof(P));
    int64_t *touched = NULL, *run_off = NULL, *active = NULL;
    int64_t touched_cap = INIT_CAP, n_touched = 0;
    int64_t max_nt = 0;
    for (int64_t x = 0; x < A->n_recs; x++) {
        int64_t r = A->recs[x];
        max_nt = max64(max_nt, A->rec_off[r + 1] - A->rec_off[r]);
    }
    int64_t run_cap = A->n_q + 1;

    if ((err = state_init(&st, A->n_rec, A->st_count, A->st_min, A->st_max)) != E_OK)
        goto done;
    if ((err = pairs_init(&P)) != E_OK)
        goto done;
    touched = malloc(INIT_CAP * sizeof(int64_t));
    run_off = malloc((size_t)run_cap * sizeof(int64_t));
    active = malloc((size_t)(max_nt + 1) * sizeof(int64_t));
    if (!touched || !run_off || !active) {
        err = E_NOMEM;
        goto done;
    }
    for (int64_t x = 0; x < A->n_recs; x++) {
        int64_t r = A->recs[x];
        int64_t n = 0, n_runs = 0, n_tc = 0;
        if ((err = sweep_join(A, A->rec_off[r], A->rec_off[r + 1], active, &P, run_off, run_cap, &n, &n_runs,
                              &n_tc, e)) != E_OK)
            goto done;
        for (int64_t p = 0; p < n; p++)
            P.rec[p] = (int32_t)r;
        A->tc[r] = n_tc;
        if (grow_buf((void **)&touched, &touched_cap, n_touched + n, sizeof(int64_t)) < 0) {
            err = E_NOMEM;
            goto done;
        }
        if ((err = match_runs(run_off, n_runs, n, &P, A->held_j, A->held_p, &st, touched, &n_touched, e)) != E_OK)
            goto done;
    }

done:
    state_free(&st);
    pairs_free(&P);
    free(run_off);
    free(active);
    if (err != E_OK) {
        free(touched);
        touched = NULL;
        n_touched = 0;
    }
    *touched_out = touched;
    *n_touched_out = n_touched;
    return err;
}

/* ------------------------------------------------------------------------- */
/* teo sums                                                                   */

/* Sort distinct non-negative keys below key_max ascending (LSD radix, 11-bit digits). */
static err_t sort_positions(int64_t *a, int64_t n, int64_t key_max)
{
    if (n < 2)
        return E_OK;
    if (n <= 32) {
        for (int64_t i = 1; i < n; i++) {
            int64_t v = a[i], k = i;
            while (k > 0 && a[k - 1] > v) {
                a[k] = a[k - 1];
                k--;
            }
            a[k] = v;
        }
        return E_OK;
    }
    int64_t *tmp = malloc((size_t)n * sizeof(int64_t));
    if (!tmp)
        return E_NOMEM;
    int64_t *src = a, *dst = tmp;
    for (int shift = 0; shift < 63 && (key_max >> shift) > 0; shift += 11) {
        int64_t count[2048 + 1];
        memset(count, 0, sizeof(count));
        for (int64_t i = 0; i < n; i++)
            count[((src[i] >> shift) & 2047) + 1]++;
        for (int d = 0; d < 2048; d++)
            count[d + 1] += count[d];
        for (int64_t i = 0; i < n; i++)
            dst[count[(src[i] >> shift) & 2047]++] = src[i];
        int64_t *sw = src;
        src = dst;
        dst = sw;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(int64_t));
    free(tmp);
    return E_OK;
}

/* Per record: teo = sum of held J in target order, in float32 as the reference sums it;
 * clears held_j. Free targets hold 0 and adding 0 leaves a float32 sum unchanged, so a
 * record whose taken targets are dense is summed by scanning its range; sparse ones by
 * sorting their positions. */
static err_t sum_teo_c(float *held_j, int64_t n_held, const int64_t *touched, int64_t n_touched,
                       const int64_t *rec_off, const int64_t *st_count, const int64_t *st_min, const int64_t *st_max,
                       int64_t n_rec, float *teo, Err *e)
{
    for (int64_t r = 0; r < n_rec; r++) {
        if (st_count[r] != 0 && (st_min[r] < 0 || st_min[r] > st_max[r] || st_max[r] >= n_held))
            return value_error(e, "st_min/st_max: a record's range of taken targets outside held_j");
    }
    for (int64_t i = 0; i < n_touched; i++) {
        if (touched[i] < 0 || touched[i] >= n_held)
            return value_error(e, "touched: a target position outside held_j");
    }
    int64_t n_sparse = 0;
    for (int64_t r = 0; r < n_rec; r++) {
        int64_t c = st_count[r];
        if (c == 0)
            continue;
        if (st_max[r] - st_min[r] < 16 * c + 64) {
            float acc = 0.0f;
            for (int64_t t = st_min[r]; t <= st_max[r]; t++) {
                acc += held_j[t];
                held_j[t] = 0;
            }
            teo[r] = acc;
        } else {
            n_sparse += c;
        }
    }
    if (n_sparse == 0)
        return E_OK;
    int64_t *pos = malloc((size_t)n_touched * sizeof(int64_t) + 1);
    if (!pos)
        return E_NOMEM;
    int64_t k = 0;
    for (int64_t i = 0; i < n_touched; i++) {
        if (held_j[touched[i]] != 0) /* dense records are cleared already */
            pos[k++] = touched[i];
    }
    if (sort_positions(pos, k, n_held) != E_OK) {
        free(pos);
        return E_NOMEM;
    }
    int64_t r = 0;
    for (int64_t i = 0; i < k; i++) {
        int64_t t = pos[i];
        while (r < n_rec && rec_off[r + 1] <= t)
            r++;
        if (r >= n_rec) {
            free(pos);
            return value_error(e, "rec_off: a taken target beyond the last record");
        }
        teo[r] += held_j[t];
        held_j[t] = 0;
    }
    free(pos);
    return E_OK;
}

/* ------------------------------------------------------------------------- */
/* argument handling                                                          */

enum { K_I64, K_I32, K_F32, K_BOOL };
static const char *const KIND_NAME[] = {"int64", "int32", "float32", "bool"};

typedef struct {
    const char *name;
    int kind;
    int writable;
    int ndim;
} ArgSpec;

static int format_ok(const Py_buffer *v, int kind)
{
    const char *f = v->format ? v->format : "B";
    const uint16_t one = 1;
    const int little = *(const uint8_t *)&one == 1;
    if (*f == '@' || *f == '=' || (*f == '<' && little))
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    switch (kind) {
    case K_I64:
        return v->itemsize == 8 && strchr("bhilqn", f[0]) != NULL;
    case K_I32:
        return v->itemsize == 4 && strchr("bhilqn", f[0]) != NULL;
    case K_F32:
        return v->itemsize == 4 && f[0] == 'f';
    case K_BOOL:
        return v->itemsize == 1 && f[0] == '?';
    }
    return 0;
}

static void release_all(Py_buffer *views, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        PyBuffer_Release(&views[i]);
}

/* Buffers of all arguments, checked against spec; on failure none is held. */
static int get_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, const ArgSpec *spec, Py_ssize_t n,
                    Py_buffer *views)
{
    if (nargs != n) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fname, n, nargs);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const ArgSpec *s = &spec[i];
        if (!PyObject_CheckBuffer(args[i])) {
            PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must be an array of %s, not %.100s", fname, s->name,
                         KIND_NAME[s->kind], Py_TYPE(args[i])->tp_name);
            release_all(views, i);
            return -1;
        }
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (s->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[i], &views[i], flags) < 0) {
            if (PyErr_ExceptionMatches(PyExc_ValueError) || PyErr_ExceptionMatches(PyExc_BufferError)) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must be a C-contiguous%s %s array", fname,
                             s->name, s->writable ? " writable" : "", KIND_NAME[s->kind]);
            }
            release_all(views, i);
            return -1;
        }
        if (!format_ok(&views[i], s->kind)) {
            PyErr_Format(PyExc_TypeError, "%s(): argument '%s' must have dtype %s (got format '%s', itemsize %zd)",
                         fname, s->name, KIND_NAME[s->kind], views[i].format ? views[i].format : "B",
                         views[i].itemsize);
            release_all(views, i + 1);
            return -1;
        }
        if (views[i].ndim != s->ndim) {
            PyErr_Format(PyExc_ValueError, "%s(): argument '%s' must have %d dimension(s), not %d", fname, s->name,
                         s->ndim, views[i].ndim);
            release_all(views, i + 1);
            return -1;
        }
    }
    return 0;
}

static inline int64_t len0(const Py_buffer *v) { return (int64_t)v->shape[0]; }

/* in a module function: argument i must have length want */
#define LEN(i, want, what) check_len(fn, spec, v, (i), (want), (what))

static int check_len(const char *fname, const ArgSpec *spec, const Py_buffer *views, int i, int64_t want,
                     const char *what)
{
    if (len0(&views[i]) != want) {
        PyErr_Format(PyExc_ValueError, "%s(): argument '%s' has length %lld, expected %lld (%s)", fname,
                     spec[i].name, (long long)len0(&views[i]), (long long)want, what);
        return -1;
    }
    return 0;
}

static PyObject *raise_err(const char *fname, err_t err, const Err *e)
{
    if (err == E_NOMEM)
        return PyErr_NoMemory();
    PyErr_Format(PyExc_ValueError, "%s(): %s", fname, e->msg ? e->msg : "invalid arguments");
    return NULL;
}

static PyObject *touched_bytes(int64_t *touched, int64_t n)
{
    PyObject *out = PyBytes_FromStringAndSize((const char *)touched, (Py_ssize_t)(n * (int64_t)sizeof(int64_t)));
    free(touched);
    return out;
}

/* ------------------------------------------------------------------------- */
/* module functions                                                           */

static const ArgSpec SWEEP_SPEC[] = {
    {"recs", K_I64, 0, 1},     {"rec_off", K_I64, 0, 1},  {"t_chrom", K_I32, 0, 1},   {"t_start", K_I64, 0, 1},
    {"t_end", K_I64, 0, 1},    {"q_start", K_I64, 0, 1},  {"q_end", K_I64, 0, 1},     {"q_run_lo", K_I64, 0, 1},
    {"q_run_hi", K_I64, 0, 1}, {"q_maxlen", K_I64, 0, 1}, {"held_j", K_F32, 1, 1},    {"held_p", K_I32, 1, 1},
    {"tc", K_I64, 1, 1},       {"st_count", K_I64, 1, 1}, {"st_min", K_I64, 1, 1},    {"st_max", K_I64, 1, 1},
};
#define SWEEP_NARGS ((Py_ssize_t)(sizeof(SWEEP_SPEC) / sizeof(SWEEP_SPEC[0])))

PyDoc_STRVAR(sweep_worker_doc,
             "sweep_worker(recs, rec_off, t_chrom, t_start, t_end, q_start, q_end, q_run_lo, q_run_hi, q_maxlen,\n"
             "             held_j, held_p, tc, st_count, st_min, st_max) -> bytes\n\n"
             "Sweep join and matching of the records ``recs`` (record layout: ``rec_off``, ``t_*``) with\n"
             "the query in processing order (``q_*``; ``q_run_lo/hi/maxlen`` by chromosome code).\n"
             "Fills ``tc`` and the tallies (length = records; count 0, min INT64_MAX, max -1 at the\n"
             "start) and returns the positions of the targets taken (int64 bytes). Releases the GIL.");

static PyObject *py_sweep_worker(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const char *fn = "sweep_worker";
    const ArgSpec *spec = SWEEP_SPEC;
    Py_buffer v[SWEEP_NARGS];
    if (get_args(fn, args, nargs, SWEEP_SPEC, SWEEP_NARGS, v) < 0)
        return NULL;
    PyObject *out = NULL;
    SweepArgs A;
    int64_t *touched = NULL, n_touched = 0;
    Err e = {NULL};
    err_t err;
    int64_t n_rec = len0(&v[1]) - 1, n_t = len0(&v[2]), n_q = len0(&v[5]), n_codes = len0(&v[7]);
    if (n_rec < 0 || n_rec > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'rec_off' needs 1 to 2^31 entries", fn);
        goto done;
    }
    if (LEN(3, n_t, "len(t_chrom)") ||
        LEN(4, n_t, "len(t_chrom)") ||
        LEN(6, n_q, "len(q_start)") ||
        LEN(8, n_codes, "len(q_run_lo)") ||
        LEN(9, n_codes, "len(q_run_lo)") ||
        LEN(10, n_t, "len(t_chrom)") ||
        LEN(11, n_t, "len(t_chrom)") ||
        LEN(12, n_rec, "len(rec_off) - 1") ||
        LEN(13, n_rec, "len(rec_off) - 1") ||
        LEN(14, n_rec, "len(rec_off) - 1") ||
        LEN(15, n_rec, "len(rec_off) - 1"))
        goto done;
    A.recs = v[0].buf;
    A.n_recs = len0(&v[0]);
    A.rec_off = v[1].buf;
    A.n_rec = n_rec;
    A.t_chrom = v[2].buf;
    A.t_start = v[3].buf;
    A.t_end = v[4].buf;
    A.n_t = n_t;
    A.q_start = v[5].buf;
    A.q_end = v[6].buf;
    A.n_q = n_q;
    A.q_run_lo = v[7].buf;
    A.q_run_hi = v[8].buf;
    A.q_maxlen = v[9].buf;
    A.n_codes = n_codes;
    A.held_j = v[10].buf;
    A.held_p = v[11].buf;
    A.tc = v[12].buf;
    A.st_count = v[13].buf;
    A.st_min = v[14].buf;
    A.st_max = v[15].buf;

    Py_BEGIN_ALLOW_THREADS
    err = sweep_worker_c(&A, &touched, &n_touched, &e);
    Py_END_ALLOW_THREADS
    if (err != E_OK)
        raise_err(fn, err, &e);
    else
        out = touched_bytes(touched, n_touched);
done:
    release_all(v, SWEEP_NARGS);
    return out;
}

static const ArgSpec CLASS_SPEC[] = {
    {"runs", K_I64, 0, 2},         {"q_chrom", K_I32, 0, 1},     {"q_start", K_I64, 0, 1},
    {"q_end", K_I64, 0, 1},        {"chrom_blk_lo", K_I64, 0, 1}, {"chrom_blk_hi", K_I64, 0, 1},
    {"blk_off", K_I64, 0, 1},      {"blk_maxlen", K_I64, 0, 1},  {"t_start", K_I64, 0, 1},
    {"t_end", K_I64, 0, 1},        {"t_rec", K_I32, 0, 1},       {"t_pos", K_I64, 0, 1},
    {"rec_ok", K_BOOL, 0, 1},      {"held_j", K_F32, 1, 1},      {"held_p", K_I32, 1, 1},
    {"tc", K_I64, 1, 1},           {"st_count", K_I64, 1, 1},    {"st_min", K_I64, 1, 1},
    {"st_max", K_I64, 1, 1},
};
#define CLASS_NARGS ((Py_ssize_t)(sizeof(CLASS_SPEC) / sizeof(CLASS_SPEC[0])))

PyDoc_STRVAR(class_worker_doc,
             "class_worker(runs, q_chrom, q_start, q_end, chrom_blk_lo, chrom_blk_hi, blk_off, blk_maxlen,\n"
             "             t_start, t_end, t_rec, t_pos, rec_ok, held_j, held_p, tc, st_count, st_min, st_max)\n"
             "             -> bytes\n\n"
             "Class join (tile by tile) and matching of the query chromosome runs ``runs`` (rows: first\n"
             "rank, end rank) against the class layout (``blk_*``, ``t_*``; ``t_pos`` = position in the\n"
             "record layout), records with ``rec_ok`` only. Fills ``tc`` and the tallies (length =\n"
             "records; count 0, min INT64_MAX, max -1 at the start) and returns the positions of the\n"
             "targets taken (int64 bytes). Releases the GIL.");

static PyObject *py_class_worker(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const char *fn = "class_worker";
    const ArgSpec *spec = CLASS_SPEC;
    Py_buffer v[CLASS_NARGS];
    if (get_args(fn, args, nargs, CLASS_SPEC, CLASS_NARGS, v) < 0)
        return NULL;
    PyObject *out = NULL;
    ClassArgs A;
    int64_t *touched = NULL, n_touched = 0;
    Err e = {NULL};
    err_t err;
    int64_t n_q = len0(&v[1]), n_codes = len0(&v[4]), n_blocks = len0(&v[7]), n_cls = len0(&v[8]);
    int64_t n_rec = len0(&v[12]), n_held = len0(&v[13]);
    if (v[0].shape[1] != 2) {
        PyErr_Format(PyExc_ValueError, "%s(): argument 'runs' must have 2 columns", fn);
        goto done;
    }
    if (n_rec > INT32_MAX) {
        PyErr_Format(PyExc_ValueError, "%s(): more than 2^31 records", fn);
        goto done;
    }
    if (LEN(2, n_q, "len(q_chrom)") ||
        LEN(3, n_q, "len(q_chrom)") ||
        LEN(5, n_codes, "len(chrom_blk_lo)") ||
        LEN(6, n_blocks + 1, "len(blk_maxlen) + 1") ||
        LEN(9, n_cls, "len(t_start)") ||
        LEN(10, n_cls, "len(t_start)") ||
        LEN(11, n_cls, "len(t_start)") ||
        LEN(14, n_held, "len(held_j)") ||
        LEN(15, n_rec, "len(rec_ok)") ||
        LEN(16, n_rec, "len(rec_ok)") ||
        LEN(17, n_rec, "len(rec_ok)") ||
        LEN(18, n_rec, "len(rec_ok)"))
        goto done;
    A.runs = v[0].buf;
    A.n_runs = len0(&v[0]);
    A.q_chrom = v[1].buf;
    A.q_start = v[2].buf;
    A.q_end = v[3].buf;
    A.n_q = n_q;
    A.chrom_blk_lo = v[4].buf;
    A.chrom_blk_hi = v[5].buf;
    A.n_codes = n_codes;
    A.blk_off = v[6].buf;
    A.blk_maxlen = v[7].buf;
    A.n_blocks = n_blocks;
    A.t_start = v[8].buf;
    A.t_end = v[9].buf;
    A.t_rec = v[10].buf;
    A.t_pos = v[11].buf;
    A.n_cls = n_cls;
    A.rec_ok = v[12].buf;
    A.n_rec = n_rec;
    A.held_j = v[13].buf;
    A.held_p = v[14].buf;
    A.n_held = n_held;
    A.tc = v[15].buf;
    A.st_count = v[16].buf;
    A.st_min = v[17].buf;
    A.st_max = v[18].buf;

    Py_BEGIN_ALLOW_THREADS
    err = class_worker_c(&A, &touched, &n_touched, &e);
    Py_END_ALLOW_THREADS
    if (err != E_OK)
        raise_err(fn, err, &e);
    else
        out = touched_bytes(touched, n_touched);
done:
    release_all(v, CLASS_NARGS);
    return out;
}

static const ArgSpec SUM_SPEC[] = {
    {"held_j", K_F32, 1, 1}, {"touched", K_I64, 0, 1}, {"rec_off", K_I64, 0, 1}, {"st_count", K_I64, 0, 1},
    {"st_min", K_I64, 0, 1}, {"st_max", K_I64, 0, 1},  {"teo", K_F32, 1, 1},
};
#define SUM_NARGS ((Py_ssize_t)(sizeof(SUM_SPEC) / sizeof(SUM_SPEC[0])))

PyDoc_STRVAR(sum_teo_doc,
             "sum_teo(held_j, touched, rec_off, st_count, st_min, st_max, teo) -> None\n\n"
             "Adds each record's held J, in target order and in float32, into ``teo`` (float32, zero at\n"
             "the start, length = records) and clears ``held_j``. Releases the GIL.");

static PyObject *py_sum_teo(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    const char *fn = "sum_teo";
    const ArgSpec *spec = SUM_SPEC;
    Py_buffer v[SUM_NARGS];
    if (get_args(fn, args, nargs, SUM_SPEC, SUM_NARGS, v) < 0)
        return NULL;
    PyObject *out = NULL;
    int64_t n_rec = len0(&v[3]);
    Err e = {NULL};
    err_t err;
    if (LEN(2, n_rec + 1, "len(st_count) + 1") ||
        LEN(4, n_rec, "len(st_count)") ||
        LEN(5, n_rec, "len(st_count)") ||
        LEN(6, n_rec, "len(st_count)"))
        goto done;
    Py_BEGIN_ALLOW_THREADS
    err = sum_teo_c(v[0].buf, len0(&v[0]), v[1].buf, len0(&v[1]), v[2].buf, v[3].buf, v[4].buf, v[5].buf, n_rec,
                    v[6].buf, &e);
    Py_END_ALLOW_THREADS
    if (err != E_OK)
        raise_err(fn, err, &e);
    else
        out = Py_NewRef(Py_None);
done:
    release_all(v, SUM_NARGS);
    return out;
}

static PyMethodDef methods[] = {
    {"sweep_worker", (PyCFunction)(void (*)(void))py_sweep_worker, METH_FASTCALL, sweep_worker_doc},
    {"class_worker", (PyCFunction)(void (*)(void))py_class_worker, METH_FASTCALL, class_worker_doc},
    {"sum_teo", (PyCFunction)(void (*)(void))py_sum_teo, METH_FASTCALL, sum_teo_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(module_doc, "Compiled kernels of gidx.seqpare (sweep and class joins, matching, teo sums).");

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
    PyModuleDef_HEAD_INIT, "gidx._seqpare", module_doc, 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__seqpare(void) { return PyModuleDef_Init(&moduledef); }
