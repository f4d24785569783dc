// {{name}}: upper-cases every string column (but the `_weir_` provenance columns, which
// name the source file and row of each row and must pass through unchanged). Build with `host plugin build .`, check with
// `host plugin test . --input test/input.csv --expect test/expected.csv`.
//
// `weir-sdk` and `apache-arrow` come with `host plugin build`; the table is an
// apache-arrow Table holding one batch.

import { DataType, Utf8, vectorFromArray } from "apache-arrow";
import { recordBatch, transform } from "weir-sdk";

export default transform({
  // The step's settings (a parsed JSON object); throw `invalidConfig(...)` to refuse them.
  init(_config) {},

  transform(table) {
    const columns = table.schema.fields.map((field) => {
      const column = table.getChild(field.name);
      if (!DataType.isUtf8(field.type) || field.name.startsWith("_weir_")) return column;
      const upper = Array.from(column, (value) => (value == null ? null : value.toUpperCase()));
      return vectorFromArray(upper, new Utf8());
    });
    return recordBatch(table.schema, columns);
  },
});
