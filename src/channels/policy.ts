import { channelOrg } from './events.js'
import type { ChannelPolicy } from './types.js'

/**
 * Who may join which channel (docs/API.md section 9), in one place so a stricter policy
 * replaces one function. Default: any authenticated principal may join any channel,
 * except `org:<org_id>:…` channels, which belong to that org: only a principal whose
 * token names the same org id joins them. A token without an org id joins no org channel.
 */
export const defaultChannelPolicy: ChannelPolicy = (principal, channelId) => {
  const org = channelOrg(channelId)
  if (org === undefined) return { ok: true }
  if (principal.orgId !== '' && principal.orgId === org) return { ok: true }
  return { ok: false, reason: `channel "${channelId}" is open to members of org ${org} only` }
}
