/* The two per-packet loops of xtransport in C: framing a message's MessageData packets and
 * taking them apart again. Each does exactly what its Python twin in _loops.py does
 * (encode_data_packets_py, parse_pieces_py), which stays the fallback and the reference the
 * tests hold this module to; neither loop raises for bad input: it stops where the general
 * parser must look (and name the fault).
 *
 * The CRC-32 is zlib-ng's zng_crc32, taken from the zlib_ng extension module that is
 * already loaded (it exports the symbol); without it every CRC goes through the Python
 * callable passed in, as the pure-Python loops do.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 16
#define MAGIC 0x58545250u
#define VERSION 1
#define MESSAGE_DATA 2

typedef uint32_t (*crc32_fn)(uint32_t, const unsigned char *, uint32_t);

static crc32_fn direct_crc32 = NULL;

static int checksum(PyObject *crc32, const char *bytes, Py_ssize_t length, PyObject *piece,
                    uint32_t *out) {
    if (direct_crc32 != NULL) {
        *out = direct_crc32(0, (const unsigned char *)bytes, (uint32_t)length);
        return 0;
    }
    PyObject *value = PyObject_CallOneArg(crc32, piece);
    if (value == NULL) return -1;
    unsigned long result = PyLong_AsUnsignedLong(value);
    Py_DECREF(value);
    if (result == (unsigned long)-1 && PyErr_Occurred()) return -1;
    *out = (uint32_t)result;
    return 0;
}

static void put_u32(char *at, uint32_t value) {
    at[0] = (char)(value & 0xFF);
    at[1] = (char)((value >> 8) & 0xFF);
    at[2] = (char)((value >> 16) & 0xFF);
    at[3] = (char)((value >> 24) & 0xFF);
}

static uint32_t get_u32(const unsigned char *at) {
    return (uint32_t)at[0] | ((uint32_t)at[1] << 8) | ((uint32_t)at[2] << 16) |
           ((uint32_t)at[3] << 24);
}

/* encode_data_packets(view, max_payload, first_seq, crc32, parts): append to ``parts`` the
 * header and the payload view of each MessageData packet of ``view`` (a contiguous
 * memoryview), numbered from ``first_seq`` on, modulo 2**32. */
static PyObject *encode_data_packets(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "encode_data_packets takes 5 arguments");
        return NULL;
    }
    PyObject *view = args[0], *crc32 = args[3], *parts = args[4];
    Py_ssize_t max_payload = PyLong_AsSsize_t(args[1]);
    if (max_payload == -1 && PyErr_Occurred()) return NULL;
    unsigned long long seq = PyLong_AsUnsignedLongLongMask(args[2]);
    if (seq == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    if (!PyList_Check(parts) || max_payload < 1 || max_payload > 0xFFFF) {
        PyErr_SetString(PyExc_ValueError, "parts must be a list, max_payload 1..65535");
        return NULL;
    }
    Py_buffer buffer;
    if (PyObject_GetBuffer(view, &buffer, PyBUF_SIMPLE) < 0) return NULL;
    const char *base = buffer.buf;
    Py_ssize_t size = buffer.len;
    int failed = 0;
    for (Py_ssize_t start = 0; start < size && !failed; start += max_payload, seq++) {
        Py_ssize_t length = size - start < max_payload ? size - start : max_payload;
        PyObject *piece = PySequence_GetSlice(view, start, start + length);
        PyObject *header = PyBytes_FromStringAndSize(NULL, HEADER_SIZE);
        uint32_t crc = 0;
        if (piece == NULL || header == NULL ||
            checksum(crc32, base + start, length, piece, &crc) < 0) {
            failed = 1;
        } else {
            char *h = PyBytes_AS_STRING(header);
            put_u32(h, MAGIC);
            h[4] = VERSION;
            h[5] = MESSAGE_DATA;
            put_u32(h + 6, (uint32_t)seq);
            h[10] = (char)(length & 0xFF);
            h[11] = (char)((length >> 8) & 0xFF);
            put_u32(h + 12, crc);
            failed = PyList_Append(parts, header) < 0 || PyList_Append(parts, piece) < 0;
        }
        Py_XDECREF(piece);
        Py_XDECREF(header);
    }
    PyBuffer_Release(&buffer);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

/* parse_pieces(data, view, offset, count, view_min, crc32, pieces) -> (offset, taken, received):
 * take up to ``count`` whole MessageData packets of ``data`` (bytes; ``view`` a memoryview of
 * it) from ``offset`` on, appending each payload to ``pieces`` (a view of ``data``, or bytes
 * when shorter than ``view_min``). Stops early at a header that is not a MessageData one, at a
 * packet the end of ``data`` cuts, or at a payload whose CRC does not match (not taken). */
static PyObject *parse_pieces(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "parse_pieces takes 7 arguments");
        return NULL;
    }
    PyObject *data = args[0], *view = args[1], *crc32 = args[5], *pieces = args[6];
    if (!PyBytes_CheckExact(data) || !PyList_Check(pieces)) {
        PyErr_SetString(PyExc_TypeError, "parse_pieces needs bytes and a list");
        return NULL;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[2]);
    Py_ssize_t count = PyLong_AsSsize_t(args[3]);
    Py_ssize_t view_min = PyLong_AsSsize_t(args[4]);
    if (PyErr_Occurred()) return NULL;
    const unsigned char *base = (const unsigned char *)PyBytes_AS_STRING(data);
    Py_ssize_t size = PyBytes_GET_SIZE(data);
    Py_ssize_t taken = 0, received = 0;
    if (offset < 0) offset = size;
    while (taken < count && size - offset >= HEADER_SIZE) {
        const unsigned char *h = base + offset;
        if (get_u32(h) != MAGIC || h[4] != VERSION || h[5] != MESSAGE_DATA) break;
        Py_ssize_t length = (Py_ssize_t)h[10] | ((Py_ssize_t)h[11] << 8);
        Py_ssize_t start = offset + HEADER_SIZE, end = start + length;
        if (end > size) break;
        PyObject *piece = length >= view_min
                              ? PySequence_GetSlice(view, start, end)
                              : PyBytes_FromStringAndSize((const char *)base + start, length);
        if (piece == NULL) return NULL;
        uint32_t crc = 0;
        if (checksum(crc32, (const char *)base + start, length, piece, &crc) < 0) {
            Py_DECREF(piece);
            return NULL;
        }
        if (crc != get_u32(h + 12)) {
            Py_DECREF(piece);
            break;
        }
        int appended = PyList_Append(pieces, piece);
        Py_DECREF(piece);
        if (appended < 0) return NULL;
        taken++;
        received += length;
        offset = end;
    }
    return Py_BuildValue("(nnn)", offset, taken, received);
}

/* use_zlib_ng(path) -> bool: take zng_crc32 from the shared object at ``path`` (the loaded
 * zlib_ng extension); False, and the Python callable stays in use, if it has none. */
static PyObject *use_zlib_ng(PyObject *module, PyObject *path) {
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(path, &encoded)) return NULL;
    void *handle = dlopen(PyBytes_AS_STRING(encoded), RTLD_NOW | RTLD_NOLOAD);
    Py_DECREF(encoded);
    if (handle == NULL) Py_RETURN_FALSE;
    /* the handle is kept: the module stays loaded as long as the interpreter */
    void *symbol = dlsym(handle, "zng_crc32");
    if (symbol == NULL) Py_RETURN_FALSE;
    direct_crc32 = (crc32_fn)symbol;
    Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
    {"encode_data_packets", (PyCFunction)(void (*)(void))encode_data_packets, METH_FASTCALL,
     "Append each MessageData packet's header and payload view to a list."},
    {"parse_pieces", (PyCFunction)(void (*)(void))parse_pieces, METH_FASTCALL,
     "Take the whole MessageData packets of a read."},
    {"use_zlib_ng", use_zlib_ng, METH_O, "Compute CRCs with zlib-ng's zng_crc32 directly."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups", "xtransport's per-packet loops in C.", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module_def); }
