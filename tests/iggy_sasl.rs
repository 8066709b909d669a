//! SASL/PLAIN checked by Iggy on the Iggy backend: a Kafka client's password is verified by
//! a login with it on a session of its own, remembered (as a MAC) so that reconnecting does
//! not log in again, and a wrong one fails as an authentication failure. kcat (librdkafka)
//! against the real binary, on whichever runtime this test build has, with the in-process
//! fake Iggy; and with a real Iggy server when `IGGY_KAFKA_TEST_IGGY` names one.

mod common;

use std::process::Command;

use common::fake_iggy::FakeIggyServer;
use common::tls::{start_listeners, Listeners};

/// A gateway on Iggy at `url` with one SASL_PLAINTEXT listener and no users file.
fn gateway(url: &str) -> Listeners {
    gateway_with(url, &[])
}

/// As [`gateway`], with more options.
fn gateway_with(url: &str, more: &[&str]) -> Listeners {
    let stream = common::unique_stream();
    let args: Vec<String> = [
        "--listeners",
        "SASL_PLAINTEXT://127.0.0.1:0",
        "--iggy",
        url,
        "--stream",
        &stream,
    ]
    .iter()
    .chain(more)
    .map(|s| (*s).to_owned())
    .collect();
    start_listeners(&args, 1)
}

/// kcat as `user`/`password` with PLAIN: produces one record to `topic` (auto-created) and
/// reads it back; whether both worked, and what kcat said.
fn kcat(gw: &Listeners, user: &str, password: &str, topic: &str) -> (bool, String) {
    let bootstrap = gw.address("SASL_PLAINTEXT").to_string();
    let common = |cmd: &mut Command| {
        cmd.args(["-b", &bootstrap, "-t", topic])
            .args(["-X", "security.protocol=SASL_PLAINTEXT"])
            .args(["-X", "sasl.mechanisms=PLAIN"])
            .args(["-X", &format!("sasl.username={user}")])
            .args(["-X", &format!("sasl.password={password}")])
            .args(["-m", "10"]);
    };
    let mut produce = Command::new("kcat");
    common(&mut produce);
    produce.args(["-P"]).stdin(std::process::Stdio::piped());
    let mut child = produce
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kcat");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(b"checked by iggy\n").expect("write");
    }
    let out = child.wait_with_output().expect("kcat");
    let mut said = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() || said.contains("Authentication failed") {
        return (false, said);
    }
    let mut consume = Command::new("kcat");
    common(&mut consume);
    let out = consume
        .args(["-C", "-o", "beginning", "-e", "-c", "1"])
        .output()
        .expect("kcat");
    said.push_str(&String::from_utf8_lossy(&out.stderr));
    let read = String::from_utf8_lossy(&out.stdout).contains("checked by iggy");
    (out.status.success() && read, said)
}

#[test]
fn plain_passwords_are_checked_by_logging_in_to_iggy() {
    let iggy = FakeIggyServer::start();
    iggy.fake()
        .passwords
        .insert("carol".into(), "carol-secret".into());
    let gw = gateway(&iggy.url());
    let topic = format!("plain-by-iggy-{}", common::RUNTIME);

    let (ok, said) = kcat(&gw, "carol", "carol-secret", &topic);
    assert!(ok, "carol: {said}");
    // Two kcat runs, one login: the second connection's password was remembered.
    assert_eq!(iggy.fake().login_attempts.get("carol"), Some(&1));

    let (ok, said) = kcat(&gw, "carol", "not-carols", &topic);
    assert!(!ok, "a wrong password: {said}");
    assert!(said.contains("Authentication failed"), "{said}");
    assert!(!said.contains("not-carols"), "{said}");
    assert_eq!(iggy.fake().login_attempts.get("carol"), Some(&2));
    let (ok, said) = kcat(&gw, "nobody", "carol-secret", &topic);
    assert!(!ok, "an unknown user: {said}");
    assert!(gw.logs("authentication failed", std::time::Duration::from_secs(5)));
    gw.gateway.stop();
}

/// With `--sasl-plain-cache-seconds 0` nothing is remembered: every connection asks Iggy,
/// so a password changed in Iggy stops working for the next connection.
#[test]
fn without_the_plain_cache_a_changed_password_stops_at_once() {
    let iggy = FakeIggyServer::start();
    iggy.fake()
        .passwords
        .insert("dave".into(), "dave-secret".into());
    let gw = gateway_with(&iggy.url(), &["--sasl-plain-cache-seconds", "0"]);
    let topic = format!("plain-uncached-{}", common::RUNTIME);
    let (ok, said) = kcat(&gw, "dave", "dave-secret", &topic);
    assert!(ok, "dave: {said}");
    // Two kcat runs, two logins: nothing was remembered.
    assert_eq!(iggy.fake().login_attempts.get("dave"), Some(&2));
    iggy.fake()
        .passwords
        .insert("dave".into(), "dave-new-secret".into());
    let (ok, said) = kcat(&gw, "dave", "dave-secret", &topic);
    assert!(!ok, "the old password: {said}");
    assert!(said.contains("Authentication failed"), "{said}");
    gw.gateway.stop();
}

/// The real thing: the credentials of `IGGY_KAFKA_TEST_IGGY`'s URL are an Iggy user's.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn plain_passwords_are_checked_by_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY names an Iggy server");
    let (user, password) = url_user(&url);
    let gw = gateway(&url);
    let topic = format!("plain-by-real-iggy-{}", common::RUNTIME);
    let (ok, said) = kcat(&gw, &user, &password, &topic);
    assert!(ok, "{user}: {said}");
    let (ok, said) = kcat(&gw, &user, "not-the-password", &topic);
    assert!(!ok, "a wrong password: {said}");
    assert!(said.contains("Authentication failed"), "{said}");
    gw.gateway.stop();
}

/// Runs `tests/clients/scram_store.py` against `bootstrap`; panics with its output when it
/// fails.
fn scram_store(bootstrap: &str, step: &str, admin: &[&str]) {
    let out = Command::new(common::python())
        .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
        .args(["scram_store.py", bootstrap, step])
        .args(admin)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "scram_store.py {step}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scram_credentials_set_by_an_admin_client_outlive_the_gateway() {
    let iggy = FakeIggyServer::start();
    iggy.fake()
        .passwords
        .insert("admin".into(), "admin-secret".into());
    let stream = common::unique_stream();
    let start = || {
        let args: Vec<String> = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--iggy",
            &iggy.url(),
            "--stream",
            &stream,
            "--super-users",
            "admin",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        start_listeners(&args, 1)
    };
    let gw = start();
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "set", &[]);
    gw.gateway.stop();
    // Sealed records in Iggy: they show neither the user nor the password.
    {
        let fake = iggy.fake();
        let topic = fake
            .topics
            .get("__kafka_gateway_scram")
            .expect("the SCRAM credentials topic");
        assert_eq!(topic.partitions[0].next, 1, "one record: erin's credential");
        let records: Vec<u8> = topic.partitions[0].batches.concat();
        assert!(!records.windows(4).any(|w| w == b"erin"), "the user's name");
        assert!(!records.windows(11).any(|w| w == b"erin-secret"));
    }
    let gw = start();
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "check", &[]);
    gw.gateway.stop();
}

/// A credential the users file gives and an admin client deletes stays deleted after a
/// restart, although the file still gives it.
#[test]
fn a_users_file_credential_deleted_through_kafka_stays_deleted() {
    let iggy = FakeIggyServer::start();
    let stream = common::unique_stream();
    let users = std::env::temp_dir().join(format!("{stream}-users.toml"));
    std::fs::write(
        &users,
        "[[user]]\nname = \"admin\"\npassword = \"admin-secret\"\n\n\
         [[user]]\nname = \"erin\"\npassword = \"erin-secret\"\n",
    )
    .expect("users file");
    let start = || {
        let args: Vec<String> = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--iggy",
            &iggy.url(),
            "--stream",
            &stream,
            "--users-file",
            &users.display().to_string(),
            "--super-users",
            "admin",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        start_listeners(&args, 1)
    };
    let gw = start();
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "delete", &[]);
    gw.gateway.stop();
    let gw = start();
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "deleted", &[]);
    gw.gateway.stop();
    let _ = std::fs::remove_file(&users);
}

/// The same with a real Iggy server: its user of `IGGY_KAFKA_TEST_IGGY` is the super user
/// that sets the credential, which a new gateway on the same stream replays.
#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn scram_credentials_outlive_the_gateway_on_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY names an Iggy server");
    let (user, password) = url_user(&url);
    let stream = common::unique_stream();
    let start = || {
        let args: Vec<String> = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--iggy",
            &url,
            "--stream",
            &stream,
            "--super-users",
            &user,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        start_listeners(&args, 1)
    };
    let gw = start();
    let admin = [user.as_str(), password.as_str()];
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "set", &admin);
    gw.gateway.stop();
    let gw = start();
    scram_store(&gw.address("SASL_PLAINTEXT").to_string(), "check", &admin);
    gw.gateway.stop();
}

/// Runs a `scram_store.py` step until it passes, for as long as a change kept through
/// another gateway may take to reach this one (the follow interval, 2 s, with room for a
/// loaded machine); panics with the last failure.
fn scram_store_within_the_bound(bootstrap: &str, step: &str, admin: &[&str]) {
    for _ in 0..10 {
        let out = Command::new(common::python())
            .current_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients"))
            .args(["scram_store.py", bootstrap, step])
            .args(admin)
            .output()
            .expect("python");
        if out.status.success() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    scram_store(bootstrap, step, admin);
}

/// Two gateways on one stream: a credential set, and then deleted, through one is
/// followed by the other while both run.
fn credentials_are_followed_across_gateways(url: &str, super_user: &str, admin: &[&str]) {
    let stream = common::unique_stream();
    let start = || {
        let args: Vec<String> = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--iggy",
            url,
            "--stream",
            &stream,
            "--super-users",
            super_user,
            "--iggy-scram-compaction",
            "true",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        start_listeners(&args, 1)
    };
    let a = start();
    let b = start();
    let (on_a, on_b) = (
        a.address("SASL_PLAINTEXT").to_string(),
        b.address("SASL_PLAINTEXT").to_string(),
    );
    scram_store(&on_a, "set", admin);
    scram_store_within_the_bound(&on_b, "check", admin);
    scram_store(&on_a, "delete", admin);
    scram_store_within_the_bound(&on_b, "deleted", admin);
    a.gateway.stop();
    b.gateway.stop();
}

/// Many changes through two gateways at once, both compacting: the topic is
/// compacted into a new generation, each gateway follows the other's changes there, and a
/// restart replays it. On the fake, the topic holds a bounded number of records; `inspect`
/// looks.
fn a_compacted_credentials_topic_is_followed(url: &str, super_user: &str, admin: &[&str]) {
    let stream = common::unique_stream();
    let start = || {
        let args: Vec<String> = [
            "--listeners",
            "SASL_PLAINTEXT://127.0.0.1:0",
            "--iggy",
            url,
            "--stream",
            &stream,
            "--super-users",
            super_user,
            "--iggy-scram-compaction",
            "true",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        start_listeners(&args, 1)
    };
    let a = start();
    let b = start();
    let (on_a, on_b) = (
        a.address("SASL_PLAINTEXT").to_string(),
        b.address("SASL_PLAINTEXT").to_string(),
    );
    std::thread::scope(|s| {
        s.spawn(|| scram_store(&on_a, "churn", admin));
        s.spawn(|| scram_store(&on_b, "churn", admin));
    });
    scram_store_within_the_bound(&on_a, "check", admin);
    scram_store_within_the_bound(&on_b, "check", admin);
    scram_store(&on_b, "delete", admin);
    scram_store_within_the_bound(&on_a, "deleted", admin);
    a.gateway.stop();
    b.gateway.stop();
    let again = start();
    scram_store(
        &again.address("SASL_PLAINTEXT").to_string(),
        "deleted",
        admin,
    );
    again.gateway.stop();
}

#[test]
fn a_compacted_credentials_topic_is_followed_and_replayed() {
    let iggy = FakeIggyServer::start();
    iggy.fake()
        .passwords
        .insert("admin".into(), "admin-secret".into());
    a_compacted_credentials_topic_is_followed(&iggy.url(), "admin", &[]);
    let fake = iggy.fake();
    let generations: Vec<(&String, u64)> = fake
        .topics
        .iter()
        .filter(|(name, _)| name.starts_with("__kafka_gateway_scram"))
        .map(|(name, t)| (name, t.partitions[0].next))
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    assert_ne!(generations[0].0, "__kafka_gateway_scram", "compacted");
    assert!(generations[0].1 <= 260, "{generations:?}");
}

#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn a_compacted_credentials_topic_is_followed_and_replayed_on_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY names an Iggy server");
    let (user, password) = url_user(&url);
    a_compacted_credentials_topic_is_followed(&url, &user, &[&user, &password]);
}

#[test]
fn scram_credentials_are_followed_across_gateways() {
    let iggy = FakeIggyServer::start();
    iggy.fake()
        .passwords
        .insert("admin".into(), "admin-secret".into());
    credentials_are_followed_across_gateways(&iggy.url(), "admin", &[]);
}

#[test]
#[ignore = "needs a real Iggy server: IGGY_KAFKA_TEST_IGGY, see scripts/test-iggy.sh"]
fn scram_credentials_are_followed_across_gateways_on_a_real_iggy() {
    let url = common::iggy_url().expect("IGGY_KAFKA_TEST_IGGY names an Iggy server");
    let (user, password) = url_user(&url);
    credentials_are_followed_across_gateways(&url, &user, &[&user, &password]);
}

/// The user and password of an `iggy://USER:PASSWORD@...` URL.
fn url_user(url: &str) -> (String, String) {
    let userinfo = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .map(|(u, _)| u.to_owned())
        .unwrap_or_default();
    match userinfo.split_once(':') {
        Some((u, p)) => (u.to_owned(), p.to_owned()),
        None => panic!("IGGY_KAFKA_TEST_IGGY must name a user and password for this test"),
    }
}
