use super::*;
use iggy_binary_protocol::batch::{calculate_batch_checksum, decode_batch_slice};
use iggy_binary_protocol::requests::messages::{RawMessage, SendMessagesEncoder};
use iggy_binary_protocol::responses::messages::SendMessagesConfirmationResponse;
use iggy_binary_protocol::WireIdentifier;

struct Msg {
    id: u128,
    at: u64,
    headers: Option<Vec<u8>>,
    payload: Vec<u8>,
}

fn msg(id: u128, at: u64, payload: &[u8]) -> Msg {
    Msg {
        id,
        at,
        headers: None,
        payload: payload.to_vec(),
    }
}

/// Iggy's own encoding of `messages` to `partition` of stream 1, topic "t".
fn encode(partition: u32, messages: &[Msg]) -> Bytes {
    let raw: Vec<RawMessage<'_>> = messages
        .iter()
        .map(|m| RawMessage {
            id: m.id,
            origin_timestamp: m.at,
            headers: m.headers.as_deref(),
            payload: &m.payload,
        })
        .collect();
    let mut buf = BytesMut::new();
    SendMessagesEncoder::encode(
        &mut buf,
        &WireIdentifier::numeric(1),
        &WireIdentifier::named("t").expect("well-formed"),
        &WirePartitioning::PartitionId(partition),
        &raw,
    )
    .expect("well-formed");
    buf.freeze()
}

fn merged(bodies: &[Bytes]) -> Bytes {
    let reads: Vec<Append> = bodies
        .iter()
        .map(|b| Append::read(b).expect("well-formed"))
        .collect();
    let parts: Vec<(&Bytes, &Append)> = bodies.iter().zip(&reads).collect();
    merge(&parts)
}

#[test]
fn a_merged_request_is_what_iggy_encodes_for_all_its_messages() {
    let mut with_headers = msg(7, 1_000_040, b"headed");
    // One user header, as Iggy encodes it: kind, length and bytes of the key, then the value.
    with_headers.headers = Some(vec![2, 1, 0, 0, 0, b'k', 1, 2, 0, 0, 0, b'v', b'w']);
    let parts = [
        vec![msg(1, 1_000_050, b"a"), msg(2, 1_000_060, b"bb")],
        // Earlier than the first call's messages: the merged origin moves back.
        vec![msg(3, 1_000_000, b"ccc")],
        vec![with_headers, msg(8, 1_000_090, b"")],
    ];
    let bodies: Vec<Bytes> = parts.iter().map(|p| encode(4, p)).collect();
    let all: Vec<Msg> = parts.into_iter().flatten().collect();
    let expected = encode(4, &all);
    let got = merged(&bodies);
    assert_eq!(got, expected, "byte for byte Iggy's own encoding");
    let batch = decode_batch_slice(&got[Append::read(&got).expect("well-formed").batch_at..])
        .expect("well-formed");
    assert_eq!(batch.message_count(), 5);
    let deltas: Vec<(u32, u32)> = batch
        .iter()
        .map(|m| (m.header.offset_delta, m.header.timestamp_delta))
        .collect();
    assert_eq!(deltas, [(0, 50), (1, 60), (2, 0), (3, 40), (4, 90)]);
}

#[test]
fn the_bytes_of_a_merged_request() {
    // Two one-message appends to partition 0 of stream 1, topic "t", made one.
    let got = merged(&[
        encode(0, &[msg(0x11, 5, b"x")]),
        encode(0, &[msg(0x12, 3, b"y")]),
    ]);
    let mut expected = Vec::new();
    expected.extend_from_slice(&[19, 0, 0, 0]); // metadata length
    expected.extend_from_slice(&[1, 4, 1, 0, 0, 0]); // stream: numeric 1
    expected.extend_from_slice(&[2, 1, b't']); // topic: named "t"
    expected.extend_from_slice(&[2, 4, 0, 0, 0, 0]); // partitioning: partition id 0
    expected.extend_from_slice(&[2, 0, 0, 0]); // message count
    let mut header = [0u8; BATCH_HEADER_SIZE];
    header[24..32].copy_from_slice(&3u64.to_le_bytes()); // origin: the earliest timestamp
    header[32..40].copy_from_slice(&(256u64 + 2 * 49).to_le_bytes()); // batch length
    header[48..52].copy_from_slice(&2u32.to_le_bytes()); // message count
    let mut frames = Vec::new();
    for (id, offset, delta, payload) in [(0x11u128, 0u32, 2u32, b'x'), (0x12, 1, 0, b'y')] {
        let mut f = vec![0u8; 8];
        f.extend_from_slice(&id.to_le_bytes());
        f.extend_from_slice(&offset.to_le_bytes());
        f.extend_from_slice(&delta.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes()); // user headers length
        f.extend_from_slice(&1u32.to_le_bytes()); // payload length
        f.extend_from_slice(&[0; 8]); // reserved
        f.push(payload);
        let checksum = XxHash3_64::oneshot(&f[8..]);
        f[..8].copy_from_slice(&checksum.to_le_bytes());
        frames.extend_from_slice(&f);
    }
    let mut h = BatchHeader::decode(&header).expect("well-formed");
    h.batch_checksum = calculate_batch_checksum(&h, &frames);
    h.encode_into(&mut header);
    expected.extend_from_slice(&header);
    expected.extend_from_slice(&frames);
    assert_eq!(&got[..], &expected[..]);
}

#[test]
fn only_whole_appends_to_one_partition_are_read() {
    let body = encode(2, &[msg(1, 10, b"a"), msg(2, 11, b"b")]);
    let a = Append::read(&body).expect("well-formed");
    assert_eq!((a.count, a.origin, a.latest(&body)), (2, 10, Some(11)));
    for cut in 0..body.len() {
        assert!(Append::read(&body[..cut]).is_none(), "cut at {cut}");
    }
    let mut longer = body.to_vec();
    longer.push(0);
    assert!(Append::read(&longer).is_none());
    // The metadata's count disagrees with the batch's.
    let mut wrong = body.to_vec();
    wrong[a.key_end] = 3;
    assert!(Append::read(&wrong).is_none());
    assert!(Append::read(b"").is_none());
    assert!(Append::read(&[0xff; 64]).is_none());
    // A frame whose reserved bytes are not zero, which Iggy's decoder refuses.
    let second = a.batch_at + BATCH_HEADER_SIZE + BATCH_MESSAGE_HEADER_SIZE + 1;
    for at in [a.batch_at + BATCH_HEADER_SIZE, second] {
        let mut reserved = body.to_vec();
        reserved[at + 47] = 1;
        let read = Append::read(&reserved).expect("the headers are whole");
        assert_eq!(read.latest(&reserved), None, "frame at {at}");
        assert!(!Group::new(&body, &a).admit(
            &Bytes::from(reserved.clone()),
            &read,
            &MergeLimits::default()
        ));
        assert!(!Group::new(&Bytes::from(reserved), &read).admit(
            &body,
            &a,
            &MergeLimits::default()
        ));
    }
}

#[test]
fn a_group_keeps_to_one_partition_and_its_bounds() {
    let limits = MergeLimits {
        max_calls: 3,
        max_bytes: 1000,
    };
    let first = encode(1, &[msg(1, 100, b"a")]);
    let mut group = Group::new(&first, &Append::read(&first).expect("well-formed"));
    let other = encode(2, &[msg(2, 100, b"a")]);
    assert!(!group.admit(&other, &Append::read(&other).expect("well-formed"), &limits));
    let same = encode(1, &[msg(3, 100, b"b")]);
    let same_read = Append::read(&same).expect("well-formed");
    // Too far apart in time for one batch's 32-bit deltas.
    let late = encode(1, &[msg(4, 100 + u64::from(u32::MAX) + 1, b"c")]);
    assert!(!group.admit(&late, &Append::read(&late).expect("well-formed"), &limits));
    let big = encode(1, &[msg(5, 100, &[0; 700])]);
    assert!(!group.admit(&big, &Append::read(&big).expect("well-formed"), &limits));
    assert!(group.admit(&same, &same_read, &limits));
    assert!(group.admit(&same, &same_read, &limits));
    assert!(
        !group.admit(&same, &same_read, &limits),
        "three calls at most"
    );
    assert_eq!(group.count, 3);
    assert_eq!(
        group.bytes,
        first.len() + 2 * (BATCH_MESSAGE_HEADER_SIZE + 1)
    );
}

#[test]
fn each_call_gets_its_own_base_offset() {
    let reply = SendMessagesResponse {
        confirmations: vec![SendMessagesConfirmationResponse {
            stream_id: 1,
            topic_id: 2,
            partition_id: 3,
            base_offset: 40,
        }],
    }
    .to_bytes();
    let bases: Vec<u64> = split(&reply, &[2, 5, 1])
        .iter()
        .map(|r| {
            SendMessagesResponse::decode(r)
                .expect("well-formed")
                .0
                .confirmations[0]
                .base_offset
        })
        .collect();
    assert_eq!(bases, [40, 42, 47]);
    // Committed without offsets to report: each call gets that answer.
    let empty = Bytes::from_static(&[0, 0, 0, 0]);
    assert_eq!(split(&empty, &[1, 1]), [empty.clone(), empty]);
}

/// The bounds of `max_bytes`: the smallest request of one message, and what Iggy takes in
/// one frame with the request header.
#[test]
fn the_byte_bounds_are_one_message_and_one_iggy_frame() {
    let mut one = BytesMut::new();
    let m = RawMessage {
        id: 1,
        origin_timestamp: 100,
        headers: None,
        payload: b"m",
    };
    let name = |n| WireIdentifier::named(n).expect("well-formed");
    let to = WirePartitioning::PartitionId(0);
    SendMessagesEncoder::encode(&mut one, &name("s"), &name("t"), &to, &[m]).expect("encodes");
    assert_eq!(one.len(), MergeLimits::MIN_BYTES);
    assert_eq!(MergeLimits::MAX_BYTES + HEADER_SIZE, 64 * 1024 * 1024);
    let d = MergeLimits::default();
    assert!((MergeLimits::MIN_BYTES..=MergeLimits::MAX_BYTES).contains(&d.max_bytes));
}
