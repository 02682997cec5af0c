// A js-libp2p GossipSub peer for tests/test_gossip_interop.py (installed by scripts/setup-js).
// Usage: node gossip_peer.mjs TOPIC[,TOPIC...] [MULTIADDR...]
// Prints one JSON object a line on stdout: {"event":"ready","peer_id","addrs"}, then
// {"event":"topic_peer","topic","peer"} once a peer is on a topic we subscribed to and we can
// send to it,
// {"event":"message","topic","from","data"(hex)} per message. Reads "publish TOPIC HEX" lines
// on stdin (answered by {"event":"published","recipients"}), "state" (answered by
// {"event":"state","topics":{TOPIC:{"subscribers","mesh"}},"peers"}) and "dial MULTIADDR".
// Exits when stdin closes.
import './polyfill.mjs'
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { createInterface } from 'node:readline'

const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const [topicArg, ...dials] = process.argv.slice(2)
const topics = topicArg.split(',')

const node = await createLibp2p({
  addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: {
    identify: identify(),
    pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
  }
})
const pubsub = node.services.pubsub
// A topic peer counts once we can also send to it: subscribed to the topic (its SUBSCRIBE
// came in) and our outbound stream to it open (js opens it after identify, later).
const seen = new Set()
const reportTopicPeers = () => {
  for (const t of topics) {
    for (const peer of pubsub.getSubscribers(t).map(String)) {
      if (!seen.has(t + peer) && pubsub.streamsOutbound.has(peer)) {
        seen.add(t + peer)
        out({ event: 'topic_peer', topic: t, peer })
      }
    }
  }
}
pubsub.addEventListener('subscription-change', reportTopicPeers)
pubsub.addEventListener('gossipsub:heartbeat', reportTopicPeers)
pubsub.addEventListener('message', (evt) => {
  const msg = evt.detail
  out({ event: 'message', topic: msg.topic, from: msg.from?.toString() ?? '',
        data: Buffer.from(msg.data).toString('hex') })
})
for (const t of topics) pubsub.subscribe(t)
await node.start()
for (const addr of dials) await node.dial(multiaddr(addr))
out({ event: 'ready', peer_id: node.peerId.toString(),
      addrs: node.getMultiaddrs().map((a) => a.toString()) })

const rl = createInterface({ input: process.stdin })
rl.on('line', async (line) => {
  const [cmd, topic, hex] = line.trim().split(' ')
  if (cmd === 'state') {
    const state = {}
    for (const t of topics) {
      state[t] = { subscribers: pubsub.getSubscribers(t).map(String),
                   mesh: pubsub.getMeshPeers(t).map(String) }
    }
    out({ event: 'state', topics: state, peers: node.getPeers().map(String),
          outbound: [...pubsub.streamsOutbound.keys()] })
  } else if (cmd === 'dial') {
    try {
      await node.dial(multiaddr(topic))
      out({ event: 'dialled', addr: topic })
    } catch (err) {
      out({ event: 'dial_failed', addr: topic, error: String(err) })
    }
  } else if (cmd === 'publish') {
    try {
      const res = await pubsub.publish(topic, Buffer.from(hex, 'hex'))
      out({ event: 'published', topic, recipients: res.recipients.map(String) })
    } catch (err) {
      out({ event: 'publish_failed', topic, error: String(err) })
    }
  }
})
rl.on('close', async () => { await node.stop(); process.exit(0) })
