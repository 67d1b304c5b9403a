import { describe, expect, it } from 'vitest'
import { isPinnedImage } from './image-ref.js'

describe('isPinnedImage', () => {
  it.each([
    'node:20.19.5-bookworm-slim',
    'postgres:16.10-bookworm',
    'influxdb:3.10.1-core',
    'registry.example.com:5000/team/matt-collector:0.1.0',
    `nats@sha256:${'a'.repeat(64)}`,
  ])('accepts %s', (ref) => expect(isPinnedImage(ref)).toBe(true))

  it.each([
    'node',
    'node:latest',
    'node:20-bookworm-slim',
    'influxdb:3-core',
    'caddy:2',
    'registry.example.com:5000/matt-collector',
    'postgres:bookworm',
  ])('refuses %s', (ref) => expect(isPinnedImage(ref)).toBe(false))
})
