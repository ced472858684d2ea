// Node 20 polyfills for the js-libp2p v3 line, which targets Node >= 22.
// Import this module FIRST (before anything from libp2p), e.g.
//   import './polyfills.mjs'
// It only fills gaps: on Node 22+ every branch below is a no-op.
import { WebSocket as WsWebSocket } from 'ws'

// 1. Promise.withResolvers (ES2024, Node 22). Used throughout @libp2p/utils,
//    yamux, multistream-select, ping, mortice, abort-error, ...
if (typeof Promise.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    value: function withResolvers () {
      let resolve, reject
      const promise = new this((res, rej) => { resolve = res; reject = rej })
      return { promise, resolve, reject }
    }
  })
}

// 2. global WebSocket (unflagged only from Node 22; Node 20 needs
//    --experimental-websocket). @libp2p/websockets dials with
//    `new WebSocket(uri)` + binaryType='arraybuffer' + addEventListener, all of
//    which the `ws` package's client class supports.
if (typeof globalThis.WebSocket !== 'function') {
  globalThis.WebSocket = WsWebSocket
}

// 3. Defensive: CustomEvent (global since Node 19, but cheap to guard).
if (typeof globalThis.CustomEvent !== 'function') {
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor (type, init = {}) { super(type, init); this.detail = init.detail ?? null }
  }
}
