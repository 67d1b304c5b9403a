import { describe, expect, it } from 'vitest'
import { defaultChannelPolicy } from '../../src/channels/policy.js'
import type { ChannelPrincipal } from '../../src/channels/types.js'

const principal = (orgId: string): ChannelPrincipal => ({
  member: { user_id: 'u1', name: 'Alice' },
  org: orgId === '' ? '' : `Org ${orgId}`,
  orgId,
  exp: Math.floor(Date.now() / 1000) + 60,
  source: 'access',
})

describe('defaultChannelPolicy', () => {
  it('lets any authenticated principal join a channel that belongs to no org', () => {
    for (const channelId of ['general', 'room.42', 'orgs:acme:x', 'org-acme', 'org:acme']) {
      expect(defaultChannelPolicy(principal(''), channelId), channelId).toEqual({ ok: true })
      expect(defaultChannelPolicy(principal('other'), channelId), channelId).toEqual({ ok: true })
    }
  })

  it('lets members of the org join its org: channels', () => {
    expect(defaultChannelPolicy(principal('acme'), 'org:acme:general')).toEqual({ ok: true })
    expect(defaultChannelPolicy(principal('acme'), 'org:acme:room.7')).toEqual({ ok: true })
  })

  it('refuses org: channels to another org, naming the org', () => {
    const verdict = defaultChannelPolicy(principal('globex'), 'org:acme:general')
    expect(verdict.ok).toBe(false)
    expect(verdict.ok === false && verdict.reason).toContain('acme')
  })

  it('refuses org: channels to a principal without an org id', () => {
    expect(defaultChannelPolicy(principal(''), 'org:acme:general').ok).toBe(false)
  })

  it('compares the org id exactly (no prefix or case match)', () => {
    expect(defaultChannelPolicy(principal('acm'), 'org:acme:general').ok).toBe(false)
    expect(defaultChannelPolicy(principal('ACME'), 'org:acme:general').ok).toBe(false)
    expect(defaultChannelPolicy(principal('acme:general'), 'org:acme:general').ok).toBe(false)
  })
})
