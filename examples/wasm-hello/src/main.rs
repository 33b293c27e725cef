//! The hello example as a wasi:http component: any toolchain that targets the
//! wasi:http 0.2 proxy world works the same way; this one uses Rust and `wstd`.

use wstd::http::{Body, Error, Request, Response};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let name = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .filter(|name| !name.is_empty())
        .unwrap_or("World");
    // Keep the name JSON-safe without pulling in serde.
    let name: String = name
        .chars()
        .filter(|c| c.is_alphanumeric() || " -_.%".contains(*c))
        .collect();
    let body = format!(r#"{{"message":"Hello, {name}!","runtime":"wasm"}}"#);
    Ok(Response::builder()
        .header("content-type", "application/json")
        .header("access-control-allow-origin", "*")
        .body(Body::from(body))?)
}
