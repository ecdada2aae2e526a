// Deterministic payload generators, shared with tests/interop/node_peer.py (which has a
// byte-identical Python twin), so that multi-megabyte payloads need not cross the JSON pipe.

export type TextSpec =
  | { type: 'repeat'; text: string; count: number }
  | { type: 'json'; size: number }
  | { type: 'random'; size: number; seed?: number };

export type BytesSpec =
  | TextSpec
  | { type: 'fill'; byte: number; count: number }
  | { type: 'random_bytes'; size: number; seed?: number };

const BASE36 = '0123456789abcdefghijklmnopqrstuvwxyz';
const JSON_HEAD = '{"items":[';
const JSON_PAD_OPEN = '],"pad":"';
const JSON_TAIL = '"}';

/** 32-bit LCG; the top byte of each state is the output. */
function* lcg(seed: number): Generator<number> {
  let state = seed >>> 0;
  for (;;) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    yield state >>> 24;
  }
}

function jsonItem(i: number): string {
  const value = (i * 7919) % 100003;
  return `{"id":${i},"name":"item-${i}","value":${value},"active":${i % 3 === 0},"tags":["t${i % 7}","t${i % 11}"]}`;
}

/** A JSON document of exactly `size` bytes (ASCII only). */
export function generateJson(size: number): string {
  const overhead = JSON_HEAD.length + JSON_PAD_OPEN.length + JSON_TAIL.length;
  if (size < overhead) {
    throw new Error(`json size must be at least ${overhead}`);
  }
  const items: string[] = [];
  let used = overhead;
  for (let i = 0; ; i++) {
    const item = jsonItem(i);
    const extra = item.length + (items.length > 0 ? 1 : 0);
    if (used + extra > size) {
      break;
    }
    items.push(item);
    used += extra;
  }
  return JSON_HEAD + items.join(',') + JSON_PAD_OPEN + 'x'.repeat(size - used) + JSON_TAIL;
}

function randomText(size: number, seed: number): string {
  const rng = lcg(seed);
  const parts: string[] = [];
  const block = 8192;
  for (let done = 0; done < size; done += block) {
    const n = Math.min(block, size - done);
    const codes = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      codes[i] = BASE36.charCodeAt((rng.next().value as number) % 36);
    }
    parts.push(String.fromCharCode(...codes));
  }
  return parts.join('');
}

export function generateText(spec: TextSpec): string {
  switch (spec.type) {
    case 'repeat':
      return spec.text.repeat(spec.count);
    case 'json':
      return generateJson(spec.size);
    case 'random':
      return randomText(spec.size, spec.seed ?? 1);
    default:
      throw new Error(`unknown text generator ${JSON.stringify(spec)}`);
  }
}

export function generateBytes(spec: BytesSpec): Uint8Array {
  switch (spec.type) {
    case 'fill':
      return new Uint8Array(spec.count).fill(spec.byte);
    case 'random_bytes': {
      const out = new Uint8Array(spec.size);
      const rng = lcg(spec.seed ?? 1);
      for (let i = 0; i < spec.size; i++) {
        out[i] = rng.next().value as number;
      }
      return out;
    }
    default:
      return new TextEncoder().encode(generateText(spec));
  }
}
