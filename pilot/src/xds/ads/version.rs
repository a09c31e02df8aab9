//! Resource versions for delta xDS: a hash that is equal exactly when the content is.
//!
//! Hashing the encoded bytes is not enough: prost encodes protobuf maps (`Struct`
//! fields, filter metadata, `typed_per_filter_config`, ...) in `HashMap` order, which
//! differs between two encodings of the same message. So the wire format is walked with
//! the message schemas of strait-proto's descriptor pool: map entries are hashed as a
//! sorted set, `Any` payloads by the type they hold, everything else in order.
//! Anything the schema does not describe (or that does not parse) is hashed as raw
//! bytes, which can only make an unchanged resource look changed, never the reverse.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use strait_proto::xds::any;

const ANY: &str = "google.protobuf.Any";
/// Deeper nesting than any Envoy resource has; beyond it bytes are hashed raw.
const MAX_DEPTH: usize = 64;

/// The version of one encoded resource of `type_url`.
pub fn resource_version(type_url: &str, bytes: &[u8]) -> String {
    let type_name = any::type_name(type_url);
    let hash = match schema() {
        Some(schema) => schema.message_hash(type_name, bytes, 0),
        None => raw_hash(bytes),
    };
    format!("{hash:016x}")
}

/// Loads the message schemas now rather than on the first delta response.
pub fn preload() {
    let _ = schema();
}

/// Message-typed fields of one message; scalar fields need no schema.
#[derive(Debug, Clone)]
enum Field {
    Message(String),
    /// A map; the string names its entry message.
    Map(String),
}

#[derive(Debug, Default)]
struct Schema {
    messages: HashMap<String, HashMap<u32, Field>>,
}

fn schema() -> Option<&'static Schema> {
    static SCHEMA: OnceLock<Option<Schema>> = OnceLock::new();
    SCHEMA.get_or_init(Schema::load).as_ref()
}

impl Schema {
    fn load() -> Option<Schema> {
        let pool = strait_proto::xds::descriptor_pool().ok()?;
        let set = FileDescriptorSet::decode(pool.encode_to_vec().as_slice()).ok()?;
        let mut messages = Vec::new();
        for file in &set.file {
            for message in &file.message_type {
                collect(file.package(), message, &mut messages);
            }
        }
        let map_entries: HashSet<&str> = messages
            .iter()
            .filter(|(_, m)| m.options.as_ref().is_some_and(|o| o.map_entry()))
            .map(|(name, _)| name.as_str())
            .collect();
        let mut schema = Schema::default();
        for (name, message) in &messages {
            let fields = message
                .field
                .iter()
                .filter(|f| f.r#type() == Type::Message)
                .filter_map(|f| {
                    let number = u32::try_from(f.number()).ok()?;
                    let type_name = f.type_name().trim_start_matches('.').to_string();
                    let field = if f.label() == Label::Repeated
                        && map_entries.contains(type_name.as_str())
                    {
                        Field::Map(type_name)
                    } else {
                        Field::Message(type_name)
                    };
                    Some((number, field))
                })
                .collect();
            schema.messages.insert(name.clone(), fields);
        }
        Some(schema)
    }

    fn message_hash(&self, type_name: &str, bytes: &[u8], depth: usize) -> u64 {
        let walked = if depth > MAX_DEPTH {
            None
        } else if type_name == ANY {
            self.any_hash(bytes, depth)
        } else {
            self.messages
                .get(type_name)
                .and_then(|fields| self.walk(type_name, fields, bytes, depth))
        };
        walked.unwrap_or_else(|| raw_hash(bytes))
    }

    fn walk(
        &self,
        type_name: &str,
        fields: &HashMap<u32, Field>,
        bytes: &[u8],
        depth: usize,
    ) -> Option<u64> {
        let mut hash = Fnv::new();
        hash.write(type_name.as_bytes());
        let mut maps: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let (key, after_key) = read_varint(rest)?;
            let key_bytes = &rest[..rest.len() - after_key.len()];
            let number = u32::try_from(key >> 3).ok()?;
            rest = after_key;
            match key & 7 {
                0 => {
                    let (_, after) = read_varint(rest)?;
                    hash.write(key_bytes);
                    hash.write(&rest[..rest.len() - after.len()]);
                    rest = after;
                }
                1 => rest = fixed(&mut hash, key_bytes, rest, 8)?,
                5 => rest = fixed(&mut hash, key_bytes, rest, 4)?,
                2 => {
                    let (len, after) = read_varint(rest)?;
                    let len = usize::try_from(len).ok()?;
                    let payload = after.get(..len)?;
                    rest = &after[len..];
                    match fields.get(&number) {
                        Some(Field::Map(entry)) => maps
                            .entry(number)
                            .or_default()
                            .push(self.message_hash(entry, payload, depth + 1)),
                        Some(Field::Message(inner)) => {
                            hash.write(key_bytes);
                            hash.write_u64(self.message_hash(inner, payload, depth + 1));
                        }
                        None => {
                            hash.write(key_bytes);
                            hash.write_u64(len as u64);
                            hash.write(payload);
                        }
                    }
                }
                // Groups: not used by any xDS message.
                _ => return None,
            }
        }
        for (number, mut entries) in maps {
            entries.sort_unstable();
            hash.write_u64(u64::from(number));
            hash.write_u64(entries.len() as u64);
            for entry in entries {
                hash.write_u64(entry);
            }
        }
        Some(hash.finish())
    }

    /// `Any`: its type URL, then its payload as the message it names.
    fn any_hash(&self, bytes: &[u8], depth: usize) -> Option<u64> {
        let mut type_url: &[u8] = &[];
        let mut value: &[u8] = &[];
        let mut rest = bytes;
        while !rest.is_empty() {
            let (key, after) = read_varint(rest)?;
            if key & 7 != 2 {
                return None;
            }
            let (len, after) = read_varint(after)?;
            let len = usize::try_from(len).ok()?;
            let payload = after.get(..len)?;
            rest = &after[len..];
            match key >> 3 {
                1 => type_url = payload,
                2 => value = payload,
                _ => return None,
            }
        }
        let type_url = std::str::from_utf8(type_url).ok()?;
        let mut hash = Fnv::new();
        hash.write(ANY.as_bytes());
        hash.write(type_url.as_bytes());
        hash.write_u64(self.message_hash(any::type_name(type_url), value, depth + 1));
        Some(hash.finish())
    }
}

fn collect<'a>(
    prefix: &str,
    message: &'a DescriptorProto,
    out: &mut Vec<(String, &'a DescriptorProto)>,
) {
    let name = if prefix.is_empty() {
        message.name().to_string()
    } else {
        format!("{prefix}.{}", message.name())
    };
    for nested in &message.nested_type {
        collect(&name, nested, out);
    }
    out.push((name, message));
}

fn fixed<'a>(hash: &mut Fnv, key: &[u8], rest: &'a [u8], width: usize) -> Option<&'a [u8]> {
    let value = rest.get(..width)?;
    hash.write(key);
    hash.write(value);
    Some(&rest[width..])
}

fn read_varint(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, &bytes[i + 1..]));
        }
    }
    None
}

fn raw_hash(bytes: &[u8]) -> u64 {
    let mut hash = Fnv::new();
    hash.write(bytes);
    hash.finish()
}

/// FNV-1a, 64 bits: stable across processes and Rust versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.write(&v.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use strait_proto::envoy::config::cluster::v3::Cluster;
    use strait_proto::envoy::config::core::v3::Metadata;
    use strait_proto::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
    use strait_proto::google::protobuf::{Struct, Value, value::Kind};
    use strait_proto::xds::type_url;

    fn metadata_struct(pairs: &[(&str, &str)]) -> Struct {
        Struct {
            fields: pairs
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        Value {
                            kind: Some(Kind::StringValue(v.to_string())),
                        },
                    )
                })
                .collect::<HashMap<_, _>>(),
        }
    }

    fn cluster(pairs: &[(&str, &str)]) -> Cluster {
        Cluster {
            name: "outbound|80||a.default.svc.cluster.local".into(),
            metadata: Some(Metadata {
                filter_metadata: HashMap::from([
                    ("istio".to_string(), metadata_struct(pairs)),
                    ("other".to_string(), metadata_struct(&[("k", "v")])),
                ]),
                ..Metadata::default()
            }),
            ..Cluster::default()
        }
    }

    const PAIRS: [(&str, &str); 8] = [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d", "4"),
        ("e", "5"),
        ("f", "6"),
        ("g", "7"),
        ("h", "8"),
    ];

    #[test]
    fn map_order_does_not_change_the_version() {
        assert!(schema().is_some(), "descriptor pool loads");
        let reference = cluster(&PAIRS).encode_to_vec();
        let version = resource_version(type_url::CLUSTER, &reference);
        let mut saw_other_bytes = false;
        for _ in 0..20 {
            // Every new HashMap iterates in its own order.
            let bytes = cluster(&PAIRS).encode_to_vec();
            saw_other_bytes |= bytes != reference;
            assert_eq!(resource_version(type_url::CLUSTER, &bytes), version);
        }
        assert!(
            saw_other_bytes,
            "the test must exercise differing encodings"
        );
    }

    #[test]
    fn content_changes_change_the_version() {
        let a = resource_version(type_url::CLUSTER, &cluster(&PAIRS).encode_to_vec());
        let mut changed = PAIRS;
        changed[3] = ("d", "40");
        let b = resource_version(type_url::CLUSTER, &cluster(&changed).encode_to_vec());
        assert_ne!(a, b);
        let c = resource_version(type_url::CLUSTER, &cluster(&PAIRS[..7]).encode_to_vec());
        assert_ne!(a, c);
    }

    #[test]
    fn any_payloads_are_canonical_and_repeated_order_counts() {
        let route = |pairs: &[(&str, &str)], hosts: [&str; 2]| RouteConfiguration {
            name: "80".into(),
            virtual_hosts: hosts
                .iter()
                .map(|h| VirtualHost {
                    name: h.to_string(),
                    typed_per_filter_config: HashMap::from([
                        ("x".to_string(), any::pack(&metadata_struct(pairs))),
                        ("y".to_string(), any::pack(&metadata_struct(&[("k", "v")]))),
                    ]),
                    ..VirtualHost::default()
                })
                .collect(),
            ..RouteConfiguration::default()
        };
        let version =
            |r: &RouteConfiguration| resource_version(type_url::ROUTE, &r.encode_to_vec());
        let reference = version(&route(&PAIRS, ["a", "b"]));
        for _ in 0..10 {
            assert_eq!(version(&route(&PAIRS, ["a", "b"])), reference);
        }
        assert_ne!(version(&route(&PAIRS, ["b", "a"])), reference);
        assert_ne!(version(&route(&PAIRS[..2], ["a", "b"])), reference);
    }

    #[test]
    fn unknown_or_malformed_input_is_hashed_raw() {
        let a = resource_version("type.googleapis.com/unknown.Type", b"\x0a\x02hi");
        assert_eq!(
            a,
            resource_version("type.googleapis.com/unknown.Type", b"\x0a\x02hi")
        );
        assert_eq!(a.len(), 16);
        // Truncated length-delimited field, bad varint, group wire type.
        for bad in [&b"\x0a\x05hi"[..], &[0xff; 11][..], &b"\x0b\x0c"[..]] {
            let v = resource_version(type_url::CLUSTER, bad);
            assert_eq!(v, format!("{:016x}", raw_hash(bad)));
        }
    }
}
