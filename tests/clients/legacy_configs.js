// The legacy AlterConfigs from kafkajs (its only way to change configs): the config named
// takes effect, and the one not named returns to its default.
//
// usage: node legacy_configs.js BOOTSTRAP TOPIC   (TOPIC exists)
const { Kafka, logLevel, ConfigResourceTypes } = require('kafkajs')

const [bootstrap, topic] = process.argv.slice(2)
const admin = new Kafka({ brokers: [bootstrap], logLevel: logLevel.NOTHING, retry: { retries: 0 } }).admin()

async function configs (name) {
  const described = await admin.describeConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name }],
    includeSynonyms: false
  })
  return Object.fromEntries(described.resources[0].configEntries.map(e => [e.configName, e.configValue]))
}

async function main () {
  await admin.connect()
  const defaults = await configs(`${topic}-defaults`)
  await admin.alterConfigs({
    resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '1800000' }] }]
  })
  const now = await configs(topic)
  if (now['retention.ms'] !== '1800000' || now['retention.bytes'] !== defaults['retention.bytes']) {
    throw new Error(`alterConfigs: ${JSON.stringify(now)}`)
  }
  console.log('kafkajs alterConfigs: set, and the rest reset')
  await admin.disconnect()
}

main().catch(async e => {
  console.error(e.stack || e)
  await admin.disconnect().catch(() => {})
  process.exit(1)
})
