// The field table of a set of .proto files, read from protoc's own descriptors: one row per field,
// "<message> <number> <name> <label> <type>", e.g. "grpc.CreateContainerRequest 8 agent_pidns
// optional bool". Used to hold proto/ against Kata 1.x's table (test/fixtures/kata1-fields.txt).
import { fromBinary } from '@bufbuild/protobuf';
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FileDescriptorSetSchema,
  type DescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export interface FieldRow {
  message: string;
  number: number;
  name: string;
  label: 'repeated' | 'optional';
  /** A scalar's name (string, uint32, …) or a message's or enum's full name (grpc.Spec). */
  type: string;
}

export const rowText = (r: FieldRow): string =>
  `${r.message} ${r.number} ${r.name} ${r.label} ${r.type}`;

export function parseRow(line: string): FieldRow {
  const [message, number, name, label, type] = line.split(' ');
  return {
    message: message!,
    number: Number(number),
    name: name!,
    label: label as FieldRow['label'],
    type: type!,
  };
}

/** protoc's descriptor set of `files` (with their imports), from include dirs `includes`. */
export function descriptorSet(includes: string[], files: string[]): Uint8Array {
  const dir = mkdtempSync(path.join(tmpdir(), 'proto-fields-'));
  try {
    const out = path.join(dir, 'set.desc');
    execFileSync(
      'protoc',
      [
        ...includes.map((i) => `-I${i}`),
        '--include_imports',
        `--descriptor_set_out=${out}`,
        ...files,
      ],
      { timeout: 30_000, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every field of every message in the set outside google.protobuf, sorted. */
export function fieldTable(set: Uint8Array): FieldRow[] {
  const rows: FieldRow[] = [];
  const walk = (prefix: string, m: DescriptorProto): void => {
    const message = `${prefix}.${m.name}`;
    for (const f of m.field) {
      const scalar = FieldDescriptorProto_Type[f.type].replace(/^TYPE_/, '').toLowerCase();
      rows.push({
        message,
        number: f.number,
        name: f.name,
        label: f.label === FieldDescriptorProto_Label.REPEATED ? 'repeated' : 'optional',
        type: f.typeName ? f.typeName.replace(/^\./, '') : scalar,
      });
    }
    for (const n of m.nestedType) walk(message, n);
  };
  for (const file of fromBinary(FileDescriptorSetSchema, set).file) {
    if (file.package === 'google.protobuf') continue;
    for (const m of file.messageType) walk(file.package, m);
  }
  return rows.sort((a, b) => a.message.localeCompare(b.message) || a.number - b.number);
}
