"""nimbus's stand-in for the `wsgi_handler` module serverless-wsgi packages with a function.

A function with `handler: wsgi_handler.handler` and `custom.wsgi.app: module.attribute`
serves that WSGI app (PEP 3333): each API Gateway event, REST payload 1.0 or HTTP API
payload 2.0, becomes one WSGI request, and the app's answer becomes the proxy
integration's result, as serverless-wsgi documents its behaviour. nimbus sets
NIMBUS_WSGI_APP from custom.wsgi.app and NIMBUS_WSGI_TEXT_MIME_TYPES from
custom.wsgi.textMimeTypes. Standard library only: the app brings its framework (Flask,
Django, ...) in its requirements.txt. An app's own wsgi_handler.py comes first on the
path, so it wins over this one.
"""

import base64
import importlib
import io
import os
import sys
from urllib.parse import unquote_to_bytes, urlencode

# Response types sent as text besides text/*: the list serverless-wsgi documents, plus
# custom.wsgi.textMimeTypes. Every other type is sent base64-encoded.
TEXT_MIME_TYPES = {
    "application/json",
    "application/javascript",
    "application/xml",
    "application/vnd.api+json",
    "image/svg+xml",
}
TEXT_MIME_TYPES.update(
    t.strip().lower() for t in os.environ.get("NIMBUS_WSGI_TEXT_MIME_TYPES", "").split(",") if t.strip()
)

# Events that keep a function warm; serverless-wsgi answers them without the app.
WARMING_SOURCES = ("aws.events", "serverless-plugin-warmup")


class WsgiAppError(Exception):
    """custom.wsgi.app names nothing that can serve requests."""


def _load_app(spec):
    if not spec:
        raise WsgiAppError(
            "custom.wsgi.app is not set: set it to module.attribute of your WSGI app, for example app.app"
        )
    folder, _, dotted = spec.rpartition("/")
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name or not attribute:
        raise WsgiAppError(
            "custom.wsgi.app is %r: it must be module.attribute of your WSGI app, for example app.app" % spec
        )
    where = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    if folder:
        # `web/api.app`: the module is imported from its folder, where its neighbours are.
        where = os.path.join(where, folder)
        sys.path.insert(0, where)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        # An ImportError would read as "Unable to import module 'wsgi_handler'", which
        # names the wrong module; say which one is missing instead.
        missing = getattr(e, "name", None)
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise WsgiAppError(
                "custom.wsgi.app is %r, but there is no module %s in %s" % (spec, module_name, where)
            ) from None
        hint = " (is %s in requirements.txt?)" % missing.split(".")[0] if missing else ""
        raise WsgiAppError(
            "custom.wsgi.app is %r: importing %s failed: %s%s" % (spec, module_name, e, hint)
        ) from e
    app = getattr(module, attribute, None)
    if app is None:
        raise WsgiAppError(
            "custom.wsgi.app is %r, but module %s (%s) has no attribute %r"
            % (spec, module_name, getattr(module, "__file__", "?"), attribute)
        )
    if not callable(app):
        raise WsgiAppError(
            "custom.wsgi.app is %r, but %s.%s is a %s, not a WSGI app"
            % (spec, module_name, attribute, type(app).__name__)
        )
    return app


APP = _load_app(os.environ.get("NIMBUS_WSGI_APP", ""))


def handler(event, context):
    if not isinstance(event, dict):
        raise TypeError("wsgi_handler.handler takes an API Gateway event, got %s" % type(event).__name__)
    if event.get("source") in WARMING_SOURCES:
        return {}
    if event.get("version") == "2.0":
        status, headers, body = call_app(APP, environ_v2(event, context))
        return result_v2(status, headers, body)
    status, headers, body = call_app(APP, environ_v1(event, context))
    return result_v1(status, headers, body)


# ---------------------------------------------------------------------------
# Event -> environ


def environ_v1(event, context):
    """REST payload 1.0. `path` is the resource path without the stage."""
    headers = {}
    multi = event.get("multiValueHeaders") or {}
    single = event.get("headers") or {}
    for name, values in multi.items():
        if values:
            headers[name.lower()] = _join_header(name, values)
    for name, value in single.items():
        if value is not None:
            headers.setdefault(name.lower(), value)

    pairs = []
    multi_query = event.get("multiValueQueryStringParameters") or {}
    if multi_query:
        for key, values in multi_query.items():
            pairs.extend((key, v) for v in values or [])
    else:
        pairs.extend((event.get("queryStringParameters") or {}).items())

    request_context = event.get("requestContext") or {}
    identity = request_context.get("identity") or {}
    path = event.get("path") or "/"
    script_name, path = _script_name(request_context.get("stage"), request_context.get("path") or "", path, headers)
    return _environ(
        event,
        context,
        method=event.get("httpMethod") or request_context.get("httpMethod") or "GET",
        script_name=script_name,
        path=path,
        query=urlencode(pairs),
        headers=headers,
        body=_body(event),
        source_ip=identity.get("sourceIp"),
    )


def environ_v2(event, context):
    """HTTP API payload 2.0: headers already joined with commas, cookies apart."""
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items() if value is not None}
    cookies = event.get("cookies") or []
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    request_context = event.get("requestContext") or {}
    http = request_context.get("http") or {}
    path = event.get("rawPath") or http.get("path") or "/"
    script_name, path = _script_name(request_context.get("stage"), path, path, headers)
    return _environ(
        event,
        context,
        method=http.get("method") or "GET",
        script_name=script_name,
        path=path,
        query=event.get("rawQueryString") or "",
        headers=headers,
        body=_body(event),
        source_ip=http.get("sourceIp"),
    )


def _script_name(stage, asked_path, path, headers):
    """SCRIPT_NAME and the path left for PATH_INFO.

    As serverless-wsgi sets them: API_GATEWAY_BASE_PATH (a custom domain's base path) is
    the script name, taken off the path; else the stage, when the URL carried it (on
    AWS, the execute-api domain; under nimbus, a request at /{stage}/...), unless
    STRIP_STAGE_PATH says not to. The app's own URLs then lead back the way it was asked.
    """
    base = os.environ.get("API_GATEWAY_BASE_PATH", "").strip("/")
    if base:
        script_name = "/" + base
        if path == script_name or path.startswith(script_name + "/"):
            path = path[len(script_name):] or "/"
        return script_name, path
    if os.environ.get("STRIP_STAGE_PATH", "").strip().lower() in ("yes", "y", "true", "t", "1"):
        return "", path
    if not stage or stage == "$default":
        return "", path
    prefix = "/" + stage
    via_stage = asked_path == prefix or asked_path.startswith(prefix + "/")
    if not (via_stage or "amazonaws.com" in headers.get("host", "")):
        return "", path
    # Payload 2.0 keeps a named stage in the path; 1.0 has already taken it off.
    if path == prefix or path.startswith(prefix + "/"):
        path = path[len(prefix):] or "/"
    return prefix, path


def _environ(event, context, method, script_name, path, query, headers, body, source_ip):
    scheme = headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = headers.get("host", "")
    server_name, _, host_port = host.rpartition(":") if host.rfind(":") > host.rfind("]") else (host, "", "")
    port = headers.get("x-forwarded-port") or host_port or ("443" if scheme == "https" else "80")
    request_context = event.get("requestContext") or {}
    authorizer = request_context.get("authorizer")
    environ = {
        "REQUEST_METHOD": method.upper(),
        "SCRIPT_NAME": _native(script_name),
        # PEP 3333: PATH_INFO is the percent-decoded path, its bytes held as latin-1.
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": _native(query),
        "CONTENT_TYPE": _native(headers.get("content-type", "")),
        "CONTENT_LENGTH": str(len(body)),
        "SERVER_NAME": _native(server_name or "lambda"),
        "SERVER_PORT": port.split(",")[0].strip(),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": source_ip or "",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # The raw event and context, under the names serverless-wsgi documents.
        "serverless.event": event,
        "serverless.context": context,
        "serverless.authorizer": authorizer,
    }
    if isinstance(authorizer, dict) and authorizer.get("principalId"):
        environ["REMOTE_USER"] = _native(str(authorizer["principalId"]))
    for name, value in headers.items():
        key = "HTTP_" + name.upper().replace("-", "_")
        if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
            environ[key] = _native(value)
    return environ


def _join_header(name, values):
    # RFC 9110 5.3: repeated fields join with commas; Cookie (RFC 6265) with "; ".
    return ("; " if name.lower() == "cookie" else ", ").join(str(v) for v in values)


def _body(event):
    body = event.get("body")
    if body is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8") if isinstance(body, str) else bytes(body)


def _native(text):
    # PEP 3333 "native strings": str holding bytes as latin-1.
    return text.encode("utf-8").decode("latin-1")


# ---------------------------------------------------------------------------
# The WSGI call


def call_app(app, environ):
    """Runs the app for one request; returns (status code, headers, body bytes)."""
    state = {}
    chunks = []

    def start_response(status, response_headers, exc_info=None):
        # The body is buffered and nothing is sent before the app returns, so an error
        # page started with exc_info simply replaces what was started before (PEP 3333).
        if exc_info is None and "status" in state:
            raise AssertionError("start_response called a second time without exc_info (PEP 3333)")
        state["status"] = status
        state["headers"] = list(response_headers)
        return chunks.append

    result = app(environ, start_response)
    try:
        for chunk in result:
            if not isinstance(chunk, (bytes, bytearray)):
                raise TypeError("a WSGI app yields bytes (PEP 3333), got %s" % type(chunk).__name__)
            if chunk:
                chunks.append(bytes(chunk))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if "status" not in state:
        raise RuntimeError("the WSGI app returned without calling start_response")
    try:
        code = int(str(state["status"]).split(" ", 1)[0])
    except ValueError:
        raise RuntimeError("the WSGI app started the response with a bad status %r" % state["status"])
    return code, state["headers"], b"".join(chunks)


# ---------------------------------------------------------------------------
# Response -> result


def result_v1(status, headers, body):
    """Payload 1.0: every header in multiValueHeaders, so repeated ones (Set-Cookie) stay
    apart."""
    grouped = {}
    spelled = {}
    for name, value in headers:
        key = name.lower()
        spelled.setdefault(key, name)
        grouped.setdefault(spelled[key], []).append(_text(value))
    text, is_base64 = _encode_body(headers, body)
    return {"statusCode": status, "multiValueHeaders": grouped, "body": text, "isBase64Encoded": is_base64}


def result_v2(status, headers, body):
    """Payload 2.0: Set-Cookie headers go to `cookies`, other repeated headers are joined."""
    joined = {}
    spelled = {}
    cookies = []
    for name, value in headers:
        key = name.lower()
        if key == "set-cookie":
            cookies.append(_text(value))
            continue
        if key in spelled:
            joined[spelled[key]] += ", " + _text(value)
        else:
            spelled[key] = name
            joined[name] = _text(value)
    text, is_base64 = _encode_body(headers, body)
    result = {"statusCode": status, "headers": joined, "body": text, "isBase64Encoded": is_base64}
    if cookies:
        result["cookies"] = cookies
    return result


def _encode_body(headers, body):
    if not body:
        return "", False
    content_type = ""
    compressed = False
    for name, value in headers:
        key = name.lower()
        if key == "content-type":
            content_type = value
        elif key == "content-encoding" and value.strip():
            compressed = True
    mime = content_type.split(";", 1)[0].strip().lower() or "text/plain"
    if not compressed and (mime.startswith("text/") or mime in TEXT_MIME_TYPES):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass  # text in another charset: base64 keeps its bytes
    return base64.b64encode(body).decode("ascii"), True


def _text(value):
    # Header values are native strings (latin-1); most are ASCII, a UTF-8 one is restored.
    value = str(value)
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
