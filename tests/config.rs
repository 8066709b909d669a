//! The configuration file, on the real binary: every option round-trips through it and
//! `--print-config`, the example in `deploy/` names every option, the command line and the
//! environment win over the file, a bad file stops start-up with the key and the reason,
//! and the JSON log format is JSON; values that cannot work stop start-up with the option and
//! the reason; start-up logs the configuration; a broken stderr does not stop the gateway.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn gateway() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_iggy-kafka-gateway"));
    // The environment of whoever runs the tests must not leak into them.
    for (k, _) in std::env::vars() {
        if k.starts_with("IGGY_KAFKA_") && k != "IGGY_KAFKA_TEST_LOG" {
            c.env_remove(k);
        }
    }
    c.env_remove("RUST_LOG");
    c
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{name}", common::unique_stream()));
    std::fs::write(&path, text).expect("write");
    path
}

/// `key = value` lines of a configuration (comments and `# key is not set` skipped).
fn settings(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains(" = "))
        .filter_map(|l| l.split_once(" = "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn print_config(config: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let out = gateway()
        .arg("--config")
        .arg(config)
        .args(args)
        .arg("--print-config")
        .envs(env.iter().copied())
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Every option, set to a value that is not its default.
const EVERY_OPTION: &str = r#"
listen = "127.0.0.1:19999"
advertised-listener = "kafka.example:19092"
listeners = "A://127.0.0.1:1,B://127.0.0.1:2"
advertised-listeners = "A://a.example:1,B://b.example:2"
listener-security-protocol-map = "A:PLAINTEXT,B:SSL"
ssl-certificate = "/etc/tls/server.pem"
ssl-key = "/etc/tls/server.key"
ssl-client-auth = "required"
ssl-ca = "/etc/tls/ca.pem"
max-frame-size = 2000000
idle-timeout-ms = 1234
iggy = "iggy://someone:secret@127.0.0.9:8091"
iggy-connections = 7
iggy-merge-appends = 3
iggy-merge-max-bytes = 65536
iggy-poll-interval-ms = 55
iggy-create-stream = false
iggy-write-through = false
iggy-scram-compaction = true
stream = "elsewhere"
map-topics = "orders=shop/orders,pay=billing/payments"
map-streams = "shop,audit"
auto-create-topics = false
default-partitions = 3
retention-bytes = 4096
max-in-flight-requests = 9
request-timeout-ms = 4321
group-initial-rebalance-delay-ms = 10
group-min-session-timeout-ms = 11
group-max-session-timeout-ms = 12
group-consumer-session-timeout-ms = 17
group-consumer-heartbeat-interval-ms = 16
admin-listen = "off"
admin-max-topics = 13
admin-max-groups = 14
admin-max-partitions = 15
cluster-id = "from-the-file"
log = "warn"
log-format = "json"
users-file = "/etc/users-from-the-file.toml"
authorization = "users-file"
sasl-enabled-mechanisms = "SCRAM-SHA-512"
sasl-session-lifetime-ms = 60000
sasl-failure-delay-ms = 50
sasl-password-checks-per-second = 10
sasl-plain-cache-seconds = 60
super-users = "root"
"#;

#[test]
fn every_option_round_trips() {
    let file = temp_file("every.toml", EVERY_OPTION);
    let printed = print_config(&file, &[], &[]);
    let mut want = settings(EVERY_OPTION);
    want.insert("iggy".into(), "\"iggy://***@127.0.0.9:8091\"".into());
    assert_eq!(
        settings(&printed),
        want,
        "the file's values are the ones in effect"
    );
    // What it prints is itself a configuration file (credentials aside).
    let again = temp_file("again.toml", &printed.replace("***", "someone:secret"));
    assert_eq!(print_config(&again, &[], &[]), printed);
}

#[test]
fn the_example_in_deploy_names_every_option_with_its_default() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/iggy-kafka-gateway.toml"),
    )
    .expect("deploy/iggy-kafka-gateway.toml");
    // Its settings are the commented lines `# key = value`.
    let uncommented: String = example
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let file = temp_file("example.toml", &uncommented);
    let printed = print_config(&file, &[], &[]);
    let mut in_example = settings(&uncommented);
    in_example.insert("iggy".into(), "\"iggy://***@127.0.0.1:8090\"".into());
    assert_eq!(
        settings(&printed),
        in_example,
        "the example names every option, and its values take effect"
    );
    // Its values are the defaults (those that have none aside).
    let defaults = gateway().arg("--print-config").output().expect("run");
    let mut defaults = settings(&String::from_utf8_lossy(&defaults.stdout));
    in_example.remove("iggy");
    defaults.remove("iggy");
    for unset in [
        "advertised-listener",
        "map-topics",
        "map-streams",
        "users-file",
        "super-users",
        "listeners",
        "advertised-listeners",
        "listener-security-protocol-map",
        "ssl-certificate",
        "ssl-key",
        "ssl-ca",
    ] {
        in_example.remove(unset);
        defaults.remove(unset);
    }
    assert_eq!(in_example, defaults);
}

#[test]
fn the_command_line_wins_over_the_environment_which_wins_over_the_file() {
    let file = temp_file(
        "precedence.toml",
        "iggy-connections = 7\nstream = \"file\"\ncluster-id = \"file\"\n",
    );
    let printed = settings(&print_config(
        &file,
        &[
            ("IGGY_KAFKA_STREAM", "env"),
            ("IGGY_KAFKA_CLUSTER_ID", "env"),
        ],
        &["--cluster-id", "cli"],
    ));
    assert_eq!(printed["iggy-connections"], "7");
    assert_eq!(printed["stream"], "\"env\"");
    assert_eq!(printed["cluster-id"], "\"cli\"");
}

#[test]
fn a_bad_file_stops_start_up_with_the_key_and_the_reason() {
    for (text, says) in [
        (
            "iggy-conections = 2\n",
            "key `iggy-conections`: no such option",
        ),
        (
            "iggy-connections = \"many\"\n",
            "'many' for '--iggy-connections",
        ),
        (
            "auto-create-topics = \"maybe\"\n",
            "'maybe' for '--auto-create-topics",
        ),
        (
            "admin-listen = [1, 2]\n",
            "key `admin-listen`: expected a string",
        ),
        (
            "config = \"other.toml\"\n",
            "key `config`: a configuration file cannot name another",
        ),
        ("print-config = true\n", "key `print-config`: not a setting"),
        ("listen = \n", "not valid TOML"),
    ] {
        let file = temp_file("bad.toml", text);
        let out = gateway().arg("--config").arg(&file).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    }
    let out = gateway()
        .args(["--config", "/nonexistent/gateway.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read the configuration file"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let file = temp_file(
        "json.toml",
        "listen = \"127.0.0.1:0\"\nadmin-listen = \"off\"\nlog-format = \"json\"\n",
    );
    let mut child = gateway()
        .arg("--config")
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let line = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("listening"))
        .expect("a listening line");
    let _ = child.kill();
    let _ = child.wait();
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(v["level"], "INFO");
    assert_eq!(v["fields"]["message"], "listening");
    assert!(v["fields"]["bound"]
        .as_str()
        .is_some_and(|b| b.starts_with("127.0.0.1:")));
}

/// Every value that cannot work stops start-up, before anything is bound, with the option's
/// name and the reason.
#[test]
fn values_that_cannot_work_stop_start_up_with_the_option_and_the_reason() {
    for (args, says) in [
        (
            &["--max-frame-size", "0"][..],
            "--max-frame-size: 0 is too small",
        ),
        (
            &["--max-frame-size", "4294967296"],
            "--max-frame-size: 4294967296 is larger",
        ),
        (
            &["--retention-bytes", "0"],
            "--retention-bytes: 0 cannot work",
        ),
        (
            &["--idle-timeout-ms", "0"],
            "--idle-timeout-ms: 0 cannot work",
        ),
        (
            &["--request-timeout-ms", "0"],
            "--request-timeout-ms: 0 cannot work",
        ),
        (
            &["--iggy-poll-interval-ms", "0"],
            "--iggy-poll-interval-ms: 0 cannot work",
        ),
        (
            &["--iggy-connections", "0"],
            "--iggy-connections: 0 cannot work",
        ),
        (
            &["--max-in-flight-requests", "0"],
            "--max-in-flight-requests: 0 cannot work",
        ),
        (
            &["--group-max-session-timeout-ms", "0"],
            "--group-max-session-timeout-ms: 0",
        ),
        (
            &["--iggy-merge-max-bytes", "10"],
            "--iggy-merge-max-bytes: 10 is too small",
        ),
        (
            &["--iggy-merge-max-bytes", "67108609"],
            "--iggy-merge-max-bytes: 67108609 is larger than Iggy takes",
        ),
        (
            &["--default-partitions", "0"],
            "--default-partitions must be at least 1",
        ),
        (
            &[
                "--group-min-session-timeout-ms",
                "9000",
                "--group-max-session-timeout-ms",
                "8000",
            ],
            "--group-min-session-timeout-ms: 9000 is above --group-max-session-timeout-ms 8000",
        ),
        (
            &["--advertised-listener", "nohost"],
            "--advertised-listener \"nohost\": expected",
        ),
        (
            &["--advertised-listener", "h:0"],
            "the port must be 1 to 65535",
        ),
        (
            &["--advertised-listener", "::1:9093"],
            "IPv6 goes in brackets",
        ),
        (
            &["--iggy", "iggy://a:b@127.0.0.1:99999"],
            "--iggy has a bad port",
        ),
        (&["--admin-listen", "nowhere"], "--admin-listen \"nowhere\""),
        (
            &["--listen", "nowhere"],
            "--listen: bad address \"nowhere\"",
        ),
        (
            &["--log", "debgu"],
            "--log: \"debgu\" in \"debgu\" is neither a level",
        ),
        (&["--log", "core=loud"], "is neither a level"),
        (&["--map-streams", "shop"], "need the Iggy backend (--iggy)"),
    ] {
        let mut command = gateway();
        for (option, value) in [("--listen", "127.0.0.1:0"), ("--admin-listen", "off")] {
            if !args.contains(&option) {
                command.args([option, value]);
            }
        }
        let out = command.args(args).output().expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} must be refused: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("listening"),
            "{args:?} bound first: {stderr}"
        );
    }
}

/// Kafka's `NAME://HOST:PORT` form is taken for the advertised listener, and clients are
/// told HOST:PORT.
#[test]
fn a_kafka_style_advertised_listener_is_taken() {
    let mut child = gateway()
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--advertised-listener", "PLAINTEXT://kafka.example:19093"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let lines: Vec<String> = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("listening"))
        .chain(std::iter::once(String::new()))
        .collect();
    let _ = child.kill();
    let _ = child.wait();
    let starting = lines
        .iter()
        .find(|l| l.contains("starting"))
        .expect("a starting line");
    assert!(starting.contains("version="), "{starting}");
    assert!(starting.contains("runtime="), "{starting}");
    assert!(starting.contains("backend=\"embedded\""), "{starting}");
    assert!(
        starting.contains("advertised-listener = \"PLAINTEXT://kafka.example:19093\""),
        "the effective configuration: {starting}"
    );
}

/// Start-up logs what runs and its configuration, with credentials redacted.
#[test]
fn start_up_logs_the_configuration_without_secrets() {
    let mut child = gateway()
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--iggy", "iggy://someone:hunter2@127.0.0.1:1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let starting = BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("starting"))
        .expect("a starting line");
    let _ = child.kill();
    let _ = child.wait();
    assert!(starting.contains("backend=\"iggy\""), "{starting}");
    assert!(starting.contains("iggy://***@127.0.0.1:1"), "{starting}");
    assert!(!starting.contains("hunter2"), "{starting}");
}

/// A stderr that is full or closed does not take the gateway down: it keeps serving.
#[test]
fn a_broken_stderr_does_not_stop_the_gateway() {
    use std::io::{Read, Write};
    for stderr in ["full", "closed"] {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut command = gateway();
        command
            .args([
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--admin-listen",
                "off",
            ])
            .args(["--log", "debug"]);
        command.stderr(if stderr == "full" {
            Stdio::from(std::fs::File::create("/dev/full").expect("/dev/full"))
        } else {
            Stdio::null()
        });
        let mut child = command.spawn().expect("start");
        let mut answered = false;
        for _ in 0..100 {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            // ApiVersions v0, then read the answer's size.
            s.write_all(b"\x00\x00\x00\x0c\x00\x12\x00\x00\x00\x00\x00\x01\x00\x02it")
                .expect("write");
            let mut size = [0u8; 4];
            answered = s.read_exact(&mut size).is_ok();
            break;
        }
        assert!(answered, "stderr {stderr}: the gateway answers");
        assert!(
            child.try_wait().expect("status").is_none(),
            "stderr {stderr}: the gateway runs on"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Credentials the Iggy server refuses stop start-up with one line saying so, on the
/// in-process fake Iggy (the real server's eviction is tested in `tests/iggy.rs`).
#[test]
fn refused_iggy_credentials_stop_start_up() {
    let iggy = common::fake_iggy::FakeIggyServer::start();
    let out = gateway()
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "off"])
        .args(["--iggy", &format!("iggy://iggy:wrong@{}", iggy.addr)])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the credentials in --iggy were refused"),
        "{stderr}"
    );
    assert!(
        !stderr.contains(":wrong@"),
        "the password is not logged: {stderr}"
    );
}
