//! The HCM's path normalisation (`normalize_path`, `merge_slashes`): dot segments are
//! resolved (RFC 3986 §5.2.4, `%2e` counting as a dot) and, when asked, runs of slashes
//! collapse, in the path only; the query is left alone.

/// The normalised path-and-query, or `None` when it is already normal.
pub fn normalize(path_and_query: &str, dots: bool, merge_slashes: bool) -> Option<String> {
    if !dots && !merge_slashes {
        return None;
    }
    let (path, query) = match path_and_query.find('?') {
        Some(i) => path_and_query.split_at(i),
        None => (path_and_query, ""),
    };
    if !path.starts_with('/') {
        return None;
    }
    // Nearly every path is already normal: find out without allocating.
    let dot_segment = dots && path.split('/').any(|seg| is_dot(seg) || is_dot_dot(seg));
    let double_slash = merge_slashes && path.contains("//");
    if !dot_segment && !double_slash {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        let is_last = i == last;
        if dots && is_dot(seg) {
            if is_last {
                out.push("");
            }
            continue;
        }
        if dots && is_dot_dot(seg) {
            out.pop();
            if is_last {
                out.push("");
            }
            continue;
        }
        if merge_slashes && seg.is_empty() && !is_last {
            continue;
        }
        out.push(seg);
    }
    if merge_slashes {
        // A trailing empty segment after a merged run stays a single trailing slash.
        while out.len() > 1 && out[out.len() - 1].is_empty() && out[out.len() - 2].is_empty() {
            out.pop();
        }
    }
    let normal = format!("/{}{query}", out.join("/"));
    (normal != path_and_query).then_some(normal)
}

fn is_dot(seg: &str) -> bool {
    seg == "." || seg.eq_ignore_ascii_case("%2e")
}

fn is_dot_dot(seg: &str) -> bool {
    ["..", ".%2e", "%2e.", "%2e%2e"]
        .iter()
        .any(|dots| seg.eq_ignore_ascii_case(dots))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments() {
        assert_eq!(
            normalize("/a/./b/../c", true, false).as_deref(),
            Some("/a/c")
        );
        assert_eq!(normalize("/../../x", true, false).as_deref(), Some("/x"));
        assert_eq!(normalize("/a/b/..", true, false).as_deref(), Some("/a/"));
        assert_eq!(
            normalize("/a/%2E%2e/b?x=/../", true, false).as_deref(),
            Some("/b?x=/../")
        );
        assert_eq!(normalize("/a/b", true, false), None);
        assert_eq!(normalize("/a//b", true, false), None);
        assert_eq!(normalize("*", true, true), None);
    }

    #[test]
    fn merging_slashes() {
        assert_eq!(normalize("//a///b/", false, true).as_deref(), Some("/a/b/"));
        assert_eq!(normalize("/a/b//", false, true).as_deref(), Some("/a/b/"));
        assert_eq!(normalize("/a/b", false, true), None);
        assert_eq!(normalize("/a//./b", false, false), None);
        assert_eq!(normalize("/a//./b", true, true).as_deref(), Some("/a/b"));
    }
}
