//! Action types, normalised paths and risk levels.
//!
//! An action type names what a request does in words a policy and a person can read:
//! `GET /customers/123` is `read_customers`, `DELETE /v1/repos/7` is `delete_repos` (a version
//! segment such as `v1` or `api` is skipped), an MCP `tools/call` of `delete_repo` is
//! `tools/call:delete_repo`, and other MCP methods are their method name. Custom regex maps are
//! tried first.

use serde::Serialize;

/// The verb of an HTTP method.
pub fn verb(method: &str) -> &'static str {
    match method.to_ascii_uppercase().as_str() {
        "GET" | "HEAD" | "OPTIONS" => "read",
        "POST" => "create",
        "PUT" | "PATCH" => "update",
        "DELETE" => "delete",
        _ => "call",
    }
}

fn is_prefix_segment(s: &str) -> bool {
    s.eq_ignore_ascii_case("api")
        || (s.len() >= 2 && s.starts_with(['v', 'V']) && s[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// The built-in action type of an HTTP request: verb + `_` + the first meaningful path segment
/// (`read_customers`), or just the verb at the root.
pub fn http_action(method: &str, path: &str) -> String {
    let verb = verb(method);
    let first = path
        .split('/')
        .filter(|s| !s.is_empty())
        .find(|s| !is_prefix_segment(s) && !is_id(s));
    match first {
        Some(seg) => {
            let clean: String = seg
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("{verb}_{clean}")
        }
        None => verb.to_owned(),
    }
}

/// Whether a path segment is an identifier: all digits, a UUID, or 16+ hex digits.
pub fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    if seg.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let hexish = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let parts: Vec<&str> = seg.split('-').collect();
    if parts.len() == 5
        && [8, 4, 4, 4, 12]
            .iter()
            .zip(&parts)
            .all(|(n, p)| p.len() == *n && hexish(p))
    {
        return true;
    }
    seg.len() >= 16 && hexish(seg)
}

/// The path with identifier segments folded to `{id}` (`/customers/123/orders` →
/// `/customers/{id}/orders`), for the decision cache key.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_id(seg) { "{id}" } else { seg });
    }
    out
}

/// A risk level, from a 0–100 score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Below 30.
    Low,
    /// 30–59.
    Medium,
    /// 60–84.
    High,
    /// 85 and above.
    Critical,
}

impl RiskLevel {
    /// The level of `score`.
    pub fn of(score: u8) -> Self {
        match score {
            0..=29 => RiskLevel::Low,
            30..=59 => RiskLevel::Medium,
            60..=84 => RiskLevel::High,
            _ => RiskLevel::Critical,
        }
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_types_from_method_and_path() {
        assert_eq!(http_action("GET", "/customers/123"), "read_customers");
        assert_eq!(http_action("post", "/api/v2/orders"), "create_orders");
        assert_eq!(http_action("DELETE", "/v1/repos/7"), "delete_repos");
        assert_eq!(
            http_action("PATCH", "/user-profiles/x"),
            "update_user_profiles"
        );
        assert_eq!(http_action("GET", "/"), "read");
        assert_eq!(http_action("BREW", "/coffee"), "call_coffee");
    }

    #[test]
    fn ids_fold_in_normalised_paths() {
        assert_eq!(
            normalize_path("/customers/123/orders/9b2f1c1e-6a7d-4c4e-8f00-0123456789ab"),
            "/customers/{id}/orders/{id}"
        );
        assert_eq!(normalize_path("/blobs/0123456789abcdef0123"), "/blobs/{id}");
        assert_eq!(normalize_path("/v1/customers"), "/v1/customers");
        assert_eq!(RiskLevel::of(29), RiskLevel::Low);
        assert_eq!(RiskLevel::of(85), RiskLevel::Critical);
    }
}
