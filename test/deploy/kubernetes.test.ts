import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseAllDocuments, parse as parseYaml } from 'yaml'
import { describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config.js'
import { REPO_ROOT } from '../helpers/process.js'
import { isPinnedImage } from './image-ref.js'

// The manifests of deploy/kubernetes/, validated against the Kubernetes API schemas of the
// `kubernetes-models` package (no cluster here), then checked for what the gateway needs.

const DIR = join(REPO_ROOT, 'deploy', 'kubernetes')
const NAMESPACE = 'matt-collector'

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: any }

const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
const objects: (Obj & { file: string })[] = files.flatMap((file) =>
  parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))
    .map((doc) => {
      expect(doc.errors, file).toEqual([])
      return doc.toJS() as Obj | null
    })
    .filter((o): o is Obj => o !== null)
    .map((o) => ({ ...o, file })),
)
const kustomization = parseYaml(readFileSync(join(DIR, 'kustomization.yaml'), 'utf8')) as {
  resources: string[]
  namespace?: string
  images?: { name: string; newName?: string; newTag?: string; digest?: string }[]
}

const find = (kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata.name === name)
const must = (kind: string, name: string): Obj => {
  const o = find(kind, name)
  expect(o, `${kind}/${name}`).toBeDefined()
  return o!
}
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v)

/** The model class for an object's apiVersion and kind, from kubernetes-models. */
async function modelFor(o: Obj): Promise<new (data: Obj) => { validate(): void }> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion]
  const path = group === undefined ? `kubernetes-models/${version}/${o.kind}` : `kubernetes-models/${group}/${version}/${o.kind}`
  const mod = (await import(path)) as Record<string, new (data: Obj) => { validate(): void }>
  return mod[o.kind]!
}

const gateway = must('StatefulSet', 'matt-collector')
const podSpec = gateway.spec.template.spec
const container = podSpec.containers.find((c: { name: string }) => c.name === 'matt-collector')
const configMap = must('ConfigMap', 'matt-collector-config')
const secret = must('Secret', 'matt-collector-secrets')

/** The gateway container's environment as the kubelet builds it: envFrom, then env with $(VAR) expanded. */
function gatewayEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const from of container.envFrom ?? []) {
    if (from.configMapRef) Object.assign(env, must('ConfigMap', from.configMapRef.name).data)
    if (from.secretRef) Object.assign(env, must('Secret', from.secretRef.name).stringData)
  }
  for (const e of container.env ?? []) {
    if (e.valueFrom?.secretKeyRef) env[e.name] = must('Secret', e.valueFrom.secretKeyRef.name).stringData[e.valueFrom.secretKeyRef.key]
    else if (e.valueFrom?.configMapKeyRef) env[e.name] = must('ConfigMap', e.valueFrom.configMapKeyRef.name).data[e.valueFrom.configMapKeyRef.key]
    else env[e.name] = String(e.value ?? '').replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, v: string) => env[v] ?? m)
  }
  return env
}
const gatewayConfig = loadConfig(gatewayEnv())

/** A Service (by DNS name and port) that selects pods of some workload in the namespace. */
function serviceFor(host: string, port: number): Obj | undefined {
  const svc = find('Service', host)
  if (svc === undefined || !svc.spec.ports.some((p: { port: number }) => p.port === port)) return undefined
  const selected = objects.filter((o) => o.kind === 'StatefulSet' && matches(svc.spec.selector, o.spec.template.metadata.labels))
  return selected.length === 1 ? svc : undefined
}

describe('deploy/kubernetes manifests', () => {
  it('lists every manifest in kustomization.yaml, without a namespace override', () => {
    expect([...kustomization.resources].sort()).toEqual([...files].sort())
    // kustomize's `namespace:` would move the ingress-nginx TCP ConfigMap out of ingress-nginx.
    expect(kustomization.namespace).toBeUndefined()
  })

  it('validates every object against the Kubernetes API schema', async () => {
    expect(objects.length).toBeGreaterThan(10)
    for (const o of objects) {
      const Model = await modelFor(o)
      expect(() => new Model(o).validate(), `${o.file}: ${o.kind}/${o.metadata.name}`).not.toThrow()
    }
  })

  it('has a validator that refuses a broken object (the check above can fail)', async () => {
    const broken = structuredClone(gateway)
    broken.spec.replicas = 'three'
    delete broken.spec.template.spec.containers
    const Model = await modelFor(broken)
    expect(() => new Model(broken).validate()).toThrow(/replicas|containers/)
  })

  it('puts everything in its namespace, the TCP services ConfigMap in ingress-nginx', () => {
    expect(must('Namespace', NAMESPACE)).toBeDefined()
    for (const o of objects) {
      if (o.kind === 'Namespace') continue
      const expected = o.kind === 'ConfigMap' && o.metadata.name === 'tcp-services' ? 'ingress-nginx' : NAMESPACE
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(expected)
    }
  })

  it('pins every image to a version, the gateway image through kustomization.yaml too', () => {
    const images = objects
      .filter((o) => o.kind === 'StatefulSet')
      .flatMap((o) => [...(o.spec.template.spec.initContainers ?? []), ...o.spec.template.spec.containers].map((c: { image: string }) => c.image))
    expect(images.length).toBeGreaterThanOrEqual(4)
    for (const image of images) expect(isPinnedImage(image), image).toBe(true)
    const override = kustomization.images?.find((i) => i.name === container.image.split(':')[0])
    if (override !== undefined) {
      expect(isPinnedImage(`${override.newName ?? override.name}${override.digest ? `@${override.digest}` : `:${override.newTag}`}`)).toBe(true)
    }
  })

  it('keeps the secrets in a Secret, as placeholders', () => {
    for (const key of ['JWT_SECRET', 'INFLUXDB_TOKEN', 'ADMIN_PASSWORD']) expect(secret.stringData?.[key], key).toBeTypeOf('string')
    for (const key of ['JWT_SECRET', 'INFLUXDB_TOKEN', 'ADMIN_PASSWORD', 'POSTGRES_PASSWORD', 'DATABASE_URL']) {
      expect(configMap.data[key], `${key} must not be in the ConfigMap`).toBeUndefined()
    }
    expect(secret.stringData.INFLUXDB_TOKEN).toMatch(/^apiv3_/)
  })
})

describe('the gateway StatefulSet', () => {
  it('runs 3 replicas under a headless governing Service', () => {
    expect(gateway.spec.replicas).toBe(3)
    const headless = must('Service', gateway.spec.serviceName)
    expect(headless.spec.clusterIP).toBe('None')
    expect(matches(headless.spec.selector, gateway.spec.template.metadata.labels)).toBe(true)
    expect(matches(gateway.spec.selector.matchLabels, gateway.spec.template.metadata.labels)).toBe(true)
  })

  it('mounts a volume claim per pod at DATA_DIR (the spool holds acknowledged data)', () => {
    const mount = container.volumeMounts.find((m: { mountPath: string }) => m.mountPath === gatewayConfig.dataDir)
    expect(mount, `a volumeMount at DATA_DIR ${gatewayConfig.dataDir}`).toBeDefined()
    const claim = gateway.spec.volumeClaimTemplates.find((t: Obj) => t.metadata.name === mount.name)
    expect(claim, 'the mount is a volumeClaimTemplate').toBeDefined()
    expect(claim.spec.accessModes).toContain('ReadWriteOnce')
    // Not also a pod volume (an emptyDir of the same name would shadow nothing, but say so).
    expect((podSpec.volumes ?? []).map((v: { name: string }) => v.name)).not.toContain(mount.name)
    expect(gateway.spec.persistentVolumeClaimRetentionPolicy?.whenScaled ?? 'Retain').toBe('Retain')
    expect(gateway.spec.persistentVolumeClaimRetentionPolicy?.whenDeleted ?? 'Retain').toBe('Retain')
  })

  it('is ready on /readyz and live on /healthz, on the HTTP port', () => {
    const httpPort = container.ports.find((p: { containerPort: number }) => p.containerPort === gatewayConfig.port)
    expect(httpPort, `containerPort ${gatewayConfig.port}`).toBeDefined()
    const onHttp = (port: string | number) => port === httpPort.name || port === httpPort.containerPort
    expect(container.readinessProbe.httpGet.path).toBe(`${gatewayConfig.pathPrefix}/readyz`)
    expect(onHttp(container.readinessProbe.httpGet.port)).toBe(true)
    expect(container.livenessProbe.httpGet.path).toBe(`${gatewayConfig.pathPrefix}/healthz`)
    expect(onHttp(container.livenessProbe.httpGet.port)).toBe(true)
    expect(container.ports.map((p: { containerPort: number }) => p.containerPort)).toEqual(expect.arrayContaining([8080, 1883]))
  })

  it('lets a pod finish its drain: preStop, then SHUTDOWN_GRACE_MS, within terminationGracePeriodSeconds', () => {
    const preStop = container.lifecycle?.preStop
    expect(preStop, 'a preStop hook').toBeDefined()
    const sleepS = preStop.sleep?.seconds ?? Number(preStop.exec?.command?.at(-1))
    expect(preStop.sleep ?? preStop.exec?.command?.[0]).toBeTruthy()
    expect(sleepS).toBeGreaterThan(0)
    expect(podSpec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(sleepS * 1000 + gatewayConfig.shutdownGraceMs)
  })

  it('runs as non-root with resources set, and a configuration the gateway starts with', () => {
    const pod = podSpec.securityContext
    expect(pod.runAsNonRoot).toBe(true)
    expect(pod.runAsUser).toBeGreaterThan(0)
    expect(pod.fsGroup, 'fsGroup: the claim writable for that user').toBe(pod.runAsUser)
    expect(container.securityContext.allowPrivilegeEscalation).toBe(false)
    expect(container.resources.requests).toMatchObject({ cpu: expect.anything(), memory: expect.anything() })
    expect(container.resources.limits?.memory).toBeDefined()
    expect(gatewayConfig.env).toBe('production')
    expect(gatewayConfig.trustProxy).toBe(true)
  })

  it('reaches Postgres, NATS and InfluxDB through Services of this namespace', () => {
    const db = new URL(gatewayConfig.databaseUrl!)
    expect(serviceFor(db.hostname, Number(db.port || 5432)), `Service ${db.hostname}:${db.port}`).toBeDefined()
    expect(db.password).toBe(secret.stringData.POSTGRES_PASSWORD)
    const nats = new URL(gatewayConfig.natsUrl!)
    expect(serviceFor(nats.hostname, Number(nats.port || 4222)), `Service ${nats.host}`).toBeDefined()
    const influx = new URL(gatewayConfig.influx!.url)
    expect(serviceFor(influx.hostname, Number(influx.port)), `Service ${influx.host}`).toBeDefined()
  })
})

describe('the gateway around its StatefulSet', () => {
  it('has a PodDisruptionBudget selecting the gateway pods that leaves some running', () => {
    const pdb = objects.find((o) => o.kind === 'PodDisruptionBudget' && matches(o.spec.selector.matchLabels, gateway.spec.template.metadata.labels))
    expect(pdb, 'a PDB selecting the gateway pods').toBeDefined()
    const { maxUnavailable, minAvailable } = pdb!.spec
    if (maxUnavailable !== undefined) expect(Number(maxUnavailable)).toBeLessThan(gateway.spec.replicas)
    else expect(Number(minAvailable)).toBeGreaterThan(0)
    expect(Number(maxUnavailable ?? gateway.spec.replicas - minAvailable)).toBeGreaterThan(0)
  })

  it('has a Service for HTTP (8080) and MQTT (1883) selecting the gateway pods', () => {
    const svc = must('Service', 'matt-collector')
    expect(svc.spec.clusterIP).not.toBe('None')
    expect(matches(svc.spec.selector, gateway.spec.template.metadata.labels)).toBe(true)
    const names = new Map(container.ports.map((p: { name: string; containerPort: number }) => [p.name, p.containerPort]))
    const targets = svc.spec.ports.map((p: { port: number; targetPort: string | number }) => [p.port, names.get(p.targetPort) ?? p.targetPort])
    expect(targets).toEqual(expect.arrayContaining([[8080, 8080], [1883, 1883]]))
  })

  it('has an Ingress to that Service with hour-long WebSocket timeouts and room for 10 MiB bodies', () => {
    const ingress = objects.find((o) => o.kind === 'Ingress')!
    expect(ingress).toBeDefined()
    const a = ingress.metadata.annotations ?? {}
    expect(Number(a['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(3600)
    expect(Number(a['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(3600)
    const size = /^(\d+)([kmg]?)$/i.exec(a['nginx.ingress.kubernetes.io/proxy-body-size'] ?? '')
    expect(size, 'proxy-body-size').not.toBeNull()
    const bytes = Number(size![1]) * { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[size![2]!.toLowerCase() as 'k']
    expect(bytes).toBeGreaterThanOrEqual(Math.max(10 * 1024 ** 2, gatewayConfig.httpWrite.maxBodyBytes, gatewayConfig.collectors.maxPushBodyBytes))
    const backends = ingress.spec.rules.flatMap((r: Obj) => r.http.paths.map((p: Obj) => p.backend.service))
    expect(backends.length).toBeGreaterThan(0)
    for (const b of backends) {
      expect(b.name).toBe('matt-collector')
      expect(b.port.name === 'http' || b.port.number === 8080).toBe(true)
    }
  })

  it('has the ingress-nginx TCP services ConfigMap sending 1883 to the gateway Service', () => {
    const tcp = must('ConfigMap', 'tcp-services')
    expect(tcp.metadata.namespace).toBe('ingress-nginx')
    // Without `:PROXY`: the broker reads MQTT from the first byte, not a PROXY protocol header.
    expect(String(tcp.data['1883'])).toBe(`${NAMESPACE}/matt-collector:1883`)
    expect(must('Service', 'matt-collector').spec.ports.some((p: { port: number }) => p.port === 1883)).toBe(true)
  })
})

describe('the stores', () => {
  it.each([
    ['postgres', '/var/lib/postgresql/data'],
    ['nats', '/data'],
    ['influxdb3-core', '/var/lib/influxdb3'],
  ])('%s is a StatefulSet with a volume claim mounted at %s, and a Service', (name, path) => {
    const sts = must('StatefulSet', name)
    const c = sts.spec.template.spec.containers[0]
    const mount = c.volumeMounts.find((m: { mountPath: string }) => m.mountPath === path)
    expect(mount).toBeDefined()
    expect(sts.spec.volumeClaimTemplates.map((t: Obj) => t.metadata.name)).toContain(mount.name)
    expect(matches(must('Service', name).spec.selector, sts.spec.template.metadata.labels)).toBe(true)
    expect(sts.spec.template.spec.securityContext?.runAsNonRoot).toBe(true)
  })

  it('runs NATS with JetStream stored on its claim', () => {
    const args: string[] = must('StatefulSet', 'nats').spec.template.spec.containers[0].args
    expect(args).toContain('-js')
    expect(args[args.indexOf('-sd') + 1]).toBe('/data')
  })

  it('gives InfluxDB the Secret token the gateway uses', () => {
    const c = must('StatefulSet', 'influxdb3-core').spec.template.spec.containers[0]
    const token = c.env.find((e: { name: string }) => e.name === 'INFLUXDB_TOKEN').valueFrom.secretKeyRef
    expect(must('Secret', token.name).stringData[token.key]).toBe(gatewayConfig.influx!.token)
    expect([...c.command, ...c.args].join(' ')).toMatch(/--admin-token-file[= ]\/var\/lib\/influxdb3\//)
  })
})
