//! S3's REST-XML protocol, translated onto the bucket operations of `services.rs`: buckets
//! by path (`/bucket/key`, what the SDKs use against an IP endpoint) or by virtual host
//! (`bucket.localhost:PORT`), the operation chosen by method and sub-resource (`?uploads`,
//! `?uploadId=`, `?delete`, `?list-type=2`, `x-amz-copy-source`, ...), errors as S3's
//! `<Error><Code>…` documents. Uploads are decoded and checked by `payload.rs`.

mod payload;
mod xml;

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as BASE64_URL;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use nimbus_core::time::rfc3339_millis;
use nimbus_store::{ObjectMeta, WriteCondition};
use percent_encoding::percent_decode_str;

use super::{Caller, Refusal};
use crate::error::ApiError;
use crate::events::ObjectChange;
use crate::generation::Generation;
use crate::services::{self, Principal, UploadDone, UploadStep};
use crate::telemetry::trace::TraceContext;

/// S3's largest single PUT.
const S3_MAX_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// The largest body nimbus takes in one request; it holds an upload in memory while it
/// checks it. Larger objects go up in parts (S3's multipart upload), as the SDKs and the
/// `aws` CLI do by themselves above 8 MiB.
pub(super) const MAX_BODY_BYTES: u64 = 512 * 1024 * 1024;
/// S3's most keys in one DeleteObjects.
const MAX_DELETE_KEYS: usize = 1000;

/// A body over the limit: S3's `EntityTooLarge`.
pub(super) fn too_large(size: u64) -> Refusal {
    let message = if size > S3_MAX_PUT_BYTES {
        "Your proposed upload exceeds the maximum allowed size: a single PUT is at most 5 GB; upload larger objects in parts".to_owned()
    } else {
        format!(
            "Your proposed upload exceeds the maximum allowed size: nimbus takes at most {} MiB in one request; upload larger objects in parts (multipart upload)",
            MAX_BODY_BYTES / (1024 * 1024)
        )
    };
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "EntityTooLarge",
        message,
    }
}

/// An S3 error: its status, code and message.
#[derive(Debug)]
pub(super) struct S3Error {
    status: StatusCode,
    code: String,
    message: String,
}

impl S3Error {
    pub(super) fn new(status: StatusCode, code: &str, message: impl Into<String>) -> S3Error {
        S3Error {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    fn no_such_key() -> S3Error {
        S3Error::new(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    }

    fn not_implemented(what: &str) -> S3Error {
        S3Error::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!("nimbus does not serve {what} yet"),
        )
    }

    fn invalid_argument(message: impl Into<String>) -> S3Error {
        S3Error::new(StatusCode::BAD_REQUEST, "InvalidArgument", message)
    }
}

impl From<ApiError> for S3Error {
    fn from(e: ApiError) -> S3Error {
        let code = e.error_type.unwrap_or(if e.status.is_server_error() {
            "InternalError"
        } else {
            "InvalidArgument"
        });
        let (status, code) = match code {
            "AccessDenied" => (StatusCode::FORBIDDEN, code),
            "NoSuchBucket" | "NoSuchUpload" | "NoSuchKey" => (StatusCode::NOT_FOUND, code),
            "PreconditionFailed" => (StatusCode::PRECONDITION_FAILED, code),
            "BucketNotEmpty" => (StatusCode::CONFLICT, code),
            "InvalidKey" => (StatusCode::BAD_REQUEST, "InvalidArgument"),
            "InvalidBucketName" => (StatusCode::BAD_REQUEST, code),
            "ValueTooLarge" => (StatusCode::BAD_REQUEST, "MetadataTooLarge"),
            _ if e.status.is_server_error() => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            _ => (StatusCode::BAD_REQUEST, code),
        };
        S3Error::new(status, code, e.message)
    }
}

impl From<services::OpError> for S3Error {
    fn from(e: services::OpError) -> S3Error {
        S3Error::from(e.error)
    }
}

/// S3's error document.
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = xml::document(
        "Error",
        &xml::Error {
            code,
            message,
            request_id: uuid::Uuid::new_v4().simple().to_string(),
        },
    );
    super::response(status, "application/xml", body)
}

type S3Result = Result<Response, S3Error>;

/// A request as the operations see it.
struct Cx<'a> {
    generation: &'a Generation,
    principal: Principal<'a>,
    parts: &'a http::request::Parts,
    query: BTreeMap<String, String>,
    trace: TraceContext,
}

pub(crate) async fn handle(
    generation: &Generation,
    caller: Caller<'_>,
    parts: &http::request::Parts,
    body: Bytes,
) -> Response {
    let head = parts.method == Method::HEAD;
    match route(generation, caller, parts, body).await {
        Ok(res) => res,
        // A HEAD answer has no body; the SDKs read the status alone.
        Err(e) if head => {
            let mut res = Response::new(Body::empty());
            *res.status_mut() = e.status;
            res
        }
        Err(e) => error_response(e.status, &e.code, &e.message),
    }
}

async fn route(
    generation: &Generation,
    caller: Caller<'_>,
    parts: &http::request::Parts,
    body: Bytes,
) -> S3Result {
    let (bucket, key) = address(parts)?;
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let cx = Cx {
        generation,
        principal: caller.principal,
        parts,
        query,
        trace: crate::gateway::incoming_trace(&parts.headers),
    };
    let has = |name: &str| cx.query.contains_key(name);
    let method = &parts.method;
    let decode = || {
        payload::decode(
            parts,
            body.clone(),
            caller.auth.as_ref(),
            caller.signing_key.as_deref(),
        )
    };
    let Some(bucket) = bucket else {
        return match *method {
            Method::GET => cx.list_buckets().await,
            _ => Err(S3Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )),
        };
    };
    let Some(key) = key else {
        for unserved in [
            "acl",
            "policy",
            "cors",
            "lifecycle",
            "tagging",
            "website",
            "encryption",
            "notification",
            "replication",
            "logging",
            "object-lock",
            "ownershipControls",
            "publicAccessBlock",
            "accelerate",
            "requestPayment",
            "inventory",
            "analytics",
            "metrics",
            "intelligent-tiering",
        ] {
            if has(unserved) {
                return Err(S3Error::not_implemented(&format!(
                    "the bucket's ?{unserved}"
                )));
            }
        }
        return match *method {
            Method::PUT if has("versioning") => Err(S3Error::not_implemented("bucket versioning")),
            Method::PUT => cx.create_bucket(&bucket).await,
            Method::DELETE => cx.delete_bucket(&bucket).await,
            Method::HEAD => cx.head_bucket(&bucket).await,
            Method::GET if has("location") => cx.bucket_location(&bucket).await,
            Method::GET if has("versioning") => cx.bucket_versioning(&bucket).await,
            Method::GET if has("uploads") => cx.list_uploads(&bucket).await,
            Method::GET if has("versions") => Err(S3Error::not_implemented("object versions")),
            Method::GET => cx.list_objects(&bucket).await,
            Method::POST if has("delete") => cx.delete_objects(&bucket, &decode()?.data).await,
            _ => Err(S3Error::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )),
        };
    };
    for unserved in [
        "acl",
        "tagging",
        "retention",
        "legal-hold",
        "torrent",
        "attributes",
        "restore",
        "select",
    ] {
        if has(unserved) {
            return Err(S3Error::not_implemented(&format!(
                "the object's ?{unserved}"
            )));
        }
    }
    let copy_source = header(parts, "x-amz-copy-source");
    match *method {
        Method::PUT if has("uploadId") && copy_source.is_some() => {
            Err(S3Error::not_implemented("UploadPartCopy"))
        }
        Method::PUT if has("uploadId") => cx.upload_part(&bucket, &key, decode()?).await,
        Method::PUT if copy_source.is_some() => {
            cx.copy_object(&bucket, &key, copy_source.unwrap_or_default())
                .await
        }
        Method::PUT => cx.put_object(&bucket, &key, decode()?).await,
        Method::GET if has("uploadId") => cx.list_parts(&bucket, &key).await,
        Method::GET => cx.get_object(&bucket, &key, false).await,
        Method::HEAD => cx.get_object(&bucket, &key, true).await,
        Method::DELETE if has("uploadId") => cx.abort_upload(&bucket, &key).await,
        Method::DELETE => cx.delete_object(&bucket, &key).await,
        Method::POST if has("uploads") => cx.create_upload(&bucket, &key).await,
        Method::POST if has("uploadId") => cx.complete_upload(&bucket, &key, &decode()?.data).await,
        _ => Err(S3Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        )),
    }
}

/// The bucket and key a request names: from a `bucket.localhost` host, else from the path.
fn address(parts: &http::request::Parts) -> Result<(Option<String>, Option<String>), S3Error> {
    let host = header(parts, "host")
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let hostname = host.rsplit_once(':').map_or(host.as_str(), |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host.as_str()
        }
    });
    let path = parts.uri.path();
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(|t| t.into_owned())
            .map_err(|_| S3Error::invalid_argument("the request path is not UTF-8 once decoded"))
    };
    let virtual_bucket = hostname
        .strip_suffix(".localhost")
        .filter(|bucket| !bucket.is_empty());
    let (bucket, key) = match virtual_bucket {
        Some(bucket) => (
            Some(bucket.to_owned()),
            path.strip_prefix('/').unwrap_or(path),
        ),
        None => {
            let rest = path.strip_prefix('/').unwrap_or(path);
            match rest.split_once('/') {
                Some((bucket, key)) => (Some(bucket.to_owned()), key),
                None if rest.is_empty() => (None, ""),
                None => (Some(rest.to_owned()), ""),
            }
        }
    };
    let bucket = bucket.map(|b| decode(&b)).transpose()?;
    let key = if key.is_empty() {
        None
    } else {
        Some(decode(key)?)
    };
    Ok((bucket, key))
}

fn header<'a>(parts: &'a http::request::Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// An answer with an XML document.
fn xml_response<T: serde::Serialize>(root: &str, value: &T) -> Response {
    super::response(
        StatusCode::OK,
        "application/xml",
        xml::document(root, value),
    )
}

fn empty(status: StatusCode) -> Response {
    let mut res = super::response(status, "application/xml", Vec::new());
    res.headers_mut().remove(http::header::CONTENT_TYPE);
    res
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// `"<etag>"`, as S3 quotes ETags.
fn quoted(etag: &str) -> String {
    format!("\"{etag}\"")
}

/// User metadata from `x-amz-meta-*` headers, as the JSON object the store keeps.
fn user_metadata(parts: &http::request::Parts) -> Option<String> {
    let mut map = serde_json::Map::new();
    // `x-amz-meta-*` headers, and the same in a presigned URL's query.
    let query = form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes());
    let from_query = query.filter_map(|(name, value)| {
        let name = name.strip_prefix("x-amz-meta-")?.to_ascii_lowercase();
        Some((name, value.into_owned()))
    });
    let from_headers = parts.headers.iter().filter_map(|(name, value)| {
        let name = name.as_str().strip_prefix("x-amz-meta-")?.to_owned();
        Some((name, String::from_utf8_lossy(value.as_bytes()).into_owned()))
    });
    for (name, value) in from_query.chain(from_headers) {
        map.insert(name, serde_json::Value::String(value));
    }
    // The representation headers S3 keeps with an object and answers on GET, kept under
    // `:name` (no user metadata name has a colon). `aws-chunked` is the upload's framing,
    // not the object's encoding.
    for name in STORED_HEADERS {
        let Some(value) = header(parts, name) else {
            continue;
        };
        let value = if name == "content-encoding" {
            value
                .split(',')
                .map(str::trim)
                .filter(|coding| !coding.eq_ignore_ascii_case("aws-chunked") && !coding.is_empty())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            value.to_owned()
        };
        if !value.is_empty() {
            map.insert(format!(":{name}"), serde_json::Value::String(value));
        }
    }
    (!map.is_empty()).then(|| serde_json::Value::Object(map).to_string())
}

/// The request headers S3 stores with an object and answers with it.
const STORED_HEADERS: [&str; 6] = [
    "content-encoding",
    "content-disposition",
    "cache-control",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
];

/// The headers GetObject and HeadObject answer for an object.
fn object_headers(headers: &mut HeaderMap, meta: &ObjectMeta) {
    set_header(headers, "etag", &quoted(&meta.etag));
    set_header(
        headers,
        "last-modified",
        &httpdate::fmt_http_date(meta.last_modified),
    );
    set_header(headers, "accept-ranges", "bytes");
    set_header(
        headers,
        "content-type",
        meta.content_type
            .as_deref()
            .unwrap_or("binary/octet-stream"),
    );
    let metadata = meta
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(m).ok());
    for (name, value) in metadata.into_iter().flatten() {
        let name = match name.strip_prefix(':') {
            Some(stored) => stored.to_owned(),
            None => format!("x-amz-meta-{name}"),
        };
        let (Ok(name), Some(value)) = (
            http::HeaderName::try_from(name),
            value.as_str().and_then(|v| HeaderValue::from_str(v).ok()),
        ) else {
            continue;
        };
        headers.insert(name, value);
    }
}

/// The condition of a conditional write: `If-None-Match: *` (only when nothing is there)
/// or `If-Match: "etag"` (only over that object), as S3's PutObject, CopyObject and
/// DeleteObject take them.
fn write_condition(parts: &http::request::Parts) -> WriteCondition {
    if header(parts, "if-none-match").is_some_and(|v| v.trim() == "*") {
        return WriteCondition::IfAbsent;
    }
    match header(parts, "if-match") {
        Some(etag) => WriteCondition::IfEtag(etag.trim().trim_matches('"').to_ascii_lowercase()),
        None => WriteCondition::Always,
    }
}

/// A byte range of `size` bytes: `bytes=a-b`, `bytes=a-` or `bytes=-n`; `Err` when it
/// cannot be satisfied.
fn byte_range(range: &str, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    // Several ranges are not served by S3 either; it answers the whole object.
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = || {
        S3Error::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "InvalidRange",
            "The requested range is not satisfiable",
        )
    };
    let Some((start, end)) = spec.split_once('-') else {
        return Ok(None);
    };
    // A range that does not parse is ignored, as S3 (and RFC 9110, 14.2) ignores it: the
    // whole object is answered.
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let Ok(n) = suffix.parse::<u64>() else {
                return Ok(None);
            };
            if n == 0 || size == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(n), size - 1)
        }
        (start, "") => match start.parse() {
            Ok(start) => (start, size.saturating_sub(1)),
            Err(_) => return Ok(None),
        },
        (start, end) => {
            let (Ok(start), Ok(end)) = (start.parse::<u64>(), end.parse::<u64>()) else {
                return Ok(None);
            };
            if end < start {
                return Ok(None);
            }
            (start, end.min(size.saturating_sub(1)))
        }
    };
    if start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// The conditional headers of a GET or HEAD: `Some(status)` when they stop it.
fn precondition(parts: &http::request::Parts, meta: &ObjectMeta) -> Option<StatusCode> {
    let etag_matches = |list: &str| {
        list.split(',')
            .map(|tag| tag.trim().trim_start_matches("W/").trim_matches('"'))
            .any(|tag| tag == "*" || tag == meta.etag)
    };
    let since = |name| header(parts, name).and_then(|v| httpdate::parse_http_date(v).ok());
    // Last-Modified has whole seconds.
    let modified = httpdate::parse_http_date(&httpdate::fmt_http_date(meta.last_modified))
        .unwrap_or(meta.last_modified);
    if let Some(list) = header(parts, "if-match") {
        if !etag_matches(list) {
            return Some(StatusCode::PRECONDITION_FAILED);
        }
    } else if since("if-unmodified-since").is_some_and(|t| modified > t) {
        return Some(StatusCode::PRECONDITION_FAILED);
    }
    if let Some(list) = header(parts, "if-none-match") {
        if etag_matches(list) {
            return Some(StatusCode::NOT_MODIFIED);
        }
    } else if since("if-modified-since").is_some_and(|t| modified <= t) {
        return Some(StatusCode::NOT_MODIFIED);
    }
    None
}

fn object_entry(meta: &ObjectMeta, owner: bool) -> xml::Object {
    xml::Object {
        key: meta.key.clone(),
        last_modified: rfc3339_millis(meta.last_modified),
        etag: quoted(&meta.etag),
        size: meta.size,
        storage_class: "STANDARD",
        owner: owner.then_some(xml::OWNER),
    }
}

/// One page of a listing: objects and common prefixes in key order.
struct Listing {
    objects: Vec<ObjectMeta>,
    prefixes: Vec<String>,
    /// Set when more follows: the last key or prefix of this page.
    next: Option<String>,
}

/// The highest character, appended to a common prefix to list past every key under it.
const PAST: char = '\u{10FFFF}';

impl Cx<'_> {
    fn events(&self) -> &crate::events::Events {
        &self.generation.events
    }

    /// Puts, copies or completes an object through the bucket operation; its metadata.
    async fn store_object(
        &self,
        bucket: &str,
        key: &str,
        change: ObjectChange,
    ) -> Result<ObjectMeta, S3Error> {
        services::change_object(
            self.events(),
            self.principal,
            bucket,
            key,
            change,
            &self.trace,
        )
        .await?
        .ok_or_else(|| {
            S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "the object was not stored",
            )
        })
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    async fn list_buckets(&self) -> S3Result {
        let names = services::list_buckets(self.events(), self.principal).await?;
        let creation_date = rfc3339_millis(SystemTime::UNIX_EPOCH);
        // `prefix`, and pages of `max-buckets` (1 to 10,000) after `continuation-token` (the
        // last name of the page before), in name order as S3 lists them.
        let prefix = self.param("prefix").map(str::to_owned);
        let after = match self.param("continuation-token") {
            Some(token) => Some(decode_token(token)?),
            None => None,
        };
        let max_buckets = match self.param("max-buckets") {
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=10_000).contains(&n) => n,
                _ => {
                    return Err(S3Error::invalid_argument(
                        "max-buckets must be an integer from 1 to 10000",
                    ));
                }
            },
            None => usize::MAX,
        };
        let mut selected: Vec<String> = names
            .into_iter()
            .filter(|name| prefix.as_deref().is_none_or(|p| name.starts_with(p)))
            .filter(|name| after.as_deref().is_none_or(|a| name.as_str() > a))
            .collect();
        let continuation_token = (selected.len() > max_buckets).then(|| {
            selected.truncate(max_buckets);
            encode_token(selected.last().map_or("", String::as_str))
        });
        let buckets = selected
            .into_iter()
            .map(|name| xml::BucketEntry {
                name,
                creation_date: creation_date.clone(),
            })
            .collect();
        Ok(xml_response(
            "ListAllMyBucketsResult",
            &xml::ListAllMyBucketsResult {
                xmlns: xml::NAMESPACE,
                owner: xml::OWNER,
                buckets: xml::Buckets { bucket: buckets },
                continuation_token,
                prefix,
            },
        ))
    }

    async fn create_bucket(&self, bucket: &str) -> S3Result {
        let created = services::create_bucket(self.events(), self.principal, bucket).await?;
        // us-east-1 answers a repeated create of one's own bucket with success.
        if !created && self.events().region != "us-east-1" {
            return Err(S3Error::new(
                StatusCode::CONFLICT,
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already own it.",
            ));
        }
        let mut res = empty(StatusCode::OK);
        set_header(res.headers_mut(), "location", &format!("/{bucket}"));
        Ok(res)
    }

    async fn delete_bucket(&self, bucket: &str) -> S3Result {
        services::delete_bucket(self.events(), self.principal, bucket).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    async fn require_bucket(&self, bucket: &str) -> Result<(), S3Error> {
        if services::bucket_exists(self.events(), self.principal, bucket).await? {
            Ok(())
        } else {
            Err(S3Error::new(
                StatusCode::NOT_FOUND,
                "NoSuchBucket",
                "The specified bucket does not exist",
            ))
        }
    }

    async fn head_bucket(&self, bucket: &str) -> S3Result {
        self.require_bucket(bucket).await?;
        let mut res = empty(StatusCode::OK);
        set_header(
            res.headers_mut(),
            "x-amz-bucket-region",
            &self.events().region,
        );
        Ok(res)
    }

    async fn bucket_location(&self, bucket: &str) -> S3Result {
        self.require_bucket(bucket).await?;
        let region = self.events().region.clone();
        Ok(xml_response(
            "LocationConstraint",
            &xml::LocationConstraint {
                xmlns: xml::NAMESPACE,
                // us-east-1 is the empty constraint.
                region: if region == "us-east-1" {
                    String::new()
                } else {
                    region
                },
            },
        ))
    }

    async fn bucket_versioning(&self, bucket: &str) -> S3Result {
        self.require_bucket(bucket).await?;
        Ok(xml_response(
            "VersioningConfiguration",
            &xml::VersioningConfiguration {
                xmlns: xml::NAMESPACE,
            },
        ))
    }

    /// Lists up to `max_keys` keys and common prefixes after `start_after`.
    async fn listing(
        &self,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        start_after: Option<String>,
        max_keys: usize,
    ) -> Result<Listing, S3Error> {
        let mut listing = Listing {
            objects: Vec::new(),
            prefixes: Vec::new(),
            next: None,
        };
        let mut after = start_after;
        let mut last: Option<String> = None;
        let prefix_arg = (!prefix.is_empty()).then(|| prefix.to_owned());
        loop {
            let page = services::list_objects(
                self.events(),
                self.principal,
                bucket,
                prefix_arg.clone(),
                after.clone(),
                nimbus_store::MAX_LIST_OBJECTS,
            )
            .await?;
            let mut skip_past = None;
            for meta in page.objects {
                if listing.objects.len() + listing.prefixes.len() == max_keys {
                    listing.next = last;
                    return Ok(listing);
                }
                let common = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
                    let rest = &meta.key[prefix.len()..];
                    rest.find(d)
                        .map(|at| meta.key[..prefix.len() + at + d.len()].to_owned())
                });
                match common {
                    Some(common) => {
                        if listing.prefixes.last() != Some(&common) {
                            listing.prefixes.push(common.clone());
                            last = Some(common.clone());
                        }
                        skip_past = Some(format!("{common}{PAST}"));
                        break;
                    }
                    None => {
                        last = Some(meta.key.clone());
                        listing.objects.push(meta);
                    }
                }
            }
            match skip_past {
                Some(past) => after = Some(past),
                None if page.is_truncated => after = page.next_start_after,
                None => return Ok(listing),
            }
        }
    }

    async fn list_objects(&self, bucket: &str) -> S3Result {
        let v2 = self.param("list-type") == Some("2");
        let prefix = self.param("prefix").unwrap_or_default().to_owned();
        let delimiter = self
            .param("delimiter")
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        let encoding_type = self.param("encoding-type").map(str::to_owned);
        if encoding_type.as_deref().is_some_and(|e| e != "url") {
            return Err(S3Error::invalid_argument(
                "Invalid Encoding Method specified in Request",
            ));
        }
        let max_keys = match self.param("max-keys") {
            Some(n) => n
                .parse::<usize>()
                .map_err(|_| {
                    S3Error::invalid_argument(
                        "Provided max-keys not an integer or within integer range",
                    )
                })?
                .min(nimbus_store::MAX_LIST_OBJECTS),
            None => nimbus_store::MAX_LIST_OBJECTS,
        };
        let token = self.param("continuation-token").map(str::to_owned);
        let start_after = if v2 {
            match &token {
                Some(token) => Some(decode_token(token)?),
                None => self.param("start-after").map(str::to_owned),
            }
        } else {
            self.param("marker").map(str::to_owned)
        };
        // A marker that is a common prefix lists past everything under it.
        let after = start_after.clone().map(|after| match &delimiter {
            Some(d) if after.ends_with(d.as_str()) && after.starts_with(&prefix) => {
                format!("{after}{PAST}")
            }
            _ => after,
        });
        let listing = if max_keys == 0 {
            self.require_bucket(bucket).await?;
            Listing {
                objects: Vec::new(),
                prefixes: Vec::new(),
                next: None,
            }
        } else {
            self.listing(bucket, &prefix, delimiter.as_deref(), after, max_keys)
                .await?
        };
        let url = encoding_type.is_some();
        let enc = |text: &str| {
            if url {
                percent_encoding::utf8_percent_encode(text, KEY_ENCODE).to_string()
            } else {
                text.to_owned()
            }
        };
        let contents: Vec<xml::Object> = listing
            .objects
            .iter()
            .map(|meta| {
                let mut entry = object_entry(meta, !v2);
                entry.key = enc(&entry.key);
                entry
            })
            .collect();
        let common_prefixes: Vec<xml::CommonPrefix> = listing
            .prefixes
            .iter()
            .map(|p| xml::CommonPrefix { prefix: enc(p) })
            .collect();
        if v2 {
            return Ok(xml_response(
                "ListBucketResult",
                &xml::ListBucketResultV2 {
                    xmlns: xml::NAMESPACE,
                    name: bucket.to_owned(),
                    prefix: enc(&prefix),
                    delimiter: delimiter.as_deref().map(enc),
                    max_keys,
                    encoding_type,
                    key_count: contents.len() + common_prefixes.len(),
                    is_truncated: listing.next.is_some(),
                    continuation_token: token,
                    next_continuation_token: listing.next.as_deref().map(encode_token),
                    start_after: self.param("start-after").map(enc),
                    contents,
                    common_prefixes,
                },
            ));
        }
        Ok(xml_response(
            "ListBucketResult",
            &xml::ListBucketResultV1 {
                xmlns: xml::NAMESPACE,
                name: bucket.to_owned(),
                prefix: enc(&prefix),
                marker: enc(&start_after.unwrap_or_default()),
                // S3 gives NextMarker only with a delimiter; without one clients use the
                // last key.
                next_marker: delimiter.as_ref().and(listing.next.as_deref()).map(enc),
                delimiter: delimiter.as_deref().map(enc),
                max_keys,
                encoding_type,
                is_truncated: listing.next.is_some(),
                contents,
                common_prefixes,
            },
        ))
    }

    async fn put_object(&self, bucket: &str, key: &str, payload: payload::Payload) -> S3Result {
        let change = ObjectChange::Put {
            data: payload.data.to_vec(),
            content_type: header(self.parts, "content-type").map(str::to_owned),
            metadata: user_metadata(self.parts),
            copy: false,
            condition: write_condition(self.parts),
        };
        let meta = self.store_object(bucket, key, change).await?;
        let mut res = empty(StatusCode::OK);
        set_header(res.headers_mut(), "etag", &quoted(&meta.etag));
        if let Some((name, value)) = payload.checksum
            && let Ok(name) = http::HeaderName::try_from(name)
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            res.headers_mut().insert(name, value);
        }
        Ok(res)
    }

    async fn get_object(&self, bucket: &str, key: &str, head: bool) -> S3Result {
        let (meta, data) = if head {
            let meta = services::head_object(self.events(), self.principal, bucket, key)
                .await?
                .ok_or_else(S3Error::no_such_key)?;
            (meta, None)
        } else {
            let (meta, data) = services::get_object(self.events(), self.principal, bucket, key)
                .await?
                .ok_or_else(S3Error::no_such_key)?;
            (meta, Some(data))
        };
        if let Some(status) = precondition(self.parts, &meta) {
            if status == StatusCode::NOT_MODIFIED || head {
                let mut res = empty(status);
                set_header(res.headers_mut(), "etag", &quoted(&meta.etag));
                return Ok(res);
            }
            return Err(S3Error::new(
                status,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        let range = match header(self.parts, "range") {
            Some(range) => byte_range(range, meta.size)?,
            None => None,
        };
        let (status, body, length) = match (range, data) {
            (Some((start, end)), Some(data)) => {
                let slice = data
                    .get(start as usize..=end as usize)
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default();
                (StatusCode::PARTIAL_CONTENT, slice, end - start + 1)
            }
            (Some((start, end)), None) => {
                (StatusCode::PARTIAL_CONTENT, Vec::new(), end - start + 1)
            }
            (None, Some(data)) => (StatusCode::OK, data, meta.size),
            (None, None) => (StatusCode::OK, Vec::new(), meta.size),
        };
        let mut res = Response::new(Body::from(body));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        object_headers(headers, &meta);
        set_header(headers, "content-length", &length.to_string());
        if let Some((start, end)) = range {
            set_header(
                headers,
                "content-range",
                &format!("bytes {start}-{end}/{}", meta.size),
            );
        }
        // A presigned GET may name the headers of its answer.
        for (param, name) in [
            ("response-content-type", "content-type"),
            ("response-content-disposition", "content-disposition"),
            ("response-content-encoding", "content-encoding"),
            ("response-content-language", "content-language"),
            ("response-cache-control", "cache-control"),
            ("response-expires", "expires"),
        ] {
            if let Some(value) = self.param(param) {
                set_header(headers, name, value);
            }
        }
        set_header(
            headers,
            "x-amz-request-id",
            &uuid::Uuid::new_v4().simple().to_string(),
        );
        Ok(res)
    }

    async fn delete_object(&self, bucket: &str, key: &str) -> S3Result {
        services::change_object(
            self.events(),
            self.principal,
            bucket,
            key,
            ObjectChange::Delete {
                condition: write_condition(self.parts),
            },
            &self.trace,
        )
        .await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    async fn delete_objects(&self, bucket: &str, body: &[u8]) -> S3Result {
        let request: xml::Delete = xml::parse(body).map_err(|e| {
            S3Error::new(
                StatusCode::BAD_REQUEST,
                "MalformedXML",
                format!("The XML you provided was not well-formed or did not validate against our published schema: {e}"),
            )
        })?;
        if request.objects.len() > MAX_DELETE_KEYS {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "MalformedXML",
                format!("a DeleteObjects request names at most {MAX_DELETE_KEYS} keys"),
            ));
        }
        let mut result = xml::DeleteResult {
            xmlns: xml::NAMESPACE,
            deleted: Vec::new(),
            errors: Vec::new(),
        };
        for object in request.objects {
            match services::change_object(
                self.events(),
                self.principal,
                bucket,
                &object.key,
                ObjectChange::Delete {
                    condition: WriteCondition::Always,
                },
                &self.trace,
            )
            .await
            {
                Ok(_) if request.quiet => {}
                Ok(_) => result.deleted.push(xml::Deleted { key: object.key }),
                Err(e) => {
                    let e = S3Error::from(e);
                    if e.code == "NoSuchBucket" {
                        return Err(e);
                    }
                    result.errors.push(xml::DeleteError {
                        key: object.key,
                        code: e.code,
                        message: e.message,
                    });
                }
            }
        }
        Ok(xml_response("DeleteResult", &result))
    }

    async fn copy_object(&self, bucket: &str, key: &str, source: &str) -> S3Result {
        let source = source.split_once("?versionId=").map_or(source, |(s, _)| s);
        let source = percent_decode_str(source.trim_start_matches('/'))
            .decode_utf8()
            .map_err(|_| {
                S3Error::invalid_argument("x-amz-copy-source is not UTF-8 once decoded")
            })?;
        let (source_bucket, source_key) = source.split_once('/').ok_or_else(|| {
            S3Error::invalid_argument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey",
            )
        })?;
        let replace = header(self.parts, "x-amz-metadata-directive") == Some("REPLACE");
        if source_bucket == bucket && source_key == key && !replace {
            return Err(S3Error::new(
                StatusCode::BAD_REQUEST,
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
            ));
        }
        let (meta, data) =
            services::get_object(self.events(), self.principal, source_bucket, source_key)
                .await?
                .ok_or_else(S3Error::no_such_key)?;
        if let Some(status) = copy_precondition(self.parts, &meta) {
            return Err(S3Error::new(
                status,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        let (content_type, metadata) = if replace {
            (
                header(self.parts, "content-type").map(str::to_owned),
                user_metadata(self.parts),
            )
        } else {
            (meta.content_type, meta.metadata)
        };
        let change = ObjectChange::Put {
            data,
            content_type,
            metadata,
            copy: true,
            condition: write_condition(self.parts),
        };
        let copied = self.store_object(bucket, key, change).await?;
        Ok(xml_response(
            "CopyObjectResult",
            &xml::CopyObjectResult {
                xmlns: xml::NAMESPACE,
                last_modified: rfc3339_millis(copied.last_modified),
                etag: quoted(&copied.etag),
            },
        ))
    }

    fn upload_id(&self) -> Result<String, S3Error> {
        self.param("uploadId")
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| S3Error::invalid_argument("the request has no uploadId"))
    }

    async fn create_upload(&self, bucket: &str, key: &str) -> S3Result {
        let step = UploadStep::Create {
            content_type: header(self.parts, "content-type").map(str::to_owned),
            metadata: user_metadata(self.parts),
        };
        let UploadDone::Id(upload_id) =
            services::upload_step(self.events(), self.principal, bucket, key, step).await?
        else {
            return Err(S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no upload id",
            ));
        };
        Ok(xml_response(
            "InitiateMultipartUploadResult",
            &xml::InitiateMultipartUploadResult {
                xmlns: xml::NAMESPACE,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id,
            },
        ))
    }

    async fn upload_part(&self, bucket: &str, key: &str, payload: payload::Payload) -> S3Result {
        let number = self
            .param("partNumber")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| {
                S3Error::invalid_argument(
                    "Part number must be an integer between 1 and 10000, inclusive",
                )
            })?;
        let step = UploadStep::Part {
            upload: self.upload_id()?,
            number,
            data: payload.data.to_vec(),
        };
        let UploadDone::Id(etag) =
            services::upload_step(self.events(), self.principal, bucket, key, step).await?
        else {
            return Err(S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no part ETag",
            ));
        };
        let mut res = empty(StatusCode::OK);
        set_header(res.headers_mut(), "etag", &quoted(&etag));
        if let Some((name, value)) = payload.checksum
            && let Ok(name) = http::HeaderName::try_from(name)
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            res.headers_mut().insert(name, value);
        }
        Ok(res)
    }

    async fn complete_upload(&self, bucket: &str, key: &str, body: &[u8]) -> S3Result {
        let request: xml::CompleteMultipartUpload = xml::parse(body).map_err(|e| {
            S3Error::new(
                StatusCode::BAD_REQUEST,
                "MalformedXML",
                format!("The XML you provided was not well-formed or did not validate against our published schema: {e}"),
            )
        })?;
        let parts: Vec<(u32, String)> = request
            .parts
            .into_iter()
            .map(|p| (p.part_number, p.etag))
            .collect();
        let change = ObjectChange::Complete {
            upload: self.upload_id()?,
            parts: parts.clone(),
        };
        let meta = match self.store_object(bucket, key, change).await {
            Ok(meta) => meta,
            // S3 answers a repeated Complete of the same parts as it answered the first
            // (SDKs retry one whose answer was lost): the object those parts made is there.
            Err(e) if e.code == "NoSuchUpload" => {
                let completed =
                    services::head_object(self.events(), self.principal, bucket, key).await?;
                match completed {
                    Some(meta) if meta.etag == multipart_etag(&parts) => meta,
                    _ => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        Ok(xml_response(
            "CompleteMultipartUploadResult",
            &xml::CompleteMultipartUploadResult {
                xmlns: xml::NAMESPACE,
                location: format!("/{bucket}/{key}"),
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                etag: quoted(&meta.etag),
            },
        ))
    }

    async fn abort_upload(&self, bucket: &str, key: &str) -> S3Result {
        let step = UploadStep::Abort {
            upload: self.upload_id()?,
        };
        services::upload_step(self.events(), self.principal, bucket, key, step).await?;
        Ok(empty(StatusCode::NO_CONTENT))
    }

    async fn list_parts(&self, bucket: &str, key: &str) -> S3Result {
        let upload_id = self.upload_id()?;
        let step = UploadStep::ListParts {
            upload: upload_id.clone(),
        };
        let UploadDone::Parts(parts) =
            services::upload_step(self.events(), self.principal, bucket, key, step).await?
        else {
            return Err(S3Error::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "no parts",
            ));
        };
        let marker: u32 = self
            .param("part-number-marker")
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let max_parts: usize = self
            .param("max-parts")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1000)
            .min(1000);
        let after: Vec<_> = parts.into_iter().filter(|p| p.number > marker).collect();
        let is_truncated = after.len() > max_parts;
        let page: Vec<xml::PartEntry> = after
            .into_iter()
            .take(max_parts)
            .map(|p| xml::PartEntry {
                part_number: p.number,
                last_modified: rfc3339_millis(p.last_modified),
                etag: quoted(&p.etag),
                size: p.size,
            })
            .collect();
        Ok(xml_response(
            "ListPartsResult",
            &xml::ListPartsResult {
                xmlns: xml::NAMESPACE,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id,
                part_number_marker: marker,
                next_part_number_marker: page.last().map_or(marker, |p| p.part_number),
                max_parts,
                is_truncated,
                storage_class: "STANDARD",
                parts: page,
            },
        ))
    }

    async fn list_uploads(&self, bucket: &str) -> S3Result {
        let uploads = services::list_uploads(self.events(), self.principal, bucket).await?;
        let prefix = self.param("prefix").unwrap_or_default();
        let uploads: Vec<xml::UploadEntry> = uploads
            .into_iter()
            .filter(|u| u.key.starts_with(prefix))
            .map(|u| xml::UploadEntry {
                key: u.key,
                upload_id: u.id,
                storage_class: "STANDARD",
                initiated: rfc3339_millis(u.initiated),
            })
            .collect();
        Ok(xml_response(
            "ListMultipartUploadsResult",
            &xml::ListMultipartUploadsResult {
                xmlns: xml::NAMESPACE,
                bucket: bucket.to_owned(),
                key_marker: String::new(),
                upload_id_marker: String::new(),
                max_uploads: 1000,
                is_truncated: false,
                uploads,
            },
        ))
    }
}

/// CopyObject's `x-amz-copy-source-if-*` headers: `Some(412)` when they stop it.
fn copy_precondition(parts: &http::request::Parts, meta: &ObjectMeta) -> Option<StatusCode> {
    let matches = |list: &str| {
        list.split(',')
            .map(|tag| tag.trim().trim_matches('"'))
            .any(|tag| tag == "*" || tag == meta.etag)
    };
    let failed = header(parts, "x-amz-copy-source-if-match").is_some_and(|l| !matches(l))
        || header(parts, "x-amz-copy-source-if-none-match").is_some_and(matches);
    failed.then_some(StatusCode::PRECONDITION_FAILED)
}

/// Characters `encoding-type=url` escapes in keys: all but unreserved ones and `/`.
const KEY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// A continuation token: the key (or common prefix) to list after, opaque to clients.
/// The ETag S3 gives an object made of `parts`: the MD5 of their MD5s, `-` and their count.
fn multipart_etag(parts: &[(u32, String)]) -> String {
    let mut digests = Vec::with_capacity(parts.len() * 16);
    for (_, etag) in parts {
        let hex = etag.trim_matches('"');
        digests.extend(
            (0..hex.len() / 2)
                .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()),
        );
    }
    format!(
        "{:x}-{}",
        <md5::Md5 as md5::Digest>::digest(&digests),
        parts.len()
    )
}

fn encode_token(after: &str) -> String {
    BASE64_URL.encode(after.as_bytes())
}

fn decode_token(token: &str) -> Result<String, S3Error> {
    BASE64_URL
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| S3Error::invalid_argument("The continuation token provided is incorrect"))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: &str, path: &str) -> http::request::Parts {
        http::Request::builder()
            .uri(path)
            .header("host", host)
            .body(())
            .expect("request")
            .into_parts()
            .0
    }

    #[test]
    fn buckets_and_keys_come_from_the_path_or_a_localhost_subdomain() {
        let at = |host, path| address(&parts(host, path)).expect("an address");
        assert_eq!(at("127.0.0.1:4566", "/"), (None, None));
        assert_eq!(
            at("127.0.0.1:4566", "/photos"),
            (Some("photos".into()), None)
        );
        assert_eq!(
            at("127.0.0.1:4566", "/photos/"),
            (Some("photos".into()), None)
        );
        assert_eq!(
            at("127.0.0.1:4566", "/photos/a%20b/c.png"),
            (Some("photos".into()), Some("a b/c.png".into()))
        );
        assert_eq!(
            at("photos.localhost:4566", "/a/b"),
            (Some("photos".into()), Some("a/b".into()))
        );
        assert_eq!(at("photos.localhost", "/"), (Some("photos".into()), None));
    }

    #[test]
    fn ranges_are_read_as_s3_reads_them() {
        assert_eq!(byte_range("bytes=0-4", 10).ok(), Some(Some((0, 4))));
        assert_eq!(byte_range("bytes=5-", 10).ok(), Some(Some((5, 9))));
        assert_eq!(byte_range("bytes=-3", 10).ok(), Some(Some((7, 9))));
        assert_eq!(byte_range("bytes=8-100", 10).ok(), Some(Some((8, 9))));
        assert_eq!(
            byte_range("bytes=10-", 10).err().map(|e| e.status),
            Some(StatusCode::RANGE_NOT_SATISFIABLE)
        );
        assert_eq!(byte_range("items=0-1", 10).ok(), Some(None));
        // Malformed ranges are ignored: the whole object.
        for malformed in ["bytes=-1-", "bytes=0--1", "bytes=a-3", "bytes=-x"] {
            assert_eq!(byte_range(malformed, 10).ok(), Some(None), "{malformed}");
        }
    }

    #[test]
    fn a_continuation_token_round_trips_any_key() {
        for key in ["a", "photos/2026/", "ü/ x+y"] {
            assert_eq!(decode_token(&encode_token(key)).ok().as_deref(), Some(key));
        }
        assert!(decode_token("not base64!").is_err());
    }
}
