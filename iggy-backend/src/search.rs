//! Searches by time: Kafka's ListOffsets by timestamp and `MAX_TIMESTAMP`, over a partition
//! whose Kafka timestamps Iggy does not index. What a search reads is kept in the
//! partition's [`crate::timestamps::MaxTimestamps`], so that no message is read twice.

use std::ops::Range;

use iggy_kafka_core::backend::BackendError;
use iggy_kafka_iggy_client::protocol::WirePollingStrategy;

use crate::catalog::Catalog;
use crate::partition::PartitionState;
use crate::read::{Reads, SCAN_POLL_BYTES};
use crate::sync::lock;
use crate::timestamps::{Run, Stamped};
use crate::wire;

/// Kafka's ListOffsets by timestamp: the first message whose Kafka timestamp is at least
/// `timestamp_ms`. Iggy finds messages by its own append time only, so the search
/// starts at the first message Iggy appended at or after that time (a message before it
/// has a later producer timestamp only if the producer's clock ran ahead of the
/// server's) and reads on to the first whose own timestamp is late enough: at once for
/// records timestamped as they are sent, and further for records appended long after
/// their timestamps (a backfill). What it reads is kept as for [`max_timestamp`], so a
/// search skips what an earlier one read and found too early.
pub(crate) async fn offset_for_timestamp(
    catalog: &Catalog,
    reads: &Reads,
    topic: &str,
    partition: u32,
    timestamp_ms: i64,
) -> Result<Option<Stamped>, BackendError> {
    let us = u64::try_from(timestamp_ms)
        .unwrap_or(0)
        .saturating_mul(1000);
    let body = reads
        .poll(
            catalog,
            topic,
            partition,
            WirePollingStrategy::timestamp(us),
            1,
        )
        .await?;
    let Some((mut at, ts)) = wire::scan_timestamps(&body, 0..u64::MAX, i64::MIN)?.first_at_least
    else {
        return Ok(None);
    };
    if ts >= timestamp_ms {
        return Ok(Some((at, ts)));
    }
    let state = catalog.partition(topic, partition);
    let _one_read = state.timestamps_gate.enter().await;
    let (end, _) = align_timestamps(catalog, topic, partition, &state).await?;
    while at < end {
        let until = match lock(&state.timestamps).around(at) {
            Ok(run) if run.max.is_none_or(|(_, ts)| ts < timestamp_ms) => {
                at = run.to;
                continue;
            }
            Ok(run) => run.to,
            Err(next) => next.unwrap_or(end).min(end),
        };
        let (found, to) = read_timestamps(
            catalog,
            reads,
            (topic, partition),
            &state,
            at..until,
            timestamp_ms,
        )
        .await?;
        if found.is_some() {
            return Ok(found);
        }
        at = to;
    }
    Ok(None)
}

/// Kafka's `MAX_TIMESTAMP`: Iggy keeps no such figure, so every message is read, once
/// (see [`crate::timestamps::MaxTimestamps`]). A first question about a long partition
/// takes as long as reading it; what was read is kept as it goes, so a client that timed
/// out and asks again continues where the read got to.
pub(crate) async fn max_timestamp(
    catalog: &Catalog,
    reads: &Reads,
    topic: &str,
    partition: u32,
) -> Result<Option<Stamped>, BackendError> {
    let state = catalog.partition(topic, partition);
    let _one_read = state.timestamps_gate.enter().await;
    let (_, holes) = align_timestamps(catalog, topic, partition, &state).await?;
    for hole in holes {
        let mut at = hole.start;
        while at < hole.end {
            at = read_timestamps(
                catalog,
                reads,
                (topic, partition),
                &state,
                at..hole.end,
                i64::MAX,
            )
            .await?
            .1;
        }
    }
    let max = lock(&state.timestamps).max();
    Ok(max)
}

/// Fits the partition's timestamp runs to it as it is now (see
/// [`crate::timestamps::MaxTimestamps::align`]); returns its end and the offsets no run
/// covers.
async fn align_timestamps(
    catalog: &Catalog,
    topic: &str,
    partition: u32,
    state: &PartitionState,
) -> Result<(u64, Vec<Range<u64>>), BackendError> {
    let t = catalog.topic_header(topic).await?;
    let offsets = catalog.partition_offsets(topic, &t, partition)?;
    let holes = lock(&state.timestamps).align(
        catalog.topic_id(topic, &t.topic),
        offsets.log_start,
        offsets.high_watermark,
    );
    Ok((offsets.high_watermark, holes))
}

/// Reads the messages at offsets `within` (as many as one scan's poll holds), keeps
/// what it found in the partition's timestamp runs, and returns the first message
/// timestamped at least `at_least` and where the read got to.
async fn read_timestamps(
    catalog: &Catalog,
    reads: &Reads,
    (topic, partition): (&str, u32),
    state: &PartitionState,
    within: Range<u64>,
    at_least: i64,
) -> Result<(Option<Stamped>, u64), BackendError> {
    let (at, until) = (within.start, within.end);
    let count = reads.scan_count(state, SCAN_POLL_BYTES);
    let body = reads
        .poll(
            catalog,
            topic,
            partition,
            WirePollingStrategy::offset(at),
            count,
        )
        .await?;
    let found = wire::scan_timestamps(&body, within, at_least)?;
    // Nothing from `at` on (retention got there meanwhile), or a reply that does not
    // move on: what is left of the range holds nothing to find.
    let to = found.last.map_or(until, |l| l.saturating_add(1).min(until));
    let to = if to > at { to } else { until };
    lock(&state.timestamps).add(Run {
        from: at,
        to,
        max: found.max,
    });
    Ok((found.first_at_least, to))
}
