//! Which upstream a request goes to, and how its bodies are read.
//!
//! Named routes match by the longest `path_prefix`; the rest of the path and the query string are
//! appended to the route's upstream. `/proxy/{scheme}/{host}/{path}` is the generic proxy: the
//! upstream URL with `://` replaced by `/`, query kept, limited to `allowed_hosts` when the
//! configuration names any.

use palisade_policy::config::{Config, FailureMode, Mode, RouteProtocol};
use palisade_protocol::Protocol;

use crate::error::GatewayError;

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Route name (`proxy` for the generic proxy).
    pub route: String,
    /// The full upstream URL, query included.
    pub url: String,
    /// How bodies are read.
    pub protocol: Protocol,
    /// Enforce or monitor.
    pub mode: Mode,
    /// Policy name.
    pub policy: String,
    /// The route's failure mode, when it overrides the policy's.
    pub failure_mode: Option<FailureMode>,
}

/// Resolves `path_and_query` against the configuration.
pub fn resolve(config: &Config, path: &str, query: Option<&str>) -> Result<Target, GatewayError> {
    let q = query.map(|q| format!("?{q}")).unwrap_or_default();
    if let Some(rest) = path.strip_prefix("/proxy/") {
        if !config.proxy.enabled {
            return Err(GatewayError::NoRoute);
        }
        let (scheme, rest) = rest.split_once('/').ok_or_else(|| {
            GatewayError::BadTarget("expected /proxy/{scheme}/{host}/{path}".into())
        })?;
        if scheme != "http" && scheme != "https" {
            return Err(GatewayError::BadTarget(format!(
                "scheme `{scheme}` is not http or https"
            )));
        }
        let (host, tail) = match rest.split_once('/') {
            Some((h, t)) => (h, format!("/{t}")),
            None => (rest, "/".to_owned()),
        };
        if host.is_empty() || host.contains(['@', '?', '#', '\\']) {
            return Err(GatewayError::BadTarget(format!("`{host}` is not a host")));
        }
        if !host_allowed(&config.proxy.allowed_hosts, host) {
            return Err(GatewayError::HostNotAllowed(host.to_owned()));
        }
        return Ok(Target {
            route: "proxy".into(),
            url: format!("{scheme}://{host}{tail}{q}"),
            protocol: protocol_for(config.proxy.protocol, &tail),
            mode: config.proxy.mode,
            policy: config.proxy.policy.clone(),
            failure_mode: config.proxy.failure_mode,
        });
    }
    let route = config
        .routes
        .iter()
        .filter(|r| {
            let p = r.path_prefix.trim_end_matches('/');
            path == p || path.starts_with(&format!("{p}/")) || p.is_empty()
        })
        .max_by_key(|r| r.path_prefix.len())
        .ok_or(GatewayError::NoRoute)?;
    let rest = &path[route.path_prefix.trim_end_matches('/').len()..];
    let base = route.upstream.trim_end_matches('/');
    Ok(Target {
        route: route.name.clone(),
        url: format!("{base}{rest}{q}"),
        protocol: protocol_for(route.protocol, &format!("{base}{rest}")),
        mode: route.mode,
        policy: route.policy.clone(),
        failure_mode: route.failure_mode,
    })
}

fn host_allowed(allowed: &[String], host: &str) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let host = host.to_ascii_lowercase();
    let bare = host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h);
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        if let Some(suffix) = a.strip_prefix("*.") {
            bare.ends_with(&format!(".{suffix}"))
        } else {
            a == host || a == bare
        }
    })
}

/// The protocol for a route setting and an upstream path: explicit settings win; `auto` looks at
/// well-known API paths and otherwise leaves it to the body's shape.
pub fn protocol_for(setting: RouteProtocol, path: &str) -> Protocol {
    match setting {
        RouteProtocol::Mcp => Protocol::Mcp,
        RouteProtocol::Openai => Protocol::Openai,
        RouteProtocol::Anthropic => Protocol::Anthropic,
        RouteProtocol::Gemini => Protocol::Gemini,
        RouteProtocol::Cohere => Protocol::Cohere,
        RouteProtocol::Bedrock => Protocol::Bedrock,
        RouteProtocol::Http => Protocol::Json,
        RouteProtocol::Auto => {
            let p = path.to_ascii_lowercase();
            if p.contains(":generatecontent") || p.contains(":streamgeneratecontent") {
                Protocol::Gemini
            } else if p.ends_with("/chat/completions")
                || p.ends_with("/responses")
                || p.ends_with("/completions")
                || p.contains("/llm/v1/chat")
            {
                Protocol::Openai
            } else if p.ends_with("/v1/messages") {
                Protocol::Anthropic
            } else if p.ends_with("/v2/chat") {
                Protocol::Cohere
            } else if p.ends_with("/converse") || p.ends_with("/converse-stream") {
                Protocol::Bedrock
            } else {
                Protocol::Auto
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        palisade_policy::parse_str(yaml, "<test>").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn generic_proxy_keeps_path_and_query() {
        let c = config("");
        let t = resolve(
            &c,
            "/proxy/https/api.openai.com/v1/chat/completions",
            Some("a=1&b=2"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.url, "https://api.openai.com/v1/chat/completions?a=1&b=2");
        assert_eq!(t.protocol, Protocol::Openai);
        let t = resolve(&c, "/proxy/http/127.0.0.1:9000", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.url, "http://127.0.0.1:9000/");
        assert!(matches!(
            resolve(&c, "/proxy/ftp/x/y", None),
            Err(GatewayError::BadTarget(_))
        ));
        assert!(matches!(
            resolve(&c, "/proxy/https/user@evil/", None),
            Err(GatewayError::BadTarget(_))
        ));
    }

    #[test]
    fn allowed_hosts_limit_the_generic_proxy() {
        let c = config("proxy:\n  allowed_hosts: ['*.openai.com', 'localhost:8000']\n");
        assert!(resolve(&c, "/proxy/https/api.openai.com/v1", None).is_ok());
        assert!(resolve(&c, "/proxy/http/localhost:8000/x", None).is_ok());
        assert!(matches!(
            resolve(&c, "/proxy/http/localhost:9000/x", None),
            Err(GatewayError::HostNotAllowed(_))
        ));
        assert!(matches!(
            resolve(&c, "/proxy/https/evilopenai.com/", None),
            Err(GatewayError::HostNotAllowed(_))
        ));
    }

    #[test]
    fn longest_route_prefix_wins() {
        let c = config(
            "routes:\n  - { name: a, path_prefix: /mcp, upstream: 'http://127.0.0.1:1/base/' }\n  - { name: b, path_prefix: /mcp/github, upstream: 'https://gh.example/mcp', protocol: mcp }\n",
        );
        let t = resolve(&c, "/mcp/github/x", Some("q=1")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (t.route.as_str(), t.url.as_str(), t.protocol),
            ("b", "https://gh.example/mcp/x?q=1", Protocol::Mcp)
        );
        let t = resolve(&c, "/mcp/other", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.url, "http://127.0.0.1:1/base/other");
        assert!(matches!(
            resolve(&c, "/mcpx", None),
            Err(GatewayError::NoRoute)
        ));
    }
}
