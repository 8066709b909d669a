//! SASL's and authorization's options, the users file and the `scram-credential`
//! subcommand.
//!
//! The users file is TOML: one `[[user]]` table per user, with `password` (hashed into
//! SCRAM credentials at start and then forgotten) or `[[user.scram]]` tables holding a
//! credential as `scram-credential` prints it (salt, iterations, StoredKey and ServerKey,
//! base64), and the user's Iggy permissions: `permissions` (global), `[user.streams]`
//! (per stream) and `[user.topics]` (per `STREAM/TOPIC`), each a list of Iggy's permission
//! names. PLAIN is checked against the user's SCRAM credential, so no password is kept. A
//! user with permissions and no credential is a certificate's principal, or `ANONYMOUS`:
//! what clients that did not authenticate may do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use iggy_kafka_core::authz::Permissions;
use iggy_kafka_core::sasl::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
use iggy_kafka_core::sasl::{
    Mechanism, Random, SaslConfig, ScramCredential, ScramMechanism, Users,
};

/// SASL's options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SaslArgs {
    /// The users: a TOML file of `[[user]]` tables with their SCRAM credentials or
    /// passwords and their Iggy permissions (see docs/SECURITY.md). Required when a
    /// listener uses SASL_PLAINTEXT or SASL_SSL on the embedded store, or --authorization
    /// is users-file. On the Iggy backend without it, or with --authorization iggy, PLAIN
    /// passwords are checked by Iggy (a login with them).
    #[arg(long, env = "IGGY_KAFKA_USERS_FILE", value_name = "FILE")]
    pub(crate) users_file: Option<PathBuf>,

    /// Who decides what each principal may do: `off` (everyone may do everything, as a
    /// Kafka broker without an authorizer), `users-file` (the Iggy permissions each user
    /// has in --users-file) or `iggy` (the permissions of the Iggy user of the same name,
    /// read from Iggy and refreshed every few seconds; the gateway's Iggy user needs
    /// read_users). Super users may do everything.
    #[arg(
        long,
        env = "IGGY_KAFKA_AUTHORIZATION",
        default_value = "off",
        value_parser = ["off", "users-file", "iggy"],
        value_name = "WHO"
    )]
    pub(crate) authorization: String,

    /// The SASL mechanisms offered, comma-separated (Kafka's sasl.enabled.mechanisms).
    #[arg(
        long,
        env = "IGGY_KAFKA_SASL_ENABLED_MECHANISMS",
        default_value = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
        value_name = "LIST"
    )]
    pub(crate) sasl_enabled_mechanisms: String,

    /// How long a SASL authentication lasts before the client must re-authenticate on its
    /// connection (KIP-368, Kafka's connections.max.reauth.ms); 0: for ever.
    #[arg(
        long,
        env = "IGGY_KAFKA_SASL_SESSION_LIFETIME_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub(crate) sasl_session_lifetime_ms: u64,

    /// How long a failed authentication waits before its answer and the close (Kafka's
    /// connection.failed.authentication.delay.ms).
    #[arg(
        long,
        env = "IGGY_KAFKA_SASL_FAILURE_DELAY_MS",
        default_value_t = 100,
        value_name = "MS"
    )]
    pub(crate) sasl_failure_delay_ms: u64,

    /// How many PLAIN passwords per second may be checked against the users' credentials
    /// (a PBKDF2 each) or by logging in to Iggy, with as many at once; logins beyond it
    /// wait their turn (up to 5 s of checks; past that their connection is closed for the
    /// client to retry), so that a flood of wrong passwords cannot take all the CPU
    /// (the gateway's or Iggy's). Logins whose password
    /// passed in the last five minutes are not counted. 0: no bound.
    #[arg(
        long,
        env = "IGGY_KAFKA_SASL_PASSWORD_CHECKS_PER_SECOND",
        default_value_t = 100,
        value_name = "N"
    )]
    pub(crate) sasl_password_checks_per_second: u32,

    /// How long a successful PLAIN login is remembered (a MAC of the password, never the
    /// password) so that the same password reconnecting is not checked again: the longest
    /// a password changed in Iggy still lets a client in. 0: never remembered, every login
    /// is checked. At most 3600.
    #[arg(
        long,
        env = "IGGY_KAFKA_SASL_PLAIN_CACHE_SECONDS",
        default_value_t = 300,
        value_name = "SECONDS"
    )]
    pub(crate) sasl_plain_cache_seconds: u64,

    /// Principals that may manage SCRAM credentials (Kafka's super.users), comma-separated
    /// user names (`User:` prefixes are taken too).
    #[arg(long, env = "IGGY_KAFKA_SUPER_USERS", value_name = "LIST")]
    pub(crate) super_users: Option<String>,
}

/// What `scram-credential` is asked for.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CredentialArgs {
    /// The user the credential is for.
    #[arg(long)]
    user: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, default_value = "SCRAM-SHA-512")]
    mechanism: String,
    /// PBKDF2 iterations (4096 to 16384, as Kafka allows).
    #[arg(long, default_value_t = 8192)]
    iterations: u32,
}

/// Reads a password from standard input (its first line) and prints, for the users file,
/// the `[[user]]` table holding its SCRAM credential: salt, iterations, StoredKey and
/// ServerKey, never the password.
pub(crate) fn print_credential(args: &CredentialArgs) -> Result<String, String> {
    let mechanism = ScramMechanism::from_name(&args.mechanism).ok_or_else(|| {
        format!(
            "--mechanism: {:?} is not SCRAM-SHA-256 or SCRAM-SHA-512",
            args.mechanism
        )
    })?;
    check_iterations(args.iterations).map_err(|e| format!("--iterations: {e}"))?;
    if args.user.is_empty() {
        return Err("--user: empty".into());
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err("the password read from standard input is empty".into());
    }
    let mut salt = [0u8; 24];
    os_random(&mut salt);
    let c = ScramCredential::from_password(mechanism, password.as_bytes(), &salt, args.iterations);
    Ok(format!(
        "[[user]]\nname = {}\n[[user.scram]]\nmechanism = \"{}\"\niterations = {}\nsalt = \"{}\"\nstored-key = \"{}\"\nserver-key = \"{}\"\n",
        toml::Value::String(args.user.clone()),
        mechanism.name(),
        c.iterations,
        BASE64.encode(&c.salt),
        BASE64.encode(&c.stored_key),
        BASE64.encode(&c.server_key),
    ))
}

fn check_iterations(i: u32) -> Result<(), String> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&i) {
        Ok(())
    } else {
        Err(format!(
            "{i} is outside {MIN_ITERATIONS} to {MAX_ITERATIONS}, the iteration counts Kafka's clients and brokers take"
        ))
    }
}

/// The operating system's randomness. Its failure leaves nothing safe to do: no nonce and
/// no salt may be guessable.
fn os_random(out: &mut [u8]) {
    if let Err(e) = getrandom::fill(out) {
        tracing::error!(error = %e, "the operating system's random source failed");
        std::process::abort();
    }
}

/// What the users file and the options give: SASL's configuration and each user's
/// permissions.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// SASL's configuration, when a users file is given.
    pub(crate) sasl: Option<Arc<SaslConfig>>,
    /// The users' Iggy permissions, when authorization is `users-file`.
    pub(crate) permissions: Option<BTreeMap<String, Permissions>>,
    /// Who may do everything.
    pub(crate) super_users: Vec<String>,
}

/// Reads the users file its options name, if any. On the Iggy backend (`iggy_backend`),
/// Iggy checks PLAIN passwords when there is no users file or its users' permissions are
/// Iggy's (`--authorization iggy`).
///
/// # Errors
/// A message naming the option and the reason.
pub(crate) fn load(args: &SaslArgs, iggy_backend: bool) -> Result<Loaded, String> {
    let mut mechanisms = Vec::new();
    for name in args.sasl_enabled_mechanisms.split(',').map(str::trim) {
        let m = Mechanism::from_name(name).ok_or_else(|| {
            format!(
                "--sasl-enabled-mechanisms: {name:?} is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"
            )
        })?;
        if !mechanisms.contains(&m) {
            mechanisms.push(m);
        }
    }
    let super_users: Vec<String> = args
        .super_users
        .iter()
        .flat_map(|s| s.split([',', ';']))
        .map(|u| u.trim())
        .map(|u| u.strip_prefix("User:").unwrap_or(u).to_owned())
        .filter(|u| !u.is_empty())
        .collect();
    // Far beyond any use, and far inside what the clock can add.
    if args.sasl_session_lifetime_ms > 366 * 86_400_000 {
        return Err(format!(
            "--sasl-session-lifetime-ms: {} is more than a year",
            args.sasl_session_lifetime_ms
        ));
    }
    if args.sasl_failure_delay_ms > 60_000 {
        return Err(format!(
            "--sasl-failure-delay-ms: {} is more than a minute: every refused client would hold its connection that long",
            args.sasl_failure_delay_ms
        ));
    }
    if args.sasl_plain_cache_seconds > 3600 {
        return Err(format!(
            "--sasl-plain-cache-seconds: {} is more than an hour: a password changed in Iggy would still let clients in that long",
            args.sasl_plain_cache_seconds
        ));
    }
    let authorize = args.authorization == "users-file";
    let users = Users::new(super_users.iter().cloned())
        .with_plain_cache(Duration::from_secs(args.sasl_plain_cache_seconds));
    let permissions = match &args.users_file {
        Some(path) => {
            read_users(path, &users).map_err(|e| format!("--users-file {}: {e}", path.display()))?
        }
        None if authorize => {
            return Err(
                "--authorization users-file: no --users-file to take the permissions from".into(),
            );
        }
        None if !iggy_backend => {
            return Ok(Loaded {
                super_users,
                ..Loaded::default()
            });
        }
        None => BTreeMap::new(),
    };
    let mut config = SaslConfig::new(Arc::new(users), Random::new(os_random));
    config.plain_by_backend =
        iggy_backend && (args.users_file.is_none() || args.authorization == "iggy");
    config.mechanisms = mechanisms;
    config.session_lifetime = (args.sasl_session_lifetime_ms > 0)
        .then(|| Duration::from_millis(args.sasl_session_lifetime_ms));
    config.failure_delay = Duration::from_millis(args.sasl_failure_delay_ms);
    config.password_checks_per_second = args.sasl_password_checks_per_second;
    Ok(Loaded {
        sasl: Some(Arc::new(config)),
        permissions: authorize.then_some(permissions),
        super_users,
    })
}

/// Reads the users into `users` and returns their permissions.
fn read_users(path: &Path, users: &Users) -> Result<BTreeMap<String, Permissions>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    for key in table.keys() {
        if key != "user" {
            return Err(format!(
                "unknown key `{key}`: only [[user]] tables are taken"
            ));
        }
    }
    let Some(list) = table.get("user") else {
        return Err("no [[user]] table".into());
    };
    let list = list.as_array().ok_or("`user` must be [[user]] tables")?;
    let mut all = BTreeMap::new();
    for (n, entry) in list.iter().enumerate() {
        let at = |what: &str| format!("user #{}: {what}", n + 1);
        let entry = entry.as_table().ok_or_else(|| at("not a table"))?;
        let name = entry
            .get("name")
            .and_then(toml::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| at("no `name`"))?;
        let at = |what: &str| format!("user {name:?}: {what}");
        if all.contains_key(name) {
            return Err(at("listed twice"));
        }
        for key in entry.keys() {
            if !matches!(
                key.as_str(),
                "name" | "password" | "scram" | "permissions" | "streams" | "topics"
            ) {
                return Err(at(&format!("unknown key `{key}`")));
            }
        }
        let mut credentials = false;
        if let Some(password) = entry.get("password") {
            let password = password
                .as_str()
                .filter(|p| !p.is_empty())
                .ok_or_else(|| at("`password` must be a non-empty string"))?;
            for m in ScramMechanism::ALL {
                let mut salt = [0u8; 24];
                os_random(&mut salt);
                users.set(
                    name,
                    ScramCredential::from_password(m, password.as_bytes(), &salt, MIN_ITERATIONS),
                );
            }
            credentials = true;
        }
        if let Some(scram) = entry.get("scram") {
            let scram = scram
                .as_array()
                .ok_or_else(|| at("`scram` must be [[user.scram]] tables"))?;
            for c in scram {
                users.set(name, credential(c).map_err(|e| at(&e))?);
                credentials = true;
            }
        }
        let permissions = permissions(entry).map_err(|e| at(&e))?;
        if !credentials && permissions == Permissions::default() {
            return Err(at(
                "neither credentials (`password`, [[user.scram]]) nor permissions",
            ));
        }
        all.insert(name.to_owned(), permissions);
    }
    Ok(all)
}

/// The names in `value`, a list of strings.
fn names<'a>(value: &'a toml::Value, key: &str) -> Result<Vec<&'a str>, String> {
    value
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(toml::Value::as_str)
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("`{key}` must be a list of Iggy permission names"))
}

fn permissions(entry: &toml::Table) -> Result<Permissions, String> {
    let mut p = Permissions::default();
    if let Some(v) = entry.get("permissions") {
        for n in names(v, "permissions")? {
            let g = &mut p.global;
            *match n {
                "manage_servers" => &mut g.manage_servers,
                "read_servers" => &mut g.read_servers,
                "manage_users" => &mut g.manage_users,
                "read_users" => &mut g.read_users,
                "manage_streams" => &mut g.manage_streams,
                "read_streams" => &mut g.read_streams,
                "manage_topics" => &mut g.manage_topics,
                "read_topics" => &mut g.read_topics,
                "poll_messages" => &mut g.poll_messages,
                "send_messages" => &mut g.send_messages,
                other => {
                    return Err(format!(
                        "`permissions`: {other:?} is not a global Iggy permission"
                    ))
                }
            } = true;
        }
    }
    if let Some(v) = entry.get("streams") {
        let t = v
            .as_table()
            .ok_or("`streams` must be a table of STREAM = [...]")?;
        for (stream, v) in t {
            let s = p.streams.entry(stream.clone()).or_default();
            for n in names(v, &format!("streams.{stream}"))? {
                *match n {
                    "manage_stream" => &mut s.manage_stream,
                    "read_stream" => &mut s.read_stream,
                    "manage_topics" => &mut s.manage_topics,
                    "read_topics" => &mut s.read_topics,
                    "poll_messages" => &mut s.poll_messages,
                    "send_messages" => &mut s.send_messages,
                    other => {
                        return Err(format!(
                            "`streams.{stream}`: {other:?} is not an Iggy stream permission"
                        ))
                    }
                } = true;
            }
        }
    }
    if let Some(v) = entry.get("topics") {
        let t = v
            .as_table()
            .ok_or("`topics` must be a table of \"STREAM/TOPIC\" = [...]")?;
        for (place, v) in t {
            let Some((stream, topic)) = place.split_once('/') else {
                return Err(format!("`topics`: {place:?} is not STREAM/TOPIC"));
            };
            let tp = p
                .streams
                .entry(stream.to_owned())
                .or_default()
                .topics
                .entry(topic.to_owned())
                .or_default();
            for n in names(v, &format!("topics.{place}"))? {
                *match n {
                    "manage_topic" => &mut tp.manage_topic,
                    "read_topic" => &mut tp.read_topic,
                    "poll_messages" => &mut tp.poll_messages,
                    "send_messages" => &mut tp.send_messages,
                    other => {
                        return Err(format!(
                            "`topics.{place}`: {other:?} is not an Iggy topic permission"
                        ))
                    }
                } = true;
            }
        }
    }
    Ok(p)
}

fn credential(value: &toml::Value) -> Result<ScramCredential, String> {
    let t = value
        .as_table()
        .ok_or("a [[user.scram]] entry is not a table")?;
    let text = |key: &str| {
        t.get(key)
            .and_then(toml::Value::as_str)
            .ok_or_else(|| format!("[[user.scram]] has no `{key}` string"))
    };
    let bytes = |key: &str| {
        text(key).and_then(|s| {
            BASE64
                .decode(s)
                .map_err(|e| format!("[[user.scram]] `{key}` is not base64: {e}"))
        })
    };
    let mechanism = ScramMechanism::from_name(text("mechanism")?)
        .ok_or("[[user.scram]] `mechanism` is not SCRAM-SHA-256 or SCRAM-SHA-512")?;
    let iterations = t
        .get("iterations")
        .and_then(toml::Value::as_integer)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or("[[user.scram]] has no `iterations` number")?;
    check_iterations(iterations).map_err(|e| format!("[[user.scram]] `iterations`: {e}"))?;
    let key_len = if mechanism == ScramMechanism::Sha256 {
        32
    } else {
        64
    };
    let stored_key = bytes("stored-key")?;
    let server_key = bytes("server-key")?;
    if stored_key.len() != key_len || server_key.len() != key_len {
        return Err(format!(
            "[[user.scram]] keys of {mechanism} are {key_len} bytes long"
        ));
    }
    Ok(ScramCredential {
        mechanism,
        salt: bytes("salt")?,
        iterations,
        stored_key,
        server_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(file: Option<PathBuf>) -> SaslArgs {
        SaslArgs {
            users_file: file,
            authorization: "users-file".into(),
            sasl_enabled_mechanisms: "PLAIN,SCRAM-SHA-512".into(),
            sasl_session_lifetime_ms: 0,
            sasl_failure_delay_ms: 100,
            sasl_password_checks_per_second: 100,
            sasl_plain_cache_seconds: 300,
            super_users: Some("User:admin".into()),
        }
    }

    fn file(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "iggy-kafka-users-{}-{}",
            std::process::id(),
            text.len()
        ));
        std::fs::write(&dir, text).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    #[test]
    fn a_users_file_gives_credentials_and_bad_ones_are_refused_with_the_reason() {
        let c = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", b"salt", 4096);
        let text = format!(
            "[[user]]\nname = \"alice\"\npassword = \"alice-pw\"\n\n[[user]]\nname = \"bob\"\npermissions = [\"read_topics\"]\nstreams = {{ kafka = [\"poll_messages\"] }}\ntopics = {{ \"shop/orders\" = [\"send_messages\"] }}\n[[user.scram]]\nmechanism = \"SCRAM-SHA-256\"\niterations = 4096\nsalt = \"{}\"\nstored-key = \"{}\"\nserver-key = \"{}\"\n",
            BASE64.encode(&c.salt),
            BASE64.encode(&c.stored_key),
            BASE64.encode(&c.server_key)
        );
        let path = file(&text);
        let loaded = load(&args(Some(path.clone())), false).unwrap_or_else(|e| panic!("{e}"));
        let config = loaded.sasl.unwrap_or_else(|| panic!("configured"));
        let permissions = loaded.permissions.unwrap_or_default();
        assert!(permissions["bob"].global.read_topics);
        assert!(permissions["bob"].streams["kafka"].poll_messages);
        assert!(permissions["bob"].streams["shop"].topics["orders"].send_messages);
        assert_eq!(permissions["alice"], Permissions::default());
        assert!(config.users.verify_plain("alice", b"alice-pw"));
        assert!(config.users.verify_plain("bob", b"pw"));
        assert!(!config.users.verify_plain("bob", b"alice-pw"));
        assert!(config.users.is_super_user("admin"));
        assert_eq!(config.mechanisms.len(), 2);
        let _ = std::fs::remove_file(path);

        for (bad, why) in [
            ("[[user]]\nname = \"x\"\n", "neither"),
            (
                "[[user]]\nname = \"x\"\npermissions = [\"fly\"]\n",
                "not a global Iggy permission",
            ),
            (
                "[[user]]\nname = \"x\"\ntopics = { orders = [\"read_topic\"] }\n",
                "STREAM/TOPIC",
            ),
            ("[[user]]\npassword = \"p\"\n", "no `name`"),
            ("[[user]]\nname = \"x\"\npasword = \"p\"\n", "unknown key"),
            ("users = 1\n", "unknown key"),
            (
                "[[user]]\nname = \"x\"\n[[user.scram]]\nmechanism = \"SCRAM-SHA-256\"\niterations = 10\nsalt = \"AA==\"\nstored-key = \"AA==\"\nserver-key = \"AA==\"\n",
                "iterations",
            ),
            ("not toml [", ""),
        ] {
            let path = file(bad);
            let e = load(&args(Some(path.clone())), false)
                .err()
                .unwrap_or_else(|| panic!("{bad:?} was taken"));
            assert!(e.starts_with("--users-file "), "{e}");
            assert!(e.contains(why), "{bad:?}: {e}");
            let _ = std::fs::remove_file(path);
        }
        let mut a = args(None);
        a.sasl_enabled_mechanisms = "PLAIN,GSSAPI".into();
        let e = load(&a, false).err().unwrap_or_default();
        assert!(
            e.contains("--sasl-enabled-mechanisms") && e.contains("GSSAPI"),
            "{e}"
        );
        let mut a = args(None);
        a.sasl_plain_cache_seconds = 3601;
        let e = load(&a, true).err().unwrap_or_default();
        assert!(e.starts_with("--sasl-plain-cache-seconds: 3601"), "{e}");
    }

    /// `--sasl-plain-cache-seconds` is how long a PLAIN login is remembered; 0: never.
    #[test]
    fn the_plain_cache_time_is_the_options() {
        let key = [1u8; 32];
        let now = std::time::Instant::now();
        for (seconds, remembered_after) in [(0, None), (60, Some(59))] {
            let mut a = args(None);
            a.authorization = "off".into();
            a.sasl_plain_cache_seconds = seconds;
            let loaded = load(&a, true).unwrap_or_else(|e| panic!("{e}"));
            let users = &loaded.sasl.unwrap_or_else(|| panic!("configured")).users;
            users.remember_plain("alice", b"pw", now, &key);
            let at = |s| now + Duration::from_secs(s);
            assert_eq!(
                users.plain_remembered("alice", b"pw", at(remembered_after.unwrap_or(0)), &key),
                remembered_after.is_some(),
                "{seconds}"
            );
            assert!(!users.plain_remembered("alice", b"pw", at(seconds), &key));
        }
    }
}
