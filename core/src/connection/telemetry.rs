//! GetTelemetrySubscriptions and PushTelemetry (KIP-714): the answers of a Kafka broker with
//! no client-metrics subscription configured. A client gets an instance id and an empty
//! subscription, so it pushes nothing and asks again after the push interval. A push is
//! still checked as Kafka checks it (instance id, subscription, compression, size, asked
//! again too soon, after terminating) and its metrics, having no receiver, are dropped.
//!
//! The state is the client instance's, kept on its connection, because the client asks on
//! the connection it keeps to its broker.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use super::Connection;
use crate::close::CloseReason;
use crate::protocol::codec::Uuid;
use crate::protocol::error_code::ErrorCode;
use crate::protocol::generated::get_telemetry_subscriptions_request::GetTelemetrySubscriptionsRequest;
use crate::protocol::generated::get_telemetry_subscriptions_response::GetTelemetrySubscriptionsResponse;
use crate::protocol::generated::push_telemetry_request::PushTelemetryRequest;
use crate::protocol::generated::push_telemetry_response::PushTelemetryResponse;
use crate::protocol::Response;

/// Kafka's default `interval.ms` of a client-metrics subscription.
const PUSH_INTERVAL: Duration = Duration::from_millis(300_000);
/// Kafka's default `telemetry.max.bytes`.
const TELEMETRY_MAX_BYTES: usize = 1024 * 1024;
/// The empty subscription's id: any number the client sends back will do, as long as it is
/// the same every time.
const EMPTY_SUBSCRIPTION: i32 = 0;
/// The codecs Kafka accepts pushes in: zstd, lz4, gzip, snappy.
const COMPRESSION_TYPES: [i8; 4] = [4, 3, 1, 2];

/// One client instance's telemetry state.
#[derive(Debug, Default)]
pub(super) struct Telemetry {
    instance: Option<Uuid>,
    last_get: Option<Instant>,
    last_push: Option<Instant>,
    terminating: bool,
}

/// A new client instance id: unique, never Kafka's reserved zero or one. Not a secret, so
/// the process's hash keys (random per process) and a fresh hasher per call suffice.
fn new_instance_id() -> Uuid {
    loop {
        let mut bytes = [0u8; 16];
        for half in bytes.chunks_mut(8) {
            let mut h = RandomState::new().build_hasher();
            h.write_u8(0);
            half.copy_from_slice(&h.finish().to_be_bytes());
        }
        let id = Uuid(bytes);
        if u128::from_be_bytes(bytes) > 1 {
            return id;
        }
    }
}

fn reserved(id: &Uuid) -> bool {
    u128::from_be_bytes(id.0) <= 1
}

impl Connection {
    pub(super) fn handle_get_telemetry_subscriptions(
        &mut self,
        i: usize,
        req: &GetTelemetrySubscriptionsRequest,
    ) -> Result<(), CloseReason> {
        let now = self.now;
        let t = &mut self.telemetry;
        let instance = if reserved(&req.client_instance_id) {
            *t.instance.get_or_insert_with(new_instance_id)
        } else {
            req.client_instance_id
        };
        let early = t.last_get.is_some_and(|last| now < last + PUSH_INTERVAL)
            && t.instance == Some(instance);
        t.instance = Some(instance);
        let response = if early {
            GetTelemetrySubscriptionsResponse {
                error_code: ErrorCode::THROTTLING_QUOTA_EXCEEDED.into(),
                ..GetTelemetrySubscriptionsResponse::default()
            }
        } else {
            t.last_get = Some(now);
            GetTelemetrySubscriptionsResponse {
                client_instance_id: instance,
                subscription_id: EMPTY_SUBSCRIPTION,
                accepted_compression_types: COMPRESSION_TYPES.to_vec(),
                push_interval_ms: i32::try_from(PUSH_INTERVAL.as_millis()).unwrap_or(i32::MAX),
                telemetry_max_bytes: i32::try_from(TELEMETRY_MAX_BYTES).unwrap_or(i32::MAX),
                delta_temporality: true,
                requested_metrics: Vec::new(),
                ..GetTelemetrySubscriptionsResponse::default()
            }
        };
        self.finish(i, Some(Response::GetTelemetrySubscriptions(response)))
    }

    pub(super) fn handle_push_telemetry(
        &mut self,
        i: usize,
        req: &PushTelemetryRequest,
    ) -> Result<(), CloseReason> {
        let now = self.now;
        let t = &mut self.telemetry;
        let code = if reserved(&req.client_instance_id) || t.terminating {
            ErrorCode::INVALID_REQUEST
        } else if t.last_push.is_some_and(|last| now < last + PUSH_INTERVAL) && !req.terminating {
            ErrorCode::THROTTLING_QUOTA_EXCEEDED
        } else if req.subscription_id != EMPTY_SUBSCRIPTION
            || t.instance != Some(req.client_instance_id)
        {
            ErrorCode::UNKNOWN_SUBSCRIPTION_ID
        } else if !(0..=4).contains(&req.compression_type) {
            ErrorCode::UNSUPPORTED_COMPRESSION_TYPE
        } else if req.metrics.len() > TELEMETRY_MAX_BYTES {
            ErrorCode::TELEMETRY_TOO_LARGE
        } else {
            ErrorCode::NONE
        };
        if !reserved(&req.client_instance_id) {
            t.terminating |= req.terminating;
            if code != ErrorCode::THROTTLING_QUOTA_EXCEEDED {
                t.last_push = Some(now);
            }
        }
        self.finish(
            i,
            Some(Response::PushTelemetry(PushTelemetryResponse {
                error_code: code.into(),
                ..PushTelemetryResponse::default()
            })),
        )
    }
}
