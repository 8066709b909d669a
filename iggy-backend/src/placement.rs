//! Which lane serves a partition: the one Iggy answers fastest for it, found by measuring.
//!
//! The server runs a shard per core and owns each partition on one of them; a request that
//! arrives on a connection another shard holds is passed to the owner and back. Under load
//! that costs the partition's appends about twice the time (`docs/BENCHMARKS.md`), and Iggy
//! tells a client neither where a partition lives nor where its connection went. Timing
//! idle requests does not show it either: an idle shard passes a request on at once. What
//! shows it is the partition's own traffic, so a trial spreads a partition's requests over
//! every lane in short turns, compares how long Iggy took to answer each (from the request's
//! write to its reply, queueing in the gateway left out), and keeps the fastest lane. A
//! request that carried several merged appends is one answer, taken by its first.
//!
//! Lanes are compared by their lower quartile: what else the server and the machine do only
//! ever adds to an answer's time, so the quicker answers show the path itself. When no lane
//! stands out (a server with one shard, or a spell of noise), the trial goes on for another
//! set of answers, up to [`MAX_SETS`], then keeps the quickest anyway: at worst as good a
//! lane as any.
//!
//! A trial runs when a partition is first used, again when its lane logs in anew (the new
//! connection may sit on another shard) or goes down, and again after [`RETRIAL_AFTER`]
//! requests, since a trial in a quiet spell compares little. A lane that is down, or failed
//! a request during the trial, gets none of the trial's requests: a trial never sends a
//! request where it would fail. The caller keeps a partition's appends in
//! order across a change of lane ([`iggy_kafka_iggy_client::Lanes::call_after`]).

use std::time::Duration;

/// Requests in a row on one lane during a trial. Short turns interleave the lanes finely, so
/// that a spell of load falls on all of them alike; a change of lane costs little (the next
/// append waits only for the old lane's last reply).
const TURN: u32 = 2;
/// Answers per lane in a set.
const SAMPLES: usize = 16;
/// Sets of answers a trial takes at most.
const MAX_SETS: usize = 3;
/// A lane stands out when its lower quartile is below this share of the slowest lane's.
const STANDS_OUT: f64 = 0.9;
/// Requests after a trial before the next.
pub(crate) const RETRIAL_AFTER: u32 = 16_384;

/// What a request was: answers are compared only with answers to the same kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Append,
    Poll,
}

/// A partition's lane, and the trial that may be choosing it.
#[derive(Debug)]
pub(crate) struct Placement {
    lanes: usize,
    lane: usize,
    /// The lane's generation when it was chosen (`None`: it was down).
    generation: Option<u64>,
    /// Requests routed since the last trial.
    routed: u32,
    trial: Option<Trial>,
}

#[derive(Debug)]
struct Trial {
    /// Requests routed so far: the lane turns every [`TURN`].
    step: u32,
    /// Answer times in microseconds, per kind, per lane.
    appends: Vec<Vec<u32>>,
    polls: Vec<Vec<u32>>,
    /// Lanes that failed a request during the trial: left out of it.
    failed: Vec<bool>,
    /// Answers per lane that decide, a set more each time no lane stood out.
    needed: usize,
}

impl Trial {
    fn new(lanes: usize) -> Self {
        Self {
            step: 0,
            appends: vec![Vec::new(); lanes],
            polls: vec![Vec::new(); lanes],
            failed: vec![false; lanes],
            needed: SAMPLES,
        }
    }

    /// Each lane's lower quartile of answer times in microseconds (`None` for a lane that
    /// failed), once each lane that has not failed has enough answers of `kind`.
    fn quartiles(&mut self, kind: Kind) -> Option<Vec<Option<u32>>> {
        let samples = match kind {
            Kind::Append => &mut self.appends,
            Kind::Poll => &mut self.polls,
        };
        let mut quartiles = Vec::with_capacity(samples.len());
        for (lane, s) in samples.iter_mut().enumerate() {
            if self.failed[lane] {
                quartiles.push(None);
                continue;
            }
            if s.len() < self.needed {
                return None;
            }
            s.sort_unstable();
            quartiles.push(Some(s[s.len() / 4]));
        }
        Some(quartiles)
    }
}

/// How a trial ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// The lane chosen: the lowest quartile.
    pub(crate) lane: usize,
    pub(crate) kind: Kind,
    /// Each lane's lower quartile of answer times in microseconds; `None` for a lane that
    /// failed.
    pub(crate) quartiles: Vec<Option<u32>>,
    /// Whether the lane stood out (else the trial ran out of sets).
    pub(crate) clear: bool,
}

impl Decision {
    fn new(kind: Kind, quartiles: Vec<Option<u32>>) -> Option<Self> {
        let known = || {
            quartiles
                .iter()
                .enumerate()
                .filter_map(|(l, q)| q.map(|q| (q, l)))
        };
        let (best, lane) = known().min()?;
        let (slowest, _) = known().max()?;
        Some(Self {
            lane,
            kind,
            clear: known().count() == 1 || f64::from(best) < STANDS_OUT * f64::from(slowest),
            quartiles,
        })
    }
}

impl Placement {
    /// A partition first seen, on `home` of `lanes` lanes until a trial says otherwise.
    pub(crate) fn new(lanes: usize, home: usize) -> Self {
        let lanes = lanes.max(1);
        Self {
            lanes,
            lane: home % lanes,
            generation: None,
            routed: 0,
            trial: (lanes > 1).then(|| Trial::new(lanes)),
        }
    }

    /// The lane for the partition's next request; `generation` tells how many times each
    /// lane has logged in, `None` while it is down.
    pub(crate) fn route(&mut self, generation: impl Fn(usize) -> Option<u64>) -> usize {
        if self.lanes == 1 {
            return 0;
        }
        let now = generation(self.lane);
        if self.trial.is_none()
            && (self.routed >= RETRIAL_AFTER || now.is_none() || now != self.generation)
        {
            self.trial = Some(Trial::new(self.lanes));
        }
        let Some(t) = &mut self.trial else {
            self.routed += 1;
            return self.lane;
        };
        let turn = (t.step / TURN) as usize;
        t.step = t.step.wrapping_add(1);
        for k in 0..self.lanes {
            let lane = (self.lane + turn + k) % self.lanes;
            if generation(lane).is_none() {
                t.failed[lane] = true;
            }
            if !t.failed[lane] {
                return lane;
            }
        }
        // No lane to try: the chosen one stays, and fails fast while it is down.
        self.trial = None;
        self.routed = 0;
        self.generation = generation(self.lane);
        self.lane
    }

    /// Iggy answered a request sent on `lane` in `service` (`None`: it failed unanswered).
    /// `generation` is as for [`Self::route`]. Returns the decision when this answer ended a
    /// trial.
    pub(crate) fn answered(
        &mut self,
        lane: usize,
        kind: Kind,
        service: Option<Duration>,
        generation: impl Fn(usize) -> Option<u64>,
    ) -> Option<Decision> {
        let t = self.trial.as_mut()?;
        if lane >= self.lanes {
            return None;
        }
        match service {
            None => t.failed[lane] = true,
            Some(d) => {
                let micros = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
                match kind {
                    Kind::Append => t.appends[lane].push(micros),
                    Kind::Poll => t.polls[lane].push(micros),
                }
            }
        }
        if t.failed.iter().all(|&f| f) {
            // Nothing to compare: try again later.
            self.trial = None;
            self.routed = 0;
            return None;
        }
        let decision = Decision::new(kind, t.quartiles(kind)?)?;
        if !decision.clear && t.needed < MAX_SETS * SAMPLES {
            t.needed += SAMPLES;
            return None;
        }
        self.lane = decision.lane;
        self.generation = generation(decision.lane);
        self.trial = None;
        self.routed = 0;
        Some(decision)
    }

    /// The lane chosen, or the trial's starting lane while one runs.
    #[cfg(test)]
    pub(crate) fn lane(&self) -> usize {
        self.lane
    }

    /// The running trial's answers: appends, polls.
    #[cfg(test)]
    pub(crate) fn samples(&self) -> Option<(usize, usize)> {
        let count = |s: &[Vec<u32>]| s.iter().map(Vec::len).sum();
        self.trial
            .as_ref()
            .map(|t| (count(&t.appends), count(&t.polls)))
    }

    #[cfg(test)]
    pub(crate) fn in_trial(&self) -> bool {
        self.trial.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GEN: fn(usize) -> Option<u64> = |_| Some(1);

    /// Requests a clear trial over `lanes` lanes takes.
    fn trial(lanes: usize) -> u32 {
        (lanes * SAMPLES) as u32
    }

    /// Routes `n` requests, answering each at once in `cost(lane)` microseconds.
    fn run(p: &mut Placement, n: u32, kind: Kind, cost: impl FnMut(usize) -> u64) -> Vec<usize> {
        run_in(p, n, kind, cost, GEN)
    }

    /// [`run`], with the lanes' logins as `generation` tells.
    fn run_in(
        p: &mut Placement,
        n: u32,
        kind: Kind,
        mut cost: impl FnMut(usize) -> u64,
        generation: fn(usize) -> Option<u64>,
    ) -> Vec<usize> {
        (0..n)
            .map(|_| {
                let lane = p.route(generation);
                let service = Some(Duration::from_micros(cost(lane)));
                p.answered(lane, kind, service, generation);
                lane
            })
            .collect()
    }

    #[test]
    fn a_trial_takes_turns_over_every_lane_then_keeps_the_fastest() {
        let mut p = Placement::new(4, 2);
        let lanes = run(&mut p, trial(4), Kind::Append, |l| {
            if l == 1 {
                500
            } else {
                1200
            }
        });
        assert_eq!(&lanes[..8], &[2, 2, 3, 3, 0, 0, 1, 1]);
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 1);
        assert!(run(&mut p, 100, Kind::Append, |_| 1)
            .iter()
            .all(|&l| l == 1));
    }

    #[test]
    fn slow_answers_do_not_decide() {
        let mut p = Placement::new(2, 0);
        let mut i = 0;
        run(&mut p, trial(2), Kind::Append, |l| {
            i += 1;
            match (l, i % 3) {
                // A third of lane 0's answers caught in other work.
                (0, 0) => 50_000,
                (0, _) => 400,
                _ => 900,
            }
        });
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 0, "the quicker answers show the path");
    }

    #[test]
    fn without_a_lane_that_stands_out_the_trial_goes_on_then_ends() {
        let mut p = Placement::new(2, 1);
        let mut i = 0u64;
        let mut even = |_| {
            i += 1;
            1000 + i % 7
        };
        run(&mut p, trial(2), Kind::Append, &mut even);
        assert!(p.in_trial(), "no lane stood out");
        run(
            &mut p,
            trial(2) * (MAX_SETS as u32 - 1),
            Kind::Append,
            &mut even,
        );
        assert!(!p.in_trial(), "out of sets: a lane is kept anyway");
        // A lane that stands out in the second set ends it there.
        let mut p = Placement::new(2, 1);
        run(&mut p, trial(2), Kind::Append, |_| 1000);
        assert!(p.in_trial());
        run(&mut p, trial(2), Kind::Append, |l| {
            if l == 0 {
                200
            } else {
                1000
            }
        });
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 0);
    }

    #[test]
    fn answers_of_another_kind_are_not_compared() {
        let mut p = Placement::new(2, 0);
        // Appends on lane 0, polls on lane 1: neither kind has answers from both lanes.
        for _ in 0..trial(2) * 4 {
            let lane = p.route(GEN);
            let kind = if lane == 0 { Kind::Append } else { Kind::Poll };
            p.answered(lane, kind, Some(Duration::from_micros(100)), GEN);
        }
        assert!(p.in_trial());
    }

    #[test]
    fn a_failing_lane_is_left_out() {
        let mut p = Placement::new(2, 0);
        for _ in 0..trial(2) {
            let lane = p.route(GEN);
            let service = (lane == 1).then(|| Duration::from_micros(900));
            p.answered(lane, Kind::Poll, service, GEN);
        }
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 1);
    }

    #[test]
    fn a_new_login_of_the_lane_or_enough_requests_start_a_new_trial() {
        let mut p = Placement::new(2, 0);
        run(&mut p, trial(2), Kind::Append, |l| {
            if l == 1 {
                100
            } else {
                200
            }
        });
        assert_eq!(p.lane(), 1);
        assert!(!p.in_trial());
        // Lane 1 logs in again.
        let again: fn(usize) -> Option<u64> = |l| Some(if l == 1 { 2 } else { 1 });
        p.route(again);
        assert!(p.in_trial(), "the lane logged in again");
        run_in(
            &mut p,
            trial(2),
            Kind::Append,
            |l| if l == 0 { 100 } else { 200 },
            again,
        );
        assert_eq!(p.lane(), 0);
        // Lane 1 logging in again does not matter to a partition on lane 0.
        let third: fn(usize) -> Option<u64> = |l| Some(if l == 1 { 3 } else { 1 });
        run_in(&mut p, RETRIAL_AFTER, Kind::Append, |_| 100, third);
        assert!(!p.in_trial());
        p.route(third);
        assert!(p.in_trial(), "enough requests since the last trial");
    }

    #[test]
    fn a_lane_that_is_down_gets_none_of_a_trials_requests() {
        let mut p = Placement::new(3, 0);
        let lane_1_down: fn(usize) -> Option<u64> = |l| (l != 1).then_some(1);
        let lanes = run_in(
            &mut p,
            trial(3),
            Kind::Append,
            |l| 100 + l as u64 * 50,
            lane_1_down,
        );
        assert!(!lanes.contains(&1));
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 0);
        // The chosen lane goes down: a new trial moves the partition to a lane that is up.
        let lane_0_down: fn(usize) -> Option<u64> = |l| (l != 0).then_some(1);
        let lanes = run_in(
            &mut p,
            trial(3),
            Kind::Append,
            |l| 100 + l as u64 * 50,
            lane_0_down,
        );
        assert!(!lanes.contains(&0));
        assert_eq!(p.lane(), 1);
        // Every lane down: the chosen lane stays (and fails fast), no trial runs on.
        let all_down: fn(usize) -> Option<u64> = |_| None;
        assert_eq!(p.route(all_down), 1);
        assert!(!p.in_trial());
        assert_eq!(p.route(all_down), 1);
        // One lane back: the partition goes there at once.
        let lane_2_up: fn(usize) -> Option<u64> = |l| (l == 2).then_some(2);
        assert_eq!(p.route(lane_2_up), 2);
    }

    #[test]
    fn a_lane_chosen_as_it_went_down_is_left_at_once() {
        let mut p = Placement::new(2, 0);
        // Lane 0 wins the trial, and is down when its last answer comes.
        let mut lane_0_down = false;
        for _ in 0..trial(2) {
            let lane = p.route(GEN);
            p.answered(
                lane,
                Kind::Append,
                Some(Duration::from_micros(if lane == 0 { 100 } else { 200 })),
                |l| (l != 0 || !lane_0_down).then_some(1),
            );
            lane_0_down = true;
        }
        assert!(!p.in_trial());
        assert_eq!(p.lane(), 0);
        let down: fn(usize) -> Option<u64> = |l| (l != 0).then_some(1);
        assert_eq!(p.route(down), 1, "not sent where it would fail");
    }

    #[test]
    fn one_lane_needs_no_trial() {
        let mut p = Placement::new(1, 7);
        assert!(!p.in_trial());
        assert_eq!(run(&mut p, 10, Kind::Append, |_| 1), vec![0; 10]);
    }
}
