//! The server side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks
//! it: no channel binding, Kafka's message grammar, and credentials kept as salt, iteration
//! count, StoredKey and ServerKey, never as passwords. The cryptography is RustCrypto's.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::{Failure, Random};

/// Kafka's smallest iteration count (`ScramMechanism.minIterations`).
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's largest iteration count (`ScramMechanism.maxIterations`).
pub const MAX_ITERATIONS: u32 = 16384;

/// The SCRAM mechanisms Kafka defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    /// SCRAM-SHA-256 (Kafka's mechanism type 1).
    Sha256,
    /// SCRAM-SHA-512 (Kafka's mechanism type 2).
    Sha512,
}

impl ScramMechanism {
    /// Both, in Kafka's order.
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism's number in AlterUserScramCredentials and DescribeUserScramCredentials.
    #[must_use]
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    /// The mechanism of Kafka's number `t`, if it is one.
    #[must_use]
    pub fn from_kafka_type(t: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// The mechanism named `name` (as SASL writes it, case-insensitive), if it is one.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length, so these constructors cannot fail; an empty MAC
        // would only ever fail a comparison.
        match self {
            Self::Sha256 => <Hmac<Sha256> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
            Self::Sha512 => <Hmac<Sha512> as Mac>::new_from_slice(key)
                .map(|m| m.chain_update(data).finalize().into_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// Hi() of RFC 5802: PBKDF2 with this mechanism's HMAC.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            Self::Sha256 => {
                pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, iterations).to_vec()
            }
            Self::Sha512 => {
                pbkdf2::pbkdf2_hmac_array::<Sha512, 64>(password, salt, iterations).to_vec()
            }
        }
    }
}

impl std::fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a server keeps of a SCRAM password: enough to check a proof, not enough to make one.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    /// The mechanism the keys are for.
    pub mechanism: ScramMechanism,
    /// The salt.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are secrets: a StoredKey lets whoever has it impersonate the server.
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredential {
    /// The credential for `password` with `salt` and `iterations`.
    #[must_use]
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// The credential from SaltedPassword, as AlterUserScramCredentials carries it (KIP-554:
    /// the client salts and iterates, so the password never reaches the gateway).
    #[must_use]
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Self {
        let client_key = mechanism.hmac(salted, b"Client Key");
        Self {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one this credential was made from, in constant time over
    /// the keys. Costs `iterations` rounds of the mechanism's HMAC.
    #[must_use]
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let other = Self::from_password(self.mechanism, password, &self.salt, self.iterations);
        bool::from(other.stored_key.ct_eq(&self.stored_key))
            & bool::from(other.server_key.ct_eq(&self.server_key))
    }
}

/// Finds a user's credential for a mechanism; for a user without one, the decoy the
/// exchange goes on with (a salt and iteration count that stay the same for that name, so
/// that an unknown user cannot be told from a known one by asking twice).
pub(crate) type Lookup<'a> =
    dyn Fn(&str, ScramMechanism) -> Result<ScramCredential, ScramCredential> + 'a;

/// Where a server-side SCRAM exchange stands.
#[derive(Debug)]
pub(crate) enum ScramServer {
    /// Waiting for client-first.
    Start(ScramMechanism),
    /// Server-first sent; waiting for client-final.
    Challenged(Box<Challenged>),
    /// Finished, successfully or not: nothing more is taken.
    Done,
}

#[derive(Debug)]
pub(crate) struct Challenged {
    mechanism: ScramMechanism,
    user: String,
    /// The user's credential, or for an unknown user its decoy: the exchange goes on as if
    /// the user existed (so that an attacker cannot tell unknown users from wrong
    /// passwords) and fails at the proof.
    credential: ScramCredential,
    known: bool,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// One step's result: the token to send, and the authenticated user once the exchange is
/// complete.
#[derive(Debug)]
pub(crate) struct ScramStep {
    pub(crate) token: Vec<u8>,
    pub(crate) user: Option<String>,
}

fn invalid(what: &str) -> Failure {
    Failure::new(format!(
        "Authentication failed: invalid SCRAM message: {what}"
    ))
}

impl ScramServer {
    pub(crate) fn new(mechanism: ScramMechanism) -> Self {
        Self::Start(mechanism)
    }

    /// Takes the client's next message. `lookup` finds a user's credential for the
    /// mechanism; `random` fills server nonces.
    pub(crate) fn step(
        &mut self,
        token: &[u8],
        lookup: &Lookup<'_>,
        random: &Random,
    ) -> Result<ScramStep, Failure> {
        match std::mem::replace(self, Self::Done) {
            Self::Start(mechanism) => {
                let (challenged, server_first) = client_first(mechanism, token, lookup, random)?;
                *self = Self::Challenged(Box::new(challenged));
                Ok(ScramStep {
                    token: server_first.into_bytes(),
                    user: None,
                })
            }
            Self::Challenged(c) => c.client_final(token, lookup),
            Self::Done => Err(Failure::illegal_state(
                "the SCRAM exchange is already complete",
            )),
        }
    }
}

/// Kafka's `saslname`: `=2C` is `,` and `=3D` is `=`; any other `=` is malformed.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3)?;
        out.push(match esc {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// RFC 5802's `printable`: the characters a nonce may use.
fn printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

fn client_first(
    mechanism: ScramMechanism,
    token: &[u8],
    lookup: &Lookup<'_>,
    random: &Random,
) -> Result<(Challenged, String), Failure> {
    let msg = std::str::from_utf8(token).map_err(|_| invalid("not UTF-8"))?;
    // gs2-header: a channel-binding flag, then an optional authzid.
    let (flag, rest) = msg
        .split_once(',')
        .ok_or_else(|| invalid("no GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(Failure::new(
                "Authentication failed: channel binding is not supported",
            ))
        }
        _ => return Err(invalid("bad channel-binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| invalid("no GS2 header"))?;
    let authzid = match authzid {
        "" => None,
        a => Some(
            a.strip_prefix("a=")
                .and_then(decode_saslname)
                .ok_or_else(|| invalid("bad authorization id"))?,
        ),
    };
    let gs2_header = msg[..msg.len() - bare.len()].to_owned();
    let mut fields = bare.split(',');
    let user = fields
        .next()
        .and_then(|f| f.strip_prefix("n="))
        .and_then(decode_saslname)
        .ok_or_else(|| invalid("no user name"))?;
    let client_nonce = fields
        .next()
        .and_then(|f| f.strip_prefix("r="))
        .ok_or_else(|| invalid("no nonce"))?;
    if user.is_empty() {
        return Err(invalid("empty user name"));
    }
    if !printable(client_nonce) {
        return Err(invalid("bad nonce"));
    }
    for extension in fields {
        // Kafka's one extension asks for delegation-token authentication, which the
        // gateway has no tokens for; `m=` is mandatory by definition and unknown to us.
        if extension == "tokenauth=true" || extension.starts_with("m=") {
            return Err(Failure::new(format!(
                "Authentication failed: unsupported SCRAM extension {:?}",
                extension.split('=').next().unwrap_or_default()
            )));
        }
    }
    if let Some(a) = &authzid {
        if *a != user {
            return Err(Failure::new(
                "Authentication failed: Client requested an authorization id that is different from username",
            ));
        }
    }
    let mut server_nonce = [0u8; 24];
    random.fill(&mut server_nonce);
    // Letters and digits only, as Kafka's own nonces are.
    let hex: String = server_nonce.iter().map(|b| format!("{b:02x}")).collect();
    let nonce = format!("{client_nonce}{hex}");
    // An unknown user is answered with its decoy's salt and iteration count, and fails at
    // the proof like a wrong password.
    let (credential, known) = match lookup(&user, mechanism) {
        Ok(c) => {
            let known = c.mechanism == mechanism;
            (c, known)
        }
        Err(c) => (c, false),
    };
    let server_first = format!(
        "r={nonce},s={},i={}",
        BASE64.encode(&credential.salt),
        credential.iterations
    );
    Ok((
        Challenged {
            mechanism,
            user,
            credential,
            known,
            gs2_header,
            client_first_bare: bare.to_owned(),
            server_first: server_first.clone(),
            nonce,
        },
        server_first,
    ))
}

impl Challenged {
    /// `lookup` is asked again: a credential changed or deleted since client-first (through
    /// this gateway or, followed, another) fails the exchange as a wrong password would.
    fn client_final(self, token: &[u8], lookup: &Lookup<'_>) -> Result<ScramStep, Failure> {
        let msg = std::str::from_utf8(token).map_err(|_| invalid("not UTF-8"))?;
        let (without_proof, proof) = msg.rsplit_once(",p=").ok_or_else(|| invalid("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|f| f.strip_prefix("c="))
            .ok_or_else(|| invalid("no channel binding"))?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .ok_or_else(|| invalid("no nonce"))?;
        if BASE64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(invalid("channel binding does not match the GS2 header"));
        }
        // Kafka's own check: librdkafka up to 2.0 sends its nonce before the whole combined
        // one, and Kafka takes any nonce that ends with the server's.
        if !nonce.ends_with(&self.nonce) {
            return Err(Failure::new(
                "Authentication failed: Invalid client nonce in the final client message.",
            ));
        }
        let proof = BASE64.decode(proof).map_err(|_| invalid("bad proof"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let m = self.mechanism;
        let credential = &self.credential;
        let client_signature = m.hmac(&credential.stored_key, auth_message.as_bytes());
        let matches_length = proof.len() == client_signature.len();
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let unchanged = self.known && lookup(&self.user, m).is_ok_and(|c| c == *credential);
        let valid = matches_length
            & bool::from(m.hash(&client_key).ct_eq(&credential.stored_key))
            & unchanged;
        if !valid {
            return Err(Failure::new(format!(
                "Authentication failed during authentication due to invalid credentials with SASL mechanism {m}"
            )));
        }
        let server_signature = m.hmac(&credential.server_key, auth_message.as_bytes());
        Ok(ScramStep {
            token: format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            user: Some(self.user),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown user's stand-in.
    fn decoy(m: ScramMechanism) -> ScramCredential {
        ScramCredential::from_password(m, b"decoy", b"decoy-salt", MIN_ITERATIONS)
    }

    /// A source that replays fixed bytes, so that the server's nonce is known.
    fn fixed(bytes: &'static [u8]) -> Random {
        Random::new(move |out: &mut [u8]| {
            for (o, b) in out.iter_mut().zip(bytes.iter().cycle()) {
                *o = *b;
            }
        })
    }

    /// RFC 7677's example exchange, end to end, with the server's nonce replaced by ours.
    #[test]
    fn rfc7677_exchange() {
        let salt = BASE64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap_or_else(|e| panic!("{e}"));
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let lookup = move |u: &str, m| (u == "user").then(|| cred.clone()).ok_or_else(|| decoy(m));
        let random = fixed(&[0]);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let first = server
            .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup, &random)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let snonce = "00".repeat(24);
        assert_eq!(
            String::from_utf8(first.token).unwrap_or_default(),
            format!("r=rOprNGfwEbeRWgbNEkqO{snonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
        );
        // The client's side, computed from the RFC's formulas with the same crates.
        let m = ScramMechanism::Sha256;
        let salted = m.salted_password(b"pencil", &salt, 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored = m.hash(&client_key);
        let without_proof = format!("c=biws,r=rOprNGfwEbeRWgbNEkqO{snonce}");
        let auth = format!(
            "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO{snonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,{without_proof}"
        );
        let sig = m.hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let fin = format!("{without_proof},p={}", BASE64.encode(&proof));
        let last = server
            .step(fin.as_bytes(), &lookup, &random)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(last.user.as_deref(), Some("user"));
        let server_sig = m.hmac(&m.hmac(&salted, b"Server Key"), auth.as_bytes());
        assert_eq!(
            last.token,
            format!("v={}", BASE64.encode(server_sig)).into_bytes()
        );
    }

    /// A credential changed or deleted between client-first and client-final fails the
    /// exchange, though the proof is right for the one it started with.
    #[test]
    fn a_credential_changed_during_the_exchange_fails_it() {
        let m = ScramMechanism::Sha256;
        let salt = b"salt".to_vec();
        let old = ScramCredential::from_password(m, b"pencil", &salt, 4096);
        let new = ScramCredential::from_password(m, b"other", &salt, 4096);
        for now in [Some(old.clone()), Some(new), None] {
            let held = std::cell::RefCell::new(Some(old.clone()));
            let lookup = |u: &str, m| {
                held.borrow()
                    .clone()
                    .filter(|_| u == "user")
                    .ok_or_else(|| decoy(m))
            };
            let random = fixed(&[0]);
            let mut server = ScramServer::new(m);
            let first = server
                .step(b"n,,n=user,r=abc", &lookup, &random)
                .unwrap_or_else(|e| panic!("{e:?}"));
            let first = String::from_utf8(first.token).unwrap_or_default();
            let nonce = first
                .split(',')
                .next()
                .and_then(|r| r.strip_prefix("r="))
                .unwrap_or_default()
                .to_owned();
            *held.borrow_mut() = now.clone();
            let salted = m.salted_password(b"pencil", &salt, 4096);
            let client_key = m.hmac(&salted, b"Client Key");
            let without_proof = format!("c=biws,r={nonce}");
            let auth = format!("n=user,r=abc,{first},{without_proof}");
            let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let fin = format!("{without_proof},p={}", BASE64.encode(&proof));
            let last = server.step(fin.as_bytes(), &lookup, &random);
            assert_eq!(
                last.is_ok(),
                now.as_ref() == Some(&old),
                "credential now {:?}: {last:?}",
                now.as_ref().map(|c| c == &old)
            );
        }
    }

    /// The RFC's own proof and signature, for its own nonces: golden values that no
    /// formula of ours produced.
    #[test]
    fn rfc7677_golden_values() {
        let salt = BASE64
            .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
            .unwrap_or_else(|e| panic!("{e}"));
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096);
        let c = Challenged {
            mechanism: ScramMechanism::Sha256,
            user: "user".into(),
            credential: cred,
            known: true,
            gs2_header: "n,,".into(),
            client_first_bare: "n=user,r=rOprNGfwEbeRWgbNEkqO".into(),
            server_first: "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let kept = c.credential.clone();
        let lookup = move |_: &str, _| Ok(kept.clone());
        let done = c
            .client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", &lookup)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            done.token,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn wrong_proof_unknown_user_and_replayed_nonce_fail() {
        let cred = ScramCredential::from_password(ScramMechanism::Sha512, b"pw", b"salt", 4096);
        let lookup = move |u: &str, m| (u == "alice").then(|| cred.clone()).ok_or_else(|| decoy(m));
        let random = fixed(&[7, 1, 2]);
        for user in ["alice", "mallory"] {
            let mut s = ScramServer::new(ScramMechanism::Sha512);
            let first = s
                .step(format!("n,,n={user},r=abc").as_bytes(), &lookup, &random)
                .unwrap_or_else(|e| panic!("{e:?}"));
            let text = String::from_utf8(first.token).unwrap_or_default();
            let nonce = text
                .split(',')
                .next()
                .and_then(|r| r.strip_prefix("r="))
                .unwrap_or_default()
                .to_owned();
            let wrong = format!("c=biws,r={nonce},p={}", BASE64.encode([0u8; 64]));
            let e = s
                .step(wrong.as_bytes(), &lookup, &random)
                .err()
                .unwrap_or_else(|| panic!("{user}: a zero proof passed"));
            assert!(e.message.contains("invalid credentials"), "{}", e.message);
            // Nothing more is taken once the exchange has failed.
            assert!(s.step(wrong.as_bytes(), &lookup, &random).is_err());
        }
        // A client-final carrying another exchange's nonce is refused.
        let mut s = ScramServer::new(ScramMechanism::Sha512);
        let _ = s.step(b"n,,n=alice,r=abc", &lookup, &random);
        let e = s
            .step(b"c=biws,r=abcOTHER,p=AAAA", &lookup, &random)
            .err()
            .unwrap_or_else(|| panic!("a foreign nonce passed"));
        assert!(e.message.contains("nonce"), "{}", e.message);
    }

    /// librdkafka 2.0 repeats its own nonce in front of the combined one; Kafka takes it,
    /// and so does the gateway, with the proof over the message as sent.
    #[test]
    fn a_final_nonce_that_ends_with_the_servers_is_taken() {
        let salt = b"s".to_vec();
        let cred = ScramCredential::from_password(ScramMechanism::Sha256, b"pw", &salt, 4096);
        let lookup = move |_: &str, _| Ok(cred.clone());
        let random = fixed(&[9]);
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let first = server
            .step(b"n,,n=u,r=cn", &lookup, &random)
            .unwrap_or_else(|e| panic!("{e:?}"));
        let first = String::from_utf8(first.token).unwrap_or_default();
        let nonce = first
            .split(',')
            .next()
            .and_then(|r| r.strip_prefix("r="))
            .unwrap_or_default();
        let m = ScramMechanism::Sha256;
        let salted = m.salted_password(b"pw", &salt, 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r=cn{nonce}");
        let auth = format!("n=u,r=cn,{first},{without_proof}");
        let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let fin = format!("{without_proof},p={}", BASE64.encode(&proof));
        let done = server
            .step(fin.as_bytes(), &lookup, &random)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(done.user.as_deref(), Some("u"));
    }

    #[test]
    fn malformed_client_first_messages_are_refused() {
        let lookup = |_: &str, m| Err(decoy(m));
        let random = fixed(&[1]);
        for bad in [
            &b""[..],
            b"n",
            b"p=tls-unique,,n=a,r=b",
            b"x,,n=a,r=b",
            b"n,,n=,r=b",
            b"n,,n=a=ZZ,r=b",
            b"n,,n=a,r=",
            b"n,,r=b",
            b"n,a=bob,n=alice,r=x",
            b"n,,n=a,r=b,m=ext",
            b"n,,n=a,r=b,tokenauth=true",
            b"\xff\xfe",
        ] {
            let mut s = ScramServer::new(ScramMechanism::Sha256);
            assert!(
                s.step(bad, &lookup, &random).is_err(),
                "{:?} was taken",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(decode_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
    }

    #[test]
    fn a_password_checks_against_its_credential_only() {
        let c = ScramCredential::from_password(ScramMechanism::Sha256, b"secret", b"salty", 4096);
        assert!(c.verify_password(b"secret"));
        assert!(!c.verify_password(b"Secret"));
        assert!(!format!("{c:?}").contains("stored_key"));
    }
}
