/* Reads on the event loop's thread, stepped here instead of by the sqlite3 module.
 *
 * The stdlib's cursor releases and retakes the GIL around every sqlite3_step(), once per row:
 * about 1,800 of the 6,700 instructions it spends on a five-column row (valgrind callgrind).
 * aiodatabases runs a quick read on the loop's own thread with the GIL held throughout anyway,
 * so for those this module prepares, binds and steps the statement itself, on the same
 * sqlite3 handle (the same library the sqlite3 module loaded, found with dlsym), and returns
 * the rows as the stdlib would: tuples of int, float, str, bytes and None.
 *
 * It only takes what it reproduces exactly, and answers None ("use the sqlite3 module") for
 * everything else: a statement that is not read-only or returns no columns, more than one
 * statement, parameters of any type other than exact int, float, str, bytes and None (those
 * go through the sqlite3 module's adapters), a text_factory other than str, a row_factory,
 * any adapter registered for those base types, a call from another thread than the one that
 * made the reader, and any error while stepping (the statement is reset; the caller runs it
 * again through the sqlite3 module, which raises the error as it always did; a read-only
 * statement can run again). Statements are kept per connection, at most STMT_CACHE_MAX, and
 * finalized by close() before the connection closes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>

#if !defined(_WIN32)
#include <dlfcn.h>
#define HAVE_DLSYM 1
#endif

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;
typedef long long sqlite3_int64;
typedef void (*destructor_fn)(void *);

#define SQLITE_OK 0
#define SQLITE_ROW 100
#define SQLITE_DONE 101
#define SQLITE_INTEGER 1
#define SQLITE_FLOAT 2
#define SQLITE_TEXT 3
#define SQLITE_BLOB 4
#define SQLITE_NULL 5
#define SQLITE_TRANSIENT ((destructor_fn)-1)
#define SQLITE_PREPARE_PERSISTENT 0x01

#define STMT_CACHE_MAX 256

static struct {
    int (*prepare_v3)(sqlite3 *, const char *, int, unsigned int, sqlite3_stmt **,
                      const char **);
    int (*step)(sqlite3_stmt *);
    int (*reset)(sqlite3_stmt *);
    int (*finalize)(sqlite3_stmt *);
    int (*bind_parameter_count)(sqlite3_stmt *);
    int (*bind_int64)(sqlite3_stmt *, int, sqlite3_int64);
    int (*bind_double)(sqlite3_stmt *, int, double);
    int (*bind_text)(sqlite3_stmt *, int, const char *, int, destructor_fn);
    int (*bind_blob)(sqlite3_stmt *, int, const void *, int, destructor_fn);
    int (*bind_null)(sqlite3_stmt *, int);
    int (*column_count)(sqlite3_stmt *);
    int (*column_type)(sqlite3_stmt *, int);
    sqlite3_int64 (*column_int64)(sqlite3_stmt *, int);
    double (*column_double)(sqlite3_stmt *, int);
    const unsigned char *(*column_text)(sqlite3_stmt *, int);
    const void *(*column_blob)(sqlite3_stmt *, int);
    int (*column_bytes)(sqlite3_stmt *, int);
    const char *(*column_name)(sqlite3_stmt *, int);
    int (*stmt_readonly)(sqlite3_stmt *);
    int (*stmt_busy)(sqlite3_stmt *);
    const char *(*libversion)(void);
} api;

static int api_loaded = 0;

/* The start of the sqlite3 module's connection object: its handle is the first member in
 * every CPython release this package supports (Modules/_sqlite/connection.h). */
typedef struct {
    PyObject_HEAD
    sqlite3 *db;
} ConnectionHead;

/* sqlite3.adapters, and its size when last found free of adapters for the types bound
 * here; any adapter for one of them turns the fast path off for good, as the sqlite3 module
 * then adapts those types on every call. */
static PyObject *adapters = NULL;
static Py_ssize_t adapters_clean_size = -1;
static int adapters_taken = 0;

static PyObject *text_factory_name; /* "text_factory" */
static PyObject *row_factory_name;  /* "row_factory" */

typedef struct {
    sqlite3_stmt *st; /* NULL: a statement this module does not run */
    PyObject *names;  /* tuple of column names, or NULL until the first run */
} Stmt;

static void
stmt_capsule_free(PyObject *capsule)
{
    Stmt *stmt = (Stmt *)PyCapsule_GetPointer(capsule, "aiodatabases._csqlite.Stmt");
    if (stmt == NULL) {
        PyErr_Clear();
        return;
    }
    if (stmt->st != NULL) {
        api.finalize(stmt->st);
    }
    Py_XDECREF(stmt->names);
    PyMem_Free(stmt);
}

typedef struct {
    PyObject_HEAD
    PyObject *conn;        /* the sqlite3.Connection */
    sqlite3 *db;           /* the handle the kept statements belong to */
    PyObject *stmts;       /* sql -> capsule of Stmt */
    unsigned long owner;   /* the thread that may use the fast path */
} ReaderObject;

static void
reader_forget(ReaderObject *self)
{
    if (self->stmts != NULL) {
        PyDict_Clear(self->stmts); /* finalizes every kept statement */
    }
}

static int
adapters_allow_fast_path(void)
{
    if (adapters_taken) {
        return 0;
    }
    if (adapters == NULL || !PyDict_Check(adapters)) {
        return 0;
    }
    Py_ssize_t size = PyDict_GET_SIZE(adapters);
    if (size == adapters_clean_size) {
        return 1;
    }
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(adapters, &pos, &key, &value)) {
        if (!PyTuple_Check(key) || PyTuple_GET_SIZE(key) != 2) {
            continue;
        }
        PyObject *type = PyTuple_GET_ITEM(key, 0);
        if (type == (PyObject *)&PyLong_Type || type == (PyObject *)&PyFloat_Type ||
            type == (PyObject *)&PyUnicode_Type || type == (PyObject *)&PyBytes_Type ||
            type == (PyObject *)&PyByteArray_Type || type == (PyObject *)Py_TYPE(Py_None)) {
            adapters_taken = 1;
            return 0;
        }
    }
    adapters_clean_size = size;
    return 1;
}

static int
reader_init(ReaderObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *conn;
    if (!PyArg_ParseTuple(args, "O:Reader", &conn)) {
        return -1;
    }
    if (!api_loaded) {
        PyErr_SetString(PyExc_RuntimeError, "the SQLite library is not loaded (call load())");
        return -1;
    }
    PyObject *stmts = PyDict_New();
    if (stmts == NULL) {
        return -1;
    }
    reader_forget(self);
    Py_XSETREF(self->stmts, stmts);
    Py_INCREF(conn);
    Py_XSETREF(self->conn, conn);
    self->db = ((ConnectionHead *)conn)->db;
    self->owner = PyThread_get_thread_ident();
    return 0;
}

static int
reader_traverse(ReaderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->conn);
    return 0;
}

static int
reader_clear(ReaderObject *self)
{
    reader_forget(self);
    Py_CLEAR(self->stmts);
    Py_CLEAR(self->conn);
    return 0;
}

static void
reader_dealloc(ReaderObject *self)
{
    PyObject_GC_UnTrack(self);
    reader_clear(self); /* statements first, while the connection is certainly open */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Whether the SQL after a prepared statement is blank (a comment there is left to the sqlite3
 * module, which allows it). */
static int
blank_tail(const char *tail)
{
    for (; *tail; tail++) {
        if (!(*tail == ' ' || *tail == '\t' || *tail == '\n' || *tail == '\r' || *tail == '\f')) {
            return 0;
        }
    }
    return 1;
}

/* The capsule of the kept statement for sql, as a new reference (held while the statement
 * runs, so that nothing it calls back into can finalize it meanwhile); NULL with an error set
 * on failure. */
static PyObject *
reader_statement(ReaderObject *self, PyObject *sql)
{
    PyObject *capsule = PyDict_GetItemWithError(self->stmts, sql);
    if (capsule != NULL) {
        return Py_NewRef(capsule);
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t size;
    const char *text = PyUnicode_AsUTF8AndSize(sql, &size);
    if (text == NULL) {
        return NULL;
    }
    Stmt *stmt = PyMem_Calloc(1, sizeof(Stmt));
    if (stmt == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (size < INT_MAX && strlen(text) == (size_t)size) {
        sqlite3_stmt *st = NULL;
        const char *tail = NULL;
        int rc = api.prepare_v3(self->db, text, (int)size + 1, SQLITE_PREPARE_PERSISTENT, &st,
                                &tail);
        if (rc == SQLITE_OK && st != NULL && tail != NULL && blank_tail(tail) &&
            api.stmt_readonly(st) && api.column_count(st) > 0) {
            stmt->st = st;
        }
        else if (st != NULL) {
            api.finalize(st);
        }
    }
    capsule = PyCapsule_New(stmt, "aiodatabases._csqlite.Stmt", stmt_capsule_free);
    if (capsule == NULL) {
        if (stmt->st != NULL) {
            api.finalize(stmt->st);
        }
        PyMem_Free(stmt);
        return NULL;
    }
    if (PyDict_GET_SIZE(self->stmts) >= STMT_CACHE_MAX) {
        PyDict_Clear(self->stmts);
    }
    if (PyDict_SetItem(self->stmts, sql, capsule) < 0) {
        Py_DECREF(capsule); /* frees the statement */
        return NULL;
    }
    return capsule;
}

/* Bind every parameter; 1 when done, 0 when a value is not one this module binds, -1 on a
 * Python error. */
static int
bind_all(sqlite3_stmt *st, PyObject *args)
{
    PyObject **items;
    Py_ssize_t count;
    if (PyTuple_CheckExact(args)) {
        items = &PyTuple_GET_ITEM(args, 0);
        count = PyTuple_GET_SIZE(args);
    }
    else if (PyList_CheckExact(args)) {
        items = PySequence_Fast_ITEMS(args);
        count = PyList_GET_SIZE(args);
    }
    else {
        return 0;
    }
    if (count != api.bind_parameter_count(st)) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value = items[i];
        int at = (int)i + 1;
        int rc;
        if (value == Py_None) {
            rc = api.bind_null(st, at);
        }
        else if (PyLong_CheckExact(value)) {
            int overflow;
            long long number = PyLong_AsLongLongAndOverflow(value, &overflow);
            if (overflow) {
                return 0;
            }
            if (number == -1 && PyErr_Occurred()) {
                return -1;
            }
            rc = api.bind_int64(st, at, number);
        }
        else if (PyFloat_CheckExact(value)) {
            rc = api.bind_double(st, at, PyFloat_AS_DOUBLE(value));
        }
        else if (PyUnicode_CheckExact(value)) {
            Py_ssize_t size;
            const char *text = PyUnicode_AsUTF8AndSize(value, &size);
            if (text == NULL) {
                PyErr_Clear(); /* lone surrogates: the sqlite3 module reports it */
                return 0;
            }
            if (size > INT_MAX) {
                return 0;
            }
            rc = api.bind_text(st, at, text, (int)size, SQLITE_TRANSIENT);
        }
        else if (PyBytes_CheckExact(value)) {
            if (PyBytes_GET_SIZE(value) > INT_MAX) {
                return 0;
            }
            rc = api.bind_blob(st, at, PyBytes_AS_STRING(value), (int)PyBytes_GET_SIZE(value),
                               SQLITE_TRANSIENT);
        }
        else {
            return 0;
        }
        if (rc != SQLITE_OK) {
            return 0;
        }
    }
    return 1;
}

/* One row as the sqlite3 module makes it; NULL with no error set when a value is one it
 * would refuse (text that is not UTF-8, an allocation SQLite failed). */
static PyObject *
row_tuple(sqlite3_stmt *st, int width)
{
    PyObject *row = PyTuple_New(width);
    if (row == NULL) {
        return NULL;
    }
    for (int i = 0; i < width; i++) {
        PyObject *value;
        switch (api.column_type(st, i)) {
        case SQLITE_INTEGER:
            value = PyLong_FromLongLong(api.column_int64(st, i));
            break;
        case SQLITE_FLOAT:
            value = PyFloat_FromDouble(api.column_double(st, i));
            break;
        case SQLITE_TEXT: {
            const char *text = (const char *)api.column_text(st, i);
            int size = api.column_bytes(st, i);
            if (text == NULL) {
                Py_DECREF(row);
                return NULL;
            }
            value = PyUnicode_FromStringAndSize(text, size);
            if (value == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
            }
            break;
        }
        case SQLITE_BLOB: {
            const void *blob = api.column_blob(st, i);
            int size = api.column_bytes(st, i);
            if (blob == NULL && size != 0) {
                Py_DECREF(row);
                return NULL;
            }
            value = PyBytes_FromStringAndSize(blob, size);
            break;
        }
        default:
            value = Py_NewRef(Py_None);
        }
        if (value == NULL) {
            Py_DECREF(row);
            return NULL;
        }
        PyTuple_SET_ITEM(row, i, value);
    }
    return row;
}

/* The statement's column names as a tuple, reusing the kept one while the names are equal
 * (a statement SQLite prepared again after a schema change may have others). */
static PyObject *
column_names(Stmt *stmt)
{
    sqlite3_stmt *st = stmt->st;
    int width = api.column_count(st);
    PyObject *names = stmt->names;
    if (names != NULL && PyTuple_GET_SIZE(names) == width) {
        int same = 1;
        for (int i = 0; i < width && same; i++) {
            const char *name = api.column_name(st, i);
            const char *kept = PyUnicode_AsUTF8(PyTuple_GET_ITEM(names, i));
            same = name != NULL && kept != NULL && strcmp(name, kept) == 0;
        }
        if (same) {
            return Py_NewRef(names);
        }
    }
    PyErr_Clear();
    names = PyTuple_New(width);
    if (names == NULL) {
        return NULL;
    }
    for (int i = 0; i < width; i++) {
        const char *name = api.column_name(st, i);
        if (name == NULL) {
            Py_DECREF(names);
            return PyErr_NoMemory();
        }
        PyObject *item = PyUnicode_FromString(name);
        if (item == NULL) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, i, item);
    }
    Py_XSETREF(stmt->names, Py_NewRef(names));
    return names;
}

static int
factories_are_default(PyObject *conn)
{
    PyObject *text_factory = PyObject_GetAttr(conn, text_factory_name);
    if (text_factory == NULL) {
        PyErr_Clear();
        return 0;
    }
    int plain = text_factory == (PyObject *)&PyUnicode_Type;
    Py_DECREF(text_factory);
    if (!plain) {
        return 0;
    }
    PyObject *row_factory = PyObject_GetAttr(conn, row_factory_name);
    if (row_factory == NULL) {
        PyErr_Clear();
        return 0;
    }
    plain = row_factory == Py_None;
    Py_DECREF(row_factory);
    return plain;
}

/* Bind, step and reset a kept statement: (rows, names), None to leave it to the sqlite3
 * module, or NULL with an error set. */
static PyObject *
run_statement(Stmt *stmt, PyObject *args, Py_ssize_t limit)
{
    if (stmt == NULL) {
        return NULL;
    }
    sqlite3_stmt *st = stmt->st;
    if (st == NULL || api.stmt_busy(st)) {
        Py_RETURN_NONE;
    }
    int bound = bind_all(st, args);
    if (bound <= 0) {
        api.reset(st);
        if (bound < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *rows = PyList_New(0);
    if (rows == NULL) {
        api.reset(st);
        return NULL;
    }
    int rc;
    int width = -1;
    while ((rc = api.step(st)) == SQLITE_ROW) {
        if (width < 0) {
            width = api.column_count(st);
        }
        PyObject *row = row_tuple(st, width);
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            rc = -1;
            break;
        }
        Py_DECREF(row);
        if (limit > 0 && PyList_GET_SIZE(rows) >= limit) {
            rc = SQLITE_DONE;
            break;
        }
    }
    if (rc != SQLITE_DONE) {
        /* An error (or an interrupt by the progress handler): the sqlite3 module runs the
         * statement again and reports it. */
        api.reset(st);
        Py_DECREF(rows);
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    PyObject *names = column_names(stmt);
    api.reset(st);
    if (names == NULL) {
        Py_DECREF(rows);
        return NULL;
    }
    PyObject *result = PyTuple_Pack(2, rows, names);
    Py_DECREF(rows);
    Py_DECREF(names);
    return result;
}

PyDoc_STRVAR(reader_fetch_doc,
"fetch(sql, args, limit)\n--\n\n"
"Run a read-only statement; return (rows, names): a list of the rows as tuples (at most\n"
"limit of them when limit > 0) and a tuple of the column names. None when the statement,\n"
"its arguments or the connection's settings are not ones this reader runs, or stepping it\n"
"failed: run it through the sqlite3 module.");

static PyObject *
reader_fetch(ReaderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "fetch() takes 3 arguments: sql, args, limit");
        return NULL;
    }
    PyObject *sql = args[0];
    Py_ssize_t limit = PyLong_AsSsize_t(args[2]);
    if (limit == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (self->conn == NULL || self->stmts == NULL || !PyUnicode_CheckExact(sql) ||
        PyThread_get_thread_ident() != self->owner) {
        Py_RETURN_NONE;
    }
    sqlite3 *db = ((ConnectionHead *)self->conn)->db;
    if (db != self->db) {
        reader_forget(self); /* closed (and maybe reopened): the kept statements are stale */
        self->db = db;
    }
    if (db == NULL || !adapters_allow_fast_path() || !factories_are_default(self->conn)) {
        Py_RETURN_NONE;
    }
    PyObject *capsule = reader_statement(self, sql);
    if (capsule == NULL) {
        return NULL;
    }
    PyObject *result = run_statement(
        (Stmt *)PyCapsule_GetPointer(capsule, "aiodatabases._csqlite.Stmt"), args[1], limit);
    Py_DECREF(capsule);
    return result;
}

static PyObject *
reader_close(ReaderObject *self, PyObject *Py_UNUSED(ignored))
{
    reader_forget(self);
    Py_RETURN_NONE;
}

static PyObject *
reader_kept(ReaderObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->stmts == NULL ? 0 : PyDict_GET_SIZE(self->stmts));
}

static PyMethodDef reader_methods[] = {
    {"fetch", (PyCFunction)(void (*)(void))reader_fetch, METH_FASTCALL, reader_fetch_doc},
    {"close", (PyCFunction)reader_close, METH_NOARGS,
     PyDoc_STR("Finalize the kept statements (call it before closing the connection).")},
    {"kept", (PyCFunction)reader_kept, METH_NOARGS,
     PyDoc_STR("How many statements are kept prepared.")},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "aiodatabases._csqlite.Reader",
    .tp_basicsize = sizeof(ReaderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = PyDoc_STR("Reader(connection): runs quick reads of one sqlite3.Connection."),
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_traverse = (traverseproc)reader_traverse,
    .tp_clear = (inquiry)reader_clear,
    .tp_methods = reader_methods,
};

PyDoc_STRVAR(load_doc,
"load(module_path, version, adapters)\n--\n\n"
"Find the SQLite functions in the library the sqlite3 module at module_path uses (already\n"
"loaded); check that it reports version; watch the adapters registry. Raises OSError when\n"
"they cannot be found.");

static PyObject *
load(PyObject *module, PyObject *args)
{
    const char *path, *version;
    PyObject *registry;
    if (!PyArg_ParseTuple(args, "ssO!:load", &path, &version, &PyDict_Type, &registry)) {
        return NULL;
    }
#ifdef HAVE_DLSYM
    if (!api_loaded) {
        void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (handle == NULL) {
            PyErr_Format(PyExc_OSError, "the sqlite3 module is not loaded: %s", dlerror());
            return NULL;
        }
#define FIND(field, symbol)                                                                   \
    do {                                                                                      \
        *(void **)(&api.field) = dlsym(handle, symbol);                                       \
        if (api.field == NULL) {                                                              \
            dlclose(handle);                                                                  \
            PyErr_Format(PyExc_OSError, "SQLite function %s not found", symbol);              \
            return NULL;                                                                      \
        }                                                                                     \
    } while (0)
        FIND(prepare_v3, "sqlite3_prepare_v3");
        FIND(step, "sqlite3_step");
        FIND(reset, "sqlite3_reset");
        FIND(finalize, "sqlite3_finalize");
        FIND(bind_parameter_count, "sqlite3_bind_parameter_count");
        FIND(bind_int64, "sqlite3_bind_int64");
        FIND(bind_double, "sqlite3_bind_double");
        FIND(bind_text, "sqlite3_bind_text");
        FIND(bind_blob, "sqlite3_bind_blob");
        FIND(bind_null, "sqlite3_bind_null");
        FIND(column_count, "sqlite3_column_count");
        FIND(column_type, "sqlite3_column_type");
        FIND(column_int64, "sqlite3_column_int64");
        FIND(column_double, "sqlite3_column_double");
        FIND(column_text, "sqlite3_column_text");
        FIND(column_blob, "sqlite3_column_blob");
        FIND(column_bytes, "sqlite3_column_bytes");
        FIND(column_name, "sqlite3_column_name");
        FIND(stmt_readonly, "sqlite3_stmt_readonly");
        FIND(stmt_busy, "sqlite3_stmt_busy");
        FIND(libversion, "sqlite3_libversion");
#undef FIND
        /* The handle stays open: the sqlite3 module keeps the library loaded anyway. */
        if (strcmp(api.libversion(), version) != 0) {
            PyErr_Format(PyExc_OSError, "found SQLite %s, the sqlite3 module uses %s",
                         api.libversion(), version);
            return NULL;
        }
        api_loaded = 1;
    }
    Py_XSETREF(adapters, Py_NewRef(registry));
    adapters_clean_size = -1;
    Py_RETURN_NONE;
#else
    PyErr_SetString(PyExc_OSError, "no dlsym on this platform");
    return NULL;
#endif
}

static PyMethodDef module_methods[] = {
    {"load", load, METH_VARARGS, load_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef csqlite_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "aiodatabases._csqlite",
    .m_doc = PyDoc_STR("Quick reads stepped without the sqlite3 module (see _csqlite.c)."),
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__csqlite(void)
{
    text_factory_name = PyUnicode_InternFromString("text_factory");
    row_factory_name = PyUnicode_InternFromString("row_factory");
    if (text_factory_name == NULL || row_factory_name == NULL) {
        return NULL;
    }
    if (PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&csqlite_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
