//! The configuration file, on the real binary: every option round-trips through it and
//! `--print-config`, the example in `deploy/` names every option, the command line and the
//! environment win over the file, a bad file stops start-up with the key and the reason,
//! and the JSON log format is JSON.

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
max-frame-size = 2000000
idle-timeout-ms = 1234
iggy = "iggy://someone:secret@127.0.0.9:8091"
iggy-connections = 7
iggy-poll-interval-ms = 55
iggy-create-stream = false
iggy-write-through = false
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
admin-listen = "off"
admin-max-topics = 13
admin-max-groups = 14
admin-max-partitions = 15
cluster-id = "from-the-file"
log = "warn"
log-format = "json"
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
    // Its values are the defaults (the four that have none aside).
    let defaults = gateway().arg("--print-config").output().expect("run");
    let mut defaults = settings(&String::from_utf8_lossy(&defaults.stdout));
    in_example.remove("iggy");
    defaults.remove("iggy");
    for unset in ["advertised-listener", "map-topics", "map-streams"] {
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
