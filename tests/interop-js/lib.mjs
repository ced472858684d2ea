// Shared helpers for the dealport JS interop harness.
// polyfills.mjs must be evaluated before libp2p is loaded: keep it the first import.
import './polyfills.mjs'
import { createLibp2p } from 'libp2p'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { tls } from '@libp2p/tls'
import { tcp } from '@libp2p/tcp'
import { webSockets } from '@libp2p/websockets'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'

export const HARNESS_VERSION = '0.1.0'

export function hexToBytes (hex) {
  if (typeof hex !== 'string') throw new TypeError('hex must be a string')
  const h = hex.startsWith('0x') ? hex.slice(2) : hex
  if (h.length % 2 !== 0 || /[^0-9a-fA-F]/.test(h)) throw new Error(`invalid hex string (length ${h.length})`)
  return Uint8Array.from(Buffer.from(h, 'hex'))
}

export function bytesToHex (bytes) {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

/** Flatten a Uint8Array | Uint8ArrayList to a Uint8Array. */
export function toBytes (data) {
  return data instanceof Uint8Array ? data : data.subarray()
}

/**
 * Build (but do not start) a js-libp2p node.
 * opts.listen: multiaddr strings; opts.encryption: ['noise','tls'] order;
 * opts.seedHex: 32-byte Ed25519 seed for a stable peer id; opts.server: raise limits.
 */
export async function makeNode (opts = {}) {
  const encs = { noise: () => noise(), tls: () => tls() }
  const order = opts.encryption ?? ['noise', 'tls']
  for (const e of order) if (encs[e] == null) throw new Error(`unknown encryption "${e}" (noise|tls)`)
  const config = {
    addresses: { listen: opts.listen ?? [] },
    // @libp2p/websockets v10 dropped the old `filter` option: its dialFilter
    // accepts both /ws and /wss, so plain ws:// to 127.0.0.1 needs no setting.
    transports: [tcp(), webSockets()],
    connectionEncrypters: order.map(e => encs[e]()),
    streamMuxers: [yamux(opts.server ? { maxInboundStreams: 4096, maxOutboundStreams: 4096 } : {})],
    services: {
      // the client turns this off and runs identify explicitly so it can
      // report failures quickly instead of waiting for an event
      identify: identify({ runOnConnectionOpen: opts.identifyOnConnectionOpen ?? true }),
      ping: ping()
    },
    nodeInfo: { userAgent: opts.agent ?? `dealport-interop-js/${HARNESS_VERSION}` }
  }
  if (opts.seedHex != null) {
    config.privateKey = await generateKeyPairFromSeed('Ed25519', hexToBytes(opts.seedHex))
  }
  if (opts.server) {
    config.connectionManager = {
      maxConnections: 10_000,
      maxIncomingPendingConnections: 1024,
      inboundConnectionThreshold: 100_000,
      inboundUpgradeTimeout: 30_000,
      // loopback is exempt from the per-host rate limiter and maxConnections
      allow: ['/ip4/127.0.0.0/ipcidr/8', '/ip6/::1/ipcidr/128']
    }
  } else {
    config.connectionManager = { dialTimeout: opts.dialTimeoutMs ?? 20_000 }
  }
  return createLibp2p(config)
}

/**
 * Incremental CBOR item scanner (RFC 8949, definite lengths only).
 * Returns the byte length of the first complete data item in buf, or -1 if
 * more bytes are needed. Throws on indefinite lengths / reserved encodings.
 * Iterative (no recursion), so deeply nested input cannot blow the stack.
 */
export function cborItemLength (buf) {
  let off = 0
  let pending = 1 // items still to read
  while (pending > 0) {
    if (off >= buf.length) return -1
    const ib = buf[off++]
    const major = ib >> 5
    const ai = ib & 0x1f
    let val
    if (ai < 24) {
      val = ai
    } else if (ai <= 27) {
      const n = 1 << (ai - 24) // 1,2,4,8
      if (off + n > buf.length) return -1
      val = 0
      for (let i = 0; i < n; i++) val = val * 256 + buf[off + i]
      off += n
    } else if (ai === 31) {
      throw new Error(`indefinite-length CBOR not supported (major type ${major})`)
    } else {
      throw new Error(`reserved CBOR additional info ${ai}`)
    }
    pending--
    switch (major) {
      case 0: case 1: break // unsigned / negative int
      case 2: case 3: // byte / text string
        if (val > Number.MAX_SAFE_INTEGER - off) throw new Error('CBOR string length too large')
        if (off + val > buf.length) return -1
        off += val
        break
      case 4: pending += val; break // array
      case 5: pending += 2 * val; break // map
      case 6: pending += 1; break // tag
      case 7: break // simple / float: argument bytes already consumed
    }
    if (pending > 1e9) throw new Error('CBOR container too large')
  }
  return off
}
