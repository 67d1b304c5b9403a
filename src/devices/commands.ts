import type { Bus, BusSubscription } from '../bus/bus.js'

export interface CommandTarget {
  /** Delivers to the device's subscriptions if it is connected here; false otherwise. */
  deliverCommand(subject: string, data: Uint8Array): boolean
}

/**
 * NATS `cmd.<id>` and `cmd.<id>.a.b` to the device, on whichever instance holds its
 * connection: every instance subscribes (no queue group) and only the one with a session
 * of that device delivers; the others drop the message at a map lookup.
 */
export function subscribeCommands(bus: Pick<Bus, 'subscribe'>, broker: CommandTarget): BusSubscription {
  return bus.subscribe('cmd.>', (msg) => {
    broker.deliverCommand(msg.subject, msg.data)
  })
}
