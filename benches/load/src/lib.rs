//! What the load clients share.

use std::time::Duration;

/// Prints a phase's records/s and MB/s.
pub fn rate(what: &str, records: usize, size: usize, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    println!(
        "{what}: {records} records of {size} B in {secs:.2} s: {:.3} M records/s, {:.1} MB/s",
        records as f64 / secs / 1e6,
        (records * size) as f64 / secs / 1e6
    );
}
