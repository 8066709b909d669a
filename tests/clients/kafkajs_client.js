#!/usr/bin/env node
// kafkajs against a running gateway: create a topic with several partitions, produce
// 10,000 records (keys, headers, null values) with every codec kafkajs has (none, gzip,
// and snappy, lz4 and zstd through their codec packages), check the listed offsets, then
// print the records as JSON lines so that the caller can consume and compare them with
// another client (kafkajs can consume only through a consumer group, which the gateway
// serves from the consumer-group issue on).
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
  await admin.disconnect()
  console.error(`kafkajs: ${total} records produced with ${CODECS.map((c) => c[0]).join(', ')}`)
}

main().catch((e) => {
  console.error(e)
  process.exit(1)
})
