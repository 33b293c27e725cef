//! S3's XML bodies as typed values: what nimbus answers (serialised with quick-xml's serde
//! support) and what clients send (CompleteMultipartUpload, DeleteObjects).

use serde::{Deserialize, Serialize};

/// The namespace of every S3 answer.
pub(super) const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// An answer document: `<?xml …?>` then the root element.
pub(super) fn document<T: Serialize>(root: &str, value: &T) -> Vec<u8> {
    let mut text = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
    let mut serializer = quick_xml::se::Serializer::with_root(&mut text, Some(root))
        .expect("S3 root element names are valid XML names");
    serializer.expand_empty_elements(false);
    if let Err(err) = value.serialize(serializer) {
        // The answer types hold only strings and numbers, which always serialise.
        tracing::error!(error = %err, root, "serialising an S3 answer");
    }
    text.into_bytes()
}

/// Parses a request document, naming what is wrong as S3's `MalformedXML` does.
pub(super) fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    // S3's request documents have no DTD; refusing one also keeps entity tricks out.
    if text.contains("<!DOCTYPE") || text.contains("<!doctype") {
        return Err("a document type declaration is not allowed".to_owned());
    }
    // quick-xml 0.38's deserializer reaches an `unreachable!` on some malformed documents
    // (found by fuzz.rs); a client's body must never panic a request.
    match std::panic::catch_unwind(|| quick_xml::de::from_str::<T>(text)) {
        Ok(res) => res.map_err(|e| e.to_string()),
        Err(_) => Err("the document is not well-formed".to_owned()),
    }
}

#[derive(Serialize)]
pub(super) struct Owner {
    #[serde(rename = "ID")]
    pub(super) id: &'static str,
    #[serde(rename = "DisplayName")]
    pub(super) display_name: &'static str,
}

/// The one owner of every bucket: the app.
pub(super) const OWNER: Owner = Owner {
    id: "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a",
    display_name: "nimbus",
};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListAllMyBucketsResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) owner: Owner,
    pub(super) buckets: Buckets,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) continuation_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) prefix: Option<String>,
}

#[derive(Serialize)]
pub(super) struct Buckets {
    #[serde(rename = "Bucket")]
    pub(super) bucket: Vec<BucketEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct BucketEntry {
    pub(super) name: String,
    pub(super) creation_date: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Object {
    pub(super) key: String,
    pub(super) last_modified: String,
    #[serde(rename = "ETag")]
    pub(super) etag: String,
    pub(super) size: u64,
    pub(super) storage_class: &'static str,
    #[serde(rename = "Owner", skip_serializing_if = "Option::is_none")]
    pub(super) owner: Option<Owner>,
}

#[derive(Serialize)]
pub(super) struct CommonPrefix {
    #[serde(rename = "Prefix")]
    pub(super) prefix: String,
}

/// ListObjectsV2's answer (`ListBucketResult` with `KeyCount` and tokens).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListBucketResultV2 {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) name: String,
    pub(super) prefix: String,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    pub(super) delimiter: Option<String>,
    pub(super) max_keys: usize,
    #[serde(rename = "EncodingType", skip_serializing_if = "Option::is_none")]
    pub(super) encoding_type: Option<String>,
    pub(super) key_count: usize,
    pub(super) is_truncated: bool,
    #[serde(rename = "ContinuationToken", skip_serializing_if = "Option::is_none")]
    pub(super) continuation_token: Option<String>,
    #[serde(
        rename = "NextContinuationToken",
        skip_serializing_if = "Option::is_none"
    )]
    pub(super) next_continuation_token: Option<String>,
    #[serde(rename = "StartAfter", skip_serializing_if = "Option::is_none")]
    pub(super) start_after: Option<String>,
    pub(super) contents: Vec<Object>,
    pub(super) common_prefixes: Vec<CommonPrefix>,
}

/// ListObjects' (version 1) answer.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListBucketResultV1 {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) name: String,
    pub(super) prefix: String,
    pub(super) marker: String,
    #[serde(rename = "NextMarker", skip_serializing_if = "Option::is_none")]
    pub(super) next_marker: Option<String>,
    #[serde(rename = "Delimiter", skip_serializing_if = "Option::is_none")]
    pub(super) delimiter: Option<String>,
    pub(super) max_keys: usize,
    #[serde(rename = "EncodingType", skip_serializing_if = "Option::is_none")]
    pub(super) encoding_type: Option<String>,
    pub(super) is_truncated: bool,
    pub(super) contents: Vec<Object>,
    pub(super) common_prefixes: Vec<CommonPrefix>,
}

#[derive(Serialize)]
pub(super) struct CopyObjectResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    #[serde(rename = "LastModified")]
    pub(super) last_modified: String,
    #[serde(rename = "ETag")]
    pub(super) etag: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct InitiateMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) upload_id: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CompleteMultipartUploadResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) location: String,
    pub(super) bucket: String,
    pub(super) key: String,
    #[serde(rename = "ETag")]
    pub(super) etag: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListPartsResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) part_number_marker: u32,
    pub(super) next_part_number_marker: u32,
    pub(super) max_parts: usize,
    pub(super) is_truncated: bool,
    pub(super) storage_class: &'static str,
    #[serde(rename = "Part")]
    pub(super) parts: Vec<PartEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PartEntry {
    pub(super) part_number: u32,
    pub(super) last_modified: String,
    #[serde(rename = "ETag")]
    pub(super) etag: String,
    pub(super) size: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ListMultipartUploadsResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    pub(super) bucket: String,
    pub(super) key_marker: String,
    pub(super) upload_id_marker: String,
    pub(super) max_uploads: usize,
    pub(super) is_truncated: bool,
    #[serde(rename = "Upload")]
    pub(super) uploads: Vec<UploadEntry>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct UploadEntry {
    pub(super) key: String,
    pub(super) upload_id: String,
    pub(super) storage_class: &'static str,
    pub(super) initiated: String,
}

#[derive(Serialize)]
pub(super) struct DeleteResult {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    #[serde(rename = "Deleted")]
    pub(super) deleted: Vec<Deleted>,
    #[serde(rename = "Error")]
    pub(super) errors: Vec<DeleteError>,
}

#[derive(Serialize)]
pub(super) struct Deleted {
    #[serde(rename = "Key")]
    pub(super) key: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct DeleteError {
    pub(super) key: String,
    pub(super) code: String,
    pub(super) message: String,
}

#[derive(Serialize)]
pub(super) struct LocationConstraint {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
    #[serde(rename = "$text")]
    pub(super) region: String,
}

#[derive(Serialize)]
pub(super) struct VersioningConfiguration {
    #[serde(rename = "@xmlns")]
    pub(super) xmlns: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Error<'a> {
    pub(super) code: &'a str,
    pub(super) message: &'a str,
    pub(super) request_id: String,
}

/// CompleteMultipartUpload's request.
#[derive(Deserialize)]
pub(super) struct CompleteMultipartUpload {
    #[serde(rename = "Part", default)]
    pub(super) parts: Vec<CompletedPart>,
}

#[derive(Deserialize)]
pub(super) struct CompletedPart {
    #[serde(rename = "PartNumber")]
    pub(super) part_number: u32,
    #[serde(rename = "ETag")]
    pub(super) etag: String,
}

/// DeleteObjects' request.
#[derive(Deserialize)]
pub(super) struct Delete {
    #[serde(rename = "Object", default)]
    pub(super) objects: Vec<ObjectIdentifier>,
    #[serde(rename = "Quiet", default)]
    pub(super) quiet: bool,
}

#[derive(Deserialize)]
pub(super) struct ObjectIdentifier {
    #[serde(rename = "Key")]
    pub(super) key: String,
}
