#!/usr/bin/env node
// Self-test: start mk12-peer.mjs as a child, drive mk12-client.mjs against it
// over TCP and WS (noise and tls), and check that the answers round-trip.
// Exit code 0 only if every check passes. Usage: node selftest.mjs
import { spawn, execFile } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { makeNode, hexToBytes, toBytes, cborItemLength } from './lib.mjs'

const here = dirname(fileURLToPath(import.meta.url))
const STATUS = '/fil/storage/status/1.2.0'
const ASK = '/fil/storage/ask/1.1.0'
// {"DealUUID": h'000102..0f', "Error": "", "IsOffline": false}
const STATUS_RESP = 'a3' + '684465616c55554944' + '50' + '000102030405060708090a0b0c0d0e0f' +
  '654572726f72' + '60' + '6949734f66666c696e65' + 'f4'
// {"Ask": {"Price": h'0064', "MinPieceSize": 65536}}
const ASK_RESP = 'a1' + '6341736b' + 'a2' + '655072696365' + '420064' + '6c4d696e506965636553697a65' + '1a00010000'
const SEED = '11'.repeat(32)

let passed = 0
let failed = 0
function check (name, cond, detail) {
  if (cond) { passed++; console.log(`ok   ${name}`) } else { failed++; console.log(`FAIL ${name}${detail != null ? ' :: ' + JSON.stringify(detail) : ''}`) }
}

function runClient (job, { stdin = false } = {}) {
  return new Promise((resolve) => {
    const args = [join(here, 'mk12-client.mjs'), stdin ? '-' : JSON.stringify(job)]
    const child = execFile(process.execPath, args, { timeout: 60_000 }, (err, stdout, stderr) => {
      let json = null
      try { json = JSON.parse(stdout.trim().split('\n').pop()) } catch {}
      resolve({ code: err?.code ?? 0, json, stdout, stderr })
    })
    if (stdin) child.stdin.end(JSON.stringify(job))
  })
}

async function startPeer (config) {
  const child = spawn(process.execPath, [join(here, 'mk12-peer.mjs'), JSON.stringify(config)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const rl = createInterface({ input: child.stdout })
  const line = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('mk12-peer did not start within 20s')), 20_000)
    rl.once('line', (l) => { clearTimeout(t); resolve(l) })
    child.once('exit', (c) => reject(new Error(`mk12-peer exited early (${c})`)))
  })
  return { child, info: JSON.parse(line) }
}

// sanity-check the fixed answers are single CBOR items (peer/client don't care, but keep them honest)
check('fixture STATUS_RESP is one CBOR item', cborItemLength(hexToBytes(STATUS_RESP)) === STATUS_RESP.length / 2)
check('fixture ASK_RESP is one CBOR item', cborItemLength(hexToBytes(ASK_RESP)) === ASK_RESP.length / 2)

const { child: peer, info } = await startPeer({
  responses: { [STATUS]: STATUS_RESP, [ASK]: ASK_RESP },
  seedHex: SEED,
  agent: 'selftest-peer/1',
  readTimeoutMs: 1500
})
try {
  const tcp = info.addrs.find(a => a.includes('/tcp/') && !a.includes('/ws'))
  const ws = info.addrs.find(a => a.includes('/ws'))
  check('peer listens on tcp and ws', tcp != null && ws != null, info)
  check('peer id is derived from seed', info.peer.startsWith('12D3KooW'), info.peer)

  const statusReq = 'a16444617461f6' // one small CBOR map
  const askReq = 'a0'
  for (const [label, addr, encryption] of [['tcp/noise', tcp, ['noise']], ['ws/noise', ws, ['noise']], ['tcp/tls', tcp, ['tls']], ['ws/tls', ws, ['tls']]]) {
    const r = await runClient({ addr, identify: true, timeoutMs: 10_000, encryption, requests: [{ protocol: STATUS, hex: statusReq }, { protocol: ASK, hex: askReq }] })
    const j = r.json
    check(`${label}: exit 0 and JSON`, r.code === 0 && j != null, r.stderr)
    if (j == null) continue
    check(`${label}: no job error`, j.error === null, j.error)
    check(`${label}: peer id`, j.peer === info.peer, j.peer)
    check(`${label}: encryption negotiated`, j.encryption === (encryption[0] === 'tls' ? '/tls/1.0.0' : '/noise'), j.encryption)
    check(`${label}: identify agent`, j.agent === 'selftest-peer/1', j.agent)
    check(`${label}: identify protocols`, j.protocols.includes(STATUS) && j.protocols.includes(ASK), j.protocols)
    check(`${label}: status round-trip`, j.responses[0]?.hex === STATUS_RESP && j.responses[0]?.error === null, j.responses[0])
    check(`${label}: ask round-trip`, j.responses[1]?.hex === ASK_RESP && j.responses[1]?.error === null, j.responses[1])
  }

  // request variants over TCP (stdin job input)
  const v = await runClient({
    addr: tcp,
    raw: true,
    timeoutMs: 5000,
    requests: [
      { protocol: STATUS, hex: statusReq, sendHexSlowly: { chunkBytes: 2, delayMs: 50 } },
      { protocol: ASK, hex: askReq, closeWrite: true },
      { protocol: ASK, holdOpenMs: 4000 },
      { protocol: ASK, hex: 'a1', closeWrite: true },
      { protocol: '/does/not/exist/1.0.0', hex: 'a0' },
      { protocol: ASK, hex: null, timeoutMs: 3000 }
    ]
  }, { stdin: true })
  const rs = v.json?.responses ?? []
  check('variants: exit 0 and JSON via stdin', v.code === 0 && v.json?.error === null, v.json ?? v.stderr)
  check('variants: raw skips identify', v.json?.agent === null)
  check('variants: slow write round-trip', rs[0]?.hex === STATUS_RESP && rs[0]?.bytesWritten === statusReq.length / 2, rs[0])
  check('variants: closeWrite round-trip', rs[1]?.hex === ASK_RESP && rs[1]?.error === null, rs[1])
  check('variants: holdOpen sees server read timeout (~1500ms)', rs[2]?.closedByRemoteAfterMs >= 1000 && rs[2]?.closedByRemoteAfterMs < 3500, rs[2])
  check('variants: truncated CBOR + EOF gives an error, no data', rs[3]?.hex === '' && rs[3]?.error != null, rs[3])
  check('variants: unsupported protocol reported', rs[4]?.hex === null && /newStream/.test(rs[4]?.error ?? ''), rs[4])
  check('variants: hex null reads until server gives up', rs[5]?.hex === '' && rs[5]?.remoteClosed === true, rs[5])

  // failures that must still exit 0 / usage errors exit 2
  const bad = await runClient({ addr: `/ip4/127.0.0.1/tcp/1/p2p/${info.peer}`, timeoutMs: 3000, requests: [] })
  check('dial failure: exit 0 with error', bad.code === 0 && typeof bad.json?.error === 'string', bad.json)
  const usage = await runClient({ requests: [] })
  check('usage error: exit 2', usage.code === 2, usage.code)

  // in-process: >32 concurrent inbound streams for one protocol on one connection
  const N = 200
  const node = await makeNode({})
  await node.start()
  try {
    const conn = await node.dial(multiaddr(tcp))
    const streams = await Promise.all(Array.from({ length: N }, () => conn.newStream(STATUS, { maxOutboundStreams: 4096 })))
    const answers = await Promise.all(streams.map(async (s) => {
      const chunks = []
      const ended = new Promise((resolve) => {
        s.addEventListener('message', (e) => chunks.push(Buffer.from(toBytes(e.data))))
        s.addEventListener('end', resolve)
        s.addEventListener('close', () => setTimeout(resolve, 0))
      })
      s.send(hexToBytes(statusReq))
      await Promise.race([ended, new Promise(resolve => setTimeout(resolve, 15_000))])
      return Buffer.concat(chunks).toString('hex')
    }))
    const good = answers.filter(h => h === STATUS_RESP).length
    check(`${N} concurrent streams on one connection all answered`, good === N, { good, N })
  } finally {
    await node.stop()
  }
} catch (err) {
  check('selftest ran without exceptions', false, err.stack ?? String(err))
} finally {
  peer.kill('SIGTERM')
}

console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
