//! Exactly once across a gateway restart on the Iggy backend: a confluent-kafka
//! consume-transform-produce loop (`tests/clients/txn_restart.py`) copies a topic while the
//! gateway is killed (SIGKILL) with a transaction open and started again on the same
//! address and stream; the loop commits or aborts that transaction as the client tells it,
//! goes on, and the output read by a read_committed consumer holds each input exactly once.
//! On the in-process fake Iggy, and on a real server with `IGGY_KAFKA_TEST_IGGY`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::fake_iggy::FakeIggyServer;
use common::{call, create_topic, Gateway};
use iggy_kafka_core::protocol::Response;

/// Copies 3,000 records through a restart; the script's JSON line.
fn copy_through_a_restart(url: &str) -> String {
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
        "500",
    ];
    let gw = Gateway::start_with(&args);
    let input = format!("txn-restart-in-{}", common::RUNTIME);
    let output = format!("txn-restart-out-{}", common::RUNTIME);
    let mut s = gw.connect();
    for (name, partitions) in [(&input, 2), (&output, 1)] {
        let Response::CreateTopics(r) = call(&mut s, 7, 1, &create_topic(name, partitions)) else {
            panic!("CreateTopics")
        };
        assert_eq!(r.topics[0].error_code, 0);
    }
    drop(s);
    let mut script = Command::new(common::python())
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients"))
        .args(["txn_restart.py", &address, &input, &output, "3000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("txn_restart.py: run scripts/install-test-deps.sh");
    let mut lines = BufReader::new(script.stdout.take().expect("stdout")).lines();
    let said = lines.next().and_then(Result::ok).unwrap_or_default();
    assert_eq!(said, "KILL", "the script's first word");
    gw.kill();
    let gw = Gateway::start_with(&args);
    let mut stdin = script.stdin.take().expect("stdin");
    writeln!(stdin, "restarted").expect("tell the script");
    let result: Vec<String> = lines.map_while(Result::ok).collect();
    let status = script.wait().expect("wait");
    eprintln!("txn_restart.py: {result:?}");
    assert!(status.success(), "txn_restart.py: {status}");
    gw.stop();
    result.last().cloned().unwrap_or_default()
}

#[test]
fn a_copy_is_exactly_once_through_a_gateway_restart() {
    let iggy = FakeIggyServer::start();
    copy_through_a_restart(&iggy.url());
}

#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn a_copy_is_exactly_once_through_a_gateway_restart_on_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY");
    copy_through_a_restart(&url);
}
