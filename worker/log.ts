// The worker's log: its own lines, the Temporal SDK's (its worker, the workflows' and activities' loggers, the native
// core) through one function. One JSON object per line when stdout is not a terminal (a pod, a service manager, a
// pipe), for a log collector to index by field; a readable line on a terminal.
import { inspect } from 'node:util';
import type { LogEntry } from '@temporalio/worker';
import type { LogFormatSetting, LogLevel } from './config.js';
import { oneLineCause } from './failure-causes.js';

export type LogFormat = 'json' | 'text';

export type LogFields = Record<string, unknown>;

export interface WorkerLog {
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

export interface LogRecord {
  level: LogLevel;
  time: Date;
  message: string;
  fields?: LogFields;
}

/** auto: JSON unless stdout is a terminal. */
export function chooseLogFormat(setting: LogFormatSetting, stdoutIsTerminal: boolean): LogFormat {
  if (setting === 'auto') return stdoutIsTerminal ? 'text' : 'json';
  return setting;
}

// The SDK's attribute names, as a log collector expects them across services; its task token is left out (it would
// let whoever reads the log complete the activity) and its component is a plain field.
const RENAMED: Readonly<Record<string, string | undefined>> = { workflowRunId: 'runId', sdkComponent: 'component', taskToken: undefined };

/** The record's fields as written: SDK names mapped, an error as its one line (known cause) or its message and stack. */
function outputFields(record: LogRecord): LogFields {
  const out: LogFields = {};
  for (const [key, value] of Object.entries(record.fields ?? {})) {
    const name = key in RENAMED ? RENAMED[key] : key;
    if (name === undefined || value === undefined) continue;
    if (value instanceof Error) {
      const known = oneLineCause(value);
      out[name] = known ?? `${value.name}: ${value.message}`;
      // A failure of no known cause keeps its stack: a bug, a deadlocked workflow, something to look at.
      if (!known && value.stack) out[`${name}Stack`] = value.stack;
    } else {
      out[name] = value;
    }
  }
  return out;
}

const jsonValue = (_key: string, value: unknown): unknown => (typeof value === 'bigint' ? value.toString() : value);

/** One line for JSON (a stack stays inside its field); text: the message, its fields, and any stack on the lines below. */
export function formatRecord(record: LogRecord, format: LogFormat): string {
  const fields = outputFields(record);
  if (format === 'json') {
    // level, time and message first, and never replaced by a field of the same name.
    const head = { level: record.level.toLowerCase(), time: record.time.toISOString(), message: record.message };
    for (const key of Object.keys(head)) delete fields[key];
    try {
      return JSON.stringify({ ...head, ...fields }, jsonValue);
    } catch {
      // A field JSON cannot write (a cycle): the fields as Node prints them, still in one line.
      return JSON.stringify({ ...head, fields: inspect(fields, { breakLength: Infinity }) });
    }
  }
  // On a terminal the failure comes right after the message, before the SDK's long list of attributes.
  const { error, ...rest } = fields;
  const stacks = Object.entries(rest).filter(([key]) => key.endsWith('Stack'));
  const shown = Object.entries(rest).filter(([key]) => !key.endsWith('Stack'));
  const rendered = shown.map(([key, value]) => `${key}=${typeof value === 'string' ? value : inspect(value, { breakLength: Infinity, depth: 4 })}`);
  const level = record.level === 'INFO' ? '' : `${record.level} `;
  const failure = error === undefined ? '' : `: ${typeof error === 'string' ? error : inspect(error, { breakLength: Infinity })}`;
  return [`${record.time.toISOString()} [spot-guard] ${level}${record.message}${failure}${rendered.length > 0 ? ` (${rendered.join(', ')})` : ''}`, ...stacks.map(([, stack]) => String(stack))].join('\n');
}

/** Errors on stderr, the rest on stdout, as the worker has always written them. */
function writeLine(level: LogLevel, line: string): void {
  (level === 'ERROR' ? process.stderr : process.stdout).write(`${line}\n`);
}

export function createWorkerLog(format: LogFormat, write: (level: LogLevel, line: string) => void = writeLine): WorkerLog {
  const log = (level: LogLevel) => (message: string, fields?: LogFields) =>
    write(level, formatRecord({ level, time: new Date(), message, ...(fields ? { fields } : {}) }, format));
  return { info: log('INFO'), warn: log('WARN'), error: log('ERROR') };
}

/** The SDK's log function (Runtime.install's DefaultLogger): its entries in the worker's format. */
export function sdkLogFunction(format: LogFormat, write: (level: LogLevel, line: string) => void = writeLine): (entry: LogEntry) => void {
  return ({ level, message, meta, timestampNanos }) =>
    write(level, formatRecord({ level, message, time: new Date(Number(timestampNanos / 1_000_000n)), ...(meta ? { fields: meta } : {}) }, format));
}
