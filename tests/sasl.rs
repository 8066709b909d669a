//! SASL and authorization with the real binary (on whichever runtime this test build has)
//! and real clients, on a SASL_PLAINTEXT and a SASL_SSL listener: kcat, confluent-kafka,
//! kafka-python and kafkajs authenticate with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 and
//! move records; a wrong password and an unknown user fail as authentication failures; a
//! principal allowed to read a topic reads it, is refused writing it and sees no other
//! topic; one that may only write a topic is refused joining a consumer group; a super
//! user manages SCRAM credentials from the admin clients; a principal that may only read is
//! refused a transactional id.

mod common;

use std::path::Path;
use std::process::Command;

use common::tls::{start_listeners, Pki};

const USERS: &str = r#"
[[user]]
name = "alice"
password = "alice-secret"
permissions = ["manage_streams"]

[[user]]
name = "reader"
password = "reader-secret"
topics = { "kafka/TOPIC-SASL_PLAINTEXT" = ["read_topic"], "kafka/TOPIC-SASL_SSL" = ["read_topic"] }

[[user]]
name = "sender"
password = "sender-secret"
topics = { "kafka/TOPIC-SASL_PLAINTEXT" = ["send_messages"], "kafka/TOPIC-SASL_SSL" = ["send_messages"] }

[[user]]
name = "admin"
password = "admin-secret"
"#;

fn clients(program: &str, script: &str, args: &[&str]) {
    let out = Command::new(program)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}; run scripts/install-test-deps.sh"));
    eprintln!(
        "{script} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} {args:?}");
}

#[test]
fn real_clients_authenticate_and_are_held_to_their_permissions() {
    let pki = Pki::new("sasl");
    let topic = format!("sasl-{}", common::RUNTIME);
    let secret = format!("sasl-secret-{}", common::RUNTIME);
    let users = pki.dir.join("users.toml");
    std::fs::write(&users, USERS.replace("TOPIC", &topic)).expect("users file");
    let mut args: Vec<String> = [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "--users-file",
        &users.display().to_string(),
        "--authorization",
        "users-file",
        "--super-users",
        "admin",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.extend(pki.options());
    let gw = start_listeners(&args, 2);
    let ca = pki.path("ca.pem");
    for (listener, ca) in [("SASL_PLAINTEXT", "-"), ("SASL_SSL", ca.as_str())] {
        let bootstrap = gw.address(listener).to_string();
        // The reader may read the topic of each listener's run (see USERS).
        let (topic, secret) = (
            format!("{topic}-{listener}"),
            format!("{secret}-{listener}"),
        );
        clients(
            &common::python().display().to_string(),
            "sasl_clients.py",
            &[&bootstrap, listener, ca, &topic, &secret],
        );
        clients(
            "node",
            "sasl_kafkajs.js",
            &[&bootstrap, listener, ca, &topic],
        );
    }
    gw.gateway.stop();
}

/// A principal that may send somewhere runs transactions; one that may only read is
/// refused its transactional id (confluent-kafka's init_transactions fails with
/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED).
#[test]
fn transactional_ids_need_permission_to_send() {
    let pki = Pki::new("sasl-txn");
    let topic = format!("sasl-txn-{}", common::RUNTIME);
    let users = pki.dir.join("users.toml");
    std::fs::write(&users, USERS.replace("TOPIC-SASL_PLAINTEXT", &topic)).expect("users file");
    let users = users.display().to_string();
    let args = [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--users-file",
        &users,
        "--authorization",
        "users-file",
        "--super-users",
        "admin",
    ]
    .map(str::to_owned);
    let gw = start_listeners(&args, 1);
    let bootstrap = gw.address("SASL_PLAINTEXT").to_string();
    clients(
        &common::python().display().to_string(),
        "txn_authz.py",
        &[&bootstrap, &topic],
    );
    gw.gateway.stop();
}

/// Logins of several users at once, past a budget of one password check a second, wait
/// their turn and all succeed (none is answered with an authentication failure).
#[test]
fn a_burst_of_logins_past_the_check_budget_succeeds() {
    let pki = Pki::new("sasl-burst");
    let users = pki.dir.join("users.toml");
    std::fs::write(&users, USERS.replace("TOPIC", "burst")).expect("users file");
    let args: Vec<String> = [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--users-file",
        &users.display().to_string(),
        "--sasl-password-checks-per-second",
        "1",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let gw = start_listeners(&args, 1);
    let bootstrap = gw.address("SASL_PLAINTEXT").to_string();
    clients(
        &common::python().display().to_string(),
        "sasl_burst.py",
        &[
            &bootstrap,
            "alice:alice-secret",
            "reader:reader-secret",
            "sender:sender-secret",
            "admin:admin-secret",
        ],
    );
    gw.gateway.stop();
}
