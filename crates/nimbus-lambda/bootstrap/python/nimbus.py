"""nimbus client for Python functions run by `nimbus up`.

    import nimbus
    nimbus.queue("jobs").send({"id": 1})
    obj = nimbus.bucket("uploads").get("a/b.png")      # {"body": bytes, ...} or None
    hits = nimbus.kv("counters").get("hits", type="json")

Talks to the nimbus control API (docs/api.md) at NIMBUS_API with the bearer
token in NIMBUS_TOKEN, both set by nimbus in every function's environment.
Standard library only (Python 3.9-3.13). Persistent HTTP/1.1 connections,
safe to use from several threads.
"""

import atexit
import base64
import decimal
import http.client
import json
import os
import socket
import threading
import urllib.parse

__all__ = [
    "NimbusError",
    "FunctionError",
    "queue",
    "topic",
    "bucket",
    "kv",
    "invoke",
    "Queue",
    "Topic",
    "Bucket",
    "KV",
]

__version__ = "0.1.0"


class NimbusError(Exception):
    """An error from the nimbus API: `status` is the HTTP status (None when no
    response came back), `type` the error type (`AccessDenied`,
    `QueueDoesNotExist`, `NoSuchKey`, ...), `message` the server's message."""

    def __init__(self, message, status=None, type=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type

    def __str__(self):
        return self.message

    def __repr__(self):
        return "%s(%r, status=%r, type=%r)" % (self.__class__.__name__, self.message, self.status, self.type)


class FunctionError(NimbusError):
    """A synchronous invoke whose function failed. `payload` is the error body
    the function returned (`errorType`, `errorMessage`, `stackTrace`)."""

    def __init__(self, message, type=None, payload=None, function_error=None):
        super().__init__(message, 200, type)
        self.payload = payload
        self.function_error = function_error
        self.stack_trace = payload.get("stackTrace") if isinstance(payload, dict) else None


# ---------------------------------------------------------------------------
# Connection handling


_DEFAULT_TYPES = {
    400: "InvalidParameterValue",
    401: "Unauthorized",
    403: "AccessDenied",
    404: "NotFound",
    413: "RequestEntityTooLarge",
    429: "Throttled",
}


class _Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # http.client.HTTPMessage (case-insensitive)
        self.body = body


class _Client:
    """Keeps idle connections for reuse; each request borrows one (or opens a
    new one), so concurrent threads never share a socket."""

    def __init__(self, api, token):
        self.api = api
        self.token = token
        url = urllib.parse.urlsplit(api if "://" in api else "http://" + api)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise NimbusError("NIMBUS_API must be an http(s) URL: %s" % api, None, "NotConfigured")
        self.secure = url.scheme == "https"
        self.host = url.hostname
        self.port = url.port or (443 if self.secure else 80)
        self.base = url.path.rstrip("/")
        self.auth = "Bearer " + token
        self.lock = threading.Lock()
        self.idle = []
        self.pid = os.getpid()

    def _connect(self):
        if self.secure:
            conn = http.client.HTTPSConnection(self.host, self.port)
        else:
            conn = http.client.HTTPConnection(self.host, self.port)
        conn.connect()
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (OSError, AttributeError):
            pass
        return conn

    def _borrow(self):
        with self.lock:
            if self.pid != os.getpid():
                # Forked: the parent's sockets are not ours to use (closing our
                # copies of the descriptors leaves the parent's intact).
                stale, self.idle = self.idle, []
                self.pid = os.getpid()
            else:
                stale = None
                if self.idle:
                    return self.idle.pop(), True
        if stale:
            for conn in stale:
                try:
                    conn.close()
                except Exception:
                    pass
        return None, False

    def _give_back(self, conn):
        with self.lock:
            if self.pid == os.getpid() and len(self.idle) < 8:
                self.idle.append(conn)
                return
        conn.close()

    def request(self, method, path, body=None, headers=None):
        h = {"Authorization": self.auth}
        # The invocation's trace goes along, so what this call causes joins the same trace.
        trace = os.environ.get("_X_AMZN_TRACE_ID")
        if trace:
            h["X-Amzn-Trace-Id"] = trace
        if headers:
            h.update(headers)
        if body is None and method in ("POST", "PUT"):
            body = b""
        for attempt in (0, 1):
            conn, reused = self._borrow()
            try:
                if conn is None:
                    conn = self._connect()
                conn.request(method, self.base + path, body=body, headers=h)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.HTTPException, OSError) as exc:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass
                # A kept-alive connection the server closed while idle: the
                # request never reached it, so send it again on a fresh one.
                if reused and attempt == 0 and isinstance(
                    exc,
                    (http.client.RemoteDisconnected, http.client.BadStatusLine, ConnectionResetError, BrokenPipeError),
                ):
                    continue
                raise NimbusError("nimbus API %s unreachable: %s" % (self.api, exc), None, "ConnectionError") from exc
            if resp.will_close:
                conn.close()
            else:
                self._give_back(conn)
            return _Response(resp.status, resp.headers, data)
        raise AssertionError("unreachable")

    def close(self):
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            try:
                conn.close()
            except Exception:
                pass


_client = None
_client_lock = threading.Lock()


@atexit.register
def _close_at_exit():
    c = _client
    if c is not None:
        c.close()


def _get_client():
    global _client
    api = os.environ.get("NIMBUS_API")
    token = os.environ.get("NIMBUS_TOKEN")
    c = _client
    if c is not None and c.api == api and c.token == token:
        return c
    if not api:
        raise NimbusError(
            "NIMBUS_API is not set: this client works inside functions run by `nimbus up`", None, "NotConfigured"
        )
    if not token:
        raise NimbusError(
            "NIMBUS_TOKEN is not set: this client works inside functions run by `nimbus up`", None, "NotConfigured"
        )
    with _client_lock:
        c = _client
        if c is None or c.api != api or c.token != token:
            if c is not None:
                c.close()
            c = _client = _Client(api, token)
        return c


def _request(method, path, body=None, headers=None, query=None):
    client = _get_client()
    if query:
        q = [(k, _query_value(v)) for k, v in query.items() if v is not None]
        if q:
            path += "?" + urllib.parse.urlencode(q)
    return client.request(method, path, body, headers)


def _query_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _error_from(res):
    message = None
    etype = None
    if res.body:
        text = res.body.decode("utf-8", "replace")
        try:
            j = json.loads(text)
        except ValueError:
            message = text[:500]
        else:
            if isinstance(j, dict):
                message = j.get("message") if isinstance(j.get("message"), str) else j.get("Message")
                etype = j.get("type") if isinstance(j.get("type"), str) else j.get("__type") or j.get("code")
    if not etype:
        etype = _DEFAULT_TYPES.get(res.status, "HttpError")
    if not message:
        message = "%s (HTTP %s)" % (etype, res.status)
    return NimbusError(message, res.status, etype)


def _ok(res):
    if 200 <= res.status < 300:
        return res
    raise _error_from(res)


def _parse_json(res):
    if not res.body:
        return None
    try:
        return json.loads(res.body.decode("utf-8"))
    except ValueError:
        raise NimbusError("nimbus API returned invalid JSON (HTTP %s)" % res.status, res.status, "InvalidResponse")


def _json(method, path, payload=None):
    if payload is None:
        res = _request(method, path)
    else:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")
        res = _request(method, path, body, {"Content-Type": "application/json"})
    return _parse_json(_ok(res))


def _json_default(obj):
    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj).decode("utf-8")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


# ---------------------------------------------------------------------------
# Helpers


def _seg(name, what):
    if not isinstance(name, str) or not name:
        raise TypeError("%s must be a non-empty string" % what)
    return urllib.parse.quote(_resource_name(name), safe="")


def _resource_name(ref):
    """A queue, topic or bucket may be named by its ARN (arn:aws:sqs:REGION:ACCOUNT:name,
    arn:aws:s3:::name) or an SQS queue URL (.../ACCOUNT/name), as `Ref`, `Fn::GetAtt` and
    `${construct:..}` put them in the environment."""
    if ref.startswith("arn:"):
        parts = ref.split(":", 5)
        return parts[5] if len(parts) == 6 and parts[5] else ref
    if ref.startswith(("http://", "https://")):
        last = ref.rstrip("/").rsplit("/", 1)[-1]
        return last or ref
    return ref


def _key_path(key):
    """Object keys: percent-encoded, '/' kept literal."""
    if not isinstance(key, str) or not key:
        raise TypeError("key must be a non-empty string")
    return urllib.parse.quote(key, safe="/")


def _to_bytes(value, what="body"):
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))


def _to_text(value):
    """Message bodies are strings; anything else is sent as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default)


def _to_attributes(attrs):
    """{"color": "red", "n": 3} -> {"color": {"dataType": "String", "value": "red"},
    "n": {"dataType": "Number", "value": "3"}}"""
    if attrs is None:
        return None
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        if isinstance(v, bool):
            out[k] = {"dataType": "String", "value": "true" if v else "false"}
        elif isinstance(v, str):
            out[k] = {"dataType": "String", "value": v}
        elif isinstance(v, (int, float, decimal.Decimal)):
            out[k] = {"dataType": "Number", "value": str(v)}
        elif isinstance(v, (bytes, bytearray, memoryview)):
            out[k] = {"dataType": "Binary", "value": base64.b64encode(bytes(v)).decode("ascii")}
        elif isinstance(v, (list, tuple)):
            out[k] = {"dataType": "String.Array", "value": json.dumps(list(v), separators=(",", ":"), ensure_ascii=False, default=_json_default)}
        elif isinstance(v, dict) and isinstance(v.get("dataType"), str):
            out[k] = {"dataType": v["dataType"], "value": v.get("value")}
        elif isinstance(v, dict) and isinstance(v.get("DataType"), str):
            # boto3 shape: {"DataType", "StringValue" | "BinaryValue"}
            raw = v.get("StringValue", v.get("BinaryValue"))
            if isinstance(raw, (bytes, bytearray, memoryview)):
                raw = base64.b64encode(bytes(raw)).decode("ascii")
            out[k] = {"dataType": v["DataType"], "value": raw}
        else:
            raise TypeError("attribute %s: unsupported value of type %s" % (k, type(v).__name__))
    return out


def _defined(**kw):
    return {k: v for k, v in kw.items() if v is not None}


def _header_text(v):
    """Header values are decoded as latin-1; undo that if the server sent raw UTF-8."""
    if v is None:
        return None
    try:
        return v.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return v


def _int_header(v):
    try:
        return int(v) if v is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# Queues


def _receipt_handle(h):
    if isinstance(h, dict) and isinstance(h.get("receiptHandle"), str):
        return h["receiptHandle"]
    if not isinstance(h, str) or not h:
        raise TypeError("receipt_handle must be a non-empty string")
    return h


class Queue:
    def __init__(self, name):
        self.name = name
        self._path = "/v1/queues/" + _seg(name, "queue name")

    def __repr__(self):
        return "nimbus.Queue(%r)" % self.name

    def send(self, body, delay_seconds=None, attributes=None, group_id=None, deduplication_id=None):
        """-> {"messageId", "md5OfBody", "sequenceNumber"?}"""
        return _json(
            "POST",
            self._path + "/messages",
            _defined(
                body=_to_text(body),
                delaySeconds=delay_seconds,
                attributes=_to_attributes(attributes),
                groupId=group_id,
                deduplicationId=deduplication_id,
            ),
        )

    def send_batch(self, entries):
        """Sends up to 10 messages in one request and one commit. Each entry is a dict with
        "body" and optionally "id" (default: its index), "delay_seconds", "attributes",
        "group_id", "deduplication_id".
        -> {"successful": [{"id", "messageId", "md5OfBody", ...}], "failed": [{"id", "code", "message", "senderFault"}]}"""
        return _json(
            "POST",
            self._path + "/messages/batch",
            {
                "entries": [
                    _defined(
                        id=str(entry.get("id", idx)),
                        body=_to_text(entry.get("body")),
                        delaySeconds=entry.get("delay_seconds"),
                        attributes=_to_attributes(entry.get("attributes")),
                        groupId=entry.get("group_id"),
                        deduplicationId=entry.get("deduplication_id"),
                    )
                    for idx, entry in enumerate(entries)
                ]
            },
        )

    def receive(self, max_messages=None, visibility_timeout=None):
        """-> [{"messageId", "receiptHandle", "body", "attributes", "receiveCount", "sentTimestamp", "groupId"?}]"""
        r = _json(
            "POST",
            self._path + "/receive",
            _defined(maxMessages=max_messages, visibilityTimeout=visibility_timeout),
        )
        return (r or {}).get("messages") or []

    def delete(self, receipt_handle):
        """Deletes a received message (its receipt handle, or the message dict)."""
        _json("POST", self._path + "/delete", {"receiptHandle": _receipt_handle(receipt_handle)})

    def change_visibility(self, receipt_handle, visibility_timeout):
        _json(
            "POST",
            self._path + "/visibility",
            {"receiptHandle": _receipt_handle(receipt_handle), "visibilityTimeout": visibility_timeout},
        )

    def purge(self):
        """-> {"purged": n}"""
        return _json("POST", self._path + "/purge", {}) or {}


# ---------------------------------------------------------------------------
# Topics


class Topic:
    def __init__(self, name):
        self.name = name
        self._path = "/v1/topics/" + _seg(name, "topic name")

    def __repr__(self):
        return "nimbus.Topic(%r)" % self.name

    def publish(self, message, subject=None, attributes=None):
        """-> {"messageId"}"""
        return _json(
            "POST",
            self._path + "/publish",
            _defined(message=_to_text(message), subject=subject, attributes=_to_attributes(attributes)),
        )


# ---------------------------------------------------------------------------
# Buckets


def _object_info(key, res):
    h = res.headers
    return {
        "key": key,
        "content_type": h.get("Content-Type"),
        "etag": h.get("ETag"),
        "size": _int_header(h.get("Content-Length")),
        "last_modified": h.get("Last-Modified"),
    }


class Bucket:
    def __init__(self, name):
        self.name = name
        self._path = "/v1/buckets/" + _seg(name, "bucket name") + "/objects"

    def __repr__(self):
        return "nimbus.Bucket(%r)" % self.name

    def put(self, key, body, content_type=None):
        """body: bytes or str. -> {"key", "size", "eTag"}"""
        if content_type is None:
            content_type = "text/plain; charset=utf-8" if isinstance(body, str) else "application/octet-stream"
        res = _request("PUT", self._path + "/" + _key_path(key), _to_bytes(body), {"Content-Type": content_type})
        return _parse_json(_ok(res))

    def get(self, key):
        """-> {"body": bytes, "content_type", "etag", "size", "last_modified", "key"} or None"""
        res = _request("GET", self._path + "/" + _key_path(key))
        if res.status == 404:
            err = _error_from(res)
            if err.type == "NoSuchBucket":
                raise err
            return None
        _ok(res)
        info = _object_info(key, res)
        info["body"] = res.body
        info["size"] = len(res.body)
        return info

    def head(self, key):
        """-> {"content_type", "etag", "size", "last_modified", "key"} or None"""
        res = _request("HEAD", self._path + "/" + _key_path(key))
        if res.status == 404:
            return None
        _ok(res)
        return _object_info(key, res)

    def delete(self, key):
        _ok(_request("DELETE", self._path + "/" + _key_path(key)))

    def list(self, prefix=None, start_after=None, max_keys=None):
        """-> {"objects": [{"key", "size", "eTag", "lastModified"}], "isTruncated", "nextStartAfter"?}"""
        res = _request("GET", self._path, query={"prefix": prefix, "startAfter": start_after, "maxKeys": max_keys})
        return _parse_json(_ok(res))


# ---------------------------------------------------------------------------
# KV namespaces

_KV_TYPES = ("text", "json", "bytes")


def _decode_value(data, type):
    if type == "json":
        return json.loads(data.decode("utf-8"))
    if type == "bytes":
        return data
    return data.decode("utf-8")


class KV:
    def __init__(self, namespace):
        self.namespace = namespace
        self._path = "/v1/kv/" + _seg(namespace, "namespace") + "/keys"

    def __repr__(self):
        return "nimbus.KV(%r)" % self.namespace

    def _get(self, key, type):
        if type not in _KV_TYPES:
            raise ValueError("type must be one of %s" % ", ".join(_KV_TYPES))
        res = _request("GET", self._path + "/" + _key_path(key))
        if res.status == 404:
            err = _error_from(res)
            if err.type == "NoSuchNamespace":
                raise err
            return None
        return _ok(res)

    def get(self, key, type="text"):
        """-> the value (str for "text", parsed JSON for "json", bytes for "bytes") or None"""
        res = self._get(key, type)
        return None if res is None else _decode_value(res.body, type)

    def get_with_metadata(self, key, type="text"):
        """-> {"value", "metadata"} (both None when the key is absent)"""
        res = self._get(key, type)
        if res is None:
            return {"value": None, "metadata": None}
        metadata = None
        raw = _header_text(res.headers.get("X-Nimbus-Metadata"))
        if raw:
            try:
                metadata = json.loads(raw)
            except ValueError:
                metadata = None
        return {"value": _decode_value(res.body, type), "metadata": metadata}

    def put(self, key, value, expiration_ttl=None, expiration=None, metadata=None):
        """value: str or bytes (anything else is stored as JSON)."""
        if isinstance(value, str):
            data, ctype = value.encode("utf-8"), "text/plain; charset=utf-8"
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data, ctype = bytes(value), "application/octet-stream"
        else:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")
            ctype = "application/json"
        headers = {"Content-Type": ctype}
        if metadata is not None:
            # ensure_ascii: header values must be ASCII
            headers["X-Nimbus-Metadata"] = json.dumps(metadata, separators=(",", ":"), default=_json_default)
        res = _request(
            "PUT",
            self._path + "/" + _key_path(key),
            data,
            headers,
            query={"expirationTtl": expiration_ttl, "expiration": expiration},
        )
        _ok(res)

    def delete(self, key):
        _ok(_request("DELETE", self._path + "/" + _key_path(key)))

    def list(self, prefix=None, cursor=None, limit=None):
        """-> {"keys": [{"name", "expiration"?, "metadata"?}], "list_complete", "cursor"?}"""
        res = _request("GET", self._path, query={"prefix": prefix, "cursor": cursor, "limit": limit})
        return _parse_json(_ok(res))


# ---------------------------------------------------------------------------
# Invoke


def invoke(function_name, event=None, asynchronous=False):
    """Invokes a function. Synchronous: returns its result, raises FunctionError
    when it failed. asynchronous=True: queues the event, returns {"messageId"}."""
    payload = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if asynchronous:
        headers["X-Amz-Invocation-Type"] = "Event"
    res = _ok(
        _request(
            "POST",
            "/2015-03-31/functions/" + _seg(function_name, "function name") + "/invocations",
            payload,
            headers,
        )
    )
    text = res.body.decode("utf-8", "replace")
    if not text:
        result = {} if asynchronous else None
    else:
        try:
            result = json.loads(text)
        except ValueError:
            result = text  # a function may return a bare non-JSON body
    fn_error = res.headers.get("X-Amz-Function-Error")
    if fn_error:
        p = result if isinstance(result, dict) else {}
        message = p.get("errorMessage")
        if not isinstance(message, str):
            message = result if isinstance(result, str) else "%s failed" % function_name
        etype = p.get("errorType") if isinstance(p.get("errorType"), str) else fn_error
        raise FunctionError(message, etype, result, fn_error)
    return result


# ---------------------------------------------------------------------------


def queue(name):
    return Queue(name)


def topic(name):
    return Topic(name)


def bucket(name):
    return Bucket(name)


def kv(namespace):
    return KV(namespace)
