//! A stand-in for the cargo-fuzz target (`proxy/fuzz`, which needs a nightly toolchain):
//! thousands of pseudo-random and mutated-valid inputs through `convert::fuzz_entry`,
//! none of which may panic. The generator is seeded; the valid seeds come from pilot,
//! whose map fields encode in hash order, so a failure prints its input in hex.

// Helpers outside #[test] functions unwrap too: a failed setup is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod convert_support;

use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strait_pilot::xds;
use strait_proto::envoy::config::bootstrap::v3::{Bootstrap, bootstrap::StaticResources};
use strait_proto::envoy::config::cluster::v3::Cluster;
use strait_proto::envoy::config::listener::v3::Listener;
use strait_proto::xds::type_url;
use strait_proxy::convert::fuzz_entry;

const RANDOM_INPUTS: usize = 2_000;
const MUTATED_INPUTS: usize = 10_000;

/// Valid inputs in the fuzz target's format (selector byte + encoded message): every
/// resource pilot generates for the bookinfo sidecar, plus a bootstrap carrying them.
fn seeds() -> Vec<Vec<u8>> {
    let (proxy, push) = convert_support::mesh(true, &[]);
    let mut out = Vec::new();
    let mut with = |selector: u8, bytes: &[u8]| {
        let mut v = vec![selector];
        v.extend_from_slice(bytes);
        out.push(v);
    };
    let cds = xds::generate(type_url::CLUSTER, &proxy, &push, &[]);
    let eds_names: Vec<String> = cds.iter().map(|r| r.name.clone()).collect();
    let eds = xds::generate(type_url::ENDPOINT, &proxy, &push, &eds_names);
    let lds = xds::generate(type_url::LISTENER, &proxy, &push, &[]);
    let rds = xds::generate(type_url::ROUTE, &proxy, &push, &["9080".to_string()]);
    for r in &lds {
        with(0, &r.body.value);
    }
    for r in &rds {
        with(1, &r.body.value);
    }
    for r in &cds {
        with(2, &r.body.value);
    }
    for r in &eds {
        with(3, &r.body.value);
    }
    let bootstrap = Bootstrap {
        static_resources: Some(StaticResources {
            listeners: lds
                .iter()
                .map(|r| Listener::decode(r.body.value.as_slice()).unwrap())
                .collect(),
            clusters: cds
                .iter()
                .map(|r| Cluster::decode(r.body.value.as_slice()).unwrap())
                .collect(),
            secrets: vec![],
        }),
        ..Default::default()
    };
    with(4, &bootstrap.encode_to_vec());
    out
}

/// Byte-level damage: flips, overwrites, truncation, insertion, deletion, splices.
fn mutate_bytes(rng: &mut StdRng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.len() < 2 {
            break;
        }
        // Index 0 is the selector; mutations leave it alone.
        let at = rng.random_range(1..v.len());
        match rng.random_range(0..6) {
            0 => v[at] ^= 1 << rng.random_range(0..8),
            1 => v[at] = rng.random(),
            2 => v.truncate(at),
            3 => {
                let n = rng.random_range(1..8);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                v.splice(at..at, junk);
            }
            4 => {
                let end = rng.random_range(at..=v.len());
                v.drain(at..end);
            }
            _ => {
                let other = &pool[rng.random_range(0..pool.len())];
                if other.len() > 1 {
                    let a = rng.random_range(1..other.len());
                    let b = rng.random_range(a..=other.len().min(a + 64));
                    v.splice(at..at, other[a..b].iter().copied());
                }
            }
        }
    }
    v
}

/// One protobuf field on the wire; length-delimited values are re-encoded after a
/// mutation, so the message stays decodable while its contents go wrong.
#[derive(Clone, Debug)]
enum Wire {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Fixed32([u8; 4]),
}

fn read_varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn write_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn parse(b: &[u8]) -> Option<Vec<(u64, Wire)>> {
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let (field, wire_type) = (key >> 3, key & 7);
        if field == 0 {
            return None;
        }
        let value = match wire_type {
            0 => Wire::Varint(read_varint(b, &mut i)?),
            1 => Wire::Fixed64(b.get(i..i + 8)?.try_into().ok().inspect(|_| i += 8)?),
            2 => {
                let len = usize::try_from(read_varint(b, &mut i)?).ok()?;
                let v = b.get(i..i.checked_add(len)?)?.to_vec();
                i += len;
                Wire::Bytes(v)
            }
            5 => Wire::Fixed32(b.get(i..i + 4)?.try_into().ok().inspect(|_| i += 4)?),
            _ => return None,
        };
        out.push((field, value));
    }
    Some(out)
}

fn encode(fields: &[(u64, Wire)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (field, value) in fields {
        let wire_type = match value {
            Wire::Varint(_) => 0,
            Wire::Fixed64(_) => 1,
            Wire::Bytes(_) => 2,
            Wire::Fixed32(_) => 5,
        };
        write_varint((field << 3) | wire_type, &mut out);
        match value {
            Wire::Varint(v) => write_varint(*v, &mut out),
            Wire::Fixed64(b) => out.extend_from_slice(b),
            Wire::Bytes(b) => {
                write_varint(b.len() as u64, &mut out);
                out.extend_from_slice(b);
            }
            Wire::Fixed32(b) => out.extend_from_slice(b),
        }
    }
    out
}

const INTERESTING_VARINTS: [u64; 12] = [
    0,
    1,
    2,
    3,
    7,
    100,
    65_535,
    65_536,
    u32::MAX as u64,
    i64::MAX as u64,
    u64::MAX,
    315_576_000_001,
];

const INTERESTING_STRINGS: [&str; 14] = [
    "",
    "*",
    "(",
    "a{100000}{100000}",
    "[z-a]",
    "\\9",
    "::",
    "10.0.0.1",
    "300.1.1.1",
    "*.*.example.com",
    ":authority",
    "bad header\n",
    "type.googleapis.com/acme.Unknown",
    "/",
];

/// Changes one field somewhere in the message tree (descending into nested messages).
fn mutate_field(rng: &mut StdRng, msg: &[u8], donor: &[u8], depth: u32) -> Vec<u8> {
    let Some(mut fields) = parse(msg) else {
        return msg.to_vec();
    };
    if fields.is_empty() {
        fields.push((rng.random_range(1..40), Wire::Varint(rng.random())));
        return encode(&fields);
    }
    let at = rng.random_range(0..fields.len());
    let nested = matches!(&fields[at].1, Wire::Bytes(b) if !b.is_empty() && parse(b).is_some());
    if nested && depth < 12 && rng.random_range(0..4) != 0 {
        if let Wire::Bytes(b) = &fields[at].1 {
            let inner = mutate_field(rng, b, donor, depth + 1);
            fields[at].1 = Wire::Bytes(inner);
        }
        return encode(&fields);
    }
    match rng.random_range(0..6) {
        0 => {
            fields.remove(at);
        }
        1 => {
            let dup = fields[at].clone();
            fields.insert(at, dup);
        }
        2 => {
            // A field of the same number from another message of the corpus.
            let number = fields[at].0;
            if let Some(other) =
                parse(donor).and_then(|d| d.into_iter().find(|(n, _)| *n == number))
            {
                fields[at] = other;
            }
        }
        _ => {
            fields[at].1 = match &fields[at].1 {
                Wire::Varint(_) => Wire::Varint(if rng.random() {
                    INTERESTING_VARINTS[rng.random_range(0..INTERESTING_VARINTS.len())]
                } else {
                    rng.random()
                }),
                Wire::Bytes(_) => Wire::Bytes(if rng.random() {
                    INTERESTING_STRINGS[rng.random_range(0..INTERESTING_STRINGS.len())]
                        .as_bytes()
                        .to_vec()
                } else {
                    let n = rng.random_range(0..16);
                    (0..n).map(|_| rng.random()).collect()
                }),
                Wire::Fixed64(_) => Wire::Fixed64(rng.random()),
                Wire::Fixed32(_) => Wire::Fixed32(rng.random()),
            };
        }
    }
    encode(&fields)
}

fn mutate(rng: &mut StdRng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    if rng.random_range(0..4) == 0 {
        return mutate_bytes(rng, seed, pool);
    }
    let (selector, body) = (seed[0], &seed[1..]);
    let donor = &pool[rng.random_range(0..pool.len())][1..];
    let mut body = body.to_vec();
    for _ in 0..rng.random_range(1..=3) {
        body = mutate_field(rng, &body, donor, 0);
    }
    let mut out = vec![selector];
    out.extend(body);
    out
}

#[test]
fn conversion_never_panics() {
    let seeds = seeds();
    assert!(
        seeds.len() > 20,
        "expected a rich seed corpus, got {}",
        seeds.len()
    );
    let mut rng = StdRng::seed_from_u64(0x57_4241_4954);
    let mut inputs: Vec<Vec<u8>> = seeds.clone();
    for _ in 0..RANDOM_INPUTS {
        let len = rng.random_range(0..512);
        inputs.push((0..len).map(|_| rng.random()).collect());
    }
    let mut decoded = 0;
    for i in 0..MUTATED_INPUTS {
        let seed = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed, &seeds);
        if reaches_conversion(&input) {
            decoded += 1;
        }
        inputs.push(input);
    }
    // Most mutations must still decode, so that conversion itself (not just prost) is
    // what gets exercised.
    assert!(
        decoded * 4 > MUTATED_INPUTS,
        "only {decoded} of {MUTATED_INPUTS} mutated inputs decoded"
    );
    for input in &inputs {
        if std::panic::catch_unwind(|| fuzz_entry(input)).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("conversion panicked on input {hex}");
        }
    }
}

fn reaches_conversion(input: &[u8]) -> bool {
    let Some((selector, body)) = input.split_first() else {
        return false;
    };
    let url = match selector % 5 {
        0 => type_url::LISTENER,
        1 => type_url::ROUTE,
        2 => type_url::CLUSTER,
        3 => type_url::ENDPOINT,
        _ => return Bootstrap::decode(body).is_ok(),
    };
    match strait_proxy::convert::decode(url, body) {
        Ok(_) => true,
        Err(e) => !e.reason.starts_with("cannot decode"),
    }
}

/// With `STRAIT_FUZZ_CORPUS=<dir>`, the seeds are also written there as a starting corpus
/// for `cargo +nightly fuzz run convert <dir>`.
#[test]
fn seeds_convert_cleanly() {
    let seeds = seeds();
    if let Some(dir) = std::env::var_os("STRAIT_FUZZ_CORPUS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, seed) in seeds.iter().enumerate() {
            std::fs::write(
                std::path::Path::new(&dir).join(format!("seed-{i:03}")),
                seed,
            )
            .unwrap();
        }
    }
    // The valid seeds must be accepted, or the mutations above would only ever test the
    // rejection paths.
    for seed in seeds {
        let (selector, body) = seed.split_first().unwrap();
        let url = match selector {
            0 => type_url::LISTENER,
            1 => type_url::ROUTE,
            2 => type_url::CLUSTER,
            3 => type_url::ENDPOINT,
            _ => continue,
        };
        strait_proxy::convert::decode(url, body).unwrap();
    }
}
