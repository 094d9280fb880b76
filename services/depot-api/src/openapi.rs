//! The OpenAPI description of Depot's HTTP API, served at `GET /api/openapi.json`.
//!
//! It is written by hand (`api/openapi.json`); a test holds it to the router: every route and
//! method the router declares is described, and nothing else is.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The description, as served.
pub(crate) const OPENAPI_JSON: &str = include_str!("../api/openapi.json");

/// `GET /api/openapi.json`.
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::OPENAPI_JSON;

    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// (method, path) of every `.route(…)` in the router's source, with axum's `{*path}`
    /// written as OpenAPI's `{path}`.
    fn router_routes() -> BTreeSet<(String, String)> {
        let source = include_str!("lib.rs");
        let web = include_str!("web/mod.rs");
        let router = format!(
            "{}{}",
            &source[source.find("pub fn router(").expect("the router function")..],
            &web[web
                .find("pub(crate) fn routes(")
                .expect("the web UI's routes")..]
        );
        let mut routes = BTreeSet::new();
        for piece in router.split(".route(").skip(1) {
            let piece = piece.split(".fallback(").next().unwrap_or(piece);
            let path = piece
                .split('"')
                .nth(1)
                .expect("a route starts with its path literal")
                .replace("{*", "{");
            for method in METHODS {
                let called = [
                    format!(" {method}("),
                    format!("({method}("),
                    format!(".{method}("),
                    format!("::{method}("),
                ];
                if called.iter().any(|call| piece.contains(call.as_str())) {
                    routes.insert((method.to_owned(), path.clone()));
                }
            }
        }
        routes
    }

    fn described_routes() -> BTreeSet<(String, String)> {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI_JSON).expect("valid JSON");
        assert_eq!(spec["openapi"], "3.1.0");
        let mut routes = BTreeSet::new();
        for (path, item) in spec["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("a path item") {
                assert!(METHODS.contains(&method.as_str()), "{method} {path}");
                assert!(
                    operation["responses"]["default"].is_object(),
                    "{method} {path}"
                );
                routes.insert((method.clone(), path.clone()));
            }
        }
        routes
    }

    #[test]
    fn the_description_matches_the_router() {
        let (router, described) = (router_routes(), described_routes());
        assert!(
            router.len() > 20,
            "the router's routes were not found: {router:?}"
        );
        let undescribed: Vec<_> = router.difference(&described).collect();
        let unrouted: Vec<_> = described.difference(&router).collect();
        assert!(
            undescribed.is_empty() && unrouted.is_empty(),
            "routes without a description: {undescribed:?}; described but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn every_parameter_reference_resolves() {
        let spec: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        let text = OPENAPI_JSON;
        for reference in text.split("\"$ref\": \"#/").skip(1) {
            let pointer = format!("/{}", reference.split('"').next().unwrap());
            assert!(
                spec.pointer(&pointer).is_some(),
                "dangling reference {pointer}"
            );
        }
    }
}
