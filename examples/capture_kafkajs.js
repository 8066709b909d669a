// Drives kafkajs against `cargo run --example capture` to record its requests, one Produce
// per codec. Install the client and its codecs somewhere first (they are not part of the
// build), then point NODE_PATH at them:
//
//   npm install --prefix /tmp/kjs kafkajs@2 kafkajs-snappy kafkajs-lz4 zstd-napi
//   cargo run --example capture -- 127.0.0.1:19097 core/tests/fixtures/clients/kafkajs
//   NODE_PATH=/tmp/kjs/node_modules node examples/capture_kafkajs.js 127.0.0.1:19097
const { Kafka, CompressionTypes, CompressionCodecs, logLevel } = require('kafkajs')
const SnappyCodec = require('kafkajs-snappy')
const LZ4Codec = require('kafkajs-lz4')
const zstd = require('zstd-napi')

CompressionCodecs[CompressionTypes.Snappy] = SnappyCodec
CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
// kafkajs ships no zstd codec; zstd-napi provides the compressor.
CompressionCodecs[CompressionTypes.ZSTD] = () => ({
  compress: async (encoder) => new zstd.Compressor().compress(encoder.buffer),
  decompress: async (buffer) => new zstd.Decompressor().decompress(buffer)
})

const broker = process.argv[2] || '127.0.0.1:19097'

async function main () {
  const kafka = new Kafka({ clientId: 'kafkajs-golden', brokers: [broker], logLevel: logLevel.ERROR })
  const codecs = [
    ['none', CompressionTypes.None],
    ['gzip', CompressionTypes.GZIP],
    ['snappy', CompressionTypes.Snappy],
    ['lz4', CompressionTypes.LZ4],
    ['zstd', CompressionTypes.ZSTD]
  ]
  for (const [name, compression] of codecs) {
    const producer = kafka.producer()
    await producer.connect()
    await producer.send({
      topic: 'golden',
      compression,
      messages: [
        { key: 'key1', value: 'compressible-'.repeat(20) + name, headers: { h1: 'v1', h2: 'v2' } },
        { key: 'key2', value: null }
      ]
    })
    await producer.disconnect()
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1) })
