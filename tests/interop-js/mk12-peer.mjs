#!/usr/bin/env node
// Minimal js-libp2p MK12 comparison server.
// Usage: node mk12-peer.mjs '<json config>' | node mk12-peer.mjs config.json
// Config (all optional):
//   {"responses": {"/fil/storage/status/1.2.0": "<hex>", "/fil/storage/ask/1.1.0": "<hex>", ...},
//    "listen": ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/tcp/0/ws"],
//    "encryption": ["noise", "tls"], "seedHex": "<64 hex chars>", "agent": "...",
//    "maxRequestBytes": 1048576, "readTimeoutMs": 30000}
// Each served protocol reads exactly one definite-length CBOR item (without
// waiting for EOF), writes the configured response bytes, and closes the stream.
// Prints {"peer": "...", "addrs": [...]} once ready; runs until killed.
import { readFileSync } from 'node:fs'
import { makeNode, hexToBytes, toBytes, cborItemLength } from './lib.mjs'

const DEFAULT_RESPONSES = {
  // arbitrary small fixed CBOR answers, override them in the config
  '/fil/storage/status/1.2.0': 'a2654572726f726e6a732d7065657220737461747573684465616c55554944f6', // {"Error": "js-peer status", "DealUUID": null}
  '/fil/storage/ask/1.1.0': 'a16341736bf6' // {"Ask": null}
}

function loadConfig (arg) {
  if (arg == null || arg === '') return {}
  const text = arg.trimStart().startsWith('{') ? arg : readFileSync(arg === '-' ? 0 : arg, 'utf8')
  return JSON.parse(text)
}

let cfg
try {
  cfg = loadConfig(process.argv[2])
} catch (err) {
  process.stderr.write(`mk12-peer: bad config: ${err.message}\n`)
  process.exit(2)
}

const responses = { ...DEFAULT_RESPONSES, ...(cfg.responses ?? {}) }
const responseBytes = Object.fromEntries(Object.entries(responses).map(([p, h]) => [p, hexToBytes(h)]))
const maxRequestBytes = cfg.maxRequestBytes ?? 1 << 20
const readTimeoutMs = cfg.readTimeoutMs ?? 30_000
const stats = { streams: 0, answered: 0, errors: 0 }

const node = await makeNode({
  server: true,
  listen: cfg.listen ?? ['/ip4/127.0.0.1/tcp/0', '/ip4/127.0.0.1/tcp/0/ws'],
  encryption: cfg.encryption,
  seedHex: cfg.seedHex,
  agent: cfg.agent ?? 'dealport-interop-js-peer'
})

function serve (protocol) {
  const answer = responseBytes[protocol]
  return (stream) => {
    stats.streams++
    let chunks = []
    let len = 0
    let done = false
    const timer = setTimeout(() => finish(new Error('read timeout')), readTimeoutMs)
    const finish = (err) => {
      if (done) return
      done = true
      clearTimeout(timer)
      stream.removeEventListener('message', onMessage)
      if (err != null) {
        stats.errors++
        stream.abort(err)
        return
      }
      try {
        stream.send(answer)
        stats.answered++
        stream.close().catch(e => stream.abort(e))
      } catch (e) {
        stats.errors++
        stream.abort(e)
      }
    }
    const onMessage = (evt) => {
      const b = toBytes(evt.data)
      chunks.push(b)
      len += b.byteLength
      if (len > maxRequestBytes) return finish(new Error('request too large'))
      const buf = chunks.length === 1 ? b : Buffer.concat(chunks)
      chunks = [buf]
      let n
      try { n = cborItemLength(buf) } catch (e) { return finish(e) }
      if (n >= 0) finish() // exactly one item arrived (trailing bytes are ignored)
    }
    stream.addEventListener('message', onMessage)
    // remote closed its write side / reset before a full item arrived
    stream.addEventListener('end', () => finish(new Error('eof before a complete CBOR item')))
    stream.addEventListener('close', () => { if (!done) { done = true; clearTimeout(timer) } })
    // 'end' may already have fired during protocol negotiation
    if (stream.readableEnded && stream.readBufferLength === 0) finish(new Error('eof before a complete CBOR item'))
  }
}

for (const protocol of Object.keys(responseBytes)) {
  await node.handle(protocol, serve(protocol), { maxInboundStreams: 4096, maxOutboundStreams: 4096 })
}

await node.start()
const peer = node.peerId.toString()
process.stdout.write(JSON.stringify({
  peer,
  addrs: node.getMultiaddrs().map(ma => ma.toString()),
  protocols: Object.keys(responseBytes)
}) + '\n')

const shutdown = async () => {
  process.stderr.write(`mk12-peer: stopping ${JSON.stringify(stats)}\n`)
  const t = setTimeout(() => process.exit(0), 2000)
  t.unref()
  try { await node.stop() } catch {}
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
