// kafkajs over SASL: PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 produce and read back records
// as alice; a wrong password is an authentication error, not a timeout.
// Usage: node sasl_kafkajs.js BOOTSTRAP PROTOCOL CA TOPIC   (CA: a file for SASL_SSL, or -)
const fs = require('fs')
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, protocol, ca, topic] = process.argv.slice(2)
const ssl = protocol === 'SASL_SSL' ? { ca: [fs.readFileSync(ca, 'utf-8')] } : false

function client (mechanism, password) {
  return new Kafka({
    clientId: `sasl-kafkajs-${mechanism}`,
    brokers: [bootstrap],
    ssl,
    sasl: { mechanism, username: 'alice', password },
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 }
  })
}

async function roundTrip (mechanism) {
  const kafka = client(mechanism, 'alice-secret')
  const producer = kafka.producer()
  await producer.connect()
  const values = Array.from({ length: 10 }, (_, i) => `kafkajs-${mechanism}-${i}`)
  await producer.send({ topic, messages: values.map(value => ({ value })) })
  await producer.disconnect()
  const consumer = kafka.consumer({ groupId: `sasl-kafkajs-${mechanism}` })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  const seen = new Set()
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`read ${seen.size}`)), 30000)
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString())
        if (values.every(v => seen.has(v))) {
          clearTimeout(timer)
          resolve()
        }
      }
    })
  })
  await consumer.disconnect()
  console.log(`kafkajs ${mechanism}: ok`)
}

async function refused (mechanism) {
  const admin = client(mechanism, 'wrong').admin()
  try {
    await admin.connect()
    await admin.listTopics()
  } catch (e) {
    if (!/SASL|uthentication/.test(`${e.name} ${e.message}`)) throw e
    console.log(`kafkajs ${mechanism} wrong password: refused (${e.name})`)
    return
  }
  throw new Error('a wrong password was let in')
}

async function main () {
  for (const mechanism of ['plain', 'scram-sha-256', 'scram-sha-512']) {
    await roundTrip(mechanism)
    await refused(mechanism)
  }
  console.log('all ok')
}

main().catch(e => { console.error(e); process.exit(1) })
