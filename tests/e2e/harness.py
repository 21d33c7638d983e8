"""Reusable end-to-end test helpers for sollol (Python 3 standard library only).

Processes
    start_sim(...) / start_process(...) start ``ollama-sim`` / any program of
    the build (``sollold``) that prints ``listening on HOST:PORT`` on stdout
    when ready, and return a :class:`Proc`. A Proc is a context manager and
    is always stopped (SIGTERM, a second SIGTERM after 2 s, then SIGKILL)
    when the block or the test ends; pass ``test=self`` to register the
    cleanup with unittest.

HTTP
    request(method, url, body, headers) -> Response(status, headers, body)
    open_stream(method, url, body, headers) -> Stream: iterate NDJSON lines or
    SSE events, each with its arrival time (time.monotonic()).
    raw_exchange(host, port, data) sends arbitrary bytes and returns what came
    back before the peer closed (or the timeout).

Simulator control
    sim_stats(url), sim_reset(url), sim_fault(url, mode, ...),
    sim_models(url, load=/unload=/install=/remove=).

Paths come from SOLLOL_BUILD_DIR (default: ``build/`` at the repository root).

Slow runs (``tests/run --valgrind``)
    SOLLOL_WRAP="valgrind ..." runs every sollold this harness starts under
    that command (only sollold: the simulators stay fast); a valgrind error
    makes it exit 99, which the checked stop reports. SOLLOL_TIME_SCALE=N
    multiplies the harness's waits (readiness, stop, wait_until, request and
    stream timeouts) by N, and sollold's timeouts a test passes
    (_SCALED_FLAGS); tests scale their own waits with :func:`scaled`.
"""

import http.client
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.parse

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TIME_SCALE = max(1.0, float(os.environ.get("SOLLOL_TIME_SCALE") or 1))


def scaled(seconds):
    """A wait or timeout stretched by $SOLLOL_TIME_SCALE (1 normally)."""
    return seconds * TIME_SCALE


def build_dir():
    """The build directory: $SOLLOL_BUILD_DIR, else <repo>/build."""
    d = os.environ.get("SOLLOL_BUILD_DIR") or os.path.join(REPO_ROOT, "build")
    return os.path.abspath(d)


def binary(name):
    """Absolute path of a program of the build (e.g. "ollama-sim", "sollold")."""
    return os.path.join(build_dir(), name)


# --------------------------------------------------------------------------
# processes


class ProcError(RuntimeError):
    """A process did not become ready; the message includes its stderr."""


class Proc:
    """A child process that announces ``listening on HOST:PORT`` on stdout.

    Attributes: ``host``, ``port``, ``url`` ("http://host:port"), ``argv``,
    ``popen``. stderr goes to a temporary file (so a chatty process can never
    block on a full pipe); read it with :meth:`stderr_text`. Further stdout
    lines are kept in :attr:`stdout_lines`.
    """

    def __init__(self, argv, ready_timeout=15.0, env=None, cwd=None, name=None):
        self.argv = [str(a) for a in argv]
        self.name = name or os.path.basename(self.argv[0])
        self.host = None
        self.port = None
        self.url = None
        self.stdout_lines = []
        self.returncode = None
        self._lines = queue.Queue()
        self._err = tempfile.TemporaryFile(prefix="sollol-e2e-", suffix=".stderr")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        try:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=self._err, env=full_env, cwd=cwd)
        except OSError as e:
            self._err.close()
            raise ProcError("cannot start %s: %s" % (self.argv[0], e)) from e
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    def _read_stdout(self):
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _wait_ready(self, timeout):
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProcError("%s: no 'listening on' line within %.1fs\n--- stderr ---\n%s"
                                % (self.name, timeout, self.stderr_text()))
            try:
                line = self._lines.get(timeout=min(left, 0.2))
            except queue.Empty:
                continue
            if line is None:
                code = self.popen.wait()
                raise ProcError("%s exited with status %s before it was ready\n--- stderr ---\n%s"
                                % (self.name, code, self.stderr_text()))
            if line.startswith("listening on "):
                hostport = line[len("listening on "):].strip()
                host, _, port = hostport.rpartition(":")
                self.host = host.strip("[]")
                self.port = int(port)
                url_host = "[%s]" % self.host if ":" in self.host else self.host
                self.url = "http://%s:%d" % (url_host, self.port)
                return

    def stderr_text(self):
        """Everything the process wrote to stderr so far."""
        try:
            self._err.flush()
            self._err.seek(0)
            return self._err.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def stop(self, timeout=10.0):
        """SIGTERM; if still running after 2 s, SIGTERM again (sollold lets
        running requests finish for its grace period after the first one and
        stops at once on the second); SIGKILL after `timeout` in all. Returns
        the exit status (negative for a signal, as subprocess reports it).
        Idempotent."""
        if self.returncode is not None:
            return self.returncode
        timeout = scaled(timeout)
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(timeout=min(2.0, timeout))
                except subprocess.TimeoutExpired:
                    self.popen.send_signal(signal.SIGTERM)
                    self.popen.wait(timeout=max(0.1, timeout - 2.0))
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.returncode = self.popen.returncode
        self._reader.join(timeout=2)
        try:
            self.popen.stdout.close()
        except OSError:
            pass
        return self.returncode

    def close(self):
        """Stops the process and releases the stderr file."""
        self.stop()
        try:
            self._err.close()
        except OSError:
            pass

    SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                         "WARNING: ThreadSanitizer", "AddressSanitizer:DEADLYSIGNAL",
                         # valgrind memcheck (SOLLOL_WRAP)
                         "Invalid read of size", "Invalid write of size", "Invalid free",
                         "uninitialised value", "depends on uninitialised",
                         "definitely lost in", "indirectly lost in")

    def problems(self):
        """After stop(): a description of what went wrong (exit status other
        than 0, sanitizer reports), or None."""
        err = self.stderr_text()
        issues = []
        if self.returncode not in (0, None) + tuple(getattr(self, "ok_exit", ())):
            issues.append("exit status %s" % self.returncode)
        for m in self.SANITIZER_MARKERS:
            if m in err:
                issues.append("sanitizer report (%s)" % m)
                break
        if not issues:
            return None
        return "%s: %s\n--- stderr (tail) ---\n%s" % (self.name, ", ".join(issues), err[-6000:])

    def close_checked(self):
        """stop(); raise AssertionError if it exited uncleanly or a sanitizer
        reported something; then release the stderr file."""
        self.stop()
        msg = self.problems()
        self.close()
        if msg:
            raise AssertionError(msg)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close_checked()  # a clean block must end with a clean exit
        else:
            self.close()
        return False


# Timeouts a slowed-down sollold (valgrind) cannot keep when a test sets them
# tight: its probes would time out and mark healthy nodes down, and its
# transfers would time out on nodes that answer in time.
_SCALED_FLAGS = ("--probe-timeout", "--connect-timeout", "--first-byte-timeout",
                 "--idle-timeout")


def _scale_daemon_timeouts(args):
    out = [str(a) for a in args]
    for i, a in enumerate(out):
        flag, eq, val = a.partition("=")
        if flag not in _SCALED_FLAGS:
            continue
        j = i if eq else i + 1
        if j >= len(out):
            continue
        text = out[j].partition("=")[2] if eq else out[j]
        num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        try:
            scaled_text = "%g%s" % (float(num) * TIME_SCALE, text[len(num):] or "s")
        except ValueError:
            continue
        out[j] = flag + "=" + scaled_text if eq else scaled_text
    return out


def start_process(name, args, test=None, ready_timeout=15.0, env=None, check_exit=True):
    """Starts ``<build>/<name> args...`` and waits for its `listening on` line.

    With ``test`` (a unittest.TestCase or its class), the process is stopped
    by the test's cleanup even when the test fails; with ``check_exit`` that
    cleanup also fails the test if the process did not exit 0 on SIGTERM or
    printed a sanitizer report (run the suite against a -DSOLLOL_SANITIZE=ON
    build to use this)."""
    wrap = shlex.split(os.environ.get("SOLLOL_WRAP") or "") if name == "sollold" else []
    if name == "sollold" and TIME_SCALE > 1:
        args = _scale_daemon_timeouts(args)
    p = Proc(wrap + [binary(name)] + list(args), ready_timeout=ready_timeout, env=env, name=name)
    return _cleanup_with(p, test, check_exit)


def _cleanup_with(p, test, check_exit):
    """Registers p's stop with a test (a TestCase, or a class for class
    cleanups; None = the caller stops it) and returns p."""
    if test is not None:
        cleanup = p.close_checked if check_exit else p.close
        if isinstance(test, type):
            test.addClassCleanup(cleanup)
        else:
            test.addCleanup(cleanup)
    return p


def start_sim(*args, models=("llama3.2:3b,loaded",), listen="127.0.0.1:0", test=None,
              ready_timeout=15.0, env=None, check_exit=True):
    """Starts ollama-sim on an ephemeral loopback port.

    ``models`` become ``--model`` options; other options are passed as they
    are, e.g. ``start_sim("--tokens-per-second", "20", test=self)``."""
    argv = ["--listen", listen]
    for m in models:
        argv += ["--model", m]
    argv += [str(a) for a in args]
    return start_process("ollama-sim", argv, test=test, ready_timeout=ready_timeout, env=env,
                         check_exit=check_exit)


# --------------------------------------------------------------------------
# HTTP


class Response:
    """status (int), reason, headers (dict, lower-case names), header_list
    (list of (name, value) as received), body (bytes), t_first_byte (monotonic
    time when the status line arrived)."""

    def __init__(self, status, reason, header_list, body, t_first_byte=None):
        self.status = status
        self.reason = reason
        self.header_list = header_list
        self.headers = {k.lower(): v for k, v in header_list}
        self.body = body
        self.t_first_byte = t_first_byte

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


def _split(url):
    u = urllib.parse.urlsplit(url)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    return u.hostname, u.port or 80, path


def _encode(body, headers):
    headers = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    return body, headers


def request(method, url, body=None, headers=None, timeout=30.0):
    """One HTTP request on a fresh connection. ``body``: bytes, str, or a
    dict/list (sent as JSON). Returns a :class:`Response`; network errors
    raise (OSError, http.client.HTTPException)."""
    host, port, path = _split(url)
    body, headers = _encode(body, headers)
    conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        t0 = time.monotonic()
        data = resp.read()
        return Response(resp.status, resp.reason, resp.getheaders(), data, t0)
    finally:
        conn.close()


def get_json(url, timeout=30.0):
    """GET url, assert 200 and return the decoded JSON."""
    r = request("GET", url, timeout=timeout)
    if r.status != 200:
        raise AssertionError("GET %s -> %d %r" % (url, r.status, r.body[:300]))
    return r.json()


def post_json(url, body, timeout=30.0, headers=None):
    """POST a JSON body; returns the Response."""
    return request("POST", url, body=body, headers=headers, timeout=timeout)


class Event:
    """One streamed item: ``t`` (time.monotonic() on arrival), ``raw`` (the
    line / SSE data as bytes), ``json`` (decoded, or None for non-JSON data
    such as SSE's ``[DONE]``)."""

    __slots__ = ("t", "raw", "json")

    def __init__(self, t, raw):
        self.t = t
        self.raw = raw
        try:
            self.json = json.loads(raw)
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<Event %.3f %r>" % (self.t, self.raw[:120])


class Stream:
    """A streaming response. Attributes: status, headers (lower-case dict),
    t_start (request sent), t_headers (status line received). Use
    :meth:`lines` for NDJSON, :meth:`sse` for server-sent events,
    :meth:`close` to hang up early (a client disconnect)."""

    def __init__(self, method, url, body=None, headers=None, timeout=30.0):
        host, port, path = _split(url)
        body, headers = _encode(body, headers)
        self.conn = http.client.HTTPConnection(host, port, timeout=scaled(timeout))
        self.t_start = time.monotonic()
        self.conn.request(method, path, body=body, headers=headers)
        self.resp = self.conn.getresponse()
        self.t_headers = time.monotonic()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.incomplete = False

    def _readline(self):
        try:
            line = self.resp.readline()
        except http.client.IncompleteRead:
            self.incomplete = True
            return b""
        # http.client returns b"" both at the end of a chunked body and when
        # the connection is cut in the middle of one; only the proper end
        # (the zero-length chunk) leaves chunk_left at None.
        if not line and self.resp.chunked and self.resp.chunk_left is not None:
            self.incomplete = True
        return line

    def lines(self):
        """Yields an :class:`Event` per non-empty NDJSON line until the end of
        the body. ``incomplete`` is set if the body ended abruptly."""
        while True:
            line = self._readline()
            if not line:
                return
            t = time.monotonic()
            line = line.rstrip(b"\r\n")
            if line:
                yield Event(t, line)

    def sse(self):
        """Yields an :class:`Event` per SSE event (its ``data:`` lines joined);
        comment lines (``:``) are skipped."""
        data = []
        while True:
            line = self._readline()
            if not line:
                if data:
                    yield Event(time.monotonic(), b"\n".join(data))
                return
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    yield Event(time.monotonic(), b"\n".join(data))
                    data = []
                continue
            if line.startswith(b":"):
                continue
            if line.startswith(b"data:"):
                data.append(line[5:].lstrip(b" "))

    def read_all(self):
        """The rest of the body as bytes."""
        try:
            return self.resp.read()
        except http.client.IncompleteRead as e:
            self.incomplete = True
            return e.partial

    def close(self):
        """Closes the connection (the server sees the client go away)."""
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_stream(method, url, body=None, headers=None, timeout=30.0):
    """Sends a request and returns a :class:`Stream` once the status line
    has arrived (so it blocks while the server holds the headers back)."""
    return Stream(method, url, body=body, headers=headers, timeout=timeout)


def raw_connect(host, port, timeout=10.0):
    """A plain TCP socket to host:port."""
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def raw_exchange(host, port, data, timeout=5.0):
    """Sends ``data`` (bytes) on a new connection and returns everything
    received until the peer closes or ``timeout`` passes without data.
    A connection reset counts as a close (what was received is returned)."""
    s = raw_connect(host, port, timeout)
    out = b""
    try:
        if data:
            s.sendall(data)
        s.settimeout(timeout)
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    return out


# --------------------------------------------------------------------------
# simulator control


def fnv1a64(data):
    """FNV-1a 64 of bytes as 16 hex digits: ollama-sim records each body it
    receives this way (its "body_fnv1a64"), so a test can check the bytes a
    node got without the node keeping them."""
    v = 0xCBF29CE484222325
    for b in data:
        v ^= b
        v = (v * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % v


def sim_stats(url, since=None):
    """GET /_sim/stats of the simulator at ``url`` (dict). ``since`` = only
    request records with a larger id."""
    q = "" if since is None else "?since=%d" % since
    return get_json(url + "/_sim/stats" + q)


def sim_reset(url):
    """Clears the simulator's statistics (not its models)."""
    r = request("POST", url + "/_sim/reset", body=b"")
    assert r.status == 200, r


def sim_fault(url, mode, arg=None, count=None, scope=None, model=None):
    """Sets the active fault (``mode="none"`` clears it); returns it."""
    body = {"mode": mode}
    if arg is not None:
        body["arg"] = arg
    if count is not None:
        body["count"] = count
    if scope is not None:
        body["scope"] = scope
    if model is not None:
        body["model"] = model
    r = request("POST", url + "/_sim/fault", body=body)
    if r.status != 200:
        raise AssertionError("set fault %r -> %d %r" % (body, r.status, r.body))
    return r.json()


def sim_models(url, **action):
    """POST /_sim/models with one of load=, unload=, install=, remove=.
    Returns the Response (200 with the model list, 4xx with an error)."""
    return request("POST", url + "/_sim/models", body=action)


def rss_bytes(pid):
    """Resident memory of process ``pid`` in bytes (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def wait_until(pred, timeout=5.0, interval=0.02, msg="condition"):
    """Polls ``pred()`` until it returns a truthy value (returned) or raises
    AssertionError after ``timeout`` seconds (scaled by SOLLOL_TIME_SCALE)."""
    timeout = scaled(timeout)
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, msg))
        time.sleep(interval)


def run_parallel(fns, timeout=60.0):
    """Runs callables in threads; returns their results in order (an
    exception in one is re-raised here)."""
    results = [None] * len(fns)
    errors = [None] * len(fns)

    def run(i, fn):
        try:
            results[i] = fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors[i] = e

    threads = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    for e in errors:
        if e is not None:
            raise e
    return results


# --------------------------------------------------------------------------
# llama.cpp stand-ins (<build>/stand-ins/rpc-server, llama-server), GGUF
# files and the ggml RPC wire format (PROTOCOLS.md sections 3 and 5)

import struct  # noqa: E402 - appended section, kept self-contained

RPC_CMD_GET_DEVICE_MEMORY = 11
RPC_CMD_HELLO = 14
RPC_CMD_DEVICE_COUNT = 15


# Real llama.cpp programs replace the stand-ins when these point at them
# (and SOLLOL_REAL_GGUF at a model): the same tests then run against them.
REAL_STANDIN_ENV = {"rpc-server": "SOLLOL_REAL_RPC_SERVER",
                    "llama-server": "SOLLOL_REAL_LLAMA_SERVER"}
# The programs' file names: the RPC server is ggml-rpc-server since
# llama.cpp c299a92c3 (2026-06), and the stand-in is named alike.
STANDIN_FILE = {"rpc-server": "ggml-rpc-server", "llama-server": "llama-server"}


def standin_is_real(name):
    """True when $SOLLOL_REAL_RPC_SERVER / $SOLLOL_REAL_LLAMA_SERVER names
    the real program to use instead of the stand-in ``name``."""
    return bool(os.environ.get(REAL_STANDIN_ENV[name]))


def standin(name):
    """Absolute path of ``name`` ("rpc-server" or "llama-server"): the real
    program when its SOLLOL_REAL_* variable is set, else the stand-in."""
    if standin_is_real(name):
        return os.path.abspath(os.environ[REAL_STANDIN_ENV[name]])
    return binary(os.path.join("stand-ins", STANDIN_FILE[name]))


def free_port(host="127.0.0.1"):
    """A loopback port that was free a moment ago (for programs that cannot
    bind port 0 themselves, such as the real rpc-server)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


class _ConnectReadyProc(Proc):
    """A Proc that is ready when its port accepts TCP connections (the real
    llama.cpp programs print no `listening on` line)."""

    def __init__(self, argv, host, port, **kw):
        self._ready_host, self._ready_port = host, port
        super().__init__(argv, **kw)

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise ProcError("%s exited with status %s before it was ready\n--- stderr ---\n%s"
                                % (self.name, self.popen.returncode, self.stderr_text()))
            try:
                socket.create_connection((self._ready_host, self._ready_port), timeout=1).close()
            except OSError:
                time.sleep(0.05)
                continue
            self.host, self.port = self._ready_host, self._ready_port
            self.url = "http://%s:%d" % (self.host, self.port)
            return
        raise ProcError("%s: port %d not open within %.1fs\n--- stderr ---\n%s"
                        % (self.name, self._ready_port, timeout, self.stderr_text()))


def start_standin(name, args, test=None, env=None, ready_timeout=15.0, check_exit=True):
    """Starts a stand-in (``"rpc-server"`` or ``"llama-server"``) and waits
    for its ``listening on HOST:PORT`` line. Pass ``-p 0`` / ``--port 0``
    in ``args`` for an ephemeral port. ``env`` adds SOLLOL_SIM_* knobs.
    With a real program (standin_is_real) a port 0 is replaced by a free
    port and readiness is a successful TCP connect."""
    if not standin_is_real(name):
        p = start_process(os.path.join("stand-ins", STANDIN_FILE[name]), args, test=None,
                          ready_timeout=ready_timeout, env=env)
        if name == "rpc-server":
            p.ok_exit = (-signal.SIGTERM,)  # it has no handler: SIGTERM kills it
        return _cleanup_with(p, test, check_exit)
    args = [str(a) for a in args]
    host, port = "127.0.0.1", None
    for i, a in enumerate(args[:-1]):
        if a in ("-H", "--host"):
            host = args[i + 1]
        if a in ("-p", "--port"):
            if args[i + 1] == "0":
                args[i + 1] = str(free_port(host))
            port = int(args[i + 1])
    if port is None:
        port = 50052 if name == "rpc-server" else 8080
    p = _ConnectReadyProc([standin(name)] + args, host, port, ready_timeout=ready_timeout,
                          env=env, name=name)
    if name == "rpc-server":
        p.ok_exit = (-signal.SIGTERM,)  # the real one has no handler: SIGTERM kills it
    return _cleanup_with(p, test, check_exit)


def _gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _gguf_value(v):
    """(type, bytes) of a Python value: str -> string, bool -> bool,
    int -> u32 (u64 when it does not fit), float -> f32, list of str/int ->
    array. A (type, bytes) tuple is written as given."""
    if isinstance(v, tuple):
        return v
    if isinstance(v, bool):
        return 7, struct.pack("<B", int(v))
    if isinstance(v, int):
        if 0 <= v < 2 ** 32:
            return 4, struct.pack("<I", v)
        return 10, struct.pack("<Q", v)
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, _gguf_str(v)
    if isinstance(v, (list, tuple)):
        if all(isinstance(e, str) for e in v):
            return 9, struct.pack("<IQ", 8, len(v)) + b"".join(_gguf_str(e) for e in v)
        return 9, struct.pack("<IQ", 5, len(v)) + b"".join(struct.pack("<i", e) for e in v)
    raise TypeError("no GGUF type for %r" % (v,))


def write_gguf(path, arch="llama", name="sim-model", blocks=16, file_type=15,
               context_length=4096, embedding_length=2048, extra=None, version=3,
               tensor_count=0, size=None):
    """Writes a minimal valid GGUF header (PROTOCOLS.md section 5) to ``path``:
    magic, version, tensor_count, kv_count, then general.architecture,
    general.name, general.file_type, <arch>.block_count,
    <arch>.context_length, <arch>.embedding_length and ``extra`` (a dict of
    key -> value, see _gguf_value; a value None drops a default key). With
    ``size`` the file is extended (sparse) to that many bytes, so it can
    stand for a model of that size. Returns ``path``."""
    kv = {
        "general.architecture": arch,
        "general.name": name,
        "general.file_type": file_type,
        "%s.block_count" % arch: blocks,
        "%s.context_length" % arch: context_length,
        "%s.embedding_length" % arch: embedding_length,
    }
    for k, v in (extra or {}).items():
        if v is None:
            kv.pop(k, None)
        else:
            kv[k] = v
    body = b""
    for k, v in kv.items():
        t, data = _gguf_value(v)
        body += _gguf_str(k) + struct.pack("<I", t) + data
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", version, tensor_count, len(kv)) + body)
        if size is not None and size > f.tell():
            f.truncate(size)
    return path


def rpc_send(sock, cmd, payload=b""):
    """Sends one RPC request: cmd:u8 | size:u64 | payload (little-endian)."""
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)


def rpc_recv(sock):
    """Reads one RPC reply (size:u64 | payload) and returns the payload, or
    None when the server closed the connection before sending anything.
    socket.timeout propagates (an unanswered request)."""
    head = b""
    while len(head) < 8:
        try:
            chunk = sock.recv(8 - len(head))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            if not head:
                return None
            raise ConnectionError("RPC reply cut inside its size field")
        head += chunk
    (size,) = struct.unpack("<Q", head)
    if size > 1 << 20:
        raise ConnectionError("absurd RPC reply size %d" % size)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("RPC reply cut after %d of %d bytes" % (len(data), size))
        data += chunk
    return data


def rpc_hello(host, port, form="v4", timeout=5.0, sock=None):
    """Sends HELLO in ``form`` "v4" (24 zero bytes of conn_caps) or "v3"
    (empty) and returns (reply_payload, socket): the payload is None when
    the server closed without a reply. socket.timeout propagates when the
    HELLO is not answered (the server is busy with another client). The
    caller owns the returned socket (closed already when the reply is None)."""
    s = sock or raw_connect(host, port, timeout)
    s.settimeout(timeout)
    rpc_send(s, RPC_CMD_HELLO, b"\0" * 24 if form == "v4" else b"")
    reply = rpc_recv(s)
    if reply is None:
        s.close()
    return reply, s


def rpc_version_of(reply):
    """(major, minor, patch) from a HELLO reply payload of either form."""
    return tuple(reply[:3])


def rpc_device_count(sock):
    rpc_send(sock, RPC_CMD_DEVICE_COUNT)
    reply = rpc_recv(sock)
    return None if reply is None else struct.unpack("<I", reply)[0]


def rpc_device_memory(sock, device=0, with_arg=True):
    """(free, total) bytes of one device; ``with_arg`` = protocol >= 3 form."""
    rpc_send(sock, RPC_CMD_GET_DEVICE_MEMORY, struct.pack("<I", device) if with_arg else b"")
    reply = rpc_recv(sock)
    return None if reply is None else struct.unpack("<QQ", reply)


def rpc_probe(host, port, timeout=5.0):
    """The pre-flight probe rule: HELLO in the 4.x form, and when the server
    closes without a reply, the empty form on a new connection. Returns
    ((major, minor, patch), form, sock) with the socket open after HELLO
    (the caller closes it). socket.timeout propagates (a busy server)."""
    reply, s = rpc_hello(host, port, form="v4", timeout=timeout)
    if reply is not None:
        return rpc_version_of(reply), "v4", s
    reply, s = rpc_hello(host, port, form="v3", timeout=timeout)
    if reply is None:
        raise ConnectionError("RPC server %s:%d closed both HELLO forms" % (host, port))
    return rpc_version_of(reply), "v3", s


def npm_install(src_dir, files, dest_name, what):
    """Copies `files` (package.json first) from src_dir into
    <build>/<dest_name> and installs the packages there once per version of
    package.json and package-lock.json (a stamp in node_modules remembers
    it): `npm ci` when a package-lock.json is among `files` (the exact tree
    that was committed), else `npm install`. Returns the folder, or raises
    unittest.SkipTest naming `what` when node/npm are missing or the install
    fails. In CI (CI=true) those are failures: a suite that CI runs must not
    pass by being skipped."""
    import shutil
    import unittest
    skip = AssertionError if os.environ.get("CI") == "true" else unittest.SkipTest
    npm = shutil.which("npm")
    if not shutil.which("node") or not npm:
        raise skip("node/npm not installed: %s skipped" % what)
    dest = os.path.join(build_dir(), dest_name)
    os.makedirs(dest, exist_ok=True)
    want = ""
    for name in files:
        shutil.copy(os.path.join(src_dir, name), dest)
        if name in ("package.json", "package-lock.json"):
            with open(os.path.join(src_dir, name)) as f:
                want += f.read()
    stamp = os.path.join(dest, "node_modules", ".sollol-installed")
    have = None
    if os.path.exists(stamp):
        with open(stamp) as f:
            have = f.read()
    if have != want:
        verb = "ci" if "package-lock.json" in files else "install"
        r = subprocess.run([npm, verb, "--no-audit", "--no-fund", "--loglevel=error"],
                           cwd=dest, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise skip("npm %s for the %s failed: %s" %
                                    (verb, what, (r.stderr or r.stdout)[-500:]))
        with open(stamp, "w") as f:
            f.write(want)
    return dest
