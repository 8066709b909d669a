//! Consumer groups ride through a restart of the gateway on the Iggy backend: a
//! confluent-kafka group, of the classic protocol and of KIP-848's, consumes while the
//! gateway is killed (SIGKILL) and started again on the same address and stream; the group
//! keeps its generation, members and assignment (no rebalance callback fires after the
//! restart) and nothing is delivered again beyond what was not committed at the kill
//! (`tests/clients/groups_restart.py` says what it checks). On the in-process fake Iggy,
//! and on a real server with `IGGY_KAFKA_TEST_IGGY`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::fake_iggy::FakeIggyServer;
use common::Gateway;

/// Runs the group through a restart; the script's JSON line.
fn through_a_restart(url: &str, protocol: &str) -> String {
    let stream = common::unique_stream();
    let address = common::free_address();
    let args = [
        "--iggy",
        url,
        "--stream",
        &stream,
        "--listen",
        &address,
        // Only makes the test quicker; the restart does not wait for it.
        "--group-initial-rebalance-delay-ms",
        "1000",
        "--group-consumer-heartbeat-interval-ms",
        "1000",
    ];
    let gw = Gateway::start_with(&args);
    let mut script = Command::new(common::python())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
        .args([
            "groups_restart.py",
            &address,
            &format!("groups-restart-{protocol}-{}", common::RUNTIME),
            &format!("groups-restart-{protocol}-{}", common::RUNTIME),
            protocol,
            "--expect-kept",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("groups_restart.py: run scripts/install-test-deps.sh");
    let mut lines = BufReader::new(script.stdout.take().expect("stdout")).lines();
    let said = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(said, "KILL", "the script's first word");
    gw.kill();
    let gw = Gateway::start_with(&args);
    let mut stdin = script.stdin.take().expect("stdin");
    writeln!(stdin, "restarted").expect("tell the script");
    let result: Vec<String> = lines.map_while(Result::ok).collect();
    let status = script.wait().expect("wait");
    eprintln!("groups_restart.py {protocol}: {result:?}");
    assert!(status.success(), "groups_restart.py {protocol}: {status}");
    gw.stop();
    result.last().cloned().unwrap_or_default()
}

#[test]
fn a_classic_group_keeps_its_generation_through_a_gateway_restart() {
    let iggy = FakeIggyServer::start();
    through_a_restart(&iggy.url(), "classic");
}

#[test]
fn a_consumer_group_keeps_its_epochs_through_a_gateway_restart() {
    let iggy = FakeIggyServer::start();
    through_a_restart(&iggy.url(), "consumer");
}

#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn groups_keep_their_generation_through_a_gateway_restart_on_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY");
    through_a_restart(&url, "classic");
    through_a_restart(&url, "consumer");
}
