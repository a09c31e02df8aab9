//! The upstream cluster of a forwarded request, including weighted splits.

use crate::config::common::HeaderMutations;
use crate::config::listener::{ClusterSpecifier, WeightedCluster};
use crate::config::route::WeightedClusterHeaders;

/// The cluster chosen for a request and the header operations of that weighted entry.
#[derive(Clone, Copy, Debug)]
pub struct PickedCluster<'c> {
    pub name: &'c str,
    pub request_headers: Option<&'c HeaderMutations>,
    pub response_headers: Option<&'c HeaderMutations>,
}

/// Envoy's weighted pick: `random % total` falls into one of the intervals
/// `[0, w1), [w1, w1 + w2), ...` in configuration order, so a weight-0 entry is never
/// chosen. `None` only when the weights sum to 0 (a configuration Envoy rejects).
pub fn pick_weighted(clusters: &[WeightedCluster], random: u64) -> Option<usize> {
    let total: u64 = clusters.iter().map(|c| u64::from(c.weight)).sum();
    if total == 0 {
        return None;
    }
    let selected = random % total;
    let mut end = 0u64;
    clusters.iter().position(|c| {
        end += u64::from(c.weight);
        selected < end
    })
}

/// The cluster for a request with the given random value.
pub fn pick_cluster<'c>(
    spec: &'c ClusterSpecifier,
    cluster_headers: &'c [WeightedClusterHeaders],
    random: u64,
) -> Option<PickedCluster<'c>> {
    match spec {
        ClusterSpecifier::Cluster(name) => Some(PickedCluster {
            name,
            request_headers: None,
            response_headers: None,
        }),
        ClusterSpecifier::Weighted(list) => {
            let i = pick_weighted(list, random)?;
            let name = list.get(i)?.name.as_str();
            // Per-entry headers sit at the same position when the conversion kept every
            // entry; otherwise look the cluster up by name.
            let headers = cluster_headers
                .get(i)
                .filter(|h| h.cluster == name)
                .or_else(|| cluster_headers.iter().find(|h| h.cluster == name));
            Some(PickedCluster {
                name,
                request_headers: headers.map(|h| &h.headers),
                response_headers: headers.map(|h| &h.response_headers),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::common::{AppendAction, HeaderValueOption};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn wc(name: &str, weight: u32) -> WeightedCluster {
        WeightedCluster {
            name: name.into(),
            weight,
        }
    }

    #[test]
    fn intervals_follow_configuration_order() {
        let list = [wc("v1", 80), wc("v2", 20)];
        assert_eq!(pick_weighted(&list, 0), Some(0));
        assert_eq!(pick_weighted(&list, 79), Some(0));
        assert_eq!(pick_weighted(&list, 80), Some(1));
        assert_eq!(pick_weighted(&list, 99), Some(1));
        assert_eq!(pick_weighted(&list, 100), Some(0));
    }

    #[test]
    fn eighty_twenty_split_over_many_requests() {
        let spec = ClusterSpecifier::Weighted(vec![
            wc("outbound|9080|v1|reviews.default.svc.cluster.local", 80),
            wc("outbound|9080|v2|reviews.default.svc.cluster.local", 20),
        ]);
        let mut rng = StdRng::seed_from_u64(7);
        let n = 100_000;
        let v2 = (0..n)
            .filter(|_| {
                pick_cluster(&spec, &[], rng.random())
                    .unwrap()
                    .name
                    .contains("|v2|")
            })
            .count();
        let share = v2 as f64 / n as f64;
        assert!((0.19..0.21).contains(&share), "v2 share {share}");
    }

    #[test]
    fn zero_weights_are_never_chosen() {
        let list = [wc("a", 0), wc("b", 1), wc("c", 0)];
        for r in 0..1000 {
            assert_eq!(pick_weighted(&list, r), Some(1));
        }
        assert_eq!(pick_weighted(&[wc("a", 0)], 5), None);
        assert_eq!(pick_weighted(&[], 5), None);
    }

    #[test]
    fn weighted_entries_carry_their_headers() {
        let spec = ClusterSpecifier::Weighted(vec![wc("v1", 50), wc("v2", 50)]);
        let mut h2 = HeaderMutations::default();
        h2.add.push(HeaderValueOption {
            name: http::HeaderName::from_static("x-version"),
            value: http::HeaderValue::from_static("v2"),
            action: AppendAction::OverwriteIfExistsOrAdd,
            keep_empty: false,
        });
        let headers = vec![
            WeightedClusterHeaders {
                cluster: "v1".into(),
                headers: HeaderMutations::default(),
                response_headers: HeaderMutations::default(),
            },
            WeightedClusterHeaders {
                cluster: "v2".into(),
                headers: h2,
                response_headers: HeaderMutations::default(),
            },
        ];
        let p = pick_cluster(&spec, &headers, 60).unwrap();
        assert_eq!(p.name, "v2");
        assert_eq!(p.request_headers.unwrap().add.len(), 1);
        let p = pick_cluster(&spec, &headers[1..], 60).unwrap();
        assert_eq!(p.request_headers.unwrap().add.len(), 1, "found by name");
        let single = ClusterSpecifier::Cluster("c".into());
        let p = pick_cluster(&single, &[], 3).unwrap();
        assert_eq!(p.name, "c");
        assert!(p.request_headers.is_none());
    }
}
