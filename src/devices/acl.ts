/**
 * What a device may do on the embedded broker, as pure functions of its id and a topic:
 * publish to `raw.<id>` and topics under it (forwarded to the NATS subject of the same
 * name, `/` becoming `.`), subscribe to `cmd.<id>` and filters under it. The id comes from
 * authentication (the mqtt_user), never from the client id.
 */

const RAW = 'raw.'
const CMD = 'cmd.'

// A NATS subject token may hold none of these (whitespace, the wildcards, control
// characters); `.` is the separator and checked separately. MQTT wildcards cannot reach
// here from a PUBLISH (the broker refuses them) but are refused again for safety.
const TOKEN_FORBIDDEN = /[\s*>+#\u0000-\u001f\u007f]/

// MQTT topic names and filters may not contain U+0000 [MQTT-4.7.3-2]; control
// characters are refused in filters too, nothing the gateway sends carries them.
const CONTROL = /[\u0000-\u001f\u007f]/

/** A device id usable inside subjects and topics (uuids are; this guards the rest). */
function usableId(deviceId: string): boolean {
  return deviceId.length > 0 && !TOKEN_FORBIDDEN.test(deviceId) && !deviceId.includes('.') && !deviceId.includes('/')
}

function validSubject(subject: string): boolean {
  for (const token of subject.split('.')) {
    if (token.length === 0 || TOKEN_FORBIDDEN.test(token)) return false
  }
  return true
}

/**
 * The NATS subject a device's publish to `topic` goes to, or undefined when the device may
 * not publish there: `raw.<id>` → `raw.<id>`, `raw.<id>/a/b` and `raw.<id>.a.b` →
 * `raw.<id>.a.b`. A topic whose mapping is no valid subject (an empty level, spaces, `*`,
 * `>`) is refused: NATS would reject or misroute it.
 */
export function publishSubject(deviceId: string, topic: string): string | undefined {
  if (!usableId(deviceId)) return undefined
  const own = RAW + deviceId
  if (!topic.startsWith(own)) return undefined
  if (topic.length > own.length) {
    const next = topic.charCodeAt(own.length)
    // `raw.<id>x` is another device's topic, not one under this one's.
    if (next !== 0x2f /* / */ && next !== 0x2e /* . */) return undefined
  }
  const subject = topic.replaceAll('/', '.')
  return validSubject(subject) ? subject : undefined
}

/**
 * Whether a device may subscribe to `filter`: `cmd.<id>`, or a filter under it
 * (`cmd.<id>/#`, `cmd.<id>/+/x`, `cmd.<id>.a`, `cmd.<id>.a/#`). The first level must be
 * the device's own, without wildcards, so `#`, `+/...`, `cmd.+/...` and other devices'
 * filters are refused; so are malformed filters and `$share/...`.
 */
export function maySubscribe(deviceId: string, filter: string): boolean {
  if (!usableId(deviceId) || !validFilter(filter)) return false
  const own = CMD + deviceId
  const slash = filter.indexOf('/')
  const first = slash === -1 ? filter : filter.slice(0, slash)
  if (first === own) return true
  // `cmd.<id>.a.b`: the rest are subject tokens a command can carry.
  return first.startsWith(own + '.') && validSubject(first)
}

/** [MQTT-4.7.1]: `#` only as the whole last level, `+` only as a whole level. */
function validFilter(filter: string): boolean {
  if (filter.length === 0 || CONTROL.test(filter)) return false
  const levels = filter.split('/')
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') {
      if (i !== levels.length - 1) return false
    } else if (level !== '+' && (level.includes('#') || level.includes('+'))) {
      return false
    }
  }
  return true
}

/**
 * Where a NATS command goes: `cmd.<id>` or `cmd.<id>.a.b` → that device, on the MQTT topic
 * of the same name (`.` kept). Undefined for subjects that name no device or that are no
 * valid MQTT topic name (wildcard characters, U+0000).
 */
export function commandTarget(subject: string): { deviceId: string; topic: string } | undefined {
  if (!subject.startsWith(CMD)) return undefined
  const end = subject.indexOf('.', CMD.length)
  const deviceId = end === -1 ? subject.slice(CMD.length) : subject.slice(CMD.length, end)
  if (!usableId(deviceId)) return undefined
  if (subject.includes('+') || subject.includes('#') || subject.includes('\u0000')) return undefined
  return { deviceId, topic: subject }
}
