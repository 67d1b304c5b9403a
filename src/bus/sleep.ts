/**
 * Sleeps up to `ms`, or until the function handed to `setWaker` is called (a status change,
 * close): the retry loops of the bus and of the channels' NATS parts. The timer never keeps
 * a process alive that is otherwise done.
 */
export function wakeableSleep(ms: number, setWaker: (wake: () => void) => void): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms)
    timer.unref()
    function done() {
      clearTimeout(timer)
      resolve()
    }
    setWaker(done)
  })
}
