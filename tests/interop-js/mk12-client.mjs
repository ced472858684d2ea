#!/usr/bin/env node
// js-libp2p MK12 interop client, driven by one JSON job.
// Usage: node mk12-client.mjs '<json job>'    |    echo '<json job>' | node mk12-client.mjs -
// Prints exactly one JSON result line on stdout; exit 0 whenever the job ran
// (dial/identify/request failures are reported inside the JSON), 2 on usage errors.
// See README.md for the job format.
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { multiaddr } from '@multiformats/multiaddr'
import { makeNode, hexToBytes, toBytes } from './lib.mjs'

const errMsg = (err) => (err?.name && err.name !== 'Error' ? `${err.name}: ` : '') + (err?.message ?? String(err))

function usage (msg) {
  process.stderr.write(`mk12-client: ${msg}\nusage: node mk12-client.mjs '<json job>' | -   (see README.md)\n`)
  process.exit(2)
}

function readJob () {
  const arg = process.argv[2]
  if (arg == null || arg === '') usage('missing job argument')
  let text
  try {
    text = arg === '-' ? readFileSync(0, 'utf8') : (arg.trimStart().startsWith('{') ? arg : readFileSync(arg, 'utf8'))
  } catch (err) { usage(`cannot read job: ${err.message}`) }
  let job
  try { job = JSON.parse(text) } catch (err) { usage(`job is not valid JSON: ${err.message}`) }
  if (job == null || typeof job !== 'object' || Array.isArray(job)) usage('job must be a JSON object')
  if (typeof job.addr !== 'string') usage('job.addr must be a multiaddr string')
  if (job.requests == null) job.requests = []
  if (!Array.isArray(job.requests)) usage('job.requests must be an array')
  job.requests.forEach((r, i) => {
    if (r == null || typeof r !== 'object') usage(`requests[${i}] must be an object`)
    if (typeof r.protocol !== 'string') usage(`requests[${i}].protocol must be a string`)
    if (r.hex != null && typeof r.hex !== 'string') usage(`requests[${i}].hex must be a string or null`)
    if (r.hex != null) {
      try { r.bytes = hexToBytes(r.hex) } catch (err) { usage(`requests[${i}].hex: ${err.message}`) }
    }
    if (r.sendHexSlowly != null) {
      const s = r.sendHexSlowly
      if (typeof s !== 'object' || !(s.chunkBytes >= 1) || !(s.delayMs >= 0)) usage(`requests[${i}].sendHexSlowly needs chunkBytes >= 1 and delayMs >= 0`)
    }
    if (r.holdOpenMs != null && !(r.holdOpenMs >= 0)) usage(`requests[${i}].holdOpenMs must be a number >= 0`)
  })
  if (job.timeoutMs != null && !(job.timeoutMs > 0)) usage('job.timeoutMs must be > 0')
  return job
}

async function runRequest (conn, req, jobTimeoutMs) {
  const timeoutMs = req.timeoutMs ?? jobTimeoutMs
  const out = { protocol: req.protocol, hex: null, error: null, ms: null }
  const t0 = performance.now()
  const elapsed = () => Math.round(performance.now() - t0)
  let stream
  try {
    stream = await conn.newStream(req.protocol, { signal: AbortSignal.timeout(timeoutMs), negotiateFully: true })
  } catch (err) {
    out.error = `newStream: ${errMsg(err)}`
    out.ms = elapsed()
    return out
  }

  const chunks = []
  let resetErr = null
  let finished = false
  const done = Promise.withResolvers()
  const finish = (how) => { if (!finished) { finished = true; done.resolve(how) } }
  stream.addEventListener('message', (evt) => { chunks.push(Buffer.from(toBytes(evt.data))) })
  stream.addEventListener('end', () => finish('end')) // remote closed its write side, all data delivered
  stream.addEventListener('close', (evt) => {
    if (evt.error != null) resetErr = evt.error
    setTimeout(() => finish('close'), 0) // let queued 'message' dispatches run first
  })
  if (stream.readableEnded) finish('end')
  const hexSoFar = () => Buffer.concat(chunks).toString('hex')

  try {
    if (req.holdOpenMs != null) {
      // open, write nothing, see whether the server closes the stream on us
      const r = await Promise.race([done.promise, sleep(req.holdOpenMs).then(() => 'held')])
      out.closedByRemoteAfterMs = r === 'held' ? null : elapsed()
    } else if (req.bytes != null && req.sendHexSlowly != null) {
      const { chunkBytes, delayMs } = req.sendHexSlowly
      let written = 0
      for (let off = 0; off < req.bytes.length; off += chunkBytes) {
        if (finished || stream.writeStatus !== 'writable') {
          out.error = `remote closed the stream during the slow write after ${written} of ${req.bytes.length} bytes`
          break
        }
        const part = req.bytes.subarray(off, off + chunkBytes)
        if (!stream.send(part)) await stream.onDrain({ signal: AbortSignal.timeout(timeoutMs) })
        written += part.length
        if (off + chunkBytes < req.bytes.length) await Promise.race([sleep(delayMs), done.promise])
      }
      out.bytesWritten = written
    } else if (req.bytes != null) {
      // ONE chunk, and the write side stays open: a correct server answers anyway
      if (!stream.send(req.bytes)) await stream.onDrain({ signal: AbortSignal.timeout(timeoutMs) })
    }
    if (req.closeWrite === true && stream.writeStatus === 'writable') {
      await stream.close({ signal: AbortSignal.timeout(timeoutMs) })
    }
    if (req.holdOpenMs == null) {
      const left = Math.max(0, timeoutMs - elapsed())
      const r = await Promise.race([done.promise, sleep(left).then(() => 'timeout')])
      if (r === 'timeout' && out.error == null) {
        out.error = `timeout: remote did not close the stream within ${timeoutMs}ms (received ${Buffer.concat(chunks).length} bytes)`
      }
    }
  } catch (err) {
    if (out.error == null) out.error = errMsg(err)
  }
  out.ms = elapsed()
  out.hex = hexSoFar()
  if (resetErr != null && out.error == null) out.error = `stream reset: ${errMsg(resetErr)}`
  out.remoteClosed = finished

  // tidy up our side of the stream
  try {
    if (finished && resetErr == null && stream.writeStatus === 'writable') {
      await Promise.race([stream.close(), sleep(1000)])
    }
    if (stream.status === 'open' || stream.status === 'closing') stream.abort(new Error('client done'))
  } catch {}
  return out
}

async function main () {
  const job = readJob()
  const timeoutMs = job.timeoutMs ?? 20_000
  const wantIdentify = job.identify === true && job.raw !== true
  const result = { peer: null, agent: null, protocols: [], responses: [], error: null }
  let node
  try {
    node = await makeNode({ encryption: job.encryption, identifyOnConnectionOpen: false, dialTimeoutMs: timeoutMs })
    await node.start()
    const conn = await node.dial(multiaddr(job.addr), { signal: AbortSignal.timeout(timeoutMs) })
    result.peer = conn.remotePeer.toString()
    result.encryption = conn.encryption ?? null
    result.muxer = conn.multiplexer ?? null
    if (wantIdentify) {
      try {
        const id = await node.services.identify.identify(conn, { signal: AbortSignal.timeout(timeoutMs) })
        result.agent = id.agentVersion ?? null
        result.protocolVersion = id.protocolVersion ?? null
        result.protocols = [...(id.protocols ?? [])].sort()
        result.listenAddrs = (id.listenAddrs ?? []).map(a => a.toString())
      } catch (err) {
        result.identifyError = errMsg(err)
      }
    }
    for (const req of job.requests) {
      if (conn.status !== 'open') {
        result.responses.push({ protocol: req.protocol, hex: null, error: `connection ${conn.status}`, ms: 0 })
        continue
      }
      result.responses.push(await runRequest(conn, req, timeoutMs))
    }
  } catch (err) {
    result.error = errMsg(err)
  }
  process.stdout.write(JSON.stringify(result) + '\n')
  if (node != null) await Promise.race([node.stop().catch(() => {}), sleep(2000)])
  process.exit(0)
}

process.on('unhandledRejection', (err) => { process.stderr.write(`mk12-client: unhandled rejection: ${errMsg(err)}\n`) })
await main()
