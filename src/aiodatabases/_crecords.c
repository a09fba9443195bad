/* Speedups for aiodatabases records: the record type's lookups and bulk construction.
 *
 * A record holds its row (any sequence: a tuple from sqlite3, an asyncpg Record, a list
 * after conversion), the keymap of its statement (name, position or Column -> index) and the
 * statement's ResultMeta. Reading a field is one dict lookup and one index, done here in C;
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
} RecordObject;

static PyObject *fallback_name; /* "_fallback" */

static int
record_traverse(RecordObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->row);
    Py_VISIT(self->keymap);
    Py_VISIT(self->meta);
    return 0;
}

static int
record_clear(RecordObject *self)
{
    Py_CLEAR(self->row);
    Py_CLEAR(self->keymap);
    Py_CLEAR(self->meta);
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

static int
record_init(RecordObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *row, *keymap, *meta;
    if (!PyArg_ParseTuple(args, "OO!O:RecordBase", &row, &PyDict_Type, &keymap, &meta)) {
        return -1;
    }
    Py_INCREF(row);
    Py_INCREF(keymap);
    Py_INCREF(meta);
    Py_XSETREF(self->row, row);
    Py_XSETREF(self->keymap, keymap);
    Py_XSETREF(self->meta, meta);
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

static PyObject *
new_record(PyTypeObject *cls, PyObject *row, PyObject *keymap, PyObject *meta)
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
    self->row = row;
    self->keymap = keymap;
    self->meta = meta;
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

static inline int
digits(const Py_UCS1 *text, Py_ssize_t start, Py_ssize_t count, int *out)
{
    int value = 0;
    for (Py_ssize_t i = start; i < start + count; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return 0;
        }
        value = value * 10 + (text[i] - '0');
    }
    *out = value;
    return 1;
}

/* str_to_datetime(value): None -> None, else datetime.fromisoformat(value). Text of the form
 * SQLAlchemy stores on SQLite, "YYYY-MM-DD HH:MM:SS" with or without ".ffffff", is read here
 * directly; anything else goes to fromisoformat, so the result is always what it returns. */
static PyObject *
str_to_datetime(PyObject *module, PyObject *value)
{
    if (value == Py_None) {
        Py_RETURN_NONE;
    }
    if (PyUnicode_CheckExact(value) && PyUnicode_IS_READY(value) &&
        PyUnicode_KIND(value) == PyUnicode_1BYTE_KIND) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        const Py_UCS1 *t = PyUnicode_1BYTE_DATA(value);
        int year, month, day, hour, minute, second, micro = 0;
        if ((n == 19 || n == 26) && t[4] == '-' && t[7] == '-' && t[10] == ' ' &&
            t[13] == ':' && t[16] == ':' && digits(t, 0, 4, &year) && digits(t, 5, 2, &month) &&
            digits(t, 8, 2, &day) && digits(t, 11, 2, &hour) && digits(t, 14, 2, &minute) &&
            digits(t, 17, 2, &second) &&
            (n == 19 || (t[19] == '.' && digits(t, 20, 6, &micro)))) {
            return PyDateTimeAPI->DateTime_FromDateAndTime(year, month, day, hour, minute, second,
                                                           micro, Py_None,
                                                           PyDateTimeAPI->DateTimeType);
        }
    }
    return PyObject_CallOneArg(fromisoformat, value);
}

static PyObject *int_to_boolean_func = NULL;  /* this module's int_to_boolean */
static PyObject *str_to_datetime_func = NULL; /* this module's str_to_datetime */

/* Apply (index, function) pairs to the n items of a fresh copy of a row, in place. */
static int
apply_processors(PyObject **items, Py_ssize_t n, PyObject *processors)
{
    Py_ssize_t count = PyTuple_GET_SIZE(processors);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *pair = PyTuple_GET_ITEM(processors, k);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "processors must be (index, function) pairs");
            return -1;
        }
        Py_ssize_t i = PyLong_AsSsize_t(PyTuple_GET_ITEM(pair, 0));
        if (i == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (i < 0 || i >= n) {
            PyErr_Format(PyExc_IndexError, "row has %zd columns, converter for column %zd", n,
                         i);
            return -1;
        }
        PyObject *func = PyTuple_GET_ITEM(pair, 1);
        PyObject *converted;
        /* The module's own converters are called directly, without an argument vector. */
        if (func == int_to_boolean_func) {
            converted = int_to_boolean(NULL, items[i]);
        }
        else if (func == str_to_datetime_func) {
            converted = str_to_datetime(NULL, items[i]);
        }
        else {
            converted = PyObject_CallOneArg(func, items[i]);
        }
        if (converted == NULL) {
            return -1;
        }
        Py_SETREF(items[i], converted);
    }
    return 0;
}

/* convert(row, processors) -> list: apply (index, function) pairs to a copy of row. */
static PyObject *
convert_row(PyObject *row, PyObject *processors)
{
    PyObject *values = PySequence_List(row);
    if (values == NULL) {
        return NULL;
    }
    if (apply_processors(((PyListObject *)values)->ob_item, PyList_GET_SIZE(values),
                         processors) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    return values;
}

/* The values of a record: a converted copy of row as a tuple, off the cycle collector's lists
 * like the record that will hold it. It is never changed afterwards, so it cannot join a cycle
 * unless user code makes a converted value (a JSON dict) refer back to its record. Left
 * tracked, a thousand fetched rows would make every collection that follows scan a thousand
 * more objects, which costs more than building the records. */
static PyObject *
record_values(PyObject *row, PyObject *processors)
{
    PyObject *values = PySequence_Tuple(row);
    if (values == NULL) {
        return NULL;
    }
    if (apply_processors(((PyTupleObject *)values)->ob_item, PyTuple_GET_SIZE(values),
                         processors) < 0) {
        Py_DECREF(values);
        return NULL;
    }
    if (PyObject_GC_IsTracked(values)) {
        PyObject_GC_UnTrack(values);
    }
    return values;
}

static PyObject *
make_records(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "make_records(cls, rows, keymap, meta, processors)");
        return NULL;
    }
    PyObject *cls = args[0], *rows = args[1], *keymap = args[2], *meta = args[3];
    PyObject *processors = args[4];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordBaseType)) {
        PyErr_SetString(PyExc_TypeError, "cls must be a RecordBase subclass");
        return NULL;
    }
    if (!PyTuple_Check(processors)) {
        PyErr_SetString(PyExc_TypeError, "processors must be a tuple");
        return NULL;
    }
    int convert = PyTuple_GET_SIZE(processors) > 0;
    PyObject *seq = PySequence_Fast(rows, "rows must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *row = items[k];
        PyObject *record;
        if (convert) {
            PyObject *values = record_values(row, processors);
            if (values == NULL) {
                goto error;
            }
            record = new_record((PyTypeObject *)cls, values, keymap, meta);
            Py_DECREF(values);
        }
        else {
            record = new_record((PyTypeObject *)cls, row, keymap, meta);
        }
        if (record == NULL) {
            goto error;
        }
        PyList_SET_ITEM(out, k, record);
    }
    Py_DECREF(seq);
    return out;
error:
    Py_DECREF(seq);
    Py_DECREF(out);
    return NULL;
}

static PyObject *
make_record(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "make_record(cls, row, keymap, meta, processors)");
        return NULL;
    }
    PyObject *cls = args[0], *row = args[1], *keymap = args[2], *meta = args[3];
    PyObject *processors = args[4];
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, &RecordBaseType) ||
        !PyTuple_Check(processors)) {
        PyErr_SetString(PyExc_TypeError, "make_record(cls, row, keymap, meta, processors)");
        return NULL;
    }
    if (PyTuple_GET_SIZE(processors) > 0) {
        PyObject *values = record_values(row, processors);
        if (values == NULL) {
            return NULL;
        }
        PyObject *record = new_record((PyTypeObject *)cls, values, keymap, meta);
        Py_DECREF(values);
        return record;
    }
    return new_record((PyTypeObject *)cls, row, keymap, meta);
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
    PyObject *seq = PySequence_Fast(args[0], "rows must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    if (out == NULL) {
        Py_DECREF(seq);
        return NULL;
    }
    PyObject **items = PySequence_Fast_ITEMS(seq);
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *values = convert_row(items[k], args[1]);
        if (values == NULL) {
            Py_DECREF(seq);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, k, values);
    }
    Py_DECREF(seq);
    return out;
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
    if (PyLong_Check(value)) {
        PyErr_Format(PyExc_ValueError, "Value %R is not None, True, or False", value);
    }
    else {
        PyErr_Format(PyExc_TypeError, "Not a boolean value: %R", value);
    }
    return NULL;
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
    {"sqlite_datetime", (PyCFunction)sqlite_datetime, METH_O,
     "sqlite_datetime(value) -> 'YYYY-MM-DD HH:MM:SS.ffffff' or None"},
    {"convert_rows", (PyCFunction)(void (*)(void))convert_rows, METH_FASTCALL,
     "convert_rows(rows, processors) -> list of converted lists"},
    {"bool_to_int", (PyCFunction)bool_to_int, METH_O,
     "bool_to_int(value) -> 1, 0 or None"},
    {"make_records", (PyCFunction)(void (*)(void))make_records, METH_FASTCALL,
     "make_records(cls, rows, keymap, meta, processors) -> list of records"},
    {"make_record", (PyCFunction)(void (*)(void))make_record, METH_FASTCALL,
     "make_record(cls, row, keymap, meta, processors) -> record"},
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
    if (fallback_name == NULL) {
        return NULL;
    }
    if (PyType_Ready(&RecordBaseType) < 0) {
        return NULL;
    }
    fromisoformat = PyObject_GetAttrString((PyObject *)PyDateTimeAPI->DateTimeType,
                                           "fromisoformat");
    if (fromisoformat == NULL) {
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
    if (int_to_boolean_func == NULL || str_to_datetime_func == NULL) {
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
