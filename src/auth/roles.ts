/** Roles of users and scopes of API tokens (docs/API.md section 3). */

export const ROLES = ['admin', 'operator', 'viewer'] as const
export type Role = (typeof ROLES)[number]

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 }

/** Roles are ordered: an admin may do what an operator may, an operator what a viewer may. */
export const roleAtLeast = (role: Role, required: Role): boolean => RANK[role] >= RANK[required]

export const isRole = (v: unknown): v is Role => typeof v === 'string' && (ROLES as readonly string[]).includes(v)

export const SCOPES = ['ingest:write', 'channels:publish', 'devices:write'] as const
export type Scope = (typeof SCOPES)[number]
