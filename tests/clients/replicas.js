// Partition reassignments from kafkajs against the gateway as a one-broker cluster: none is
// in progress, a reassignment to the broker itself is taken, one to another broker is an
// invalid assignment.
//
// usage: node replicas.js BOOTSTRAP TOPIC   (TOPIC exists with two partitions)
const { Kafka, logLevel } = require('kafkajs')

const [bootstrap, topic] = process.argv.slice(2)
const admin = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING, retry: { retries: 0 } }).admin()

async function main () {
  await admin.connect()
  const listed = await admin.listPartitionReassignments({ topics: [{ topic, partitions: [0, 1] }] })
  if (listed.topics.length !== 0) throw new Error(`listPartitionReassignments: ${JSON.stringify(listed)}`)
  await admin.alterPartitionReassignments({ topics: [{ topic, partitionAssignment: [{ partition: 0, replicas: [0] }] }] })
  let refused = null
  try {
    await admin.alterPartitionReassignments({ topics: [{ topic, partitionAssignment: [{ partition: 1, replicas: [5] }] }] })
  } catch (e) {
    refused = e
  }
  const text = refused ? `${refused.type || ''} ${refused.message} ${JSON.stringify(refused.errors || refused.cause || '')}` : ''
  if (!refused || !/INVALID_REPLICA_ASSIGNMENT|replica assignment/i.test(text)) {
    throw new Error(`alterPartitionReassignments to broker 5: ${refused ? text : 'taken'}`)
  }
  console.log('kafkajs: none in progress; to itself taken; to broker 5 refused')
  await admin.disconnect()
}

main().catch(async e => {
  console.error(e.stack || e)
  await admin.disconnect().catch(() => {})
  process.exit(1)
})
