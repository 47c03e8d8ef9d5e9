//! An HTTPS front for the functions, as API Gateway (REST, proxy integration)
//! would be: each request on 127.0.0.1 becomes a proxy event for the function
//! the template routes its path to (`infra/api_routes.py`), the proxy response
//! becomes the HTTP response. Unrouted paths get API Gateway's own answer
//! (403 `Missing Authentication Token`). The template sets `*/*` as binary
//! media, so bodies travel base64-encoded, as they do in AWS.
//! Lets unmodified client libraries talk to the serverless pipeline.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::Lambda;

/// `PATH FUNCTION` lines → map.
pub fn parse_routes(text: &str) -> Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (path, function) = line.split_once(' ').with_context(|| format!("route line {line:?}"))?;
        out.insert(path.to_string(), function.trim().to_string());
    }
    anyhow::ensure!(!out.is_empty(), "no routes");
    Ok(out)
}

struct Bridge {
    lambda: Lambda,
    routes: HashMap<String, String>,
    stage: String,
}

/// Serves HTTPS on 127.0.0.1 (a free port) with the given PEM certificate
/// and key (some clients speak https only); returns `host:port`.
pub async fn start(lambda: Lambda, routes: HashMap<String, String>, cert: &str, key: &str) -> Result<String> {
    let state = Arc::new(Bridge { lambda, routes, stage: "api".into() });
    let app = axum::Router::new().fallback(handle).with_state(state);
    let tls =
        axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await.context("the bridge's certificate")?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let server = axum_server::from_tcp_rustls(listener, tls)?;
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service_with_connect_info::<SocketAddr>()).await;
    });
    Ok(addr.to_string())
}

async fn handle(
    State(b): State<Arc<Bridge>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let Some(function) = b.routes.get(&path).cloned() else {
        return reply(
            StatusCode::FORBIDDEN,
            "application/json",
            r#"{"message":"Missing Authentication Token"}"#.into(),
        );
    };
    let event = event(&b.stage, &method, &path, &query, &headers, &body, peer);
    match b.lambda.invoke(&function, &event).await {
        Ok(resp) => proxy_response(&resp),
        // API Gateway's answer when the integration fails.
        Err(e) => {
            eprintln!("bridge: {function} {path}: {e:#}");
            reply(StatusCode::BAD_GATEWAY, "application/json", r#"{"message":"Internal server error"}"#.into())
        }
    }
}

fn event(
    stage: &str,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    peer: SocketAddr,
) -> Value {
    let mut single: BTreeMap<String, String> = BTreeMap::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in headers {
        let v = String::from_utf8_lossy(v.as_bytes()).to_string();
        single.insert(k.as_str().to_string(), v.clone());
        multi.entry(k.as_str().to_string()).or_default().push(v);
    }
    let mut q_single: BTreeMap<&str, &str> = BTreeMap::new();
    let mut q_multi: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in query {
        q_single.insert(k, v);
        q_multi.entry(k).or_default().push(v);
    }
    let now = crate::now_ms();
    json!({
        "resource": path,
        "path": path,
        "httpMethod": method.as_str(),
        "headers": single,
        "multiValueHeaders": multi,
        "queryStringParameters": if query.is_empty() { Value::Null } else { json!(q_single) },
        "multiValueQueryStringParameters": if query.is_empty() { Value::Null } else { json!(q_multi) },
        "pathParameters": Value::Null,
        "stageVariables": Value::Null,
        "requestContext": {
            "accountId": "000000000000", "resourceId": "bridge", "stage": stage,
            "requestId": format!("bridge-{now}"), "resourcePath": path, "httpMethod": method.as_str(),
            "apiId": "local", "path": format!("/{stage}{path}"), "protocol": "HTTP/1.1",
            "requestTimeEpoch": now,
            "identity": {"sourceIp": peer.ip().to_string(), "userAgent": single.get("user-agent")}
        },
        "body": if body.is_empty() { Value::Null } else { json!(base64::engine::general_purpose::STANDARD.encode(body)) },
        "isBase64Encoded": !body.is_empty()
    })
}

fn proxy_response(resp: &Value) -> Response {
    let status = resp["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let raw = resp["body"].as_str().unwrap_or("");
    let body = if resp["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD.decode(raw.as_bytes()).unwrap_or_default()
    } else {
        raw.as_bytes().to_vec()
    };
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    let mut put = |k: &str, v: &str| {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            if k != axum::http::header::CONTENT_LENGTH {
                out.headers_mut().append(k, v);
            }
        }
    };
    if let Some(m) = resp["multiValueHeaders"].as_object().filter(|m| !m.is_empty()) {
        for (k, vs) in m {
            for v in vs.as_array().into_iter().flatten().filter_map(Value::as_str) {
                put(k, v);
            }
        }
    } else if let Some(m) = resp["headers"].as_object() {
        for (k, v) in m {
            if let Some(v) = v.as_str() {
                put(k, v);
            }
        }
    }
    out
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut out = Response::new(Body::from(body));
    *out.status_mut() = status;
    out.headers_mut().insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    out
}
