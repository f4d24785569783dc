"""The IPC codec under plain CPython: `python3 -m unittest discover sdk/python/tests`.
(That arrow-rs reads what it writes, and the other way round, is host/tests/plugin_python_sdk.rs.)"""

import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from weir_sdk import (  # noqa: E402
    BOOLEAN,
    DATE32,
    FLOAT32,
    FLOAT64,
    INT8,
    INT32,
    INT64,
    UINT64,
    UTF8,
    Field,
    Schema,
    Table,
    timestamp,
)
from weir_sdk import ipc  # noqa: E402


def sample() -> Table:
    return Table(
        [
            Field("id", INT64, False),
            Field("i32", INT32),
            Field("i8", INT8),
            Field("u64", UINT64),
            Field("f64", FLOAT64),
            Field("f32", FLOAT32),
            Field("text", UTF8),
            Field("flag", BOOLEAN),
            Field("day", DATE32),
            Field("at", timestamp("us", "UTC")),
            Field("at_ns", timestamp("ns")),
        ],
        [
            [1, 2, 3, -(2**63)],
            [None, -5, 7, 2**31 - 1],
            [-128, None, 0, 127],
            [2**64 - 1, 0, None, 1],
            [0.5, None, -0.0, float("inf")],
            [0.25, 1.5, None, -2.0],
            ["a", None, "Ünïcödé ✓", ""],
            [True, False, None, True],
            [0, -1, None, 19_737],
            [None, 1_705_276_800_000_000, -1, 0],
            [1, 2, 3, None],
        ],
    )


class RoundTrip(unittest.TestCase):
    def test_every_type_with_nulls(self):
        table = sample()
        self.assertEqual(ipc.read_table(ipc.write_table(table)), table)

    def test_no_rows_and_many_rows(self):
        schema = sample().schema
        self.assertEqual(ipc.read_table(ipc.write_table(Table.empty(schema))), Table.empty(schema))
        big = Table([Field("n", INT64), Field("s", UTF8)], [list(range(10_001)), [str(i) for i in range(10_001)]])
        self.assertEqual(ipc.read_table(ipc.write_table(big)), big)

    def test_schema_alone(self):
        schema = sample().schema
        data = ipc.write_schema(schema)
        self.assertEqual(ipc.read_schema(data), schema)
        self.assertEqual(ipc.read_stream(data)[1], [])

    def test_layout(self):
        data = ipc.write_table(sample())
        # Schema message: continuation marker, metadata length (8-byte aligned).
        self.assertEqual(data[:4], b"\xff\xff\xff\xff")
        length = struct.unpack_from("<i", data, 4)[0]
        self.assertEqual(length % 8, 0)
        # The stream ends with the end-of-stream marker.
        self.assertEqual(data[-8:], b"\xff\xff\xff\xff\x00\x00\x00\x00")
        self.assertEqual(len(data) % 8, 0)


class Errors(unittest.TestCase):
    def test_nulls_in_a_not_null_column(self):
        table = Table([Field("id", INT64, False)], [[1, None]])
        with self.assertRaisesRegex(ipc.IpcError, "`id` is declared not null"):
            ipc.write_table(table)

    def test_wrong_python_type(self):
        with self.assertRaisesRegex(ipc.IpcError, "`s` is utf8 but holds int"):
            ipc.write_table(Table([Field("s", UTF8)], [["a", 3]]))
        with self.assertRaisesRegex(ipc.IpcError, "`n`"):
            ipc.write_table(Table([Field("n", INT32)], [[2**40]]))

    def test_garbage(self):
        with self.assertRaises(ipc.IpcError):
            ipc.read_table(b"\xff\xff\xff\xff\x10\x00\x00\x00abc")
        with self.assertRaises(ipc.IpcError):
            ipc.read_table(b"")

    def test_unsupported_types_are_named(self):
        def header(fb):
            large_utf8 = fb.table([])
            name = fb.string("x")
            children = fb.offsets([])
            field = fb.table(
                [(0, "ref", name), (1, "?", True), (2, "B", 20), (3, "ref", large_utf8), (5, "ref", children)]
            )
            return fb.table([(0, "h", 0), (1, "ref", fb.offsets([field]))])

        data = ipc._message(ipc._SCHEMA, header, 0) + b"\xff\xff\xff\xff\0\0\0\0"
        with self.assertRaisesRegex(ipc.IpcError, "`x` is large utf8, which the Python SDK"):
            ipc.read_schema(data)

    def test_columns_must_match_the_schema(self):
        with self.assertRaises(ValueError):
            Table([Field("a", INT64), Field("b", INT64)], [[1], [1, 2]])
        self.assertEqual(Schema([Field("a", INT64)]).names, ["a"])


if __name__ == "__main__":
    unittest.main()
