// weir-sdk: write a Weir plugin in JavaScript over apache-arrow tables.
//
//   import { transform, invalidInput } from "weir-sdk";
//   export default transform({
//     init(config) { ... },            // optional: the step's settings, parsed from JSON
//     transform(table) { ... },        // an arrow Table (one batch) in, a Table or RecordBatch out
//     outputSchema(schema) { ... },    // optional: default = transform an empty table
//   });
//
// The SDK owns the WIT exports and the Arrow IPC stream encoding; `host plugin build`
// bundles the plugin with this file and turns it into a component.

import { RecordBatch, Schema, Struct, Table, makeBuilder, makeData, tableFromIPC, tableToIPC } from "apache-arrow";

const KINDS = ["invalid-config", "invalid-input", "internal"];

/** An error the host reports with its kind: invalid-config, invalid-input or internal. */
export class PluginError extends Error {
  constructor(kind, message) {
    super(message);
    this.name = "PluginError";
    this.kind = KINDS.includes(kind) ? kind : "internal";
  }
}

/** The step's settings are unusable. */
export const invalidConfig = (message) => new PluginError("invalid-config", message);
/** The batch lacks the columns or types the plugin needs. */
export const invalidInput = (message) => new PluginError("invalid-input", message);
/** Anything else. */
export const internal = (message) => new PluginError("internal", message);

// componentize-js turns a thrown `{ kind, message }` into the WIT `Err(plugin-error)`; any
// other thrown value (a string, an Error) traps the instance. So every export catches
// everything and rethrows it in that shape.
function toPluginError(e) {
  if (e && typeof e === "object" && KINDS.includes(e.kind) && typeof e.message === "string") {
    return { kind: e.kind, message: e.message };
  }
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return { kind: "internal", message };
}

function guarded(f) {
  return (...args) => {
    try {
      return f(...args);
    } catch (e) {
      throw toPluginError(e);
    }
  };
}

function parseConfig(config) {
  try {
    return JSON.parse(config);
  } catch (e) {
    throw invalidConfig(`the settings are not JSON: ${e.message}`);
  }
}

// The host sends one schema message and one batch (or none, for schemas): the plugin always
// gets a table of exactly one batch, empty for schemas.
function decode(bytes) {
  const table = tableFromIPC(bytes);
  if (table.batches.length === 1) return table;
  return new Table(table.schema, [oneBatch(table)]);
}

function asTable(out, what) {
  if (out instanceof Table) return out;
  if (out instanceof RecordBatch) return new Table(out.schema, [out]);
  throw internal(`${what} must return an apache-arrow Table or RecordBatch, not ${typeof out}`);
}

// The host takes exactly one record batch: merge several (a table built from chunks), or
// write an empty one.
function oneBatch(table) {
  if (table.batches.length === 1) return table.batches[0];
  return recordBatch(
    table.schema,
    table.schema.fields.map((f) => table.getChild(f.name) ?? makeBuilder({ type: f.type }).finish().toVector()),
  );
}

const encodeBatch = (table) => tableToIPC(new Table(table.schema, [oneBatch(table)]), "stream");
const encodeSchema = (schema) => tableToIPC(new Table(schema), "stream");

/**
 * A RecordBatch of `columns` (Vectors or Data, one per field, in order) under `schema` (a
 * Schema or an array of Fields): the fields' nullability and metadata are kept as given.
 */
export function recordBatch(schema, columns) {
  if (!(schema instanceof Schema)) schema = new Schema(schema);
  if (columns.length !== schema.fields.length) {
    throw internal(`recordBatch: ${schema.fields.length} fields but ${columns.length} columns`);
  }
  const children = columns.map((column, i) => {
    if (!column.data) return column; // a Data already
    if (column.data.length === 1) return column.data[0];
    // Several chunks (a column of a multi-batch table): copy them into one.
    const builder = makeBuilder({ type: schema.fields[i].type, nullValues: [null, undefined] });
    for (const value of column) builder.append(value);
    return builder.finish().toVector().data[0];
  });
  const length = children.length ? children[0].length : 0;
  if (children.some((c) => c.length !== length)) {
    throw internal(`recordBatch: the columns differ in length (${children.map((c) => c.length)})`);
  }
  return new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length, nullCount: 0, children }));
}

const WORLD = Symbol.for("weir.world");

/** A transform: `spec.transform(table)` returns the transformed Table or RecordBatch. */
export function transform(spec) {
  if (!spec || typeof spec.transform !== "function") {
    throw new TypeError("transform({ transform(table) { ... } }): a transform function is required");
  }
  return {
    [WORLD]: "transformer",
    exports: {
      init: guarded((config) => {
        const settings = parseConfig(config);
        if (spec.init) spec.init(settings);
      }),
      outputSchema: guarded((bytes) => {
        const input = decode(bytes);
        if (spec.outputSchema) {
          const schema = spec.outputSchema(input.schema);
          if (!(schema instanceof Schema)) throw internal("outputSchema must return an apache-arrow Schema");
          return encodeSchema(schema);
        }
        return encodeSchema(asTable(spec.transform(input), "transform").schema);
      }),
      transform: guarded((bytes) => encodeBatch(asTable(spec.transform(decode(bytes)), "transform"))),
    },
  };
}

/**
 * A validator: `spec.validate(table)` returns an array of checks
 * `{ name, passed, message?, failingRows? }` (failingRows: zero-based row indexes).
 */
export function validator(spec) {
  if (!spec || typeof spec.validate !== "function") {
    throw new TypeError("validator({ validate(table) { ... } }): a validate function is required");
  }
  return {
    [WORLD]: "validator",
    exports: {
      init: guarded((config) => {
        const settings = parseConfig(config);
        if (spec.init) spec.init(settings);
      }),
      validate: guarded((bytes) => {
        const checks = spec.validate(decode(bytes));
        if (!Array.isArray(checks)) throw internal("validate must return an array of checks");
        return {
          checks: checks.map((c) => ({
            name: String(c.name),
            passed: Boolean(c.passed),
            message: c.message === undefined ? "" : String(c.message),
            failingRows: Uint32Array.from(c.failingRows ?? []),
          })),
        };
      }),
    },
  };
}

/**
 * Used by the code `host plugin build` generates: the WIT exports of the plugin module's
 * default export. Runs while the component is built, so a mistake fails the build.
 */
export function exportsOf(plugin, world) {
  if (!plugin || !plugin[WORLD]) {
    throw new Error(
      "the plugin's entry module must `export default transform({...})` (or `validator({...})`) from weir-sdk",
    );
  }
  if (plugin[WORLD] !== world) {
    throw new Error(`the plugin is a ${plugin[WORLD]} but weir-plugin.toml says world = "${world}"`);
  }
  return plugin.exports;
}

