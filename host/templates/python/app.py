"""{{name}}: upper-cases every string column (but the `_weir_` provenance columns, which
name the source file and row of each row and must pass through unchanged). Build with `host plugin build .`, check with
`host plugin test . --input test/input.csv --expect test/expected.csv`."""

from weir_sdk import UTF8, Table, Transform, export


@export
class Upper(Transform):
    def init(self, config: dict) -> None:
        # The step's settings from the pipeline file (`{}` when there are none).
        self.config = config

    def transform(self, table: Table) -> Table:
        columns = [
            [None if v is None else v.upper() for v in values]
            if field.type == UTF8 and not field.name.startswith("_weir_")
            else values
            for field, values in zip(table.schema, table.columns)
        ]
        return Table(table.schema, columns)
