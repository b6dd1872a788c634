// Forms generated from an action's parameters: the flat `parameters` list (values are strings)
// and, where present, `parameters_schema` (a JSON Schema: typed, nested values). Secret fields
// (a name starting with '#', or format "password") are password inputs; the gateway encrypts
// them on receipt. A schema property may name a sync action that fills its choices, the way a
// Keboola form fills a table list: {"options": {"async": {"action": "list-tables", "label": "Load tables"}}}.
import type { Json, ActionSpec } from "./api";

export type Kind = "text" | "password" | "textarea" | "number" | "integer" | "boolean" | "select" | "multiselect" | "json";

export interface Choice {
  value: string;
  label: string;
}

export interface Field {
  key: string;
  path: string[];
  kind: Kind;
  label: string;
  description?: string;
  required: boolean;
  initial: FieldValue;
  choices?: Choice[];
  syncAction?: { action: string; label: string };
  group?: string;
  typed: boolean; // values of schema fields keep their JSON type; flat parameters are strings
}

export type FieldValue = string | boolean | string[];
type Schema = Record<string, unknown>;

export const keyOf = (path: (string | number)[]) => path.map(String).join("\u0000");

function isSecretName(name: string): boolean {
  return name.startsWith("#");
}

function asChoices(values: unknown[], labels?: unknown[]): Choice[] {
  return values.map((v, i) => ({ value: String(v), label: String(labels?.[i] ?? v) }));
}

/** Choices out of a sync action's answer: strings, {value, label}, or {name} objects, possibly under one key. */
export function choicesFromAnswer(answer: Json): Choice[] {
  let list: unknown = answer;
  if (list && typeof list === "object" && !Array.isArray(list)) {
    const arrays = Object.values(list).filter(Array.isArray);
    list = arrays.length === 1 ? arrays[0] : [];
  }
  if (!Array.isArray(list)) return [];
  return list.flatMap((item): Choice[] => {
    if (typeof item === "string" || typeof item === "number") return [{ value: String(item), label: String(item) }];
    if (item && typeof item === "object") {
      const o = item as Record<string, unknown>;
      const value = o.value ?? o.name ?? o.id;
      if (value === undefined) return [];
      return [{ value: String(value), label: String(o.label ?? o.title ?? value) }];
    }
    return [];
  });
}

function schemaFields(schema: Schema, path: string[], required: Set<string>, group: string | undefined, out: Field[]): void {
  const properties = (schema.properties ?? {}) as Record<string, Schema>;
  const order = Object.keys(properties).sort(
    (a, b) => Number(properties[a].propertyOrder ?? 1000) - Number(properties[b].propertyOrder ?? 1000),
  );
  for (const name of order) {
    const prop = properties[name] ?? {};
    const here = [...path, name];
    const label = String(prop.title ?? name);
    const type = Array.isArray(prop.type) ? String(prop.type.find((t) => t !== "null") ?? "string") : String(prop.type ?? "string");
    const description = prop.description ? String(prop.description) : undefined;
    const isRequired = required.has(name);
    const base = { key: keyOf(here), path: here, label, description, required: isRequired, group, typed: true };
    const options = (prop.options ?? {}) as { async?: { action?: string; label?: string } };
    const syncAction = options.async?.action
      ? { action: options.async.action, label: options.async.label ?? `Load ${label.toLowerCase()}` }
      : undefined;
    if (type === "object" && prop.properties) {
      schemaFields(prop, here, new Set((prop.required as string[]) ?? []), label, out);
    } else if (type === "boolean") {
      out.push({ ...base, kind: "boolean", initial: prop.default === true });
    } else if (type === "integer" || type === "number") {
      out.push({ ...base, kind: type, initial: prop.default === undefined ? "" : String(prop.default) });
    } else if (type === "array") {
      const items = (prop.items ?? {}) as Schema;
      if (Array.isArray(items.enum) || syncAction) {
        out.push({
          ...base,
          kind: "multiselect",
          initial: Array.isArray(prop.default) ? prop.default.map(String) : [],
          choices: Array.isArray(items.enum) ? asChoices(items.enum, items.enumNames as unknown[]) : [],
          syncAction,
        });
      } else {
        out.push({ ...base, kind: "json", initial: prop.default === undefined ? "" : JSON.stringify(prop.default) });
      }
    } else if (type === "string") {
      const secret = isSecretName(name) || prop.format === "password" || prop.writeOnly === true;
      const initial = secret || prop.default === undefined ? "" : String(prop.default);
      if (Array.isArray(prop.enum) || syncAction) {
        out.push({
          ...base,
          kind: "select",
          initial,
          choices: Array.isArray(prop.enum) ? asChoices(prop.enum, prop.enumNames as unknown[]) : [],
          syncAction,
        });
      } else {
        const long = prop.format === "textarea" || Number(prop.maxLength ?? 0) > 200;
        out.push({ ...base, kind: secret ? "password" : long ? "textarea" : "text", initial });
      }
    } else {
      out.push({ ...base, kind: "json", initial: prop.default === undefined ? "" : JSON.stringify(prop.default) });
    }
  }
}

/** The form's fields: the schema's properties first, then flat parameters the schema does not cover. */
export function fieldsFor(spec: ActionSpec): Field[] {
  const out: Field[] = [];
  const schema = spec.parameters_schema as Schema | null | undefined;
  if (schema && typeof schema === "object" && schema.properties) {
    schemaFields(schema, [], new Set((schema.required as string[]) ?? []), undefined, out);
  }
  const covered = new Set(out.map((f) => f.path[0]));
  for (const p of spec.parameters ?? []) {
    if (covered.has(p.name)) continue;
    const secret = isSecretName(p.name);
    out.push({
      key: keyOf([p.name]),
      path: [p.name],
      kind: secret ? "password" : "text",
      label: p.name,
      description: p.description ?? undefined,
      required: Boolean(p.required) && (p.default === null || p.default === undefined),
      initial: secret || p.default === null || p.default === undefined ? "" : String(p.default),
      typed: false,
    });
  }
  return out;
}

export function initialValues(fields: Field[]): Record<string, FieldValue> {
  return Object.fromEntries(fields.map((f) => [f.key, f.initial]));
}

/** The request's `parameters` from the form, or the errors that keep it from being sent. */
export function buildParameters(
  fields: Field[],
  values: Record<string, FieldValue>,
): { parameters: Record<string, Json>; errors: Record<string, string> } {
  const parameters: Record<string, Json> = {};
  const errors: Record<string, string> = {};
  for (const field of fields) {
    const raw = values[field.key];
    let value: Json | undefined;
    if (field.kind === "boolean") {
      value = Boolean(raw);
    } else if (field.kind === "multiselect") {
      const list = Array.isArray(raw) ? raw : [];
      value = list.length ? list : undefined;
    } else {
      const text = typeof raw === "string" ? raw : "";
      if (text === "") {
        value = undefined;
      } else if (field.kind === "json") {
        try {
          value = JSON.parse(text) as Json;
        } catch {
          errors[field.key] = "not valid JSON";
          continue;
        }
      } else if (field.typed && (field.kind === "number" || field.kind === "integer")) {
        const number = Number(text);
        if (!Number.isFinite(number) || (field.kind === "integer" && !Number.isInteger(number))) {
          errors[field.key] = field.kind === "integer" ? "a whole number" : "a number";
          continue;
        }
        value = number;
      } else {
        value = text;
      }
    }
    if (value === undefined) {
      if (field.required) errors[field.key] = "required";
      continue;
    }
    let target: Record<string, Json> = parameters;
    for (const part of field.path.slice(0, -1)) {
      const next = target[part];
      if (!next || typeof next !== "object" || Array.isArray(next)) target[part] = {};
      target = target[part] as Record<string, Json>;
    }
    target[field.path[field.path.length - 1]] = value;
  }
  return { parameters, errors };
}

/** Field errors from a 422's `details` (loc = ["body", "parameters", ...path]). */
export function errorsFromDetails(details: { loc: (string | number)[]; msg: string }[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const d of details ?? []) {
    const at = d.loc.indexOf("parameters");
    if (at >= 0 && d.loc.length > at + 1) out[keyOf(d.loc.slice(at + 1))] = d.msg;
  }
  return out;
}
