/**
 * Whether an image reference is pinned to a version: a digest, or a tag that starts with at
 * least major.minor (`16.10-bookworm`, `2.11.9-alpine`, `3.10.1-core`). `latest`, no tag,
 * and a bare major (`20-slim`, `3-core`) all move under a deployment without an edit.
 */
export function isPinnedImage(ref: string): boolean {
  if (/@sha256:[0-9a-f]{64}$/.test(ref)) return true
  const lastSlash = ref.lastIndexOf('/')
  const colon = ref.indexOf(':', lastSlash + 1)
  if (colon === -1) return false
  const tag = ref.slice(colon + 1)
  return /^v?\d+\.\d+(\.\d+)?([-_.][\w.-]+)?$/.test(tag)
}
