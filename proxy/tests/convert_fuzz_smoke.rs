//! A deterministic stand-in for the cargo-fuzz target (which needs a nightly toolchain):
//! thousands of pseudo-random and mutated-valid inputs through `convert::fuzz_entry`,
//! none of which may panic.

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
const MUTATED_INPUTS: usize = 4_000;

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
            listeners: lds.iter().map(|r| Listener::decode(r.body.value.as_slice()).unwrap()).collect(),
            clusters: cds.iter().map(|r| Cluster::decode(r.body.value.as_slice()).unwrap()).collect(),
            secrets: vec![],
        }),
        ..Default::default()
    };
    with(4, &bootstrap.encode_to_vec());
    out
}

fn mutate(rng: &mut StdRng, seed: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if v.len() < 2 {
            break;
        }
        // Index 0 is the selector; mutations leave it alone so the bytes stay "mostly"
        // the message they came from.
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
                // Splice in a slice of another seed: valid fields in the wrong place.
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

#[test]
fn conversion_never_panics() {
    let seeds = seeds();
    assert!(seeds.len() > 20, "expected a rich seed corpus, got {}", seeds.len());
    let mut rng = StdRng::seed_from_u64(0x5742_4149_54);
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
    assert!(decoded * 4 > MUTATED_INPUTS, "only {decoded} of {MUTATED_INPUTS} mutated inputs decoded");
    for input in &inputs {
        if std::panic::catch_unwind(|| fuzz_entry(input)).is_err() {
            let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
            panic!("conversion panicked on input {hex}");
        }
    }
}

fn reaches_conversion(input: &[u8]) -> bool {
    let Some((selector, body)) = input.split_first() else { return false };
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

#[test]
fn seeds_convert_cleanly() {
    // The valid seeds must be accepted, or the mutations above would only ever test the
    // rejection paths.
    for seed in seeds() {
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
