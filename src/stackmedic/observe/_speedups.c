/* The hot paths of LatencyTracker and LogSketch in C (optional: _latency.py and
 * _sketch.py fall back to pure Python when this module is not built).
 *
 * Why: `LatencyTracker.record()` must be cheap enough to leave on, and in Python the
 * call, the clock read and the append alone cost about 150 ns of a 200 ns budget before
 * a value is bucketed. Here the whole fast path is one C call:
 *
 *   Recorder(accumulators, slow, clock=None)(operation, seconds, error=False)
 *       looks `operation` up in `accumulators` (a dict of Accumulator), reads the
 *       monotonic clock (time.monotonic's clock, or `clock()` when given), and if the
 *       accumulator's slice has not ended counts the value in it. Anything else (a new
 *       operation, a slice to rotate, keyword arguments) is handed unchanged to `slow`,
 *       the Python method that takes the operation's lock.
 *
 *   Accumulator(slice_end, hi_mask, bits)
 *       the current slice of one operation: the count per bucket key in a growable
 *       open-addressing table (no Python object per value), the sum, max, zeros and
 *       errors; `drain_into(sketch)` hands them to `LogSketch.add_counts` and empties it.
 *
 *   count_into(buckets, values, hi_mask, bits) -> (sum, max, zeros)
 *       LogSketch.add_many: a list of floats bucketed in one call, each distinct key
 *       added to the `buckets` dict once.
 *
 * A key is made from the top bits of the value's double exactly as _sketch.py
 * documents (tests/observe compare the two bucket by bucket). Everything runs under the
 * GIL without running Python code (except `clock`, `slow` and `add_counts`, called
 * after the state they need is taken), so a record never interleaves with a drain and no
 * value or error is lost between threads.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* -------------------------------------------------------------- keys and table */

/* Values outside [2^-31, 2^1009) count as zero, as in _sketch.py (NaN fails both). */
#define VALID(v) ((v) >= 0x1p-31 && (v) < 0x1p1009)

static inline uint32_t
key_of(double value, uint32_t hi_mask, int bits)
{
    uint64_t raw;
    memcpy(&raw, &value, sizeof raw);
    uint32_t hi = (uint32_t)(raw >> 32);
    uint32_t high = hi & hi_mask;  /* b7 and b6 (masked when bits < 4) */
    uint32_t b5 = hi >> 8 & 0xFF;
    if (bits < 12)
        b5 = bits > 4 ? b5 >> (12 - bits) : 0;
    return high | b5 << 8 | (high >> 16 & 0xFF);
}

/* Counts per key, open addressing; key 0 marks an empty slot (no valid value has a
 * key below 0x3E000000). Grows at half full. */
typedef struct {
    uint32_t *keys;
    uint64_t *counts;
    Py_ssize_t capacity;  /* a power of two, or 0 before the first key */
    Py_ssize_t used;
} Table;

static void
table_free(Table *table)
{
    PyMem_Free(table->keys);
    PyMem_Free(table->counts);
    table->keys = NULL;
    table->counts = NULL;
    table->capacity = table->used = 0;
}

static inline Py_ssize_t
table_slot(const Table *table, uint32_t key)
{
    Py_ssize_t mask = table->capacity - 1;
    Py_ssize_t slot = (Py_ssize_t)((key * 2654435761u) & (uint32_t)mask);
    while (table->keys[slot] != 0 && table->keys[slot] != key)
        slot = (slot + 1) & mask;
    return slot;
}

/* Move the table into one of `capacity` slots (a power of two above 2 * used). */
static int
table_resize(Table *table, Py_ssize_t capacity)
{
    Table bigger = {NULL, NULL, capacity, 0};
    bigger.keys = PyMem_Calloc((size_t)bigger.capacity, sizeof(uint32_t));
    bigger.counts = PyMem_Calloc((size_t)bigger.capacity, sizeof(uint64_t));
    if (bigger.keys == NULL || bigger.counts == NULL) {
        table_free(&bigger);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < table->capacity; i++) {
        if (table->keys[i] != 0) {
            Py_ssize_t slot = table_slot(&bigger, table->keys[i]);
            bigger.keys[slot] = table->keys[i];
            bigger.counts[slot] = table->counts[i];
            bigger.used++;
        }
    }
    table_free(table);
    *table = bigger;
    return 0;
}

static inline int
table_count(Table *table, uint32_t key)
{
    if (2 * (table->used + 1) > table->capacity
            && table_resize(table, table->capacity ? 2 * table->capacity : 64) < 0)
        return -1;
    Py_ssize_t slot = table_slot(table, key);
    if (table->keys[slot] == 0) {
        table->keys[slot] = key;
        table->used++;
    }
    table->counts[slot]++;
    return 0;
}

/* Add every count to the dict `buckets` (int key -> int count); the table is kept. */
static int
table_add_to(const Table *table, PyObject *buckets)
{
    for (Py_ssize_t i = 0; i < table->capacity; i++) {
        if (table->keys[i] == 0)
            continue;
        PyObject *key = PyLong_FromUnsignedLong(table->keys[i]);
        if (key == NULL)
            return -1;
        PyObject *count = PyLong_FromUnsignedLongLong(table->counts[i]);
        PyObject *old = count == NULL ? NULL : PyDict_GetItemWithError(buckets, key);
        PyObject *total = NULL;
        if (old != NULL) {
            /* Python ints, as `buckets[key] += n`: a count is not capped at 2^64
             * (from_dict takes any), and `old` is held while adding. */
            Py_INCREF(old);
            total = PyNumber_Add(old, count);
            Py_DECREF(old);
        }
        else if (count != NULL && !PyErr_Occurred())
            total = Py_NewRef(count);
        int status = total == NULL ? -1 : PyDict_SetItem(buckets, key, total);
        Py_XDECREF(total);
        Py_XDECREF(count);
        Py_DECREF(key);
        if (status < 0)
            return -1;
    }
    return 0;
}

/* What a batch or a slice adds to a sketch besides its bucket counts. */
typedef struct {
    double sum;
    double max;
    Py_ssize_t zeros;
} Totals;

static inline int
count_value(Table *table, Totals *totals, double value, uint32_t hi_mask, int bits)
{
    if (!VALID(value)) {
        totals->zeros++;
        return 0;
    }
    if (table_count(table, key_of(value, hi_mask, bits)) < 0)
        return -1;
    totals->sum += value;
    if (value > totals->max)
        totals->max = value;
    return 0;
}

static int
parse_layout(PyObject *hi_mask_obj, PyObject *bits_obj, uint32_t *hi_mask, int *bits)
{
    unsigned long mask = PyLong_AsUnsignedLong(hi_mask_obj);
    long nbits = PyLong_AsLong(bits_obj);
    if (PyErr_Occurred())
        return -1;
    /* The mask LogSketch makes for `bits` (its key_layout): b7 whole, so that no valid
     * value has key 0 (the table's empty slot), and b6 masked below 4 bits. */
    if (nbits < 1 || nbits > 12
            || mask != (0xFF000000ul | ((0xFFul << (nbits < 4 ? 4 - nbits : 0)) & 0xFF) << 16)) {
        PyErr_SetString(PyExc_ValueError,
                        "key layout: bits must be 1..12 and hi_mask LogSketch's for them");
        return -1;
    }
    *hi_mask = (uint32_t)mask;
    *bits = (int)nbits;
    return 0;
}

/* ---------------------------------------------------------------- Accumulator */

typedef struct {
    PyObject_HEAD
    double slice_end;   /* values recorded at or after this go through the slow path */
    uint32_t hi_mask;
    int bits;
    Table table;
    Totals totals;
    Py_ssize_t count;   /* values counted since the last drain, zeros included */
    Py_ssize_t errors;
} Accumulator;

static PyTypeObject AccumulatorType;

/* In tp_new, not tp_init: an Accumulator made by __new__ alone would have no layout
 * (every key 0, the empty slot: values silently lost), and __init__ called again
 * would change the layout under the keys already counted. */
static PyObject *
accumulator_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"slice_end", "hi_mask", "bits", NULL};
    double slice_end;
    PyObject *hi_mask_obj, *bits_obj;
    uint32_t hi_mask;
    int bits;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "dOO:Accumulator", kwlist,
                                     &slice_end, &hi_mask_obj, &bits_obj)
            || parse_layout(hi_mask_obj, bits_obj, &hi_mask, &bits) < 0)
        return NULL;
    Accumulator *self = (Accumulator *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->slice_end = slice_end;
    self->hi_mask = hi_mask;
    self->bits = bits;
    return (PyObject *)self;
}

static void
accumulator_dealloc(Accumulator *self)
{
    table_free(&self->table);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static Py_ssize_t
accumulator_len(Accumulator *self)
{
    return self->count;
}

static inline int
accumulator_count(Accumulator *self, double seconds, int error)
{
    if (count_value(&self->table, &self->totals, seconds, self->hi_mask, self->bits) < 0)
        return -1;
    self->count++;
    self->errors += error;
    return 0;
}

static PyObject *
accumulator_add(Accumulator *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "add(seconds, error=False)");
        return NULL;
    }
    double seconds = PyFloat_AsDouble(args[0]);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    int error = nargs == 2 ? PyObject_IsTrue(args[1]) : 0;
    if (error < 0 || accumulator_count(self, seconds, error) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
accumulator_drain_into(Accumulator *self, PyObject *sketch)
{
    /* Everything is taken before add_counts runs Python code, during which other
     * threads may record into the emptied accumulator. */
    PyObject *add_counts = PyObject_GetAttrString(sketch, "add_counts");
    if (add_counts == NULL)
        return NULL;  /* not a sketch: nothing is taken */
    PyObject *counts = PyDict_New();
    if (counts == NULL || table_add_to(&self->table, counts) < 0) {
        Py_XDECREF(counts);
        Py_DECREF(add_counts);
        return NULL;
    }
    Totals totals = self->totals;
    Py_ssize_t errors = self->errors;
    if (self->table.capacity) {
        memset(self->table.keys, 0, (size_t)self->table.capacity * sizeof(uint32_t));
        memset(self->table.counts, 0, (size_t)self->table.capacity * sizeof(uint64_t));
        self->table.used = 0;
    }
    self->totals = (Totals){0.0, 0.0, 0};
    self->count = 0;
    self->errors = 0;
    PyObject *done = PyObject_CallFunction(add_counts, "Oddn", counts, totals.sum,
                                           totals.max, totals.zeros);
    Py_DECREF(add_counts);
    Py_DECREF(counts);
    if (done == NULL)
        return NULL;
    Py_DECREF(done);
    return PyLong_FromSsize_t(errors);
}

static PyMethodDef accumulator_methods[] = {
    {"add", (PyCFunction)(void (*)(void))accumulator_add, METH_FASTCALL,
     "add(seconds, error=False): count one value."},
    {"drain_into", (PyCFunction)accumulator_drain_into, METH_O,
     "drain_into(sketch) -> errors: add the counts to `sketch`, return the errors, empty."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef accumulator_members[] = {
    {"slice_end", T_DOUBLE, offsetof(Accumulator, slice_end), 0,
     "Values recorded at or after this clock reading take the slow path."},
    {NULL, 0, 0, 0, NULL},
};

static PySequenceMethods accumulator_as_sequence = {
    .sq_length = (lenfunc)accumulator_len,
};

static PyTypeObject AccumulatorType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stackmedic.observe._speedups.Accumulator",
    .tp_doc = "Accumulator(slice_end, hi_mask, bits): one operation's current slice.",
    .tp_basicsize = sizeof(Accumulator),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = accumulator_new,
    .tp_dealloc = (destructor)accumulator_dealloc,
    .tp_methods = accumulator_methods,
    .tp_members = accumulator_members,
    .tp_as_sequence = &accumulator_as_sequence,
};

/* ------------------------------------------------------------------- Recorder */

typedef struct {
    PyObject_HEAD
    PyObject *accumulators;  /* dict: operation -> Accumulator */
    PyObject *slow;          /* callable(operation, seconds, error=False) */
    PyObject *clock;         /* callable() -> float, or NULL for CLOCK_MONOTONIC */
    vectorcallfunc vectorcall;
} Recorder;

static PyTypeObject RecorderType;

static int
recorder_traverse(Recorder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->accumulators);
    Py_VISIT(self->slow);
    Py_VISIT(self->clock);
    return 0;
}

static int
recorder_clear(Recorder *self)
{
    Py_CLEAR(self->accumulators);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->clock);
    return 0;
}

static void
recorder_dealloc(Recorder *self)
{
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Read the clock; returns -1 with an exception set on failure. */
static int
recorder_now(Recorder *self, double *now)
{
    if (self->clock == NULL) {
        struct timespec ts;
        if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        *now = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
        return 0;
    }
    PyObject *reading = PyObject_CallNoArgs(self->clock);
    if (reading == NULL)
        return -1;
    *now = PyFloat_AsDouble(reading);
    Py_DECREF(reading);
    return (*now == -1.0 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
recorder_vectorcall(Recorder *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames != NULL || nargs < 2 || nargs > 3)
        return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);

    double seconds = PyFloat_AsDouble(args[1]);
    if (seconds == -1.0 && PyErr_Occurred())
        return NULL;
    int error = nargs == 3 ? PyObject_IsTrue(args[2]) : 0;
    if (error < 0)
        return NULL;
    PyObject *found = PyDict_GetItemWithError(self->accumulators, args[0]);
    if (found == NULL) {
        if (PyErr_Occurred())
            return NULL;
        return PyObject_Vectorcall(self->slow, args, nargsf, NULL);
    }
    if (!Py_IS_TYPE(found, &AccumulatorType)) {
        PyErr_SetString(PyExc_TypeError, "Recorder: accumulators must map to Accumulator");
        return NULL;
    }
    Accumulator *acc = (Accumulator *)found;
    Py_INCREF(acc);  /* a Python clock may run other threads */
    double now;
    if (recorder_now(self, &now) < 0) {
        Py_DECREF(acc);
        return NULL;
    }
    if (now >= acc->slice_end) {
        Py_DECREF(acc);
        return PyObject_Vectorcall(self->slow, args, nargsf, NULL);
    }
    int status = accumulator_count(acc, seconds, error);
    Py_DECREF(acc);
    if (status < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
recorder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"accumulators", "slow", "clock", NULL};
    PyObject *accumulators, *slow, *clock = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!O|O:Recorder", kwlist,
                                     &PyDict_Type, &accumulators, &slow, &clock))
        return NULL;
    if (!PyCallable_Check(slow) || (clock != Py_None && !PyCallable_Check(clock))) {
        PyErr_SetString(PyExc_TypeError, "Recorder: slow and clock must be callable");
        return NULL;
    }
    Recorder *self = (Recorder *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->accumulators = Py_NewRef(accumulators);
    self->slow = Py_NewRef(slow);
    self->clock = clock == Py_None ? NULL : Py_NewRef(clock);
    self->vectorcall = (vectorcallfunc)recorder_vectorcall;
    return (PyObject *)self;
}

static PyObject *
recorder_call(PyObject *self, PyObject *args, PyObject *kwargs)
{
    return PyVectorcall_Call(self, args, kwargs);
}

static PyTypeObject RecorderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stackmedic.observe._speedups.Recorder",
    .tp_doc = "Recorder(accumulators, slow, clock=None): LatencyTracker.record's fast path.",
    .tp_basicsize = sizeof(Recorder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_vectorcall_offset = offsetof(Recorder, vectorcall),
    .tp_new = recorder_new,
    .tp_call = recorder_call,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_dealloc = (destructor)recorder_dealloc,
};

/* ----------------------------------------------------------------- count_into */

static PyObject *
count_into(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "count_into(buckets, values, hi_mask, bits)");
        return NULL;
    }
    PyObject *buckets = args[0], *values = args[1];
    uint32_t hi_mask;
    int bits;
    if (!PyDict_Check(buckets)) {
        PyErr_SetString(PyExc_TypeError, "count_into: buckets must be a dict");
        return NULL;
    }
    if (parse_layout(args[2], args[3], &hi_mask, &bits) < 0)
        return NULL;
    Table table = {NULL, NULL, 0, 0};
    Totals totals = {0.0, 0.0, 0};
    int status = 0;
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "count_into: values must be a list");
        return NULL;
    }
    /* Room for as many keys as values (up to 2,048) without growing on the way. */
    Py_ssize_t capacity = 64;
    while (capacity < 4096 && capacity < 2 * PyList_GET_SIZE(values))
        capacity *= 2;
    if (table_resize(&table, capacity) < 0)
        return NULL;
    for (Py_ssize_t i = 0; status == 0 && i < PyList_GET_SIZE(values); i++) {
        PyObject *item = PyList_GET_ITEM(values, i);
        double value;
        if (PyFloat_CheckExact(item))
            value = PyFloat_AS_DOUBLE(item);
        else {
            Py_INCREF(item);  /* __float__ may run Python code that empties the list */
            value = PyFloat_AsDouble(item);
            Py_DECREF(item);
        }
        if (value == -1.0 && PyErr_Occurred())
            status = -1;
        else
            status = count_value(&table, &totals, value, hi_mask, bits);
    }
    if (status == 0)
        status = table_add_to(&table, buckets);
    table_free(&table);
    if (status < 0)
        return NULL;
    return Py_BuildValue("(ddn)", totals.sum, totals.max, totals.zeros);
}

/* --------------------------------------------------------------------- module */

static PyMethodDef module_methods[] = {
    {"count_into", (PyCFunction)(void (*)(void))count_into, METH_FASTCALL,
     "count_into(buckets, values, hi_mask, bits) -> (sum, max, zeros): LogSketch's "
     "bucketing of a list of floats."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "stackmedic.observe._speedups",
    .m_doc = "C fast paths of LatencyTracker.record and LogSketch bucketing.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&AccumulatorType) < 0 || PyType_Ready(&RecorderType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "Accumulator", (PyObject *)&AccumulatorType) < 0
            || PyModule_AddObjectRef(module, "Recorder", (PyObject *)&RecorderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
