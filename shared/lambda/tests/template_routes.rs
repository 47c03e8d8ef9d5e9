//! The template's API Gateway routes cover every path the protocol router
//! serves (a path missing there is a 403 from API Gateway, which the clients
//! would report as a network error). A text check of `infra/template.yaml`;
//! `tests/serverless.sh` then serves exactly the template's routes
//! (`infra/api_routes.py`) to the official clients.

#[test]
fn every_api_path_has_a_route_in_the_template() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml");
    let template = std::fs::read_to_string(&path).expect("infra/template.yaml");
    let parts: Vec<&str> = template.lines().filter_map(|l| l.trim().strip_prefix("PathPart:")).map(str::trim).collect();
    let missing: Vec<&str> =
        captcha_api::paths().into_iter().filter(|p| !parts.contains(&p.trim_start_matches('/'))).collect();
    assert!(missing.is_empty(), "paths without an API Gateway route in the template: {missing:?}");
    assert_eq!(parts.len(), captcha_api::paths().len(), "routes the router does not serve: {parts:?}");
}
