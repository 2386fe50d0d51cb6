// yamux_js: @chainsafe/libp2p-yamux (js-libp2p's yamux, an implementation independent of
// hashicorp's and of virtrio's) as a test peer for virtrio, over TCP or Unix sockets.
//
//   node peer.mjs --listen tcp:127.0.0.1:0 --mode echo|sink|reset
//   node peer.mjs --connect unix:/path --mode echo --streams N --bytes M
//   node peer.mjs --connect tcp:HOST:PORT --mode ping --count N
//   node peer.mjs --connect tcp:HOST:PORT --mode send --streams N --bytes M   (a benchmark)
//
// A listening peer prints "listening ADDR" once ready and serves every connection; a connecting
// peer runs one client mode, prints one result line and exits (status 1 on any mismatch).
// Events worth asserting on are printed one per line.
import { createHash, randomBytes } from 'node:crypto'
import net from 'node:net'
import { parseArgs } from 'node:util'
import { yamux } from '@chainsafe/libp2p-yamux'
import { pipe } from 'it-pipe'
import { duplex } from 'stream-to-it'

const { values: args } = parseArgs({
  options: {
    listen: { type: 'string' },
    connect: { type: 'string' },
    mode: { type: 'string', default: 'echo' },
    streams: { type: 'string', default: '1' },
    bytes: { type: 'string', default: '1048576' },
    count: { type: 'string', default: '10' },
    hash: { type: 'string', default: 'true' }
  }
})

const say = (line) => process.stdout.write(line + '\n')
const fail = (line) => { say('error ' + line); process.exit(1) }

// the library asks for a logger: its errors go to stderr (a failing test shows them)
const logger = Object.assign(() => {}, {
  error: (...what) => console.error('yamux-js:', ...what),
  trace: () => {},
  enabled: false
})
const components = { logger: { forComponent: () => logger } }

function where (address) {
  const [kind, ...rest] = address.split(':')
  if (kind === 'unix') return { path: rest.join(':') }
  if (kind === 'tcp') return { host: rest.slice(0, -1).join(':'), port: Number(rest.at(-1)) }
  fail(`bad address ${address}`)
}

function attach (socket, init) {
  const muxer = yamux()(components).createStreamMuxer(init)
  const wire = duplex(socket)
  // the muxer yields Uint8ArrayLists; a socket takes plain byte arrays
  const flat = async function * (source) { for await (const chunk of source) yield chunk.subarray() }
  pipe(wire, muxer, flat, wire).catch((err) => console.error('yamux-js: connection:', err))
  return muxer
}

async function readAll (stream, onChunk) {
  let total = 0
  for await (const chunk of stream.source) {
    const bytes = chunk.subarray()
    total += bytes.length
    if (onChunk) await onChunk(bytes)
  }
  return total
}

async function echo (stream) {
  // bytes go back as they arrive; the peer's FIN ends our side too (a reply after FIN)
  await pipe(stream.source, async function * (source) {
    for await (const chunk of source) yield chunk.subarray()
  }, stream.sink)
}

async function sink (stream) {
  // "COUNT SHA256" after the peer's FIN ("COUNT -" with --hash false, for benchmarks)
  const hash = args.hash === 'true' ? createHash('sha256') : null
  const total = await readAll(stream, hash ? (bytes) => hash.update(bytes) : null)
  const digest = hash ? hash.digest('hex') : '-'
  await pipe([new TextEncoder().encode(`${total} ${digest}`)], stream.sink)
}

async function collect (stream) {
  const parts = []
  await readAll(stream, (bytes) => { parts.push(Buffer.from(bytes)) })
  return Buffer.concat(parts).toString()
}

function serve () {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true)
    attach(socket, {
      direction: 'inbound',
      onIncomingStream: (stream) => {
        const work = args.mode === 'echo'
          ? echo(stream)
          : args.mode === 'sink'
            ? sink(stream)
            : args.mode === 'reset'
              ? Promise.resolve(stream.abort(new Error('reset on purpose')))
              : fail(`unknown server mode ${args.mode}`)
        work.catch((err) => say(`stream ${stream.id} failed: ${err.code ?? err.message}`))
      }
    })
  })
  const target = where(args.listen)
  server.listen(target.path ?? { host: target.host, port: target.port }, () => {
    const a = server.address()
    say(typeof a === 'string' ? `listening unix:${a}` : `listening tcp:${a.address}:${a.port}`)
  })
}

async function client () {
  const socket = net.connect(where(args.connect))
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject))
  socket.setNoDelay(true)
  const muxer = attach(socket, { direction: 'outbound' })
  if (args.mode === 'ping') {
    for (let i = 0; i < Number(args.count); i++) await muxer.ping()
    say(`pinged ${args.count}`)
  } else if (args.mode === 'echo') {
    const size = Number(args.bytes)
    const one = async () => {
      const stream = await muxer.newStream()
      const payload = randomBytes(size)
      const sent = createHash('sha256').update(payload).digest('hex')
      const back = createHash('sha256')
      const chunks = []
      for (let at = 0; at < size; at += 65536) chunks.push(payload.subarray(at, at + 65536))
      const [, got] = await Promise.all([
        pipe(chunks, stream.sink),
        readAll(stream, (bytes) => back.update(bytes))
      ])
      if (got !== size || back.digest('hex') !== sent) fail(`stream ${stream.id}: echo differs`)
    }
    await Promise.all(Array.from({ length: Number(args.streams) }, one))
    say(`echoed ${args.streams} x ${args.bytes}`)
  } else if (args.mode === 'send') {
    // like the Go peer's: N streams of M bytes in 64 KiB writes to a sink, timed to its replies
    const size = Number(args.bytes)
    const block = new Uint8Array(65536)
    const start = process.hrtime.bigint()
    await Promise.all(Array.from({ length: Number(args.streams) }, async () => {
      const stream = await muxer.newStream()
      const writes = function * () { for (let at = 0; at < size; at += block.length) yield block }
      const [, reply] = await Promise.all([pipe(writes(), stream.sink), collect(stream)])
      if (!reply.startsWith(`${size} `)) fail(`stream ${stream.id}: sink answered ${reply}`)
    }))
    const seconds = Number(process.hrtime.bigint() - start) / 1e9
    const total = size * Number(args.streams)
    say(`sent ${total} in ${seconds.toFixed(6)} s: ${(total / seconds / 1e6).toFixed(1)} MB/s`)
  } else {
    fail(`unknown client mode ${args.mode}`)
  }
  await muxer.close()
  await new Promise((resolve) => socket.end(resolve))
}

if (args.listen) serve()
else if (args.connect) client().catch((err) => fail(err.stack ?? String(err)))
else fail('give --listen or --connect')
