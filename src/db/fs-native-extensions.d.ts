// The package ships no types; only what src/db/data-dir-lock.ts uses.
declare module 'fs-native-extensions' {
  /** An exclusive (or shared) open-file-description lock on fd; false if another holds it. */
  export function tryLock(fd: number, opts?: { shared?: boolean }): boolean
}
