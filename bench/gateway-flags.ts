/**
 * The V8 flags the gateway runs with, as `npm start` and the Dockerfile give them (a test
 * checks that the three agree). `--initial-old-space-size=128`: a busy gateway allocates a
 * Buffer per WebSocket frame and per socket read outside the V8 heap, which forces a
 * scavenge every few tens of MB; with V8's default limits its small old space (about
 * 35 MB) is then marked and compacted 2 to 8 times a second, on helper threads that take
 * up to a third of a core from the main thread and the sink on a 2-core host (README,
 * Performance). With this room, a few times a minute.
 */
export const GATEWAY_NODE_FLAGS = ['--initial-old-space-size=128']
