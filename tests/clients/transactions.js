// Transactions from kafkajs: a transactional producer commits some transactions and aborts
// others; a read_committed consumer (kafkajs's default) reads exactly the committed records,
// in order, and a read_uncommitted one reads all of them. Then a consume-transform-produce
// step with sendOffsets: the consumer group's offset becomes the one sent, on commit only.
//
// usage: node transactions.js BOOTSTRAP IN_TOPIC OUT_TOPIC   (both exist, one partition each)
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic, outTopic] = process.argv.slice(2)
const kafka = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING })

async function readAll (isolation, from, want) {
  const consumer = kafka.consumer({
    groupId: `reader-${isolation}-${Date.now()}`,
    readUncommitted: isolation === 'uncommitted',
    maxWaitTimeInMs: 100
  })
  await consumer.connect()
  await consumer.subscribe({ topic: from, fromBeginning: true })
  const got = []
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 20000)
    consumer.run({
      eachMessage: async ({ message }) => {
        got.push(message.value.toString())
        if (got.length >= want) {
          // Wait a little for anything beyond what is expected.
          clearTimeout(timer)
          setTimeout(resolve, 1500)
        }
      }
    }).catch(reject)
  })
  await consumer.disconnect()
  return got
}

async function main () {
  const producer = kafka.producer({ transactionalId: `${topic}-js`, maxInFlightRequests: 1, idempotent: true })
  await producer.connect()
  const committed = []
  const all = []
  for (let t = 0; t < 6; t++) {
    const txn = await producer.transaction()
    const values = []
    for (let i = 0; i < 5; i++) values.push(`js-${t}-${i}`)
    await txn.send({ topic, messages: values.map(value => ({ value })) })
    all.push(...values)
    if (t % 3 === 1) {
      await txn.abort()
    } else {
      await txn.commit()
      committed.push(...values)
    }
  }
  const rc = await readAll('committed', topic, committed.length)
  const ru = await readAll('uncommitted', topic, all.length)
  if (JSON.stringify(rc) !== JSON.stringify(committed)) {
    throw new Error(`read_committed: got ${JSON.stringify(rc)} want ${JSON.stringify(committed)}`)
  }
  if (JSON.stringify(ru) !== JSON.stringify(all)) {
    throw new Error(`read_uncommitted: got ${ru.length} want ${all.length}`)
  }

  // Consume-transform-produce: offsets sent with an aborted transaction are not committed;
  // with a committed one they are.
  const group = `${topic}-copier`
  const admin = kafka.admin()
  await admin.connect()
  const offsetOf = async () => {
    const r = await admin.fetchOffsets({ groupId: group, topics: [topic] })
    return r[0].partitions[0].offset
  }
  for (const commit of [false, true]) {
    const txn = await producer.transaction()
    await txn.send({ topic: outTopic, messages: committed.map(v => ({ value: v.toUpperCase() })) })
    await txn.sendOffsets({ consumerGroupId: group, topics: [{ topic, partitions: [{ partition: 0, offset: '17' }] }] })
    if (commit) await txn.commit()
    else await txn.abort()
    const offset = await offsetOf()
    if (offset !== (commit ? '17' : '-1')) throw new Error(`offset after ${commit ? 'commit' : 'abort'}: ${offset}`)
  }
  const out = await readAll('committed', outTopic, committed.length)
  if (out.length !== committed.length) throw new Error(`copied ${out.length}, want ${committed.length}`)
  await admin.disconnect()
  await producer.disconnect()
  console.log(`kafkajs: read_committed ${rc.length} of ${ru.length}; offsets committed with the transaction only`)
}

main().catch(e => {
  console.error(e)
  process.exit(1)
})
