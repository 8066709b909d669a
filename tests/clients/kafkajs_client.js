#!/usr/bin/env node
// kafkajs against a running gateway: create a topic with several partitions, produce
// 10,000 records (keys, headers, null values) with every codec kafkajs has (none, gzip,
// and snappy, lz4 and zstd through their codec packages), check the listed offsets, then
// consume them all back through a consumer group whose members join and leave (each
// commits what it read before giving a partition up), compare them exactly (none lost,
// none read twice) and delete the topic.
//
// usage: node kafkajs_client.js BOOTSTRAP TOPIC
'use strict'
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('kafkajs-lz4')
const zstd = require('zstd-napi')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async (encoder) => new zstd.Compressor().compress(encoder.buffer),
  decompress: async (buffer) => new zstd.Decompressor().decompress(buffer)
})

const CODECS = [
  ['none', CompressionTypes.None],
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD]
]
const PER_CODEC = 2000
const PARTITIONS = 3

function record (i) {
  const headers = {}
  if (i % 3) {
    headers.idx = `${i}`
    headers.dup = ['a', 'b']
  }
  return {
    key: `key-${i}`,
    value: i % 7 === 0 ? null : `value-${i}-${'z'.repeat(i % 89)}`,
    headers
  }
}

async function main () {
  const [bootstrap, topic] = process.argv.slice(2)
  const kafka = new Kafka({ clientId: 'gateway-test', brokers: [bootstrap], logLevel: logLevel.WARN })
  const admin = kafka.admin()
  await admin.connect()
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: PARTITIONS }], waitForLeaders: true })
  if (!created) throw new Error('createTopics reported the topic as existing')
  const producer = kafka.producer()
  await producer.connect()
  for (let n = 0; n < CODECS.length; n++) {
    const [name, compression] = CODECS[n]
    for (let start = n * PER_CODEC; start < (n + 1) * PER_CODEC; start += 500) {
      const messages = []
      for (let i = start; i < start + 500; i++) messages.push(record(i))
      const res = await producer.send({ topic, compression, acks: -1, messages })
      for (const r of res) {
        if (r.errorCode !== 0) throw new Error(`${name}: error ${r.errorCode}`)
      }
    }
  }
  await producer.disconnect()
  const offsets = await admin.fetchTopicOffsets(topic)
  const total = offsets.reduce((sum, o) => sum + Number(o.high) - Number(o.low), 0)
  if (offsets.length !== PARTITIONS || total !== PER_CODEC * CODECS.length) {
    throw new Error(`offsets ${JSON.stringify(offsets)}`)
  }
  const byTime = await admin.fetchTopicOffsetsByTimestamp(topic, 0)
  if (byTime.some((o) => Number(o.offset) !== 0)) throw new Error(`offsets by time ${JSON.stringify(byTime)}`)
  const meta = await admin.fetchTopicMetadata({ topics: [topic] })
  if (meta.topics[0].partitions.length !== PARTITIONS) throw new Error('metadata')
  console.error(`kafkajs: ${total} records produced with ${CODECS.map((c) => c[0]).join(', ')}`)

  const seen = new Map()
  const twice = []
  let bRead = false
  const group = `${topic}-group`
  const member = async (name) => {
    const consumer = kafka.consumer({
      groupId: group,
      sessionTimeout: 6000,
      heartbeatInterval: 500,
      rebalanceTimeout: 20000
    })
    await consumer.connect()
    await consumer.subscribe({ topics: [topic], fromBeginning: true })
    // Committing every record keeps what was read and what is committed the same when a
    // partition moves, so no record is read twice.
    await consumer.run({
      autoCommitThreshold: 1,
      eachMessage: async ({ partition, message }) => {
        const key = message.key.toString()
        if (seen.has(key)) {
          twice.push(`${key} (by ${seen.get(key).name} and ${name})`)
          return
        }
        seen.set(key, { name, partition, message })
        if (name === 'b') {
          bRead = true
        } else if (!bRead && seen.size >= 2000) {
          // Until b has read, a takes its time: otherwise a fast gateway lets a read every
          // record while the group is still rebalancing, and b is left nothing to read.
          await new Promise((resolve) => setTimeout(resolve, 2))
        }
      }
    })
    return consumer
  }
  const until = async (what, cond, ms = 60000) => {
    const deadline = Date.now() + ms
    while (!cond()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (${seen.size} read)`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const a = await member('a')
  await until('a to read', () => seen.size >= 2000)
  const b = await member('b')
  await until('b to read', () => bRead)
  await a.disconnect()
  await until('every record', () => seen.size >= total)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await b.disconnect()
  if (twice.length) throw new Error(`${twice.length} records read twice, e.g. ${twice.slice(0, 5)}`)
  if (seen.size !== total) throw new Error(`read ${seen.size} records, expected ${total}`)
  for (let i = 0; i < total; i++) {
    const want = record(i)
    const got = seen.get(want.key)
    if (!got) throw new Error(`${want.key} missing`)
    const value = got.message.value === null ? null : got.message.value.toString()
    if (value !== want.value) throw new Error(`${want.key}: value ${value}, expected ${want.value}`)
    const headers = {}
    for (const [k, v] of Object.entries(got.message.headers || {})) {
      headers[k] = Array.isArray(v) ? v.map((x) => x.toString()) : v.toString()
    }
    if (JSON.stringify(headers) !== JSON.stringify(want.headers)) {
      throw new Error(`${want.key}: headers ${JSON.stringify(headers)}, expected ${JSON.stringify(want.headers)}`)
    }
  }
  const byMember = [...seen.values()].reduce((n, r) => ({ ...n, [r.name]: (n[r.name] || 0) + 1 }), {})
  console.error(`kafkajs: consumed ${seen.size} records through group ${group}: ${JSON.stringify(byMember)}`)
  const committed = await admin.fetchOffsets({ groupId: group, topics: [topic] })
  const ends = await admin.fetchTopicOffsets(topic)
  for (const p of committed[0].partitions) {
    const end = ends.find((e) => e.partition === p.partition).high
    if (p.offset !== end) throw new Error(`committed ${JSON.stringify(committed)}, ends ${JSON.stringify(ends)}`)
  }
  await admin.deleteGroups([group])
  await admin.deleteTopics({ topics: [topic] })
  await admin.disconnect()
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
