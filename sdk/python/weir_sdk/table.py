"""Tables as plain Python lists: no pyarrow runs inside a component.

A column is a list of Python values, ``None`` for null:

===================  =========================================================
type                 values
===================  =========================================================
int8 … int64,        ``int``
uint8 … uint64
float32, float64     ``float``
utf8                 ``str``
boolean              ``bool``
date32               ``int``: days since 1970-01-01
timestamp(unit, tz)  ``int``: seconds, ms, µs or ns (``unit``) since the epoch,
                     UTC; ``tz`` is only a label, as in Arrow
===================  =========================================================
"""

from dataclasses import dataclass
from itertools import compress
from typing import Any, Iterable, List, Optional, Sequence

__all__ = [
    "DataType",
    "Field",
    "Schema",
    "Table",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FLOAT32",
    "FLOAT64",
    "UTF8",
    "BOOLEAN",
    "DATE32",
    "timestamp",
]


@dataclass(frozen=True)
class DataType:
    """An Arrow type. ``unit`` and ``tz`` are set for timestamps only."""

    kind: str
    unit: Optional[str] = None
    tz: Optional[str] = None

    def __repr__(self) -> str:
        if self.kind == "timestamp":
            return f"timestamp[{self.unit}{', ' + self.tz if self.tz else ''}]"
        return self.kind


INT8 = DataType("int8")
INT16 = DataType("int16")
INT32 = DataType("int32")
INT64 = DataType("int64")
UINT8 = DataType("uint8")
UINT16 = DataType("uint16")
UINT32 = DataType("uint32")
UINT64 = DataType("uint64")
FLOAT32 = DataType("float32")
FLOAT64 = DataType("float64")
UTF8 = DataType("utf8")
BOOLEAN = DataType("boolean")
DATE32 = DataType("date32")

TIME_UNITS = ("s", "ms", "us", "ns")


def timestamp(unit: str = "us", tz: Optional[str] = None) -> DataType:
    """A timestamp type: ``unit`` is one of s, ms, us, ns; ``tz`` e.g. ``"UTC"`` or None."""
    if unit not in TIME_UNITS:
        raise ValueError(f"timestamp unit must be one of {TIME_UNITS}, not {unit!r}")
    return DataType("timestamp", unit, tz)


@dataclass(frozen=True)
class Field:
    name: str
    type: DataType
    nullable: bool = True


class Schema:
    """An ordered list of fields."""

    __slots__ = ("fields",)

    def __init__(self, fields: Iterable[Field]):
        self.fields: List[Field] = list(fields)

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.fields]

    def index(self, name: str) -> int:
        for i, f in enumerate(self.fields):
            if f.name == name:
                return i
        raise KeyError(name)

    def field(self, name: str) -> Field:
        return self.fields[self.index(name)]

    def __contains__(self, name: str) -> bool:
        return any(f.name == name for f in self.fields)

    def __iter__(self):
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Schema) and self.fields == other.fields

    def __repr__(self) -> str:
        return f"Schema({self.fields!r})"


class Table:
    """Columns (lists of equal length) and the schema that types them."""

    __slots__ = ("schema", "columns")

    def __init__(self, schema: "Schema | Sequence[Field]", columns: Sequence[list]):
        schema = schema if isinstance(schema, Schema) else Schema(schema)
        columns = [c if isinstance(c, list) else list(c) for c in columns]
        if len(columns) != len(schema.fields):
            raise ValueError(
                f"{len(schema.fields)} fields but {len(columns)} columns"
            )
        if columns:
            rows = len(columns[0])
            for f, c in zip(schema.fields, columns):
                if len(c) != rows:
                    raise ValueError(
                        f"column `{f.name}` has {len(c)} values, the first has {rows}"
                    )
        self.schema: Schema = schema
        self.columns: List[list] = columns

    @staticmethod
    def empty(schema: "Schema | Sequence[Field]") -> "Table":
        schema = schema if isinstance(schema, Schema) else Schema(schema)
        return Table(schema, [[] for _ in schema.fields])

    @property
    def num_rows(self) -> int:
        return len(self.columns[0]) if self.columns else 0

    @property
    def names(self) -> List[str]:
        return self.schema.names

    def __len__(self) -> int:
        return self.num_rows

    def column(self, name: str) -> list:
        """The values of column ``name`` (KeyError if there is none)."""
        return self.columns[self.schema.index(name)]

    def field(self, name: str) -> Field:
        return self.schema.field(name)

    def filter(self, keep: Sequence[bool]) -> "Table":
        """The rows where ``keep`` is true."""
        if len(keep) != self.num_rows:
            raise ValueError(f"{len(keep)} flags for {self.num_rows} rows")
        return Table(self.schema, [list(compress(c, keep)) for c in self.columns])

    def rows(self):
        """The rows as tuples (slower than working by column)."""
        return zip(*self.columns)

    def to_pydict(self) -> dict:
        return dict(zip(self.schema.names, self.columns))

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, Table)
            and self.schema == other.schema
            and self.columns == other.columns
        )

    def __repr__(self) -> str:
        return f"Table({self.schema!r}, {self.num_rows} rows)"
