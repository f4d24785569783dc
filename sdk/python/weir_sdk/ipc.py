"""Arrow IPC *stream* format in pure Python: what crosses the plugin boundary.

A stream is messages, each ``0xFFFFFFFF``, a little-endian int32 metadata length, a
flatbuffer ``Message`` (padded to 8 bytes) and a body; then ``0xFFFFFFFF 0``. The host
sends and expects one schema message and at most one record batch.

Only the flatbuffer tables Arrow's ``Schema.fbs`` and ``Message.fbs`` need are read and
written here, by hand (no flatbuffers package in the component). Buffers in a body are
8-byte aligned and padded; validity bitmaps are least-significant bit first.
"""

import array
import struct
import sys
from itertools import accumulate, chain
from typing import List, Optional, Tuple

from .table import (
    BOOLEAN,
    DATE32,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    TIME_UNITS,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    UTF8,
    DataType,
    Field,
    Schema,
    Table,
    timestamp,
)

__all__ = [
    "IpcError",
    "read_stream",
    "read_schema",
    "read_table",
    "write_stream",
    "write_schema",
    "write_table",
]


class IpcError(ValueError):
    """A stream that is not Arrow IPC, or holds a type this codec does not support."""


_BIG_ENDIAN = sys.byteorder == "big"
_CONTINUATION = b"\xff\xff\xff\xff"
_V5 = 4  # MetadataVersion.V5

# Message header union tags.
_SCHEMA, _DICTIONARY_BATCH, _RECORD_BATCH = 1, 2, 3
# Type union tags.
_T_INT, _T_FLOAT, _T_UTF8, _T_BOOL, _T_DATE, _T_TIMESTAMP = 2, 3, 5, 6, 8, 10

# Fixed-width types: (array typecode, Int bit width and signedness or Float precision).
_INTS = {
    INT8: ("b", 8, True),
    INT16: ("h", 16, True),
    INT32: ("i", 32, True),
    INT64: ("q", 64, True),
    UINT8: ("B", 8, False),
    UINT16: ("H", 16, False),
    UINT32: ("I", 32, False),
    UINT64: ("Q", 64, False),
}
_INT_BY_WIDTH = {(w, s): t for t, (_, w, s) in _INTS.items()}
_FLOATS = {FLOAT32: ("f", 1), FLOAT64: ("d", 2)}
_FLOAT_BY_PRECISION = {p: t for t, (_, p) in _FLOATS.items()}


def _typecode(t: DataType) -> Optional[str]:
    if t in _INTS:
        return _INTS[t][0]
    if t in _FLOATS:
        return _FLOATS[t][0]
    if t.kind == "timestamp":
        return "q"
    if t == DATE32:
        return "i"
    return None


# ---------------------------------------------------------------------------------------
# Flatbuffers, read side


class _Table:
    """A flatbuffer table at ``pos`` in ``buf``."""

    __slots__ = ("buf", "pos", "vt", "vt_size")

    def __init__(self, buf: bytes, pos: int):
        self.buf = buf
        self.pos = pos
        self.vt = pos - struct.unpack_from("<i", buf, pos)[0]
        self.vt_size = struct.unpack_from("<H", buf, self.vt)[0]

    def _field(self, slot: int) -> int:
        o = 4 + 2 * slot
        if o >= self.vt_size:
            return 0
        return struct.unpack_from("<H", self.buf, self.vt + o)[0]

    def scalar(self, slot: int, fmt: str, default=0):
        o = self._field(slot)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0] if o else default

    def _ref(self, slot: int) -> Optional[int]:
        o = self._field(slot)
        if not o:
            return None
        at = self.pos + o
        return at + struct.unpack_from("<I", self.buf, at)[0]

    def table(self, slot: int) -> "Optional[_Table]":
        at = self._ref(slot)
        return None if at is None else _Table(self.buf, at)

    def string(self, slot: int) -> Optional[str]:
        at = self._ref(slot)
        if at is None:
            return None
        n = struct.unpack_from("<I", self.buf, at)[0]
        return bytes(self.buf[at + 4 : at + 4 + n]).decode("utf-8")

    def vector(self, slot: int) -> Tuple[int, int]:
        """(address of the first element, number of elements); (0, 0) if absent."""
        at = self._ref(slot)
        if at is None:
            return 0, 0
        return at + 4, struct.unpack_from("<I", self.buf, at)[0]

    def tables(self, slot: int) -> "List[_Table]":
        start, n = self.vector(slot)
        return [
            _Table(self.buf, start + 4 * i + struct.unpack_from("<I", self.buf, start + 4 * i)[0])
            for i in range(n)
        ]


def _read_type(field: _Table, name: str) -> DataType:
    tag = field.scalar(2, "B")
    t = field.table(3)
    if tag == _T_INT and t is not None:
        width, signed = t.scalar(0, "i"), t.scalar(1, "?", False)
        if (width, signed) in _INT_BY_WIDTH:
            return _INT_BY_WIDTH[(width, signed)]
    elif tag == _T_FLOAT and t is not None:
        precision = t.scalar(0, "h")
        if precision in _FLOAT_BY_PRECISION:
            return _FLOAT_BY_PRECISION[precision]
    elif tag == _T_UTF8:
        return UTF8
    elif tag == _T_BOOL:
        return BOOLEAN
    elif tag == _T_DATE and t is not None and t.scalar(0, "h") == 0:
        return DATE32
    elif tag == _T_TIMESTAMP and t is not None:
        unit = t.scalar(0, "h")
        if 0 <= unit < len(TIME_UNITS):
            return timestamp(TIME_UNITS[unit], t.string(1))
    raise IpcError(
        f"column `{name}` is {_TYPE_NAMES.get(tag, f'Arrow type #{tag}')}, which the Python "
        f"SDK does not support; supported: integers, float32/64, utf8, boolean, date32, "
        f"timestamp (cast the column before this step)"
    )


# Names of the Type union's members, for errors (Schema.fbs).
_TYPE_NAMES = {
    1: "null",
    2: "an integer of this width",
    3: "a half float",
    4: "binary",
    7: "decimal",
    8: "date64",
    9: "time",
    11: "interval",
    12: "list",
    13: "struct",
    14: "union",
    15: "fixed-size binary",
    16: "fixed-size list",
    17: "map",
    18: "duration",
    19: "large binary",
    20: "large utf8",
    21: "large list",
    22: "run-end encoded",
    23: "binary view",
    24: "utf8 view",
    25: "list view",
    26: "large list view",
}


def _read_schema(header: _Table) -> Schema:
    if header.scalar(0, "h") != 0:
        raise IpcError("big-endian Arrow data is not supported")
    fields = []
    for f in header.tables(1):
        name = f.string(0) or ""
        if f.table(4) is not None:
            raise IpcError(f"column `{name}` is dictionary-encoded, which is not supported")
        fields.append(Field(name, _read_type(f, name), f.scalar(1, "?", False)))
    return Schema(fields)


# ---------------------------------------------------------------------------------------
# Flatbuffers, write side: a builder that grows towards the front, as flatbuffers does,
# so every reference points forward. Positions are counted from the end of the buffer.


class _Builder:
    def __init__(self):
        self.b = bytearray()

    def _pad(self, align: int, upcoming: int) -> None:
        self.b[0:0] = bytes(-(len(self.b) + upcoming) % align)

    def _prepend(self, data: bytes) -> int:
        self.b[0:0] = data
        return len(self.b)

    def string(self, s: str) -> int:
        data = s.encode("utf-8")
        self._pad(4, 4 + len(data) + 1)
        self._prepend(data + b"\0")
        return self._prepend(struct.pack("<I", len(data)))

    def offsets(self, targets: List[int]) -> int:
        self._pad(4, 4 + 4 * len(targets))
        for target in reversed(targets):
            here = len(self.b) + 4
            self._prepend(struct.pack("<I", here - target))
        return self._prepend(struct.pack("<I", len(targets)))

    def structs(self, items: List[bytes]) -> int:
        data = b"".join(items)
        self._pad(8, len(data))
        self._prepend(data)
        return self._prepend(struct.pack("<I", len(items)))

    def table(self, fields: List[Tuple[int, str, object]]) -> int:
        """``fields``: (slot, struct format or "ref", value); a "ref" value is a position."""
        start = len(self.b)
        where = {}
        # Widest first: the least padding.
        for slot, fmt, value in sorted(
            fields, key=lambda f: 4 if f[1] == "ref" else struct.calcsize(f[1]), reverse=True
        ):
            if fmt == "ref":
                self._pad(4, 4)
                here = len(self.b) + 4
                where[slot] = self._prepend(struct.pack("<I", here - value))
            else:
                size = struct.calcsize(fmt)
                self._pad(size, size)
                where[slot] = self._prepend(struct.pack("<" + fmt, value))
        self._pad(4, 4)
        table = self._prepend(b"\0\0\0\0")
        slots = max(where) + 1 if where else 0
        vtable = struct.pack(
            f"<HH{slots}H",
            4 + 2 * slots,
            table - start,
            *[table - where[s] if s in where else 0 for s in range(slots)],
        )
        vt = self._prepend(vtable)
        # soffset: the vtable sits before the table, at table - soffset.
        struct.pack_into("<i", self.b, len(self.b) - table, vt - table)
        return table

    def finish(self, root: int) -> bytes:
        self._pad(8, 4)
        here = len(self.b) + 4
        self._prepend(struct.pack("<I", here - root))
        return bytes(self.b)


def _write_type(fb: _Builder, t: DataType) -> Tuple[int, int]:
    """(union tag, type table position)."""
    if t in _INTS:
        _, width, signed = _INTS[t]
        return _T_INT, fb.table([(0, "i", width), (1, "?", signed)])
    if t in _FLOATS:
        return _T_FLOAT, fb.table([(0, "h", _FLOATS[t][1])])
    if t == UTF8:
        return _T_UTF8, fb.table([])
    if t == BOOLEAN:
        return _T_BOOL, fb.table([])
    if t == DATE32:
        return _T_DATE, fb.table([(0, "h", 0)])
    if t.kind == "timestamp":
        fields = [(0, "h", TIME_UNITS.index(t.unit))]
        if t.tz is not None:
            fields.append((1, "ref", fb.string(t.tz)))
        return _T_TIMESTAMP, fb.table(fields)
    raise IpcError(f"cannot write Arrow type {t!r}")


def _message(header_type: int, build_header, body_length: int) -> bytes:
    fb = _Builder()
    header = build_header(fb)
    root = fb.table(
        [(0, "h", _V5), (1, "B", header_type), (2, "ref", header), (3, "q", body_length)]
    )
    meta = fb.finish(root)
    meta += bytes(-len(meta) % 8)
    return _CONTINUATION + struct.pack("<i", len(meta)) + meta


def _schema_message(schema: Schema) -> bytes:
    def header(fb: _Builder) -> int:
        fields = []
        for f in schema.fields:
            tag, type_table = _write_type(fb, f.type)
            name = fb.string(f.name)
            children = fb.offsets([])
            fields.append(
                fb.table(
                    [
                        (0, "ref", name),
                        (1, "?", f.nullable),
                        (2, "B", tag),
                        (3, "ref", type_table),
                        (5, "ref", children),
                    ]
                )
            )
        vector = fb.offsets(fields)
        return fb.table([(0, "h", 0), (1, "ref", vector)])

    return _message(_SCHEMA, header, 0)


# ---------------------------------------------------------------------------------------
# Column bodies

# Each byte's 8 bits, least significant first.
_BITS = [tuple(bool(byte >> i & 1) for i in range(8)) for byte in range(256)]


def _unpack_bits(data, n: int) -> List[bool]:
    return list(chain.from_iterable(map(_BITS.__getitem__, data[: (n + 7) // 8])))[:n]


def _pack_bits(flags: str, n: int) -> bytes:
    """``flags``: a string of ``0``/``1``, one per row; bit i is row i."""
    return int(flags[::-1] or "0", 2).to_bytes((n + 7) // 8, "little")


def _numbers(data, code: str, n: int) -> list:
    a = array.array(code)
    a.frombytes(data[: n * a.itemsize])
    if _BIG_ENDIAN:
        a.byteswap()
    return a.tolist()


def _number_bytes(values: list, code: str, name: str) -> bytes:
    # struct.pack over the whole list: about a third faster than array.array(code, values).
    try:
        return struct.pack(f"<{len(values)}{code}", *values)
    except struct.error as e:
        bad = next((v for v in values if not isinstance(v, (int, float))), None)
        what = f"holds {type(bad).__name__} {bad!r}" if bad is not None else str(e)
        raise IpcError(f"column `{name}`: {what}") from None


def _decode_column(field: Field, n: int, null_count: int, buffers: list) -> list:
    t = field.type
    validity = buffers[0]
    if t == UTF8:
        offsets = _numbers(buffers[1], "i", n + 1)
        data = bytes(buffers[2][offsets[0] : offsets[-1]]) if n else b""
        base = offsets[0] if n else 0
        try:
            # ASCII (the common case): one decode, then slices (characters are bytes).
            text = data.decode("ascii")
            values = [text[a - base : b - base] for a, b in zip(offsets, offsets[1:])]
        except UnicodeDecodeError:
            values = [
                data[a - base : b - base].decode("utf-8") for a, b in zip(offsets, offsets[1:])
            ]
    elif t == BOOLEAN:
        values = _unpack_bits(buffers[1], n)
    else:
        code = _typecode(t)
        values = _numbers(buffers[1], code, n)
    if null_count and len(validity):
        valid = _unpack_bits(validity, n)
        values = [v if ok else None for v, ok in zip(values, valid)]
    return values


def _encode_column(field: Field, values: list) -> Tuple[int, List[bytes]]:
    """(null count, buffers: validity, then the type's own)."""
    n = len(values)
    nulls = values.count(None)
    if nulls and not field.nullable:
        raise IpcError(f"column `{field.name}` is declared not null but has {nulls} nulls")
    validity = b""
    if nulls:
        validity = _pack_bits("".join(["0" if v is None else "1" for v in values]), n)
    t = field.type
    if t == UTF8:
        if nulls:
            values = ["" if v is None else v for v in values]
        try:
            joined = "".join(values)
        except TypeError:
            bad = next(v for v in values if not isinstance(v, str))
            raise IpcError(
                f"column `{field.name}` is utf8 but holds {type(bad).__name__} {bad!r}"
            ) from None
        if joined.isascii():
            data = joined.encode("ascii")
            lengths = map(len, values)
        else:
            encoded = [v.encode("utf-8") for v in values]
            data = b"".join(encoded)
            lengths = map(len, encoded)
        offsets = _number_bytes(list(accumulate(lengths, initial=0)), "i", field.name)
        return nulls, [validity, offsets, data]
    if t == BOOLEAN:
        bits = _pack_bits("".join(["1" if v else "0" for v in values]), n)
        return nulls, [validity, bits]
    code = _typecode(t)
    if code is None:
        raise IpcError(f"cannot write Arrow type {t!r}")
    if nulls:
        values = [0 if v is None else v for v in values]
    return nulls, [validity, _number_bytes(values, code, field.name)]


def _batch_message(table: Table) -> bytes:
    nodes, buffers, body = [], [], bytearray()
    n = table.num_rows
    for field, values in zip(table.schema.fields, table.columns):
        nulls, column_buffers = _encode_column(field, values)
        nodes.append(struct.pack("<qq", n, nulls))
        for data in column_buffers:
            buffers.append(struct.pack("<qq", len(body), len(data)))
            body += data
            body += bytes(-len(body) % 8)

    def header(fb: _Builder) -> int:
        buffer_vector = fb.structs(buffers)
        node_vector = fb.structs(nodes)
        return fb.table([(0, "q", n), (1, "ref", node_vector), (2, "ref", buffer_vector)])

    return _message(_RECORD_BATCH, header, len(body)) + bytes(body)


# ---------------------------------------------------------------------------------------
# Streams


def _messages(data):
    """(header type, header table, body) of each message until the end marker."""
    view = memoryview(data)
    at = 0
    while at + 4 <= len(view):
        length = struct.unpack_from("<i", view, at)[0]
        at += 4
        if length == -1:  # continuation marker; the length follows
            if at + 4 > len(view):
                raise IpcError("the stream ends inside a message")
            length = struct.unpack_from("<i", view, at)[0]
            at += 4
        if length == 0:
            return
        if length < 0 or at + length > len(view):
            raise IpcError("the stream ends inside a message")
        meta = bytes(view[at : at + length])
        at += length
        message = _Table(meta, struct.unpack_from("<I", meta, 0)[0])
        header_type = message.scalar(1, "B")
        header = message.table(2)
        body_length = message.scalar(3, "q")
        if header is None or at + body_length > len(view):
            raise IpcError("a message has no header or its body is cut short")
        yield header_type, header, view[at : at + body_length]
        at += body_length


def _read_batch(header: _Table, body, schema: Schema) -> Table:
    if header.table(3) is not None:
        raise IpcError("compressed record batches are not supported")
    n = header.scalar(0, "q")
    node_start, node_count = header.vector(1)
    buffer_start, buffer_count = header.vector(2)
    buf = header.buf
    nodes = [struct.unpack_from("<qq", buf, node_start + 16 * i) for i in range(node_count)]
    spans = [struct.unpack_from("<qq", buf, buffer_start + 16 * i) for i in range(buffer_count)]
    if node_count != len(schema.fields):
        raise IpcError(f"a batch has {node_count} columns, its schema {len(schema.fields)}")
    columns, next_buffer = [], 0
    for field, (length, null_count) in zip(schema.fields, nodes):
        count = 3 if field.type == UTF8 else 2
        own = spans[next_buffer : next_buffer + count]
        next_buffer += count
        if len(own) != count or length != n:
            raise IpcError(f"column `{field.name}`: buffers or length do not match its type")
        buffers = []
        for offset, size in own:
            if offset < 0 or size < 0 or offset + size > len(body):
                raise IpcError(f"column `{field.name}`: a buffer lies outside the body")
            buffers.append(body[offset : offset + size])
        columns.append(_decode_column(field, n, null_count, buffers))
    return Table(schema, columns)


def read_stream(data: bytes) -> Tuple[Schema, List[Table]]:
    """The schema and every record batch of an IPC stream."""
    schema, tables = None, []
    for header_type, header, body in _messages(data):
        if header_type == _SCHEMA:
            if schema is not None:
                raise IpcError("the stream holds two schemas")
            schema = _read_schema(header)
        elif header_type == _RECORD_BATCH:
            if schema is None:
                raise IpcError("a record batch comes before the schema")
            tables.append(_read_batch(header, body, schema))
        elif header_type == _DICTIONARY_BATCH:
            raise IpcError("dictionary batches are not supported")
        else:
            raise IpcError(f"unexpected message type {header_type}")
    if schema is None:
        raise IpcError("the stream holds no schema")
    return schema, tables


def read_schema(data: bytes) -> Schema:
    return read_stream(data)[0]


def read_table(data: bytes) -> Table:
    """The one record batch of a stream (an empty table if it holds none)."""
    schema, tables = read_stream(data)
    if len(tables) > 1:
        raise IpcError(f"the stream holds {len(tables)} record batches, not one")
    return tables[0] if tables else Table.empty(schema)


def write_stream(schema: Schema, tables: List[Table]) -> bytes:
    out = [_schema_message(schema)]
    for table in tables:
        if table.schema != schema:
            raise IpcError("every batch of a stream must have the stream's schema")
        out.append(_batch_message(table))
    out.append(_CONTINUATION + b"\0\0\0\0")
    return b"".join(out)


def write_schema(schema: Schema) -> bytes:
    return write_stream(schema, [])


def write_table(table: Table) -> bytes:
    return write_stream(table.schema, [table])
