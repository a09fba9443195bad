/* Speedups for aiodatabases records: the record type's lookups and bulk construction.
 *
 * A record holds its row (any sequence: a tuple from sqlite3, an asyncpg Record, a list
 * after conversion), the keymap of its statement (name, position or Column -> index), the
 * statement's ResultMeta and that plan's lookup tuple (its column names, then the names that
 * read a column as an attribute). Reading a field by a name written in code is a few pointer
 * comparisons (both sides are interned), by position an index, by anything else one dict
 * lookup, all done here in C;
 * everything else about records lives in Python (aiodatabases/_records.py), which falls back
 * to a pure-Python implementation when this module is not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <datetime.h>

typedef struct {
    PyObject_HEAD
    PyObject *row;
    PyObject *keymap;
    PyObject *meta;
    PyObject *lookup; /* meta.lookup: 2 x width interned names (see plan_lookup), or NULL */
} RecordObject;

static PyObject *fallback_name; /* "_fallback" */
static PyObject *lookup_name;   /* "lookup" */

/* Record, once registered by set_record_class(), and the version tag its type had then. Its
 * plans' attribute names were computed against that version; while the type is unchanged,
 * reading row.name need not look the name up in the class first. */
static PyTypeObject *record_class = NULL;
static unsigned int record_class_version = 0;

/* Rows at most this wide are searched by identity before the keymap is consulted. */
#define NAME_SCAN_MAX 32

static int
record_traverse(RecordObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->row);
    Py_VISIT(self->keymap);
    Py_VISIT(self->meta);
    Py_VISIT(self->lookup);
    return 0;
}

static int
record_clear(RecordObject *self)
{
    Py_CLEAR(self->row);
    Py_CLEAR(self->keymap);
    Py_CLEAR(self->meta);
    Py_CLEAR(self->lookup);
    return 0;
}

/* Freed records are kept for reuse, as CPython keeps freed tuples. A record taken from this
 * list is not counted as a new allocation by the cycle collector, whose youngest generation
 * is otherwise collected once per ~700 fetched rows; each such collection scans the rows just
 * fetched, which cost more than building the records. Only the plain layout is kept (no
 * __dict__, no __weakref__, no finalizer), so a reused block fits any class that takes it. */
#if PY_VERSION_HEX < 0x030E0000 && !defined(Py_GIL_DISABLED)
#define RECORD_FREELIST 1
#define RECORD_FREELIST_MAX 4096
static RecordObject *record_freelist = NULL; /* linked through the row field */
static int record_freelist_len = 0;
#endif

static inline int
record_plain_layout(PyTypeObject *type)
{
    return type->tp_basicsize == (Py_ssize_t)sizeof(RecordObject) && type->tp_itemsize == 0 &&
           type->tp_finalize == NULL && type->tp_del == NULL;
}

static void
record_dealloc(RecordObject *self)
{
    /* Instances are of Python subclasses, whose subtype_dealloc owns the type's reference. */
    PyObject_GC_UnTrack(self);
    record_clear(self);
#ifdef RECORD_FREELIST
    if (record_freelist_len < RECORD_FREELIST_MAX && record_plain_layout(Py_TYPE(self))) {
        self->row = (PyObject *)record_freelist;
        record_freelist = self;
        record_freelist_len++;
        return;
    }
#endif
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether a plan's lookup tuple (ResultMeta.lookup) can be searched by identity: for a plan
 * of width w (at most NAME_SCAN_MAX), 2w items, the w column names, then for each column the
 * name that reads it as an attribute, or None where the name is taken by the class or starts
 * with "_". Items are only ever compared by identity with a str key, so items of another
 * kind can never match and need no check. The keymap a record is given must be the one built
 * from these names (the last column of a name wins). */
static inline int
usable_lookup(PyObject *lookup)
{
    return lookup != NULL && PyTuple_CheckExact(lookup) && PyTuple_GET_SIZE(lookup) % 2 == 0 &&
           PyTuple_GET_SIZE(lookup) / 2 <= NAME_SCAN_MAX;
}

/* A new reference to meta.lookup when usable; NULL with no error set when the plan has
 * none (lookups then go by the keymap alone). */
static PyObject *
plan_lookup(PyObject *meta)
{
    PyObject *lookup = PyObject_GetAttr(meta, lookup_name);
    if (lookup == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
        }
        return NULL;
    }
    if (!usable_lookup(lookup)) {
        Py_DECREF(lookup);
        return NULL;
    }
    return lookup;
}

/* The lookup tuple passed to make_record(s), as a new reference: the argument when given
 * (not None), else meta's. */
static PyObject *
given_lookup(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t at, PyObject *meta)
{
    if (nargs > at && args[at] != Py_None) {
        return usable_lookup(args[at]) ? Py_NewRef(args[at]) : NULL;
    }
    return plan_lookup(meta);
}

/* The column whose entry in one half of a lookup tuple (0: names, 1: attribute names) is key
 * itself, searched from the last column, which is the one a duplicated name reads; -1 if
 * none. */
static inline Py_ssize_t
find_by_identity(PyObject *lookup, Py_ssize_t half, PyObject *key)
{
    Py_ssize_t width = PyTuple_GET_SIZE(lookup) / 2;
    PyObject **names = &PyTuple_GET_ITEM(lookup, half * width);
    for (Py_ssize_t i = width; i-- > 0;) {
        if (names[i] == key) {
            return i;
        }
    }
    return -1;
}

static int
record_init(RecordObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *row, *keymap, *meta;
    if (!PyArg_ParseTuple(args, "OO!O:RecordBase", &row, &PyDict_Type, &keymap, &meta)) {
        return -1;
    }
    PyObject *lookup = plan_lookup(meta);
    if (lookup == NULL && PyErr_Occurred()) {
        return -1;
    }
    Py_INCREF(row);
    Py_INCREF(keymap);
    Py_INCREF(meta);
    Py_XSETREF(self->row, row);
    Py_XSETREF(self->keymap, keymap);
    Py_XSETREF(self->meta, meta);
    Py_XSETREF(self->lookup, lookup);
    return 0;
}

static inline PyObject *
row_item(PyObject *row, Py_ssize_t index)
{
    if (PyTuple_CheckExact(row) && index >= 0 && index < PyTuple_GET_SIZE(row)) {
        PyObject *item = PyTuple_GET_ITEM(row, index);
        Py_INCREF(item);
        return item;
    }
    if (PyList_CheckExact(row) && index >= 0 && index < PyList_GET_SIZE(row)) {
        PyObject *item = PyList_GET_ITEM(row, index);
        Py_INCREF(item);
        return item;
    }
    return PySequence_GetItem(row, index);
}

/* Return a new reference to the value for key, NULL with no error set if key is unknown. */
static PyObject *
record_lookup(RecordObject *self, PyObject *key)
{
    if (self->keymap == NULL || self->row == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "record is not initialized");
        return NULL;
    }
    PyObject *lookup = self->lookup;
    if (lookup != NULL) {
        Py_ssize_t width = PyTuple_GET_SIZE(lookup) / 2;
        if (PyUnicode_CheckExact(key)) {
            /* A name written in code is interned, and so are the plan's names: find it by
             * identity. An equal string that is another object falls through to the keymap. */
            Py_ssize_t i = find_by_identity(lookup, 0, key);
            if (i >= 0) {
                return row_item(self->row, i);
            }
        }
        else if (PyLong_CheckExact(key)) {
            Py_ssize_t i = PyLong_AsSsize_t(key);
            if (i == -1 && PyErr_Occurred()) {
                /* too large for any row: not a position, as the keymap would say */
                PyErr_Clear();
                return NULL;
            }
            if (i < -width || i >= width) {
                return NULL;
            }
            return row_item(self->row, i < 0 ? i + width : i);
        }
    }
    PyObject *index = PyDict_GetItemWithError(self->keymap, key);
    if (index == NULL) {
        return NULL;
    }
    Py_ssize_t i = PyLong_AsSsize_t(index);
    if (i == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return row_item(self->row, i);
}

static PyObject *
record_subscript(RecordObject *self, PyObject *key)
{
    PyObject *value = record_lookup(self, key);
    if (value != NULL || PyErr_Occurred()) {
        if (value == NULL && PyErr_ExceptionMatches(PyExc_TypeError)) {
            /* unhashable key, e.g. a slice: let Python handle it */
            PyErr_Clear();
        }
        else {
            return value;
        }
    }
    return PyObject_CallMethodOneArg((PyObject *)self, fallback_name, key);
}

static PyObject *
record_getattro(RecordObject *self, PyObject *name)
{
    PyObject *lookup = self->lookup;
    if (lookup != NULL && PyUnicode_CheckExact(name) && Py_TYPE(self) == record_class &&
        record_class->tp_version_tag == record_class_version &&
        (record_class->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG)) {
        /* The plan named the columns an attribute may read (not taken by the class, no
         * leading "_") against this very version of the class: search them by identity. */
        Py_ssize_t i = find_by_identity(lookup, 1, name);
        if (i >= 0) {
            return row_item(self->row, i);
        }
    }
    /* Methods and attributes of the class win over column names (row.keys is a method). */
    if (PyUnicode_Check(name) && _PyType_Lookup(Py_TYPE(self), name) == NULL &&
        PyUnicode_READ_CHAR(name, 0) != '_') {
        PyObject *value = record_lookup(self, name);
        if (value != NULL || PyErr_Occurred()) {
            return value;
        }
    }
    return PyObject_GenericGetAttr((PyObject *)self, name);
}

static PyMemberDef record_members[] = {
    {"_row", T_OBJECT_EX, offsetof(RecordObject, row), READONLY, "the row's values"},
    {"_keymap", T_OBJECT_EX, offsetof(RecordObject, keymap), READONLY, "key -> index"},
    {"_meta", T_OBJECT_EX, offsetof(RecordObject, meta), READONLY, "the result plan"},
    {NULL}
};

static PyMappingMethods record_as_mapping = {
    .mp_subscript = (binaryfunc)record_subscript,
};

static PyTypeObject RecordBaseType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "aiodatabases._crecords.RecordBase",
    .tp_basicsize = sizeof(RecordObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The C part of aiodatabases.Record.",
    .tp_traverse = (traverseproc)record_traverse,
    .tp_clear = (inquiry)record_clear,
    .tp_dealloc = (destructor)record_dealloc,
    .tp_init = (initproc)record_init,
    .tp_new = PyType_GenericNew,
    .tp_as_mapping = &record_as_mapping,
    .tp_getattro = (getattrofunc)record_getattro,
    .tp_members = record_members,
};

/* set_record_class(cls): register the record class whose plans' attribute names hold until
 * the class is changed. Returns the class's version tag (0 when it has none). */
static PyObject *
set_record_class(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordBaseType)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a RecordBase subclass");
        return NULL;
    }
    PyTypeObject *type = (PyTypeObject *)cls;
    /* A lookup gives the type a version tag if it has none yet. */
    (void)_PyType_Lookup(type, fallback_name);
    Py_INCREF(cls);
    Py_XSETREF(record_class, type);
    record_class_version =
        (type->tp_flags & Py_TPFLAGS_VALID_VERSION_TAG) ? type->tp_version_tag : 0;
    if (record_class_version == 0) {
        /* No version to compare against: never take the shortcut. */
        Py_CLEAR(record_class);
    }
    return PyLong_FromUnsignedLong(record_class_version);
}

static PyObject *
new_record(PyTypeObject *cls, PyObject *row, PyObject *keymap, PyObject *meta, PyObject *lookup)
{
    RecordObject *self;
#ifdef RECORD_FREELIST
    if (record_freelist != NULL && cls->tp_alloc == PyType_GenericAlloc &&
        record_plain_layout(cls)) {
        self = record_freelist;
        record_freelist = (RecordObject *)self->row;
        record_freelist_len--;
        /* What PyType_GenericAlloc does besides allocating: the type reference of a heap
         * type's instance, and a fresh reference count. The block is already untracked. */
        Py_SET_TYPE(self, cls);
        if (cls->tp_flags & Py_TPFLAGS_HEAPTYPE) {
            Py_INCREF(cls);
        }
        _Py_NewReference((PyObject *)self);
        self->row = NULL;
        self->keymap = NULL;
        self->meta = NULL;
        self->lookup = NULL;
    }
    else
#endif
    {
        self = (RecordObject *)cls->tp_alloc(cls, 0);
        if (self == NULL) {
            return NULL;
        }
    }
    /* A record built from a driver row is not part of a reference cycle (its row, keymap and
     * plan were all made before it), so the cycle collector need not scan it: this keeps
     * collections short when thousands of rows are fetched. The one way to make a cycle is
     * for user code to store the record inside one of its own mutable values (a JSON dict);
     * such a record is then freed only with the process. */
    PyObject_GC_UnTrack(self);
    Py_INCREF(row);
    Py_INCREF(keymap);
    Py_INCREF(meta);
    Py_XINCREF(lookup);
    self->row = row;
    self->keymap = keymap;
    self->meta = meta;
    self->lookup = lookup;
    return (PyObject *)self;
}

/* int_to_boolean(value): None -> None, else the truth of value (SQLAlchemy's Boolean result
 * processor for drivers that return integers). */
static PyObject *
int_to_boolean(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return NULL;
    }
    return PyBool_FromLong(truth);
}

static PyObject *fromisoformat = NULL; /* datetime.datetime.fromisoformat */

/* The value of the two decimal digits at t, or -1 when either is not a digit. */
static inline int
two_digits(const Py_UCS1 *t)
{
    unsigned int hi = (unsigned int)t[0] - '0', lo = (unsigned int)t[1] - '0';
    return (hi > 9 || lo > 9) ? -1 : (int)(hi * 10 + lo);
}

/* The datetime of text of the form SQLAlchemy stores on SQLite, "YYYY-MM-DD HH:MM:SS" with or
 * without ".ffffff", with the given tzinfo; NULL without an error set when the text has
 * another form. Out-of-range fields (month 13) raise ValueError, as fromisoformat does. */
static PyObject *
parse_sqlite_datetime(PyObject *value, PyObject *tzinfo)
{
    if (!PyUnicode_CheckExact(value) || !PyUnicode_IS_READY(value) ||
        PyUnicode_KIND(value) != PyUnicode_1BYTE_KIND) {
        return NULL;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(value);
    const Py_UCS1 *t = PyUnicode_1BYTE_DATA(value);
    if (!((n == 19 || n == 26) && t[4] == '-' && t[7] == '-' && t[10] == ' ' && t[13] == ':' &&
          t[16] == ':' && (n == 19 || t[19] == '.'))) {
        return NULL;
    }
    int century = two_digits(t), years = two_digits(t + 2), month = two_digits(t + 5),
        day = two_digits(t + 8), hour = two_digits(t + 11), minute = two_digits(t + 14),
        second = two_digits(t + 17), micro = 0;
    if (n == 26) {
        int m1 = two_digits(t + 20), m2 = two_digits(t + 22), m3 = two_digits(t + 24);
        micro = (m1 | m2 | m3) < 0 ? -1 : (m1 * 100 + m2) * 100 + m3;
    }
    if ((century | years | month | day | hour | minute | second | micro) < 0) {
        return NULL;
    }
    return PyDateTimeAPI->DateTime_FromDateAndTime(century * 100 + years, month, day, hour,
                                                   minute, second, micro, tzinfo,
                                                   PyDateTimeAPI->DateTimeType);
}

/* str_to_datetime(value): None -> None, else datetime.fromisoformat(value). The stored form
 * is read here directly; anything else goes to fromisoformat, so the result is always what it
 * returns. */
static PyObject *
str_to_datetime(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *result = parse_sqlite_datetime(value, Py_None);
    if (result != NULL || PyErr_Occurred()) {
        return result;
    }
    return PyObject_CallOneArg(fromisoformat, value);
}

static PyObject *replace_name = NULL;           /* "replace" */
static PyObject *astimezone_name = NULL;        /* "astimezone" */
static PyObject *replace_tzinfo_kwnames = NULL; /* ("tzinfo",) */

/* str_to_utc_datetime(value): None -> None, else datetime.fromisoformat(value) as an aware
 * datetime in UTC: naive text (what a DateTime(timezone=True) column stores on SQLite) is
 * read as UTC, text with an offset is converted to UTC. */
static PyObject *
str_to_utc_datetime(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    PyObject *result = parse_sqlite_datetime(value, PyDateTime_TimeZone_UTC);
    if (result != NULL || PyErr_Occurred()) {
        return result;
    }
    PyObject *parsed = PyObject_CallOneArg(fromisoformat, value);
    if (parsed == NULL) {
        return NULL;
    }
    PyObject *args[2] = {parsed, PyDateTime_TimeZone_UTC};
    if (PyDateTime_Check(parsed) && ((PyDateTime_DateTime *)parsed)->hastzinfo &&
        ((PyDateTime_DateTime *)parsed)->tzinfo != Py_None) {
        /* Text written with an offset by something else: the same instant, in UTC. */
        result = PyObject_VectorcallMethod(astimezone_name, args, 2, NULL);
    }
    else {
        result = PyObject_VectorcallMethod(replace_name, args, 1, replace_tzinfo_kwnames);
    }
    Py_DECREF(parsed);
    return result;
}

static PyObject *int_to_boolean_func = NULL;  /* this module's int_to_boolean */
static PyObject *str_to_datetime_func = NULL; /* this module's str_to_datetime */
static PyObject *str_to_utc_datetime_func = NULL; /* this module's str_to_utc_datetime */
static PyObject *bool_to_int_func = NULL;     /* this module's bool_to_int */
static PyObject *bool_to_bool_func = NULL;    /* this module's bool_to_bool */
static PyObject *sqlite_datetime_func = NULL; /* this module's sqlite_datetime */
static PyObject *decimal_to_float_func = NULL; /* this module's decimal_to_float */
static PyObject *decimal_type = NULL;          /* decimal.Decimal */

/* decimal_to_float(value) -> float(value) for a Decimal, any other value itself: the
 * PostgreSQL backend's result processor of a Float column (asyncpg returns a float for
 * float4/float8 columns and a Decimal for numeric ones). */
static PyObject *
decimal_to_float(PyObject *module, PyObject *value)
{
    if (Py_TYPE(value) == (PyTypeObject *)decimal_type) {
        return PyNumber_Float(value);
    }
    return Py_NewRef(value);
}

static PyObject *bool_to_int(PyObject *module, PyObject *value);
static PyObject *bool_to_bool(PyObject *module, PyObject *value);
static PyObject *sqlite_datetime(PyObject *module, PyObject *value);

/* The (index, function) pairs of a processors tuple, read once per call rather than once per
 * row. The module's own converters are recognised here and then called directly, without an
 * argument vector. Functions are borrowed from the processors tuple, which outlives the call. */
typedef PyObject *(*converter)(PyObject *, PyObject *);

typedef struct {
    Py_ssize_t index;
    converter direct; /* one of this module's converters, or NULL */
    PyObject *func;
} Step;

#define STEPS_INLINE 16

typedef struct {
    Py_ssize_t count;
    int floats_only; /* every step is decimal_to_float */
    Step *steps;
    Step inline_steps[STEPS_INLINE];
} Steps;

static int
steps_init(Steps *plan, PyObject *processors)
{
    Py_ssize_t count = PyTuple_GET_SIZE(processors);
    plan->count = 0;
    plan->floats_only = 0;
    plan->steps = plan->inline_steps;
    if (count > STEPS_INLINE) {
        plan->steps = PyMem_New(Step, count);
        if (plan->steps == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *pair = PyTuple_GET_ITEM(processors, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "processors must be (index, function) pairs");
            goto error;
        }
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (i == -1 && PyErr_Occurred()) {
            goto error;
        }
        PyObject *func = PyTuple_GET_ITEM(pair, 1);
        Step *step = &plan->steps[k];
        step->index = i;
        step->func = func;
        step->direct = func == int_to_boolean_func    ? int_to_boolean
                       : func == str_to_datetime_func ? str_to_datetime
                       : func == str_to_utc_datetime_func ? str_to_utc_datetime
                       : func == bool_to_int_func     ? bool_to_int
                       : func == bool_to_bool_func    ? bool_to_bool
                       : func == sqlite_datetime_func ? sqlite_datetime
                       : func == decimal_to_float_func ? decimal_to_float
                                                      : NULL;
        plan->floats_only = (k == 0 || plan->floats_only) && step->direct == decimal_to_float;
    }
    plan->count = count;
    return 0;
error:
    if (plan->steps != plan->inline_steps) {
        PyMem_Free(plan->steps);
    }
    plan->steps = plan->inline_steps;
    return -1;
}

static void
steps_free(Steps *plan)
{
    if (plan->steps != plan->inline_steps) {
        PyMem_Free(plan->steps);
    }
    plan->steps = plan->inline_steps;
    plan->count = 0;
}

/* Apply the steps to the n items of a row owned by the caller, in place. */
static int
apply_steps(PyObject **items, Py_ssize_t n, const Steps *plan)
{
    for (Py_ssize_t k = 0; k < plan->count; k++) {
        const Step *step = &plan->steps[k];
        Py_ssize_t i = step->index;
        if (i < 0 || i >= n) {
            PyErr_Format(PyExc_IndexError, "row has %zd columns, converter for column %zd", n,
                         i);
            return -1;
        }
        PyObject *converted = step->direct != NULL ? step->direct(NULL, items[i])
                                                   : PyObject_CallOneArg(step->func, items[i]);
        if (converted == NULL) {
            return -1;
        }
        Py_SETREF(items[i], converted);
    }
    return 0;
}

/* convert(row, steps) -> list: apply the steps to a copy of row. */
static PyObject *
convert_row(PyObject *row, const Steps *plan)
{
    PyObject *values = PySequence_List(row);
    if (values == NULL) {
        return NULL;
    }
    if (apply_steps(((PyListObject *)values)->ob_item, PyList_GET_SIZE(values), plan) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    return values;
}

/* Whether a driver's row needs no conversion at all: every step is decimal_to_float and no
 * value it would read is a Decimal (a Float column's floats and NULLs). 1 yes, 0 no, -1 on
 * error. */
static int
row_unchanged(PyObject *row, const Steps *plan)
{
    if (!plan->floats_only) {
        return 0;
    }
    for (Py_ssize_t k = 0; k < plan->count; k++) {
        PyObject *value = PySequence_GetItem(row, plan->steps[k].index);
        if (value == NULL) {
            return -1;
        }
        int plain = Py_TYPE(value) != (PyTypeObject *)decimal_type;
        Py_DECREF(value);
        if (!plain) {
            return 0;
        }
    }
    return 1;
}

/* The values of a record: row converted, as a tuple off the cycle collector's lists like the
 * record that will hold it. It is never changed afterwards, so it cannot join a cycle unless
 * user code makes a converted value (a JSON dict) refer back to its record. Left tracked, a
 * thousand fetched rows would make every collection that follows scan a thousand more
 * objects, which costs more than building the records.
 *
 * With take set, a row that is an exact tuple referenced only by the caller's list is
 * converted in place instead of copied: nothing else can see it, and the copy and the
 * freeing of the original cost as much as the conversions. */
static PyObject *
record_values(PyObject *row, const Steps *plan, int take)
{
    PyObject *values;
    if (take && PyTuple_CheckExact(row) && Py_REFCNT(row) == 1) {
        values = Py_NewRef(row);
    }
    else {
        if (!PyTuple_CheckExact(row) && !PyList_CheckExact(row)) {
            /* Another driver's row (an asyncpg Record) that the converters would leave as
             * it is: kept uncopied, as a record without converters keeps it. */
            int unchanged = row_unchanged(row, plan);
            if (unchanged < 0) {
                return NULL;
            }
            if (unchanged) {
                return Py_NewRef(row);
            }
        }
        values = PySequence_Tuple(row);
        if (values == NULL) {
            return NULL;
        }
    }
    if (apply_steps(((PyTupleObject *)values)->ob_item, PyTuple_GET_SIZE(values), plan) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    if (PyObject_GC_IsTracked(values)) {
        PyObject_GC_UnTrack(values);
    }
    return values;
}

static int
check_record_args(PyObject *cls, PyObject *processors)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordBaseType)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a RecordBase subclass");
        return -1;
    }
    if (!PyTuple_Check(processors)) {
        PyErr_SetString(PyExc_TypeError, "processors must be a tuple");
        return -1;
    }
    return 0;
}

/* make_records(cls, rows, keymap, meta, processors, take=False, lookup=None) -> list of
 * records. With take true the rows are the caller's to give away: their tuples may be
 * converted in place. lookup is meta.lookup, passed to save reading it here. */
static PyObject *
make_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 5 || nargs > 7) {
        PyErr_SetString(PyExc_TypeError, "make_records(cls, rows, keymap, meta, processors, "
                                         "take=False, lookup=None)");
        return NULL;
    }
    PyObject *cls = args[0], *rows = args[1], *keymap = args[2], *meta = args[3];
    PyObject *processors = args[4];
    int take = 0;
    if (nargs >= 6) {
        take = PyObject_IsTrue(args[5]);
        if (take < 0) {
            return NULL;
        }
    }
    if (check_record_args(cls, processors) < 0) {
        return NULL;
    }
    Steps plan;
    if (steps_init(&plan, processors) < 0) {
        return NULL;
    }
    PyObject *lookup = NULL, *seq = NULL, *out = NULL;
    lookup = given_lookup(args, nargs, 6, meta);
    if (lookup == NULL && PyErr_Occurred()) {
        goto error;
    }
    seq = PySequence_Fast(rows, "rows must be a sequence");
    if (seq == NULL) {
        goto error;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(n);
    if (out == NULL) {
        goto error;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *row = items[k];
        PyObject *record;
        if (plan.count > 0) {
            PyObject *values = record_values(row, &plan, take);
            if (values == NULL) {
                goto error;
            }
            record = new_record((PyTypeObject *)cls, values, keymap, meta, lookup);
            Py_DECREF(values);
        }
        else {
            record = new_record((PyTypeObject *)cls, row, keymap, meta, lookup);
        }
        if (record == NULL) {
            goto error;
        }
        PyList_SET_ITEM(out, k, record);
    }
    Py_DECREF(seq);
    Py_XDECREF(lookup);
    steps_free(&plan);
    return out;
error:
    Py_XDECREF(seq);
    Py_XDECREF(out);
    Py_XDECREF(lookup);
    steps_free(&plan);
    return NULL;
}

static PyObject *
make_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "make_record(cls, row, keymap, meta, processors, lookup=None)");
        return NULL;
    }
    PyObject *cls = args[0], *row = args[1], *keymap = args[2], *meta = args[3];
    PyObject *processors = args[4];
    if (check_record_args(cls, processors) < 0) {
        return NULL;
    }
    PyObject *lookup = given_lookup(args, nargs, 5, meta);
    if (lookup == NULL && PyErr_Occurred()) {
        return NULL;
    }
    PyObject *record = NULL;
    if (PyTuple_GET_SIZE(processors) > 0) {
        Steps plan;
        if (steps_init(&plan, processors) < 0) {
            Py_XDECREF(lookup);
            return NULL;
        }
        PyObject *values = record_values(row, &plan, 0);
        steps_free(&plan);
        if (values != NULL) {
            record = new_record((PyTypeObject *)cls, values, keymap, meta, lookup);
            Py_DECREF(values);
        }
    }
    else {
        record = new_record((PyTypeObject *)cls, row, keymap, meta, lookup);
    }
    Py_XDECREF(lookup);
    return record;
}

/* convert_rows(rows, processors) -> list of lists: apply (index, function) pairs to every row,
 * as a bulk insert's bind values need. */
static PyObject *
convert_rows(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "convert_rows(rows, processors: tuple)");
        return NULL;
    }
    Steps plan;
    if (steps_init(&plan, args[1]) < 0) {
        return NULL;
    }
    PyObject *out = NULL;
    PyObject *seq = PySequence_Fast(args[0], "rows must be a sequence");
    if (seq == NULL) {
        goto error;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    out = PyList_New(n);
    if (out == NULL) {
        goto error;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *values = convert_row(items[k], &plan);
        if (values == NULL) {
            goto error;
        }
        PyList_SET_ITEM(out, k, values);
    }
    Py_DECREF(seq);
    steps_free(&plan);
    return out;
error:
    Py_XDECREF(seq);
    Py_XDECREF(out);
    steps_free(&plan);
    return NULL;
}

/* SQLAlchemy's error for a value its Boolean does not bind: ValueError for an integer other
 * than 0 and 1, TypeError for anything else. Returns NULL. */
static PyObject *
refuse_boolean(PyObject *value)
{
    if (PyLong_Check(value)) {
        PyErr_Format(PyExc_ValueError, "Value %R is not None, True, or False", value);
    }
    else {
        PyErr_Format(PyExc_TypeError, "Not a boolean value: %R", value);
    }
    return NULL;
}

/* bool_to_int(value): True/1 -> 1, False/0 -> 0, None -> None, as SQLAlchemy binds a Boolean on SQLite. */
static PyObject *
bool_to_int(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    if (value == Py_True) {
        return PyLong_FromLong(1);
    }
    if (value == Py_False) {
        return PyLong_FromLong(0);
    }
    /* As SQLAlchemy's Boolean: anything equal to True or False (1, 0.0, Decimal(1) ...) is
     * accepted and bound as int(value); another int is a ValueError, the rest a TypeError. */
    int equal = PyObject_RichCompareBool(value, Py_True, Py_EQ);
    if (equal == 0) {
        equal = PyObject_RichCompareBool(value, Py_False, Py_EQ);
    }
    if (equal < 0) {
        return NULL;
    }
    if (equal) {
        return PyNumber_Long(value);
    }
    return refuse_boolean(value);
}

/* bool_to_bool(value): True/False/None as given, another value equal to True or False (1,
 * 0.0, Decimal(1) ...) as that bool, as SQLAlchemy binds a Boolean for a driver with a native
 * boolean (asyncpg); another int is a ValueError, the rest a TypeError. */
static PyObject *
bool_to_bool(PyObject *module, PyObject *value)
{
    if (value == Py_None || value == Py_True || value == Py_False) {
        return Py_NewRef(value);
    }
    int equal = PyObject_RichCompareBool(value, Py_True, Py_EQ);
    if (equal > 0) {
        Py_RETURN_TRUE;
    }
    if (equal == 0) {
        equal = PyObject_RichCompareBool(value, Py_False, Py_EQ);
        if (equal > 0) {
            Py_RETURN_FALSE;
        }
    }
    if (equal < 0) {
        return NULL;
    }
    return refuse_boolean(value);
}

/* sqlite_datetime(value): a datetime or date as SQLAlchemy's SQLite DATETIME text,
 * "YYYY-MM-DD HH:MM:SS.ffffff" (fields as given, time zone ignored, a date at midnight). */
static inline char *
put_digits(char *p, int value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return p + width;
}

static PyObject *
format_datetime(int year, int month, int day, int hour, int minute, int second, int micro)
{
    char text[26]; /* YYYY-MM-DD HH:MM:SS.ffffff */
    char *p = put_digits(text, year, 4);
    *p++ = '-';
    p = put_digits(p, month, 2);
    *p++ = '-';
    p = put_digits(p, day, 2);
    *p++ = ' ';
    p = put_digits(p, hour, 2);
    *p++ = ':';
    p = put_digits(p, minute, 2);
    *p++ = ':';
    p = put_digits(p, second, 2);
    *p++ = '.';
    p = put_digits(p, micro, 6);
    return PyUnicode_DecodeASCII(text, p - text, NULL);
}

static PyObject *
sqlite_datetime(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    if (PyDateTime_Check(value)) {
        return format_datetime(
            PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value), PyDateTime_GET_DAY(value),
            PyDateTime_DATE_GET_HOUR(value), PyDateTime_DATE_GET_MINUTE(value),
            PyDateTime_DATE_GET_SECOND(value), PyDateTime_DATE_GET_MICROSECOND(value));
    }
    if (PyDate_Check(value)) {
        return format_datetime(PyDateTime_GET_YEAR(value), PyDateTime_GET_MONTH(value),
                               PyDateTime_GET_DAY(value), 0, 0, 0, 0);
    }
    PyErr_SetString(PyExc_TypeError,
                    "SQLite DateTime type only accepts Python datetime and date objects as input.");
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"int_to_boolean", (PyCFunction)int_to_boolean, METH_O,
     "int_to_boolean(value) -> True, False or None"},
    {"str_to_datetime", (PyCFunction)str_to_datetime, METH_O,
     "str_to_datetime(value) -> datetime.datetime.fromisoformat(value), or None"},
    {"str_to_utc_datetime", (PyCFunction)str_to_utc_datetime, METH_O,
     "str_to_utc_datetime(value) -> datetime.datetime.fromisoformat(value) in UTC (naive text "
     "is read as UTC), or None"},
    {"sqlite_datetime", (PyCFunction)sqlite_datetime, METH_O,
     "sqlite_datetime(value) -> 'YYYY-MM-DD HH:MM:SS.ffffff' or None"},
    {"convert_rows", (PyCFunction)(void (*)(void))convert_rows, METH_FASTCALL,
     "convert_rows(rows, processors) -> list of converted lists"},
    {"decimal_to_float", (PyCFunction)decimal_to_float, METH_O,
     "decimal_to_float(value) -> float(value) for a decimal.Decimal, else value itself"},
    {"bool_to_int", (PyCFunction)bool_to_int, METH_O,
     "bool_to_int(value) -> 1, 0 or None"},
    {"bool_to_bool", (PyCFunction)bool_to_bool, METH_O,
     "bool_to_bool(value) -> True, False or None"},
    {"make_records", (PyCFunction)(void (*)(void))make_records, METH_FASTCALL,
     "make_records(cls, rows, keymap, meta, processors, take=False, lookup=None) -> records"},
    {"set_record_class", (PyCFunction)set_record_class, METH_O,
     "set_record_class(cls) -> version tag: the class whose plans name its attributes"},
    {"make_record", (PyCFunction)(void (*)(void))make_record, METH_FASTCALL,
     "make_record(cls, row, keymap, meta, processors, lookup=None) -> record"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aiodatabases._crecords",
    .m_doc = "C speedups for aiodatabases records.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__crecords(void)
{
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    fallback_name = PyUnicode_InternFromString("_fallback");
    lookup_name = PyUnicode_InternFromString("lookup");
    if (fallback_name == NULL || lookup_name == NULL) {
        return NULL;
    }
    if (PyType_Ready(&RecordBaseType) < 0) {
        return NULL;
    }
    fromisoformat = PyObject_GetAttrString((PyObject *)PyDateTimeAPI->DateTimeType,
                                           "fromisoformat");
    replace_name = PyUnicode_InternFromString("replace");
    astimezone_name = PyUnicode_InternFromString("astimezone");
    PyObject *tzinfo_name = PyUnicode_InternFromString("tzinfo");
    replace_tzinfo_kwnames = tzinfo_name == NULL ? NULL : PyTuple_Pack(1, tzinfo_name);
    Py_XDECREF(tzinfo_name);
    if (fromisoformat == NULL || replace_name == NULL || astimezone_name == NULL ||
        replace_tzinfo_kwnames == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
#ifdef RECORD_FREELIST
    if (PyModule_AddIntConstant(module, "RECORD_FREELIST", RECORD_FREELIST_MAX) < 0) {
#else
    if (PyModule_AddIntConstant(module, "RECORD_FREELIST", 0) < 0) {
#endif
        Py_DECREF(module);
        return NULL;
    }
    int_to_boolean_func = PyObject_GetAttrString(module, "int_to_boolean");
    str_to_datetime_func = PyObject_GetAttrString(module, "str_to_datetime");
    str_to_utc_datetime_func = PyObject_GetAttrString(module, "str_to_utc_datetime");
    bool_to_int_func = PyObject_GetAttrString(module, "bool_to_int");
    bool_to_bool_func = PyObject_GetAttrString(module, "bool_to_bool");
    sqlite_datetime_func = PyObject_GetAttrString(module, "sqlite_datetime");
    decimal_to_float_func = PyObject_GetAttrString(module, "decimal_to_float");
    PyObject *decimal_module = PyImport_ImportModule("decimal");
    if (decimal_module != NULL) {
        decimal_type = PyObject_GetAttrString(decimal_module, "Decimal");
        Py_DECREF(decimal_module);
    }
    if (int_to_boolean_func == NULL || str_to_datetime_func == NULL ||
        str_to_utc_datetime_func == NULL || bool_to_int_func == NULL ||
        bool_to_bool_func == NULL || sqlite_datetime_func == NULL ||
        decimal_to_float_func == NULL || decimal_type == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    Py_INCREF(&RecordBaseType);
    if (PyModule_AddObject(module, "RecordBase", (PyObject *)&RecordBaseType) < 0) {
        Py_DECREF(&RecordBaseType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
