//! The values that cannot work, refused at start with the option's name and the reason,
//! before anything is bound or connected: a gateway that starts is one that can serve.

use iggy_kafka_iggy_client::MergeLimits;

use crate::Args;

/// The smallest `--max-frame-size`: below it not even a client's first requests (ApiVersions
/// with its software name, a Metadata request naming a few topics) fit.
pub(crate) const MIN_FRAME_SIZE: usize = 1024;

/// Checks every option whose value alone (or with another's) cannot work.
///
/// # Errors
/// The first such option, as `--name: reason`.
pub(crate) fn check(args: &Args) -> Result<(), String> {
    let fail = |option: &str, reason: String| Err(format!("--{option}: {reason}"));
    if args.max_frame_size < MIN_FRAME_SIZE {
        return fail(
            "max-frame-size",
            format!(
                "{} is too small: at least {MIN_FRAME_SIZE} bytes, or clients' first requests \
                 cannot be read",
                args.max_frame_size
            ),
        );
    }
    if i32::try_from(args.max_frame_size).is_err() {
        return fail(
            "max-frame-size",
            format!(
                "{} is larger than a Kafka frame can be ({} bytes)",
                args.max_frame_size,
                i32::MAX
            ),
        );
    }
    for (option, value, what) in [
        (
            "idle-timeout-ms",
            args.idle_timeout_ms,
            "every connection would be closed as soon as it opened",
        ),
        (
            "request-timeout-ms",
            args.request_timeout_ms,
            "every request that needs the backend would time out",
        ),
        (
            "iggy-poll-interval-ms",
            args.iggy_poll_interval_ms,
            "waiting fetches would ask Iggy without pause",
        ),
        (
            "group-max-session-timeout-ms",
            args.group_max_session_timeout_ms,
            "no consumer group member could join",
        ),
        (
            "group-consumer-session-timeout-ms",
            args.group_consumer_session_timeout_ms,
            "every consumer-protocol member would time out at once",
        ),
        (
            "group-consumer-heartbeat-interval-ms",
            args.group_consumer_heartbeat_interval_ms,
            "members would heartbeat without pause",
        ),
        (
            "retention-bytes",
            args.retention_bytes,
            "the embedded store would keep no record",
        ),
    ] {
        if value == 0 {
            return fail(option, format!("0 cannot work: {what}"));
        }
    }
    if args.iggy_connections == 0 {
        return fail(
            "iggy-connections",
            "0 cannot work: at least one connection carries the requests".into(),
        );
    }
    let merge_bytes = args.iggy_merge_max_bytes;
    if merge_bytes < MergeLimits::MIN_BYTES {
        return fail(
            "iggy-merge-max-bytes",
            format!(
                "{merge_bytes} is too small: at least {} bytes, the request of one message",
                MergeLimits::MIN_BYTES
            ),
        );
    }
    if merge_bytes > MergeLimits::MAX_BYTES {
        return fail(
            "iggy-merge-max-bytes",
            format!(
                "{merge_bytes} is larger than Iggy takes in one request ({} bytes: its 64 MiB \
                 frame less the header)",
                MergeLimits::MAX_BYTES
            ),
        );
    }
    if args.max_in_flight_requests == 0 {
        return fail(
            "max-in-flight-requests",
            "0 cannot work: no request would ever be read".into(),
        );
    }
    if args.group_min_session_timeout_ms > args.group_max_session_timeout_ms {
        return fail(
            "group-min-session-timeout-ms",
            format!(
                "{} is above --group-max-session-timeout-ms {}: no session timeout would be \
                 allowed",
                args.group_min_session_timeout_ms, args.group_max_session_timeout_ms
            ),
        );
    }
    if args.group_consumer_heartbeat_interval_ms > i32::MAX as u64 {
        return fail(
            "group-consumer-heartbeat-interval-ms",
            format!(
                "{} does not fit Kafka's 32-bit field",
                args.group_consumer_heartbeat_interval_ms
            ),
        );
    }
    if args.group_consumer_heartbeat_interval_ms >= args.group_consumer_session_timeout_ms {
        return fail(
            "group-consumer-heartbeat-interval-ms",
            format!(
                "{} is not below --group-consumer-session-timeout-ms {}: members would time out \
                 between heartbeats",
                args.group_consumer_heartbeat_interval_ms, args.group_consumer_session_timeout_ms
            ),
        );
    }
    // `--log` is checked where the log is set up, before this runs (`log_filter`).
    Ok(())
}

/// The levels a log directive may name.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// The log filter `filter` names, or why it is not one this gateway takes: comma-separated directives, each a
/// level or `TARGET=LEVEL` (a span filter, `TARGET[span]=LEVEL`, is left to the tracing
/// parser). A bare word that is not a level is refused: the tracing parser would take a
/// mistyped level (`debgu`) for a target, and the gateway would log nothing.
pub(crate) fn log_filter(filter: &str) -> Result<tracing_subscriber::EnvFilter, String> {
    let level = |l: &str| LEVELS.iter().any(|v| v.eq_ignore_ascii_case(l.trim()));
    for directive in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let ok = match directive.rsplit_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(directive),
        };
        if !ok {
            return Err(format!(
                "{directive:?} in {filter:?} is neither a level ({}) nor TARGET=LEVEL",
                LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("{filter:?} is not a log filter: {e}"))
}

/// The host and port of an advertised listener: `HOST:PORT`, `[IPV6]:PORT`, or Kafka's
/// `NAME://HOST:PORT` (the name is the listener's, which one listener does not need).
///
/// # Errors
/// When it is none of those, with the reason.
pub(crate) fn advertised_listener(value: &str) -> Result<(String, u16), String> {
    advertised_address("advertised-listener", value)
}

/// [`advertised_listener`], with errors naming `option`.
pub(crate) fn advertised_address(option: &str, value: &str) -> Result<(String, u16), String> {
    let fail = |reason: &str| Err(format!("--{option} {value:?}: {reason}"));
    let address = match value.split_once("://") {
        Some((name, rest))
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            rest
        }
        Some(_) => return fail("expected HOST:PORT or NAME://HOST:PORT"),
        None => value,
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return fail("expected HOST:PORT or NAME://HOST:PORT");
    };
    let port: u16 = match port.parse() {
        Ok(0) | Err(_) => return fail("the port must be 1 to 65535"),
        Ok(p) => p,
    };
    let host = match host.strip_prefix('[') {
        Some(v6) => match v6.strip_suffix(']') {
            Some(v6) => v6,
            None => return fail("an IPv6 address needs its closing ']'"),
        },
        None => host,
    };
    if host.is_empty() {
        return fail("no host");
    }
    if host.contains(['/', ' ', '@']) || (host.contains(':') && !value.contains('[')) {
        return fail("the host is not a host name or address (IPv6 goes in brackets)");
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_listeners_in_kafkas_forms() {
        let ok = |v: &str| advertised_listener(v).expect("taken");
        assert_eq!(ok("kafka.example:9093"), ("kafka.example".into(), 9093));
        assert_eq!(
            ok("PLAINTEXT://kafka.example:9093"),
            ("kafka.example".into(), 9093)
        );
        assert_eq!(ok("EXTERNAL://[::1]:19093"), ("::1".into(), 19093));
        assert_eq!(ok("10.0.0.5:1"), ("10.0.0.5".into(), 1));
        for bad in [
            "nohost",
            "host:0",
            "host:70000",
            ":9093",
            "://h:9093",
            "a b://h:9093",
            "PLAINTEXT://h",
            "[::1:9093",
            "::1:9093",
            "http://u@h:9093",
        ] {
            let e = advertised_listener(bad).expect_err(bad);
            assert!(e.starts_with("--advertised-listener"), "{e}");
        }
    }

    #[test]
    fn mistyped_log_filters_are_refused() {
        for good in [
            "info",
            "WARN",
            "iggy_kafka_core=debug,warn",
            "off",
            "a::b=trace",
        ] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        for bad in ["debgu", "info,verbose", "core=loud", "=info"] {
            let e = log_filter(bad).expect_err(bad);
            assert!(e.contains("neither a level"), "{e}");
        }
    }
}
