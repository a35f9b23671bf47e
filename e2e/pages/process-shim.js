// The few bits of Node's `process` that simple-peer's stream dependencies touch.
export const process = {
  env: {},
  browser: true,
  version: '',
  versions: {},
  nextTick: (fn, ...args) => queueMicrotask(() => fn(...args)),
};
