//! Where a partition's largest Kafka timestamps are, for Kafka's `MAX_TIMESTAMP` and its
//! searches by time.
//!
//! A Kafka broker answers both from the maxima its segments and time index keep. Iggy keeps
//! none, so the gateway reads each message once and remembers, for runs of offsets, where
//! the run's largest timestamp is. A later question reads only what was appended since, and
//! a search skips every run whose largest timestamp is earlier than it looks for; retention
//! dropping the start of the partition drops whole runs, and re-reads at most the one run
//! it cut whose largest timestamp went with it.

use std::ops::Range;

use iggy_kafka_core::protocol::Uuid;

/// A message's offset and its Kafka timestamp (ms).
pub(crate) type Stamped = (u64, i64);

/// Runs kept per partition before neighbours are merged: bounds the memory whatever the
/// partition's length, at the cost of longer re-reads when retention cuts a run.
const MAX_RUNS: usize = 1024;

/// Offsets `from..to` were read; `max` is where their largest timestamp is (the first
/// offset that has it) and the timestamp, `None` when they hold no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) max: Option<Stamped>,
}

/// The larger of two maxima; of equal timestamps, `a`'s, which must be the earlier one.
pub(crate) fn larger(a: Option<Stamped>, b: Option<Stamped>) -> Option<Stamped> {
    match (a, b) {
        (Some(x), Some(y)) if y.1 > x.1 => b,
        (Some(_), _) => a,
        (None, _) => b,
    }
}

/// One partition's runs.
#[derive(Debug, Default)]
pub(crate) struct MaxTimestamps {
    /// The Iggy topic they were read from: a topic created again under the same name
    /// starts over.
    topic: Option<Uuid>,
    /// Ascending and not overlapping; adjacent unless a read stopped half-way.
    runs: Vec<Run>,
}

impl MaxTimestamps {
    /// Fits the runs to the partition as it is now (topic `topic`, offsets
    /// `log_start..end`) and returns the offsets in it that no run covers, in order.
    pub(crate) fn align(&mut self, topic: Uuid, log_start: u64, end: u64) -> Vec<Range<u64>> {
        let reset = self.topic != Some(topic) || self.runs.last().is_some_and(|r| r.to > end);
        if reset {
            // Another topic, or one that lost offsets it had: nothing read holds.
            self.runs.clear();
            self.topic = Some(topic);
        }
        self.runs.retain(|r| r.to > log_start);
        if let Some(first) = self.runs.first_mut().filter(|r| r.from < log_start) {
            match first.max {
                // The largest of the whole run is also the largest of what is left of it.
                Some((offset, _)) if offset >= log_start => first.from = log_start,
                _ => {
                    self.runs.remove(0);
                }
            }
        }
        let mut holes = Vec::new();
        let mut at = log_start;
        for r in &self.runs {
            if r.from > at {
                holes.push(at..r.from);
            }
            at = at.max(r.to);
        }
        if at < end {
            holes.push(at..end);
        }
        holes
    }

    /// Records what a read found. Runs are merged in pairs when there are too many.
    pub(crate) fn add(&mut self, run: Run) {
        if run.from >= run.to {
            return;
        }
        let at = self.runs.partition_point(|r| r.to <= run.from);
        if self.runs.get(at).is_some_and(|r| r.from < run.to) {
            // Overlaps what is held: another read got there first.
            return;
        }
        self.runs.insert(at, run);
        if self.runs.len() > MAX_RUNS {
            self.merge();
        }
    }

    /// Merges adjacent runs two by two.
    fn merge(&mut self) {
        let mut merged: Vec<Run> = Vec::with_capacity(self.runs.len() / 2 + 1);
        let mut pending: Option<Run> = None;
        for r in self.runs.drain(..) {
            match pending.take() {
                Some(p) if p.to == r.from => merged.push(Run {
                    from: p.from,
                    to: r.to,
                    max: larger(p.max, r.max),
                }),
                Some(p) => {
                    merged.push(p);
                    pending = Some(r);
                }
                None => pending = Some(r),
            }
        }
        merged.extend(pending);
        self.runs = merged;
    }

    /// The run that holds `offset`, or, if none does, where the next run starts.
    pub(crate) fn around(&self, offset: u64) -> Result<Run, Option<u64>> {
        let at = self.runs.partition_point(|r| r.to <= offset);
        match self.runs.get(at) {
            Some(r) if r.from <= offset => Ok(*r),
            next => Err(next.map(|r| r.from)),
        }
    }

    /// The largest timestamp read and the first offset that has it.
    pub(crate) fn max(&self) -> Option<Stamped> {
        self.runs.iter().fold(None, |m, r| larger(m, r.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Uuid = Uuid([1; 16]);

    fn run(from: u64, to: u64, max: Option<Stamped>) -> Run {
        Run { from, to, max }
    }

    #[test]
    fn what_was_read_is_not_read_again() {
        let mut m = MaxTimestamps::default();
        assert_eq!(m.align(T, 0, 10), vec![0..10]);
        m.add(run(0, 6, Some((2, 50))));
        m.add(run(6, 10, Some((7, 50))));
        // Equal timestamps: the first offset that has it.
        assert_eq!(m.max(), Some((2, 50)));
        assert_eq!(m.align(T, 0, 14), vec![10..14]);
        m.add(run(10, 14, Some((13, 60))));
        assert_eq!(m.max(), Some((13, 60)));
        assert_eq!(m.align(T, 0, 14), vec![]);
        // Nothing held: no answer.
        let mut empty = MaxTimestamps::default();
        assert_eq!(empty.align(T, 0, 0), vec![]);
        assert_eq!(empty.max(), None);
    }

    #[test]
    fn retention_drops_runs_and_rereads_only_a_cut_run_that_lost_its_largest() {
        let mut m = MaxTimestamps::default();
        m.align(T, 0, 30);
        m.add(run(0, 10, Some((3, 90))));
        m.add(run(10, 20, Some((15, 40))));
        m.add(run(20, 30, Some((29, 70))));
        assert_eq!(m.max(), Some((3, 90)));
        // The first run is cut after its largest: it stays, shortened.
        assert_eq!(m.align(T, 2, 30), vec![]);
        assert_eq!(m.max(), Some((3, 90)));
        // Cut past its largest: it is read again from the new start.
        assert_eq!(m.align(T, 5, 30), vec![5..10]);
        assert_eq!(m.max(), Some((29, 70)));
        m.add(run(5, 10, Some((6, 10))));
        // Whole runs go without a read.
        assert_eq!(m.align(T, 20, 30), vec![]);
        assert_eq!(m.max(), Some((29, 70)));
    }

    #[test]
    fn another_topic_or_a_shorter_partition_starts_over() {
        let mut m = MaxTimestamps::default();
        m.align(T, 0, 10);
        m.add(run(0, 10, Some((3, 90))));
        assert_eq!(m.align(Uuid([2; 16]), 0, 10), vec![0..10]);
        assert_eq!(m.max(), None);
        m.add(run(0, 10, Some((3, 90))));
        assert_eq!(m.align(Uuid([2; 16]), 0, 4), vec![0..4]);
    }

    #[test]
    fn a_read_stopped_half_way_leaves_a_hole_that_is_read_later() {
        let mut m = MaxTimestamps::default();
        m.align(T, 0, 30);
        m.add(run(20, 30, Some((25, 5))));
        m.add(run(0, 8, Some((1, 7))));
        assert_eq!(m.align(T, 0, 30), vec![8..20]);
        // A read overlapping what is held is dropped.
        m.add(run(5, 12, Some((6, 100))));
        m.add(run(8, 20, Some((9, 8))));
        assert_eq!(m.align(T, 0, 30), vec![]);
        assert_eq!(m.max(), Some((9, 8)));
    }

    #[test]
    fn around_finds_the_run_or_the_next_one() {
        let mut m = MaxTimestamps::default();
        m.align(T, 0, 30);
        m.add(run(5, 10, Some((6, 1))));
        m.add(run(20, 30, None));
        assert_eq!(m.around(2), Err(Some(5)));
        assert_eq!(m.around(5), Ok(run(5, 10, Some((6, 1)))));
        assert_eq!(m.around(9), Ok(run(5, 10, Some((6, 1)))));
        assert_eq!(m.around(10), Err(Some(20)));
        assert_eq!(m.around(29), Ok(run(20, 30, None)));
        assert_eq!(m.around(30), Err(None));
    }

    #[test]
    fn merging_keeps_the_largest_and_bounds_the_runs() {
        let mut m = MaxTimestamps::default();
        let n = 3 * MAX_RUNS as u64;
        m.align(T, 0, n);
        for i in 0..n {
            // Largest at offset 1234, then again later (the first one counts).
            let ts = if i == 1234 || i == 2000 {
                1_000
            } else {
                (i % 97) as i64
            };
            m.add(run(i, i + 1, Some((i, ts))));
        }
        assert!(m.runs.len() <= MAX_RUNS);
        assert_eq!(m.max(), Some((1234, 1_000)));
        assert_eq!(m.align(T, 0, n), vec![]);
        assert!(m.runs.windows(2).all(|w| w[0].to == w[1].from));
    }
}
