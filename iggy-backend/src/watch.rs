//! Watches: the long polls of fetches waiting for data.
//!
//! Iggy cannot notify, so a waiting fetch looks at its topics' descriptions at most once
//! per poll interval, and at once when this gateway appended to a partition it watches.
//! Every watch wakes on the same beat (counted from the backend's start), so that however
//! many fetches wait on a topic, one description of it serves them all.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use iggy_kafka_core::backend::WatchPartition;

use crate::catalog::Catalog;
use crate::partition::PartitionState;

pub(crate) struct Watches {
    /// The longest a waiting fetch goes without asking Iggy for new data.
    poll_interval: Duration,
    /// The origin of the waiting fetches' common beat.
    started: Instant,
}

impl Watches {
    pub(crate) fn new(poll_interval: Duration, started: Instant) -> Self {
        Self {
            poll_interval,
            started,
        }
    }

    /// Returns once any of `partitions` has a message at or after its offset, or is gone,
    /// or cannot be looked at (the fetch then reads again and reports what it finds).
    pub(crate) async fn watch(&self, catalog: &Catalog, partitions: &[WatchPartition]) {
        // One topic request per topic, however many of its partitions are watched.
        let mut by_topic: Vec<(String, Vec<&WatchPartition>)> = Vec::new();
        for w in partitions {
            let Ok(name) = catalog.topic_name(&w.topic).await else {
                // Let the fetch read again and report the error.
                return;
            };
            match by_topic.iter_mut().find(|(n, _)| *n == name) {
                Some((_, ws)) => ws.push(w),
                None => by_topic.push((name, vec![w])),
            }
        }
        // The reads before the watch made the states of the partitions that exist; one that
        // went (Iggy said it did not exist) is not made again here.
        let states: Vec<(u64, Arc<PartitionState>)> = catalog.existing(
            by_topic
                .iter()
                .flat_map(|(name, ws)| ws.iter().map(|w| (name.as_str(), w.partition, w.offset))),
        );
        let clock = catalog.calls().clock();
        // The first look is fresh: the read before the watch may have missed an append.
        let mut at_least = clock.now();
        let mut by_append = false;
        loop {
            // Listening before looking: an append between the two still wakes this watch.
            let appended = AnyOf(states.iter().map(|(_, s)| s.appended.listen()).collect());
            // Where this gateway's own append ended is known without asking Iggy.
            if by_append
                && states
                    .iter()
                    .any(|(offset, s)| s.seen_end.load(Ordering::Relaxed) > *offset)
            {
                return;
            }
            for (name, watched) in &by_topic {
                let Ok(t) = catalog.look(name, at_least).await else {
                    return;
                };
                for w in watched {
                    match catalog.partition_offsets(name, &t, w.partition) {
                        Ok(o) if o.high_watermark <= w.offset => {}
                        _ => return,
                    }
                }
            }
            // Every watch wakes on the same beat, so that one look serves them all.
            let next = self.next_beat(clock.now());
            by_append = Race(Box::pin(appended), Box::pin(clock.sleep_until(next))).await;
            // Woken by an append here: only a look taken after it, if its end does not do.
            at_least = if by_append { clock.now() } else { next };
        }
    }

    /// The first beat of the poll interval after `now`, counted from the backend's start.
    fn next_beat(&self, now: Instant) -> Instant {
        let interval = self.poll_interval.as_nanos().max(1);
        let beats = now.duration_since(self.started).as_nanos() / interval + 1;
        self.started + Duration::from_nanos(u64::try_from(beats * interval).unwrap_or(u64::MAX))
    }
}

/// Resolves when either of two futures finishes: `true` when the first did.
struct Race<A, B>(Pin<Box<A>>, Pin<Box<B>>);

impl<A: Future<Output = ()>, B: Future<Output = ()>> Future for Race<A, B> {
    type Output = bool;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        if self.0.as_mut().poll(cx).is_ready() {
            Poll::Ready(true)
        } else if self.1.as_mut().poll(cx).is_ready() {
            Poll::Ready(false)
        } else {
            Poll::Pending
        }
    }
}

/// Resolves when any of its listeners is notified.
struct AnyOf(Vec<event_listener::EventListener>);

impl Future for AnyOf {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        for l in &mut self.0 {
            if Pin::new(l).poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    }
}
