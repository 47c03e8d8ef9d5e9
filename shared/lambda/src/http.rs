//! `captcha-submit` and `captcha-poll`: the protocol router behind API
//! Gateway's REST (v1) proxy integration.

use std::net::IpAddr;
use std::sync::Arc;

use captcha_api::{ApiConfig, ClientIp};
use captcha_core::{CaptchaService, Core};
use lambda_http::http::{self, Uri};
use lambda_http::request::RequestContext;
use tower::ServiceExt;

use crate::config::Settings;
use crate::runtime::{Error, Init};

/// The full router (classic + JSON API) over `core`.
pub fn app(core: Arc<Core>, settings: &Settings) -> axum::Router {
    let service: Arc<dyn CaptchaService> = core;
    captcha_api::router(service, ApiConfig::default().with_net_policy(settings.net_policy.clone()))
}

/// The source IP API Gateway saw (`requestContext.identity.sourceIp`).
pub fn source_ip(ctx: &RequestContext) -> Option<IpAddr> {
    match ctx {
        RequestContext::ApiGatewayV1(c) => c.identity.source_ip.as_deref()?.parse().ok(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

fn stage(ctx: &RequestContext) -> Option<&str> {
    match ctx {
        RequestContext::ApiGatewayV1(c) => c.stage.as_deref(),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Before routing: `lambda_http` prefixes the path with the stage (`/api/in.php`);
/// the router serves `/in.php`, so the stage is taken off again. The caller's
/// address from the request context becomes the [`ClientIp`] extension.
pub fn prepare<B>(mut req: http::Request<B>) -> http::Request<B> {
    let Some(ctx) = req.extensions().get::<RequestContext>() else { return req };
    let ip = source_ip(ctx);
    let prefix = stage(ctx).filter(|s| !s.is_empty() && *s != "$default").map(|s| format!("/{s}"));
    if let Some(ip) = ip {
        req.extensions_mut().insert(ClientIp(ip));
    }
    if let Some(prefix) = prefix {
        let path = req.uri().path();
        let rest = match path.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with('/') => Some(rest.to_string()),
            Some("") => Some("/".to_string()),
            _ => None,
        };
        if let Some(rest) = rest {
            let pq = match req.uri().query() {
                Some(q) => format!("{rest}?{q}"),
                None => rest,
            };
            let mut parts = req.uri().clone().into_parts();
            if let Ok(pq) = pq.parse() {
                parts.path_and_query = Some(pq);
                if let Ok(uri) = Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                }
            }
        }
    }
    req
}

/// Serves API Gateway proxy events with [`app`].
pub async fn run_http(init: Init) -> Result<(), Error> {
    let (settings, core) = init.core().await?;
    let service = app(core, &settings).map_request(prepare::<lambda_http::Body>);
    init.ready();
    lambda_http::run(service).await
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::apigw::ApiGatewayProxyRequestContext;

    use super::*;

    fn request(uri: &str, stage: Option<&str>, ip: Option<&str>) -> http::Request<()> {
        let mut ctx = ApiGatewayProxyRequestContext::default();
        ctx.stage = stage.map(str::to_string);
        ctx.identity.source_ip = ip.map(str::to_string);
        let mut req = http::Request::builder().uri(uri).body(()).unwrap();
        req.extensions_mut().insert(RequestContext::ApiGatewayV1(ctx));
        req
    }

    #[test]
    fn strips_the_stage_and_sets_the_client_ip() {
        let r = prepare(request("https://h.example/api/in.php?key=1&x=%20", Some("api"), Some("203.0.113.9")));
        assert_eq!(r.uri().path(), "/in.php");
        assert_eq!(r.uri().query(), Some("key=1&x=%20"));
        assert_eq!(r.extensions().get::<ClientIp>(), Some(&ClientIp("203.0.113.9".parse().unwrap())));
    }

    #[test]
    fn leaves_other_paths_alone() {
        assert_eq!(prepare(request("/apix/in.php", Some("api"), None)).uri().path(), "/apix/in.php");
        assert_eq!(prepare(request("/in.php", Some("$default"), Some("nonsense"))).uri().path(), "/in.php");
        let r = prepare(request("/in.php", None, Some("nonsense")));
        assert!(r.extensions().get::<ClientIp>().is_none());
        let plain = http::Request::builder().uri("/api/in.php").body(()).unwrap();
        assert_eq!(prepare(plain).uri().path(), "/api/in.php");
    }
}
