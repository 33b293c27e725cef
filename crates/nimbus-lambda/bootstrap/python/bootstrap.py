"""nimbus Python runtime bootstrap.

Speaks the AWS Lambda Runtime API (2018-06-01) to the endpoint in
AWS_LAMBDA_RUNTIME_API and runs the handler named by _HANDLER from
LAMBDA_TASK_ROOT. Standard library only (Python 3.9-3.13).

Started as: python3 -u /path/to/bootstrap.py
"""

import importlib
import json
import logging
import os
import socket
import sys
import time
import traceback

API_PREFIX = "/2018-06-01/runtime"
ERROR_HEADERS = {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": "Unhandled",
}
JSON_HEADERS = {"Content-Type": "application/json"}
# nimbus's extension of the Runtime API: a result posted with this header is answered with
# the next invocation, as GET /next would answer it, so an invocation costs one request
# instead of two. Any other answer (202 from a server without it, an error) is followed by
# a plain GET /next.
NEXT_JSON_HEADERS = dict(JSON_HEADERS, **{"Nimbus-Next": "1"})
NEXT_ERROR_HEADERS = dict(ERROR_HEADERS, **{"Nimbus-Next": "1"})


# ---------------------------------------------------------------------------
# Runtime API client: one persistent HTTP/1.1 connection.
#
# A small client on a plain socket rather than http.client: importing http.client (and the
# email package it parses headers with) adds ~10 ms to every cold start, and its response
# parsing is most of the runtime's CPU per invocation. nimbus's Runtime API always
# answers with a Content-Length; any other framing is reported as an error.


class RuntimeApiError(OSError):
    pass


class RuntimeClient:
    def __init__(self, address):
        host, _, port = address.rpartition(":")
        if not host:
            host, port = address, "80"
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        self.address = address
        self.host = host
        self.port = int(port or 80)
        self.sock = None
        self.buf = b""

    def _connect(self):
        sock = socket.create_connection((self.host, self.port))  # no timeout: /next long-polls
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.sock = sock
        self.buf = b""
        return sock

    def _close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.buf = b""

    def _exchange(self, sock, method, path, body, headers):
        head = "%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, path, self.address)
        if headers:
            for name, value in headers.items():
                head += "%s: %s\r\n" % (name, value)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        data = (head + "\r\n").encode("latin-1")
        sock.sendall(data + body if body is not None else data)

        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionResetError("Runtime API closed the connection")
            buf += chunk
        lines = buf[:end].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0][9:12])
        except ValueError:
            raise RuntimeApiError("Runtime API sent a malformed status line: %r" % lines[0][:80])
        resp_headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                resp_headers[name.strip().lower()] = value.strip()
        try:
            length = int(resp_headers["content-length"])
        except (KeyError, ValueError):
            raise RuntimeApiError("Runtime API answered without a Content-Length")
        start = end + 4
        parts = [buf[start:]]
        have = len(parts[0])
        while have < length:
            chunk = sock.recv(max(65536, length - have))
            if not chunk:
                raise ConnectionResetError("Runtime API closed the connection mid-response")
            parts.append(chunk)
            have += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.buf = data[length:]
        if resp_headers.get("connection", "").lower() == "close":
            self._close()
        return status, resp_headers, data[:length]

    def request(self, method, path, body=None, headers=None):
        """Returns (status, headers with lower-case names, body bytes). Retries on a
        dropped connection."""
        last_exc = None
        for attempt in range(3):
            fresh = self.sock is None
            try:
                sock = self._connect() if fresh else self.sock
                return self._exchange(sock, method, path, body, headers)
            except RuntimeApiError:
                self._close()
                raise
            except OSError as exc:
                last_exc = exc
                self._close()
                if fresh:
                    time.sleep(0.02 * (attempt + 1))
        raise last_exc

    def next(self):
        return self.request("GET", API_PREFIX + "/invocation/next")

    def post_response(self, request_id, body):
        return self.request(
            "POST", API_PREFIX + "/invocation/" + request_id + "/response", body, NEXT_JSON_HEADERS
        )

    def post_error(self, request_id, error):
        return self.request(
            "POST",
            API_PREFIX + "/invocation/" + request_id + "/error",
            to_json_bytes_safe(error),
            NEXT_ERROR_HEADERS,
        )

    def post_init_error(self, error):
        return self.request("POST", API_PREFIX + "/init/error", to_json_bytes_safe(error), ERROR_HEADERS)


# ---------------------------------------------------------------------------
# JSON helpers


def _default(obj):
    # Only values json cannot encode get here, so decimal (~3 ms) is imported on first need
    # rather than at every cold start.
    import decimal

    if isinstance(obj, decimal.Decimal):
        if obj.is_nan():
            return None
        if obj == obj.to_integral_value():
            return int(obj)
        return float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def to_json_bytes(obj):
    return json.dumps(obj, default=_default).encode("utf-8")


def to_json_bytes_safe(obj):
    try:
        return to_json_bytes(obj)
    except Exception:
        return b'{"errorType":"Runtime.SerializationError","errorMessage":"error could not be serialised","stackTrace":[]}'


def make_error(message, error_type, stack_trace=None, request_id=None):
    err = {
        "errorMessage": message if message is not None else "",
        "errorType": error_type,
        "stackTrace": stack_trace if stack_trace is not None else [],
    }
    if request_id is not None:
        err["requestId"] = request_id
    return err


_THIS_FILE = os.path.abspath(__file__)
_IMPORTLIB_FILE = os.path.abspath(importlib.__file__)


def _user_frame(frame):
    fn = frame.filename
    return not (fn.startswith("<frozen ") or fn == _THIS_FILE or fn == _IMPORTLIB_FILE)


def error_from_exception(exc, request_id=None, skip_frames=0):
    etype = type(exc)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)[skip_frames:] if _user_frame(f)]
    try:
        message = str(exc)
    except Exception:
        message = "<exception str() failed>"
    return make_error(message, etype.__name__, traceback.format_list(frames), request_id)


# ---------------------------------------------------------------------------
# Logging


_current_request_id = None


class _RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.aws_request_id = _current_request_id
        return True


def setup_logging():
    handler = logging.StreamHandler(sys.stdout)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL")
    if level:
        try:
            root.setLevel(level.upper())
        except (ValueError, TypeError):
            pass


def log_error(error):
    # As Lambda's Python runtime logs it: `[ERROR] Type: message`, then the traceback.
    # Every line carries the runtime's `[ERROR]\ttime\trequest id\t` prefix, so the
    # traceback is read at ERROR level line by line, not as plain INFO output.
    try:
        lines = ["%s: %s" % (error.get("errorType"), error.get("errorMessage"))]
        stack = error.get("stackTrace") or []
        if stack:
            lines.append("Traceback (most recent call last):")
        for entry in stack:
            lines.extend(entry.rstrip("\n").split("\n"))
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + ".%03dZ" % (int(now * 1000) % 1000)
        prefix = "[ERROR]\t%s\t%s\t" % (stamp, error.get("requestId") or _current_request_id or "-")
        sys.stdout.write("".join(prefix + line + "\n" for line in lines))
        sys.stdout.flush()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# Context


class CognitoIdentity:
    __slots__ = ("cognito_identity_id", "cognito_identity_pool_id")

    def __init__(self, data):
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")

    def __repr__(self):
        return "CognitoIdentity([cognito_identity_id=%s,cognito_identity_pool_id=%s])" % (
            self.cognito_identity_id,
            self.cognito_identity_pool_id,
        )


class Client:
    __slots__ = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")

    def __init__(self, data):
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext:
    __slots__ = ("client", "custom", "env")

    def __init__(self, data):
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = data.get("custom")
        self.env = data.get("env")


def _json_header(value):
    if not value:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


_FUNCTION_NAME = _FUNCTION_VERSION = _LOG_GROUP = _LOG_STREAM = None
_MEMORY_MB = 128


def configure():
    """Reads the function's settings: at start, or once a pre-started process has been
    handed to its function."""
    global _FUNCTION_NAME, _FUNCTION_VERSION, _LOG_GROUP, _LOG_STREAM, _MEMORY_MB
    _FUNCTION_NAME = os.environ.get("AWS_LAMBDA_FUNCTION_NAME")
    _FUNCTION_VERSION = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")
    _LOG_GROUP = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME")
    _LOG_STREAM = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME")
    try:
        _MEMORY_MB = int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"))
    except ValueError:
        _MEMORY_MB = 128


def await_assignment(client):
    """A pre-started process (NIMBUS_PRESTART) has loaded this file before any function
    was known, in the sandbox its function will run in: it asks the Runtime API which
    function it serves, takes on that function's whole environment (PATH, LANG and HOME
    are the ones nimbus gives every instance, and the Runtime API is its own), puts PYTHONPATH's folders on sys.path as
    the interpreter would have at start, and only then loads the handler."""
    status, _headers, body = client.request("GET", "/2018-06-01/runtime/nimbus/assignment")
    if status != 200:
        raise RuntimeError("Runtime API /nimbus/assignment returned %s" % status)
    environment = json.loads(body)["environment"]
    for key in list(os.environ):
        if key not in ("PATH", "LANG", "HOME", "AWS_LAMBDA_RUNTIME_API"):
            del os.environ[key]
    os.environ.update(environment)
    time.tzset()
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[1:1] = [p for p in extra if p not in sys.path]


class LambdaContext:
    def __init__(self, request_id, deadline_ms, invoked_function_arn, identity, client_context):
        self.aws_request_id = request_id
        self.log_group_name = _LOG_GROUP
        self.log_stream_name = _LOG_STREAM
        self.function_name = _FUNCTION_NAME
        self.memory_limit_in_mb = _MEMORY_MB
        self.function_version = _FUNCTION_VERSION
        self.invoked_function_arn = invoked_function_arn
        self._deadline_ms = deadline_ms
        idata = _json_header(identity)
        self.identity = CognitoIdentity(idata) if idata is not None else CognitoIdentity({})
        cdata = _json_header(client_context)
        self.client_context = ClientContext(cdata) if cdata is not None else None

    def get_remaining_time_in_millis(self):
        return int(max(self._deadline_ms - time.time() * 1000, 0))

    def log(self, msg):
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self):
        return (
            "LambdaContext([aws_request_id=%s,log_group_name=%s,log_stream_name=%s,function_name=%s,"
            "memory_limit_in_mb=%s,function_version=%s,invoked_function_arn=%s,client_context=%s,identity=%s])"
            % (
                self.aws_request_id,
                self.log_group_name,
                self.log_stream_name,
                self.function_name,
                self.memory_limit_in_mb,
                self.function_version,
                self.invoked_function_arn,
                self.client_context,
                self.identity,
            )
        )


# ---------------------------------------------------------------------------
# Handler loading


class InitFault(Exception):
    def __init__(self, error):
        super().__init__(error.get("errorMessage"))
        self.error = error


def load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
        if not modname or not fname:
            raise ValueError("not enough values to unpack (expected 2, got 1)")
    except ValueError as e:
        raise InitFault(make_error("Bad handler '%s': %s" % (handler, e), "Runtime.MalformedHandlerName"))

    modname = modname.replace("/", ".")
    if modname.split(".")[0] in sys.builtin_module_names:
        raise InitFault(
            make_error("Cannot use built-in module %s as a handler module" % modname, "Runtime.BuiltInModuleConflict")
        )
    try:
        module = importlib.import_module(modname)
    except ImportError as e:
        raise InitFault(make_error("Unable to import module '%s': %s" % (modname, e), "Runtime.ImportModuleError"))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise InitFault(
            make_error("Syntax error in module '%s': %s" % (modname, e), "Runtime.UserCodeSyntaxError", trace)
        )
    # Any other exception raised at import propagates and is reported with its
    # own class name (as the official runtime does).

    fn = getattr(module, fname, None)
    if fn is None:
        raise InitFault(make_error("Handler '%s' missing on module '%s'" % (fname, modname), "Runtime.HandlerNotFound"))
    if not callable(fn):
        raise InitFault(
            make_error("Handler '%s' on module '%s' is not callable" % (fname, modname), "Runtime.HandlerNotFound")
        )
    return fn


# ---------------------------------------------------------------------------
# Main loop


def handle_one(client, request_handler, status, headers, body):
    """Invokes the handler with one invocation and posts its result; returns the Runtime
    API's answer to the post (the next invocation, with nimbus's Nimbus-Next)."""
    global _current_request_id
    request_id = headers.get("lambda-runtime-aws-request-id") or ""
    _current_request_id = request_id
    trace_id = headers.get("lambda-runtime-trace-id")
    if trace_id is not None:
        os.environ["_X_AMZN_TRACE_ID"] = trace_id
    else:
        os.environ.pop("_X_AMZN_TRACE_ID", None)
    try:
        deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)
    except ValueError:
        deadline_ms = 0
    if deadline_ms <= 0:
        deadline_ms = int(time.time() * 1000) + 900000

    context = LambdaContext(
        request_id,
        deadline_ms,
        headers.get("lambda-runtime-invoked-function-arn"),
        headers.get("lambda-runtime-cognito-identity"),
        headers.get("lambda-runtime-client-context"),
    )

    try:
        event = json.loads(body) if body else None
    except ValueError as e:
        error = make_error("Unable to unmarshal input: %s" % e, "Runtime.UnmarshalError", [], request_id)
        log_error(error)
        return client.post_error(request_id, error)

    try:
        result = request_handler(event, context)
    except Exception as e:
        error = error_from_exception(e, request_id, skip_frames=1)
        log_error(error)
        return client.post_error(request_id, error)

    try:
        payload = to_json_bytes(result)
    except Exception as e:
        error = make_error("Unable to marshal response: %s" % e, "Runtime.MarshalError", [], request_id)
        log_error(error)
        return client.post_error(request_id, error)

    return client.post_response(request_id, payload)


def main():
    client = RuntimeClient(os.environ.get("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"))
    if os.environ.get("NIMBUS_PRESTART"):
        try:
            await_assignment(client)
        except Exception as e:
            sys.stderr.write("nimbus: a pre-started runtime was not handed a function: %s\n" % e)
            sys.exit(1)
    configure()
    task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
    # Running as a script put the bootstrap's own folder at sys.path[0]; user
    # code should see LAMBDA_TASK_ROOT there instead.
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and sys.path[0] in ("", here):
        sys.path[0] = task_root
    else:
        sys.path.insert(0, task_root)
    setup_logging()

    try:
        request_handler = load_handler(os.environ.get("_HANDLER", ""))
    except InitFault as f:
        error = f.error
    except Exception as e:
        error = error_from_exception(e)
    else:
        error = None
    if error is not None:
        log_error(error)
        try:
            client.post_init_error(error)
        except Exception:
            pass
        sys.exit(1)

    answer = None  # the answer to the last result, when it brought the next invocation
    while True:
        if answer is None:
            try:
                answer = client.next()
            except Exception as e:
                sys.stdout.write("[ERROR] Runtime API unreachable: %s\n" % e)
                sys.exit(1)
        status, headers, body = answer
        if status != 200:
            sys.stdout.write("[ERROR] Runtime API /next returned %s\n" % status)
            sys.exit(1)
        try:
            answer = handle_one(client, request_handler, status, headers, body)
        except OSError as e:
            sys.stdout.write("[ERROR] Runtime API unreachable: %s\n" % e)
            sys.exit(1)
        st, _, rbody = answer
        if st not in (200, 410):
            if st >= 400:
                sys.stdout.write(
                    "[ERROR] Runtime API rejected the result of %s: %s %s\n"
                    % (headers.get("lambda-runtime-aws-request-id"), st, rbody[:500].decode("utf-8", "replace"))
                )
            answer = None


if __name__ == "__main__":
    main()
