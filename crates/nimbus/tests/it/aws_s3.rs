//! S3 through the AWS SDKs, unchanged (issue 12): `@aws-sdk/client-s3` (current version,
//! default checksums on, so uploads arrive `aws-chunked` with a CRC32 trailer) and boto3
//! inside functions with no endpoint in their code, and boto3 from outside: objects,
//! listings, copies, batch deletes, multipart uploads and presigned URLs on nimbus's own
//! buckets, firing the same bucket events as `nimbus bucket put`.

use std::process::Command;

use serde_json::json;

use crate::aws_sqs::{boto3_path, run_boto3};
use crate::harness::{TestApp, TestServer};

const MANIFEST: &str = r#"
service: photos
provider:
  runtime: nodejs20.x
  timeout: 20
  iam:
    role:
      statements:
        - Effect: Allow
          Action: [s3:PutObject, s3:GetObject, s3:ListBucket, s3:DeleteObject]
          Resource: [arn:aws:s3:::uploads, arn:aws:s3:::uploads/*]
buckets: [uploads, private]
kv: [seen]
functions:
  node:
    handler: node.handler
  python:
    handler: py.handler
    runtime: python3.12
  outsider:
    handler: node.outsider
  watcher:
    handler: node.watch
    iamRoleStatements:
      - { Effect: Allow, Action: ["kv:*"], Resource: "kv:seen" }
    events:
      - s3: { bucket: uploads, event: "s3:ObjectCreated:*" }
"#;

const NODE_JS: &str = r#"
const { S3Client, PutObjectCommand, GetObjectCommand, ListObjectsV2Command, HeadObjectCommand,
  DeleteObjectCommand } = require('@aws-sdk/client-s3');
const nimbus = require('nimbus');
const s3 = new S3Client({});

exports.handler = async (event) => {
  const body = 'x'.repeat(event.size);
  const put = await s3.send(new PutObjectCommand({
    Bucket: 'uploads', Key: event.key, Body: body, ContentType: 'text/plain',
    Metadata: { owner: 'ada' },
  }));
  const got = await s3.send(new GetObjectCommand({ Bucket: 'uploads', Key: event.key }));
  const text = await got.Body.transformToString();
  const head = await s3.send(new HeadObjectCommand({ Bucket: 'uploads', Key: event.key }));
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: 'uploads', Prefix: 'node/' }));
  let missing = null;
  try {
    await s3.send(new GetObjectCommand({ Bucket: 'uploads', Key: 'node/none' }));
  } catch (e) {
    missing = [e.name, e.$metadata?.httpStatusCode];
  }
  return {
    etagIsMd5: put.ETag === `"${require('crypto').createHash('md5').update(body).digest('hex')}"`,
    crc32: put.ChecksumCRC32 ?? null, same: text === body,
    type: got.ContentType, owner: got.Metadata?.owner, length: head.ContentLength,
    keys: (listed.Contents || []).map((o) => o.Key), missing,
  };
};

exports.outsider = async () => {
  const out = {};
  try {
    await s3.send(new PutObjectCommand({ Bucket: 'private', Key: 'outsider.txt', Body: 'no' }));
    out.put = 'written';
  } catch (e) {
    out.put = [e.name, e.$metadata?.httpStatusCode];
  }
  try {
    await s3.send(new GetObjectCommand({ Bucket: 'private', Key: 'a' }));
    out.get = 'read';
  } catch (e) {
    out.get = [e.name, e.$metadata?.httpStatusCode];
  }
  return out;
};

exports.watch = async (event) => {
  for (const r of event.Records) {
    const key = decodeURIComponent(r.s3.object.key.replace(/\+/g, ' '));
    await nimbus.kv('seen').put(key, `${r.eventName} ${r.s3.object.size}`);
  }
};
"#;

const PY: &str = r#"
import boto3
from botocore.config import Config

s3 = boto3.client("s3")
s3v4 = boto3.client("s3", config=Config(signature_version="s3v4"))


def handler(event, context):
    s3.put_object(Bucket="uploads", Key="py/hello.txt", Body=b"from python",
                  Metadata={"lang": "python"})
    got = s3.get_object(Bucket="uploads", Key="py/hello.txt")
    try:
        s3.get_object(Bucket="private", Key="x")
        refused = None
    except s3.exceptions.ClientError as e:
        refused = e.response["Error"]["Code"]
    params = {"Bucket": "uploads", "Key": "py/hello.txt"}
    urls = [client.generate_presigned_url("get_object", Params=params, ExpiresIn=60)
            for client in (s3, s3v4)]
    return {"body": got["Body"].read().decode(), "lang": got["Metadata"]["lang"],
            "refused": refused, "urls": urls}
"#;

fn app() -> TestApp {
    TestApp::new(&[
        ("serverless.yml", MANIFEST),
        ("node.js", NODE_JS),
        ("py.py", PY),
    ])
}

#[tokio::test]
async fn functions_reach_buckets_through_the_s3_sdks_and_fire_bucket_events() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    // 100 KiB makes the v3 SDK stream the body aws-chunked with its default CRC32 trailer.
    let put = server
        .invoke_ok(
            app.path(),
            "node",
            &json!({ "key": "node/big.txt", "size": 100 * 1024 }),
        )
        .await;
    assert_eq!(put["same"], true, "{put}");
    assert_eq!(put["type"], "text/plain");
    assert_eq!(put["owner"], "ada");
    assert_eq!(put["length"], 100 * 1024);
    assert_eq!(put["keys"], json!(["node/big.txt"]));
    assert_eq!(put["missing"], json!(["NoSuchKey", 404]), "{put}");
    // S3's ETag of a single PUT is the body's MD5.
    assert_eq!(put["etagIsMd5"], true, "{put}");
    assert!(put["crc32"].is_string(), "the CRC32 is echoed: {put}");

    let mut py = server.invoke_ok(app.path(), "python", &json!({})).await;
    let urls = py["urls"].take();
    assert_eq!(
        py,
        json!({ "body": "from python", "lang": "python", "refused": "AccessDenied", "urls": null })
    );
    // A function's presigned URLs (boto3's default Signature Version 2, and SigV4) are
    // checked against its secret: they serve the object, and a changed key is refused.
    let urls = urls.as_array().expect("two presigned URLs");
    assert_eq!(urls.len(), 2);
    for url in urls {
        let url = url.as_str().expect("a URL");
        assert!(url.contains("Signature"), "{url}");
        assert_eq!(curl(&["-sS", url]), "from python", "{url}");
        let tampered = url.replace("hello.txt", "hellx.txt");
        let status = curl(&["-sS", "-o", "/dev/null", "-w", "%{http_code}", &tampered]);
        assert_eq!(status, "403", "{tampered}");
    }

    // A function without the grant is refused through its SDK, and nothing is written.
    let refused = server.invoke_ok(app.path(), "outsider", &json!({})).await;
    assert_eq!(
        refused,
        json!({ "put": ["AccessDenied", 403], "get": ["AccessDenied", 403] })
    );
    let ls = app.nimbus(&["bucket", "ls", "private"]);
    assert_eq!(ls.code, Some(0), "{}", ls.stderr);
    assert!(!ls.stdout.contains("outsider"), "{}", ls.stdout);

    // Puts through the SDKs fire the bucket's ObjectCreated events, as `nimbus bucket put` does.
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "py/hello.txt"], |out| {
            out.contains("ObjectCreated:Put")
        })
        .await;
    assert!(seen.contains("ObjectCreated:Put 11"), "{seen}");
    let seen = app
        .nimbus_until(&["kv", "get", "seen", "node/big.txt"], |out| {
            out.contains("ObjectCreated")
        })
        .await;
    assert!(seen.contains("ObjectCreated:Put 102400"), "{seen}");
}

const SCRIPT: &str = r#"
import hashlib, json, os, subprocess, tempfile

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

s3 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
out = {}
def code(call):
    try:
        call()
        return None
    except ClientError as e:
        return [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]

s3.create_bucket(Bucket="media")
out["buckets"] = [b["Name"] for b in s3.list_buckets()["Buckets"]]
s3.head_bucket(Bucket="media")
out["no_bucket"] = code(lambda: s3.head_bucket(Bucket="nothing-here"))
out["bad_name"] = code(lambda: s3.create_bucket(Bucket="Not_A_Bucket"))
first = s3.list_buckets(MaxBuckets=2)
rest = s3.list_buckets(MaxBuckets=2, ContinuationToken=first["ContinuationToken"])
out["bucket_pages"] = [[b["Name"] for b in first["Buckets"]], [b["Name"] for b in rest["Buckets"]],
                       "ContinuationToken" in rest,
                       [b["Name"] for b in s3.list_buckets(Prefix="up")["Buckets"]]]

put = s3.put_object(Bucket="media", Key="a/one.txt", Body=b"0123456789",
                    ContentType="text/plain", Metadata={"k": "v"})
out["etag_is_md5"] = put["ETag"] == '"%s"' % hashlib.md5(b"0123456789").hexdigest()
got = s3.get_object(Bucket="media", Key="a/one.txt", Range="bytes=2-5")
out["range"] = [got["Body"].read().decode(), got["ContentRange"],
                got["ResponseMetadata"]["HTTPStatusCode"]]
head = s3.head_object(Bucket="media", Key="a/one.txt")
out["head"] = [head["ContentLength"], head["ContentType"], head["Metadata"]]
s3.put_object(Bucket="media", Key="site/app.js.gz", Body=b"gz", ContentEncoding="gzip",
              CacheControl="max-age=60", ContentDisposition="inline", ContentLanguage="en")
head = s3.head_object(Bucket="media", Key="site/app.js.gz")
out["stored_headers"] = [head["ContentEncoding"], head["CacheControl"], head["ContentDisposition"],
                         head["ContentLanguage"], head["Metadata"]]
s3.delete_object(Bucket="media", Key="site/app.js.gz")
out["not_modified"] = code(lambda: s3.get_object(Bucket="media", Key="a/one.txt",
                                                 IfNoneMatch=put["ETag"]))
out["no_key"] = code(lambda: s3.get_object(Bucket="media", Key="a/none"))
out["dotdot"] = code(lambda: s3.put_object(Bucket="media", Key="a/../../etc", Body=b"x"))
# Conditional writes: create-only, replace-only-this-version, delete-only-this-version.
out["conditional"] = [
    code(lambda: s3.put_object(Bucket="media", Key="a/one.txt", Body=b"clobber", IfNoneMatch="*")),
    code(lambda: s3.put_object(Bucket="media", Key="a/one.txt", Body=b"clobber", IfMatch='"0000"')),
    code(lambda: s3.delete_object(Bucket="media", Key="a/one.txt", IfMatch='"0000"')),
    code(lambda: s3.put_object(Bucket="media", Key="fresh", Body=b"new", IfNoneMatch="*")),
    code(lambda: s3.put_object(Bucket="media", Key="never", Body=b"x", IfMatch='"0000"')),
    code(lambda: s3.put_object(Bucket="media", Key="fresh", Body=b"newer", IfMatch=put["ETag"])),
]
s3.delete_object(Bucket="media", Key="fresh")

for key in ["a/two.txt", "b/x/1", "b/y/2", "c"]:
    s3.put_object(Bucket="media", Key=key, Body=key.encode())
page = s3.list_objects_v2(Bucket="media", Delimiter="/")
out["top"] = [[p["Prefix"] for p in page.get("CommonPrefixes", [])],
              [o["Key"] for o in page.get("Contents", [])]]
keys, token, pages = [], None, 0
while True:
    kwargs = {"Bucket": "media", "MaxKeys": 2}
    if token:
        kwargs["ContinuationToken"] = token
    page = s3.list_objects_v2(**kwargs)
    pages += 1
    keys += [o["Key"] for o in page.get("Contents", [])]
    if not page["IsTruncated"]:
        break
    token = page["NextContinuationToken"]
out["paged"] = [pages, keys]
v1 = s3.list_objects(Bucket="media", Prefix="b/", Delimiter="/")
out["v1"] = [p["Prefix"] for p in v1.get("CommonPrefixes", [])]

s3.copy_object(Bucket="media", Key="copy.txt", CopySource={"Bucket": "media", "Key": "a/one.txt"})
out["copied"] = s3.get_object(Bucket="media", Key="copy.txt")["Body"].read().decode()
deleted = s3.delete_objects(Bucket="media", Delete={"Objects": [
    {"Key": "a/two.txt"}, {"Key": "c"}, {"Key": "never-was"}]})
out["deleted"] = sorted(d["Key"] for d in deleted["Deleted"])
out["not_empty"] = code(lambda: s3.delete_bucket(Bucket="media"))

# 20 MB in 5 MiB parts, as upload_file does above its threshold.
data = os.urandom(20 * 1000 * 1000)
work = tempfile.mkdtemp()
path = os.path.join(work, "big.bin")
with open(path, "wb") as f:
    f.write(data)
s3.upload_file(path, "media", "big.bin", Config=TransferConfig(
    multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024 * 1024))
big = s3.head_object(Bucket="media", Key="big.bin")
out["multipart"] = [big["ContentLength"], big["ETag"].strip('"').endswith("-4"),
    hashlib.sha256(s3.get_object(Bucket="media", Key="big.bin")["Body"].read()).hexdigest()
    == hashlib.sha256(data).hexdigest()]
# A Complete repeated (its first answer lost, say) answers the same object again.
once = s3.create_multipart_upload(Bucket="media", Key="once")["UploadId"]
part = s3.upload_part(Bucket="media", Key="once", UploadId=once, PartNumber=1, Body=b"only part")
done = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
first = s3.complete_multipart_upload(Bucket="media", Key="once", UploadId=once, MultipartUpload=done)
again = s3.complete_multipart_upload(Bucket="media", Key="once", UploadId=once, MultipartUpload=done)
out["complete_twice"] = [first["ETag"] == again["ETag"], first["ETag"].strip('"').endswith("-1")]
s3.delete_object(Bucket="media", Key="once")
upload = s3.create_multipart_upload(Bucket="media", Key="abandoned")["UploadId"]
s3.upload_part(Bucket="media", Key="abandoned", UploadId=upload, PartNumber=1, Body=b"part")
out["parts"] = [p["Size"] for p in s3.list_parts(Bucket="media", Key="abandoned",
                                                 UploadId=upload)["Parts"]]
s3.abort_multipart_upload(Bucket="media", Key="abandoned", UploadId=upload)
out["aborted"] = code(lambda: s3.list_parts(Bucket="media", Key="abandoned", UploadId=upload))

os.remove(path)
os.rmdir(work)

s3v4 = boto3.client("s3", endpoint_url=os.environ["ENDPOINT"], region_name="us-east-1",
                    aws_access_key_id="test", aws_secret_access_key="test",
                    config=Config(signature_version="s3v4"))
out["presigned_get"], out["presigned_put"] = [], []
for client in (s3, s3v4):
    url = client.generate_presigned_url("get_object", ExpiresIn=60,
                                        Params={"Bucket": "media", "Key": "a/one.txt"})
    out["presigned_get"].append(subprocess.run(["curl", "-sS", "-f", url], capture_output=True,
                                               text=True).stdout)
    put_url = client.generate_presigned_url("put_object", ExpiresIn=60,
                                            Params={"Bucket": "media", "Key": "up.txt"})
    # curl sends no Content-Type, as the URL was signed without one.
    subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type:", "--data-binary",
                    "via url", put_url], check=True)
    out["presigned_put"].append(
        s3.get_object(Bucket="media", Key="up.txt")["Body"].read().decode())
    meta_url = client.generate_presigned_url("put_object", ExpiresIn=60, Params={
        "Bucket": "media", "Key": "meta.txt", "Metadata": {"origin": "url"}})
    # SigV2 URLs carry the metadata in their query (curl sends none); SigV4 ones sign it as
    # a header the client must send.
    sent = ["-H", "x-amz-meta-origin: url"] if client is s3v4 else []
    subprocess.run(["curl", "-sS", "-f", "-X", "PUT", "-H", "Content-Type:", *sent,
                    "--data-binary", "m", meta_url], check=True)
    out.setdefault("presigned_meta", []).append(
        s3.head_object(Bucket="media", Key="meta.txt")["Metadata"])
    s3.delete_object(Bucket="media", Key="up.txt")
print(json.dumps(out))
"#;

#[tokio::test]
async fn boto3_from_outside_serves_objects_listings_multipart_and_presigned_urls() {
    let app = app();
    let boto3 = boto3_path(&app);
    let server = TestServer::start(app.path(), &[]);
    let out = run_boto3(&boto3, SCRIPT, &server);
    assert_eq!(out["buckets"], json!(["media", "private", "uploads"]));
    assert_eq!(out["no_bucket"], json!(["404", 404]));
    assert_eq!(out["bad_name"], json!(["InvalidBucketName", 400]));
    assert_eq!(
        out["bucket_pages"],
        json!([["media", "private"], ["uploads"], false, ["uploads"]])
    );
    assert_eq!(out["etag_is_md5"], true);
    assert_eq!(out["range"], json!(["2345", "bytes 2-5/10", 206]));
    assert_eq!(out["head"], json!([10, "text/plain", { "k": "v" }]));
    assert_eq!(
        out["stored_headers"],
        json!(["gzip", "max-age=60", "inline", "en", {}])
    );
    assert_eq!(out["not_modified"], json!(["304", 304]));
    assert_eq!(out["no_key"], json!(["NoSuchKey", 404]));
    assert_eq!(out["dotdot"][1], 400, "{}", out["dotdot"]);
    assert_eq!(
        out["conditional"],
        json!([
            ["PreconditionFailed", 412],
            ["PreconditionFailed", 412],
            ["PreconditionFailed", 412],
            null,
            ["NoSuchKey", 404],
            ["PreconditionFailed", 412],
        ])
    );
    assert_eq!(out["top"], json!([["a/", "b/"], ["c"]]));
    assert_eq!(
        out["paged"],
        json!([3, ["a/one.txt", "a/two.txt", "b/x/1", "b/y/2", "c"]])
    );
    assert_eq!(out["v1"], json!(["b/x/", "b/y/"]));
    assert_eq!(out["copied"], "0123456789");
    assert_eq!(out["deleted"], json!(["a/two.txt", "c", "never-was"]));
    assert_eq!(out["not_empty"], json!(["BucketNotEmpty", 409]));
    assert_eq!(out["multipart"], json!([20_000_000, true, true]));
    assert_eq!(out["parts"], json!([4]));
    assert_eq!(out["complete_twice"], json!([true, true]));
    assert_eq!(out["aborted"], json!(["NoSuchUpload", 404]));
    assert_eq!(out["presigned_get"], json!(["0123456789", "0123456789"]));
    assert_eq!(out["presigned_put"], json!(["via url", "via url"]));
    assert_eq!(
        out["presigned_meta"],
        json!([{ "origin": "url" }, { "origin": "url" }])
    );
    // The store is intact and the server still up after the refusals.
    let ls = app.nimbus(&["bucket", "ls", "media"]);
    assert!(ls.stdout.contains("big.bin"), "{}", ls.stdout);
}

#[tokio::test]
async fn malformed_s3_requests_get_s3_errors_and_change_nothing() {
    let app = app();
    let server = TestServer::start(app.path(), &[]);
    let client = signed_curl(&server);
    // Unsigned operator requests are refused only by `nimbus server`; under `nimbus up` an
    // operator's key is any key, so these are signed with a made-up one.
    let cases = [
        (
            "POST",
            "/uploads?delete",
            "<Delete><Object><Key>a",
            "MalformedXML",
        ),
        (
            "PUT",
            "/uploads/x?partNumber=1&uploadId=nope",
            "data",
            "NoSuchUpload",
        ),
        (
            "GET",
            "/uploads?list-type=2&continuation-token=%21%21",
            "",
            "InvalidArgument",
        ),
        ("GET", "/nothing-here/key", "", "NoSuchBucket"),
    ];
    for (method, path, body, code) in cases {
        let out = client(method, path, body);
        assert!(
            out.contains(&format!("<Code>{code}</Code>")),
            "{method} {path}: {out}"
        );
    }
    // A single PUT declaring more than S3's 5 GB is refused from its headers, before any
    // of the body is read.
    let answer = raw_request(
        &server,
        "PUT /uploads/huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=operator/20261207/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n\
         x-amz-content-sha256: UNSIGNED-PAYLOAD\r\nContent-Length: 5368709121\r\n\r\nstart of a huge body",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("<Code>EntityTooLarge</Code>"), "{answer}");
    let health = client("GET", "/uploads?list-type=2", "");
    assert!(health.contains("<ListBucketResult"), "{health}");
    assert!(!health.contains("huge.bin"), "{health}");
}

/// Sends `request` as is and answers the response, read to the end of its
/// `Content-Length`-framed body.
pub(crate) fn raw_request(server: &TestServer, request: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(server.addr).expect("connecting");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a read timeout");
    stream.write_all(request.as_bytes()).expect("sending");
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&answer);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if body.len() >= length {
                break;
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

/// What curl prints for `args`.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(args)
        .output()
        .expect("running curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A signed request through curl's own SigV4 support, answering the body.
fn signed_curl(server: &TestServer) -> impl Fn(&str, &str, &str) -> String + '_ {
    move |method, path, body| {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-X",
                method,
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                "operator:secret",
                "--data-binary",
                body,
                &format!("http://{}{path}", server.addr),
            ])
            .output()
            .expect("running curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
