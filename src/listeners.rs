//! The Kafka listeners, in Kafka's model: named listeners (`--listeners`), each with a
//! security protocol (`--listener-security-protocol-map`) and an address clients are told
//! (`--advertised-listeners`); or, without `--listeners`, the one PLAINTEXT listener of
//! `--listen` and `--advertised-listener`.

use std::net::{SocketAddr, ToSocketAddrs};

use iggy_kafka_core::SecurityProtocol;

/// The name of the listener `--listen` makes.
pub(crate) const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// One listener to bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListenerPlan {
    /// Its name, upper-cased, as Kafka normalises listener names.
    pub(crate) name: String,
    /// Where it binds.
    pub(crate) bind: SocketAddr,
    /// What it requires of its connections.
    pub(crate) protocol: SecurityProtocol,
    /// The host and port clients are told, when given; else derived from the bound address.
    pub(crate) advertised: Option<(String, u16)>,
}

/// The listener options as given.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ListenerOptions<'a> {
    /// `--listen`, and whether it was given (not its default).
    pub(crate) listen: &'a str,
    pub(crate) listen_given: bool,
    pub(crate) advertised_listener: Option<&'a str>,
    pub(crate) listeners: Option<&'a str>,
    pub(crate) advertised_listeners: Option<&'a str>,
    pub(crate) protocol_map: Option<&'a str>,
}

/// The listeners `options` describe, checked: names unique and known, ports distinct,
/// every name mapped to a protocol.
///
/// # Errors
/// The first problem, as `--option: reason`.
pub(crate) fn plan(options: &ListenerOptions<'_>) -> Result<Vec<ListenerPlan>, String> {
    let mut plans = match options.listeners {
        None => vec![ListenerPlan {
            name: DEFAULT_LISTENER.into(),
            bind: resolve("listen", options.listen)?,
            protocol: SecurityProtocol::Plaintext,
            advertised: options
                .advertised_listener
                .map(crate::checks::advertised_listener)
                .transpose()?,
        }],
        Some(list) => {
            if options.listen_given {
                return Err(
                    "--listeners: give either --listen (one PLAINTEXT listener) or --listeners, \
                     not both"
                        .into(),
                );
            }
            if options.advertised_listener.is_some() {
                return Err(
                    "--advertised-listener: with --listeners, name each listener's \
                            address in --advertised-listeners instead"
                        .into(),
                );
            }
            listeners(list)?
        }
    };
    let map = protocol_map(options.protocol_map.unwrap_or_default())?;
    for (name, _) in &map {
        if !plans.iter().any(|p| &p.name == name) {
            return Err(format!(
                "--listener-security-protocol-map: {name} names no listener (listeners: {})",
                names(&plans)
            ));
        }
    }
    for plan in &mut plans {
        plan.protocol = match map.iter().find(|(n, _)| *n == plan.name) {
            Some((_, p)) => *p,
            None => SecurityProtocol::from_name(&plan.name).ok_or_else(|| {
                format!(
                    "--listener-security-protocol-map: no security protocol for listener {} \
                     (map it, e.g. {}:SSL)",
                    plan.name, plan.name
                )
            })?,
        };
    }
    if let Some(list) = options.advertised_listeners {
        if options.advertised_listener.is_some() {
            return Err(
                "--advertised-listeners: give either --advertised-listener or \
                 --advertised-listeners, not both"
                    .into(),
            );
        }
        let mut seen = Vec::new();
        for entry in entries(list) {
            let Some((name, _)) = entry.split_once("://") else {
                return Err(format!(
                    "--advertised-listeners: {entry:?} is not NAME://HOST:PORT"
                ));
            };
            let name = name.to_ascii_uppercase();
            let address = crate::checks::advertised_address("advertised-listeners", entry)?;
            if seen.contains(&name) {
                return Err(format!("--advertised-listeners: {name} is named twice"));
            }
            let Some(plan) = plans.iter_mut().find(|p| p.name == name) else {
                return Err(format!(
                    "--advertised-listeners: {name} names no listener (listeners: {})",
                    names(&plans)
                ));
            };
            plan.advertised = Some(address);
            seen.push(name);
        }
    }
    Ok(plans)
}

fn names(plans: &[ListenerPlan]) -> String {
    plans
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The non-empty, trimmed entries of a comma-separated list.
fn entries(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// A listener name: letters, digits and underscores, as Kafka allows.
fn listener_name(option: &str, name: &str) -> Result<String, String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!(
            "--{option}: {name:?} is not a listener name (letters, digits and '_')"
        ));
    }
    Ok(name.to_ascii_uppercase())
}

/// `--listeners`: `NAME://HOST:PORT,...`; an empty host binds every interface.
fn listeners(list: &str) -> Result<Vec<ListenerPlan>, String> {
    let mut plans: Vec<ListenerPlan> = Vec::new();
    for entry in entries(list) {
        let Some((name, address)) = entry.split_once("://") else {
            return Err(format!("--listeners: {entry:?} is not NAME://HOST:PORT"));
        };
        let name = listener_name("listeners", name)?;
        let address = if address.starts_with(':') {
            format!("0.0.0.0{address}")
        } else {
            address.to_owned()
        };
        let bind = resolve("listeners", &address)?;
        if plans.iter().any(|p| p.name == name) {
            return Err(format!("--listeners: {name} is named twice"));
        }
        if let Some(other) = plans
            .iter()
            .find(|p| bind.port() != 0 && p.bind.port() == bind.port())
        {
            return Err(format!(
                "--listeners: {name} and {} both use port {}",
                other.name,
                bind.port()
            ));
        }
        plans.push(ListenerPlan {
            name,
            bind,
            // Set from the map once every name is known.
            protocol: SecurityProtocol::Plaintext,
            advertised: None,
        });
    }
    if plans.is_empty() {
        return Err("--listeners: no listener in it (NAME://HOST:PORT,...)".into());
    }
    Ok(plans)
}

/// `--listener-security-protocol-map`: `NAME:PROTOCOL,...`.
fn protocol_map(list: &str) -> Result<Vec<(String, SecurityProtocol)>, String> {
    const OPTION: &str = "listener-security-protocol-map";
    let mut map: Vec<(String, SecurityProtocol)> = Vec::new();
    for entry in entries(list) {
        let Some((name, protocol)) = entry.split_once(':') else {
            return Err(format!("--{OPTION}: {entry:?} is not NAME:PROTOCOL"));
        };
        let name = listener_name(OPTION, name.trim())?;
        let Some(protocol) = SecurityProtocol::from_name(protocol.trim()) else {
            return Err(format!(
                "--{OPTION}: {protocol:?} is not a security protocol (PLAINTEXT, SSL, \
                 SASL_PLAINTEXT, SASL_SSL)"
            ));
        };
        if map.iter().any(|(n, _)| *n == name) {
            return Err(format!("--{OPTION}: {name} is mapped twice"));
        }
        map.push((name, protocol));
    }
    Ok(map)
}

fn resolve(option: &str, address: &str) -> Result<SocketAddr, String> {
    match address.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Ok(addr),
        Ok(None) => Err(format!("--{option}: {address:?} resolves to no address")),
        Err(e) => Err(format!("--{option}: bad address {address:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(
        listeners: &'static str,
        map: Option<&'static str>,
        advertised: Option<&'static str>,
    ) -> ListenerOptions<'static> {
        ListenerOptions {
            listen: "0.0.0.0:9093",
            listeners: Some(listeners),
            advertised_listeners: advertised,
            protocol_map: map,
            ..ListenerOptions::default()
        }
    }

    #[test]
    fn without_listeners_listen_is_one_plaintext_listener() {
        let plans = plan(&ListenerOptions {
            listen: "127.0.0.1:9093",
            advertised_listener: Some("kafka.example:19093"),
            ..ListenerOptions::default()
        })
        .expect("plan");
        assert_eq!(
            plans,
            vec![ListenerPlan {
                name: "PLAINTEXT".into(),
                bind: "127.0.0.1:9093".parse().expect("addr"),
                protocol: SecurityProtocol::Plaintext,
                advertised: Some(("kafka.example".into(), 19093)),
            }]
        );
    }

    #[test]
    fn named_listeners_take_kafkas_default_map_and_explicit_entries() {
        let plans = plan(&with(
            "plaintext://127.0.0.1:9092, SSL://127.0.0.1:9093,EXTERNAL://:9094",
            Some("EXTERNAL:SSL"),
            Some("SSL://kafka.example:443,EXTERNAL://[::1]:9094"),
        ))
        .expect("plan");
        let got: Vec<_> = plans
            .iter()
            .map(|p| {
                (
                    p.name.as_str(),
                    p.bind.to_string(),
                    p.protocol,
                    p.advertised.clone(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "PLAINTEXT",
                    "127.0.0.1:9092".into(),
                    SecurityProtocol::Plaintext,
                    None
                ),
                (
                    "SSL",
                    "127.0.0.1:9093".into(),
                    SecurityProtocol::Ssl,
                    Some(("kafka.example".into(), 443))
                ),
                (
                    "EXTERNAL",
                    "0.0.0.0:9094".into(),
                    SecurityProtocol::Ssl,
                    Some(("::1".into(), 9094))
                ),
            ]
        );
    }

    #[test]
    fn bad_listener_options_are_refused_with_the_option_and_the_reason() {
        for (options, says) in [
            (
                with("A://127.0.0.1:1,A://127.0.0.1:2", Some("A:SSL"), None),
                "--listeners: A is named twice",
            ),
            (
                with("A://127.0.0.1:1,B://127.0.0.2:1", Some("A:SSL,B:SSL"), None),
                "both use port 1",
            ),
            (with("127.0.0.1:1", None, None), "is not NAME://HOST:PORT"),
            (
                with("A-B://127.0.0.1:1", None, None),
                "is not a listener name",
            ),
            (with(" , ", None, None), "no listener in it"),
            (
                with("A://127.0.0.1:1", None, None),
                "no security protocol for listener A",
            ),
            (
                with("SSL://127.0.0.1:1", Some("OTHER:SSL"), None),
                "OTHER names no listener",
            ),
            (
                with("SSL://127.0.0.1:1", Some("SSL:TLS"), None),
                "is not a security protocol",
            ),
            (
                with("SSL://127.0.0.1:1", Some("SSL:SSL,ssl:SSL"), None),
                "mapped twice",
            ),
            (
                with("SSL://127.0.0.1:1", None, Some("OTHER://h:1")),
                "--advertised-listeners: OTHER names no listener",
            ),
            (
                with("SSL://127.0.0.1:1", None, Some("h:1")),
                "is not NAME://HOST:PORT",
            ),
            (
                with("SSL://127.0.0.1:1", None, Some("SSL://h:0")),
                "the port must be 1 to 65535",
            ),
            (
                with("SSL://127.0.0.1:1", None, Some("SSL://h:1,SSL://h:2")),
                "named twice",
            ),
            (
                ListenerOptions {
                    listen_given: true,
                    ..with("SSL://127.0.0.1:1", None, None)
                },
                "give either --listen",
            ),
            (
                ListenerOptions {
                    advertised_listener: Some("h:1"),
                    ..with("SSL://127.0.0.1:1", None, None)
                },
                "--advertised-listener: with --listeners",
            ),
        ] {
            let e = plan(&options).expect_err(says);
            assert!(e.contains(says), "{says}: {e}");
            assert!(e.starts_with("--"), "{e}");
        }
    }
}
