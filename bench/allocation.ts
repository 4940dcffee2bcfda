import { collectGarbage } from './stats.js';

/** Typed-array allocations seen while a function ran. */
export interface TypedArrayAllocations {
  /** Typed arrays constructed with their own new buffer (views over an existing buffer are not counted). */
  count: number;
  /** The bytes of those buffers. */
  bytes: number;
}

const COUNTED = ['Float32Array', 'Float64Array', 'Uint16Array', 'Int32Array', 'Uint8Array'] as const;
const COPYING_METHODS = ['slice', 'map', 'filter'] as const;

/**
 * Runs `body` with the global typed-array constructors wrapped so that every typed array allocated with a fresh
 * buffer is counted. Schedulers keep their big data in typed arrays, so this shows per-step buffer allocations
 * exactly (a heap reading cannot: the garbage collector frees them in between). Copies made with `slice`, `map`
 * or `filter` are counted too. Restores the globals afterwards.
 *
 * @param body - the work to observe
 */
export function countTypedArrayAllocations(body: () => void): TypedArrayAllocations {
  const seen: TypedArrayAllocations = { count: 0, bytes: 0 };
  const globals = globalThis as unknown as Record<string, unknown>;
  const originals = COUNTED.map((name) => [name, globals[name]] as const);
  for (const [name, original] of originals) {
    globals[name] = new Proxy(original as new (...args: unknown[]) => ArrayBufferView, {
      construct(target, args, newTarget) {
        const made = Reflect.construct(target, args, newTarget) as ArrayBufferView;
        if (!(args[0] instanceof ArrayBuffer) && !(args[0] instanceof SharedArrayBuffer)) {
          seen.count++;
          seen.bytes += made.byteLength;
        }
        return made;
      },
      get(target, key) {
        const value = Reflect.get(target, key);
        // Static methods such as Float32Array.from allocate too.
        if (key === 'from' || key === 'of') {
          return (...args: unknown[]) => {
            const made = (value as (...a: unknown[]) => ArrayBufferView).apply(target, args);
            seen.count++;
            seen.bytes += made.byteLength;
            return made;
          };
        }
        return value;
      },
    });
  }
  const typedArrayPrototype = Object.getPrototypeOf(Float32Array.prototype) as Record<string, unknown>;
  const copyingMethods = COPYING_METHODS.map((name) => [name, typedArrayPrototype[name]] as const);
  for (const [name, original] of copyingMethods) {
    typedArrayPrototype[name] = function (this: ArrayBufferView, ...args: unknown[]) {
      const made = (original as (...a: unknown[]) => ArrayBufferView).apply(this, args);
      seen.count++;
      seen.bytes += made.byteLength;
      return made;
    };
  }
  try {
    body();
  } finally {
    for (const [name, original] of originals) globals[name] = original;
    for (const [name, original] of copyingMethods) typedArrayPrototype[name] = original;
  }
  return seen;
}

/** Memory retained across a run, measured after full collections. */
export interface RetainedMemory {
  /** Growth of the V8 heap (`heapUsed`), bytes. */
  heapBytes: number;
  /** Growth of the memory held by ArrayBuffers outside the heap, bytes. */
  arrayBufferBytes: number;
}

/**
 * The memory `body` leaves behind: heap and ArrayBuffer usage after a full collection, minus the same before.
 *
 * @param body - the work to observe
 */
export function retainedMemory(body: () => void): RetainedMemory {
  collectGarbage();
  const before = process.memoryUsage();
  body();
  collectGarbage();
  const after = process.memoryUsage();
  return { heapBytes: after.heapUsed - before.heapUsed, arrayBufferBytes: after.arrayBuffers - before.arrayBuffers };
}
