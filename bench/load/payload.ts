/**
 * The message every MQTT and JetStream load generator sends: a sensor reading as JSON,
 * padded to `bytes`. Opaque to every broker (it is not line protocol, so the gateway only
 * forwards it).
 */
export function reading(bytes: number): Buffer {
  const text = JSON.stringify({ t: 1_700_000_000_000, temp: 21.5, hum: 40.2, pad: '' })
  return Buffer.from(text.replace('"pad":""', `"pad":"${'x'.repeat(Math.max(0, bytes - text.length))}"`)).subarray(0, bytes)
}
