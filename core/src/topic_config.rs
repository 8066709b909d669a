//! Kafka's topic configuration names, their defaults, and which of them the gateway honours.
//!
//! Kafka knows about thirty topic configs. The gateway honours those a backend can enforce
//! (those marked honoured in [`DEFINITIONS`]); any other known config is accepted only at its Kafka default (so tools that
//! spell out defaults keep working) and refused otherwise, with `INVALID_CONFIG`, as Kafka
//! refuses a value it cannot take. Unknown names are refused the same way.

use crate::backend::TopicConfig;

/// Kafka's `ConfigType` numbering, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// `BOOLEAN`.
    Boolean = 1,
    /// `STRING`.
    String = 2,
    /// `INT`.
    Int = 3,
    /// `LONG`.
    Long = 5,
    /// `DOUBLE`.
    Double = 6,
    /// `LIST`.
    List = 7,
}

/// A known topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    /// The name.
    pub name: &'static str,
    /// Kafka's default, as text.
    pub default: &'static str,
    /// The value's type.
    pub kind: ConfigType,
    /// Whether a backend enforces other values.
    pub honoured: bool,
}

const fn def(name: &'static str, default: &'static str, kind: ConfigType) -> Definition {
    Definition {
        name,
        default,
        kind,
        honoured: false,
    }
}

const fn honoured(name: &'static str, default: &'static str, kind: ConfigType) -> Definition {
    Definition {
        name,
        default,
        kind,
        honoured: true,
    }
}

/// `retention.ms`.
pub const RETENTION_MS: &str = "retention.ms";
/// `retention.bytes`.
pub const RETENTION_BYTES: &str = "retention.bytes";
/// `max.message.bytes`.
pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
/// `message.timestamp.type`.
pub const TIMESTAMP_TYPE: &str = "message.timestamp.type";
/// `cleanup.policy`.
pub const CLEANUP_POLICY: &str = "cleanup.policy";
/// `segment.bytes`.
pub const SEGMENT_BYTES: &str = "segment.bytes";
/// `flush.messages`.
pub const FLUSH_MESSAGES: &str = "flush.messages";

/// Kafka's default `max.message.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: i32 = 1_048_588;
/// The gateway's default `retention.ms`: unlimited. Both backends keep records until a
/// topic sets a limit (as Iggy's topics do), not for Kafka's seven days, and say so.
pub const DEFAULT_RETENTION_MS: i64 = -1;
/// Kafka's default `segment.bytes` (1 GiB, also Iggy's default segment size).
pub const DEFAULT_SEGMENT_BYTES: i32 = 1 << 30;
/// Kafka's default `flush.messages`: never forced, the operating system writes back.
pub const DEFAULT_FLUSH_MESSAGES: i64 = i64::MAX;

/// Every topic config Kafka 4 knows, sorted by name.
pub const DEFINITIONS: &[Definition] = &[
    honoured(CLEANUP_POLICY, "delete", ConfigType::List),
    def("compression.type", "producer", ConfigType::String),
    def("delete.retention.ms", "86400000", ConfigType::Long),
    def("file.delete.delay.ms", "60000", ConfigType::Long),
    honoured(FLUSH_MESSAGES, "9223372036854775807", ConfigType::Long),
    def("flush.ms", "9223372036854775807", ConfigType::Long),
    def(
        "follower.replication.throttled.replicas",
        "",
        ConfigType::List,
    ),
    def("index.interval.bytes", "4096", ConfigType::Int),
    def(
        "leader.replication.throttled.replicas",
        "",
        ConfigType::List,
    ),
    def("local.retention.bytes", "-2", ConfigType::Long),
    def("local.retention.ms", "-2", ConfigType::Long),
    def(
        "max.compaction.lag.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    honoured(MAX_MESSAGE_BYTES, "1048588", ConfigType::Int),
    def(
        "message.timestamp.after.max.ms",
        "3600000",
        ConfigType::Long,
    ),
    def(
        "message.timestamp.before.max.ms",
        "9223372036854775807",
        ConfigType::Long,
    ),
    honoured(TIMESTAMP_TYPE, "CreateTime", ConfigType::String),
    def("min.cleanable.dirty.ratio", "0.5", ConfigType::Double),
    def("min.compaction.lag.ms", "0", ConfigType::Long),
    def("min.insync.replicas", "1", ConfigType::Int),
    def("preallocate", "false", ConfigType::Boolean),
    def("remote.storage.enable", "false", ConfigType::Boolean),
    honoured(RETENTION_BYTES, "-1", ConfigType::Long),
    honoured(RETENTION_MS, "-1", ConfigType::Long),
    honoured(SEGMENT_BYTES, "1073741824", ConfigType::Int),
    def("segment.index.bytes", "10485760", ConfigType::Int),
    def("segment.jitter.ms", "0", ConfigType::Long),
    def("segment.ms", "604800000", ConfigType::Long),
    def(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
    ),
];

/// The definition of `name`, if Kafka knows it.
#[must_use]
pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// Limits the gateway puts on honoured values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest `retention.bytes` the backend can keep per partition, if it has a limit.
    pub max_retention_bytes: Option<i64>,
}

/// Why a topic config change cannot be applied: what Kafka reports as `INVALID_CONFIG`,
/// with this as its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Kafka has no topic config of this name.
    #[error("unknown topic config name: {0}")]
    Unknown(String),
    /// The value does not parse, or is below the config's minimum.
    #[error("invalid value {value:?} for {name}")]
    Invalid {
        /// The config.
        name: &'static str,
        /// The value given.
        value: String,
    },
    /// The value is outside what the field can hold.
    #[error("{name} {value} is out of range")]
    OutOfRange {
        /// The config.
        name: &'static str,
        /// The value given.
        value: i64,
    },
    /// `retention.bytes` above what the backend can keep.
    #[error("retention.bytes {value} exceeds the backend's limit of {max} bytes per partition")]
    RetentionTooLarge {
        /// The value given.
        value: i64,
        /// The backend's limit.
        max: i64,
    },
    /// `message.timestamp.type` other than Kafka's two.
    #[error("invalid message.timestamp.type {0:?}: expected CreateTime or LogAppendTime")]
    TimestampType(String),
    /// A `cleanup.policy` other than `delete`.
    #[error(
        "cleanup.policy {0:?} is not supported: the gateway's backends do not compact, only \"delete\" is"
    )]
    CleanupPolicy(String),
    /// A config the gateway accepts only at its default.
    #[error("{name} is not supported by the gateway; only its default {default:?} is accepted")]
    OnlyDefault {
        /// The config.
        name: &'static str,
        /// Its default.
        default: &'static str,
    },
}

/// Applies one change (`None` restores the default) to `config`, or says why it cannot.
///
/// # Errors
/// Why, for `INVALID_CONFIG`.
pub fn apply(
    config: &mut TopicConfig,
    name: &str,
    value: Option<&str>,
    limits: Limits,
) -> Result<(), ConfigError> {
    let Some(def) = definition(name) else {
        return Err(ConfigError::Unknown(name.to_owned()));
    };
    let name = def.name;
    let Some(value) = value else {
        match name {
            RETENTION_MS => config.retention_ms = None,
            RETENTION_BYTES => config.retention_bytes = None,
            MAX_MESSAGE_BYTES => config.max_message_bytes = None,
            TIMESTAMP_TYPE => config.log_append_time = None,
            SEGMENT_BYTES => config.segment_bytes = None,
            FLUSH_MESSAGES => config.flush_messages = None,
            _ => {}
        }
        return Ok(());
    };
    let value = value.trim();
    match name {
        RETENTION_MS => config.retention_ms = Some(parse_long(name, value, -1)?),
        RETENTION_BYTES => {
            let v = parse_long(name, value, -1)?;
            if let Some(max) = limits.max_retention_bytes {
                if v == -1 || v > max {
                    return Err(ConfigError::RetentionTooLarge { value: v, max });
                }
            }
            config.retention_bytes = Some(v);
        }
        MAX_MESSAGE_BYTES => {
            let v = parse_long(name, value, 0)?;
            config.max_message_bytes =
                Some(i32::try_from(v).map_err(|_| ConfigError::OutOfRange { name, value: v })?);
        }
        TIMESTAMP_TYPE => {
            config.log_append_time = Some(match value {
                "CreateTime" => false,
                "LogAppendTime" => true,
                _ => return Err(ConfigError::TimestampType(value.to_owned())),
            });
        }
        SEGMENT_BYTES => {
            // Kafka's own floor: a segment holds at least one legacy record's overhead.
            let v = parse_long(name, value, 14)?;
            config.segment_bytes =
                Some(i32::try_from(v).map_err(|_| ConfigError::OutOfRange { name, value: v })?);
        }
        FLUSH_MESSAGES => config.flush_messages = Some(parse_long(name, value, 1)?),
        CLEANUP_POLICY => {
            if value != "delete" {
                return Err(ConfigError::CleanupPolicy(value.to_owned()));
            }
        }
        _ if value == def.default => {}
        _ => {
            return Err(ConfigError::OnlyDefault {
                name,
                default: def.default,
            })
        }
    }
    Ok(())
}

fn parse_long(name: &'static str, value: &str, min: i64) -> Result<i64, ConfigError> {
    match value.parse::<i64>() {
        Ok(v) if v >= min => Ok(v),
        _ => Err(ConfigError::Invalid {
            name,
            value: value.to_owned(),
        }),
    }
}

/// One config's value as DescribeConfigs reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The definition.
    pub def: &'static Definition,
    /// The effective value.
    pub value: String,
    /// Whether the topic overrides the default.
    pub is_override: bool,
}

/// Every config of a topic with its effective value. `broker_retention_bytes` is the value
/// `retention.bytes` takes when the topic does not set it.
#[must_use]
pub fn describe(config: &TopicConfig, broker_retention_bytes: i64) -> Vec<Entry> {
    DEFINITIONS
        .iter()
        .map(|def| {
            let (value, is_override) = match def.name {
                RETENTION_MS => config
                    .retention_ms
                    .map_or((def.default.to_string(), false), |v| (v.to_string(), true)),
                RETENTION_BYTES => config
                    .retention_bytes
                    .map_or((broker_retention_bytes.to_string(), false), |v| {
                        (v.to_string(), true)
                    }),
                MAX_MESSAGE_BYTES => config
                    .max_message_bytes
                    .map_or((def.default.to_string(), false), |v| (v.to_string(), true)),
                TIMESTAMP_TYPE => {
                    config
                        .log_append_time
                        .map_or((def.default.to_string(), false), |v| {
                            let s = if v { "LogAppendTime" } else { "CreateTime" };
                            (s.to_string(), true)
                        })
                }
                SEGMENT_BYTES => config
                    .segment_bytes
                    .map_or((def.default.to_string(), false), |v| (v.to_string(), true)),
                FLUSH_MESSAGES => config
                    .flush_messages
                    .map_or((def.default.to_string(), false), |v| (v.to_string(), true)),
                _ => (def.default.to_string(), false),
            };
            Entry {
                def,
                value,
                is_override,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_retention_bytes: Some(1 << 30),
    };

    #[test]
    fn definitions_are_sorted_and_unique() {
        assert!(DEFINITIONS.windows(2).all(|w| w[0].name < w[1].name));
    }

    #[test]
    fn honoured_values_apply_and_others_only_at_their_default() {
        let mut c = TopicConfig::default();
        apply(&mut c, RETENTION_MS, Some("1000"), LIMITS).unwrap_or_else(|e| panic!("{e}"));
        apply(&mut c, TIMESTAMP_TYPE, Some("LogAppendTime"), LIMITS)
            .unwrap_or_else(|e| panic!("{e}"));
        apply(&mut c, "preallocate", Some("false"), LIMITS).unwrap_or_else(|e| panic!("{e}"));
        apply(&mut c, SEGMENT_BYTES, Some("8388608"), LIMITS).unwrap_or_else(|e| panic!("{e}"));
        apply(&mut c, FLUSH_MESSAGES, Some("1"), LIMITS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.retention_ms, Some(1000));
        assert_eq!(c.log_append_time, Some(true));
        assert_eq!(c.segment_bytes, Some(8 << 20));
        assert_eq!(c.flush_messages, Some(1));
        assert!(apply(&mut c, "preallocate", Some("true"), LIMITS).is_err());
        assert!(apply(&mut c, SEGMENT_BYTES, Some("13"), LIMITS).is_err());
        assert!(apply(&mut c, SEGMENT_BYTES, Some("4294967296"), LIMITS).is_err());
        assert!(apply(&mut c, FLUSH_MESSAGES, Some("0"), LIMITS).is_err());
        assert!(apply(&mut c, CLEANUP_POLICY, Some("compact"), LIMITS).is_err());
        assert!(apply(&mut c, "no.such.config", Some("1"), LIMITS).is_err());
        assert!(apply(&mut c, RETENTION_BYTES, Some("-1"), LIMITS).is_err());
        assert!(apply(&mut c, RETENTION_MS, Some("-2"), LIMITS).is_err());
        apply(&mut c, RETENTION_MS, None, LIMITS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.retention_ms, None);
        apply(&mut c, SEGMENT_BYTES, None, LIMITS).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.segment_bytes, None);
        let entries = describe(&c, 77);
        let value = |name: &str| {
            let e = entries.iter().find(|e| e.def.name == name);
            e.map(|e| (e.value.clone(), e.is_override))
        };
        assert_eq!(value(RETENTION_BYTES), Some(("77".into(), false)));
        // Records are kept until a topic sets a limit: the default says so.
        assert_eq!(value(RETENTION_MS), Some(("-1".into(), false)));
        assert_eq!(value(SEGMENT_BYTES), Some(("1073741824".into(), false)));
        assert_eq!(value(FLUSH_MESSAGES), Some(("1".into(), true)));
    }
}
