"""The modelreg HTTP API client (standard library only). The API is described by /v1/openapi.json."""

import hashlib
import http.client
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

TERMINAL = {"Rejected", "Failed"}
MAX_INLINE_FILES = 1000  # more travel as a listing blob (one more upload)
PLAN_BATCH = 1000


class ApiError(Exception):
    """An error the API answered: status is the HTTP status, code the API's stable error code."""

    def __init__(self, status, code, message, details=None, headers=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}


class DigestMismatch(Exception):
    """Downloaded bytes do not hash to the digest the registry recorded."""


def _quote(s):
    return urllib.parse.quote(str(s), safe="")


class Client:
    """A registry at base_url (e.g. http://127.0.0.1:8080). token is a bearer token from the
    registry's tokens file; reads need none. timeout bounds every request except long polls."""

    def __init__(self, base_url=None, token=None, timeout=30.0):
        self.base_url = (base_url or os.environ.get("MODELREG_SERVER") or "http://127.0.0.1:8080").rstrip("/")
        self.token = token if token is not None else os.environ.get("MODELREG_TOKEN")
        self.timeout = timeout

    # -- transport ---------------------------------------------------------------------------------

    def _request(self, method, path, body=None, headers=None, timeout=None, raw=False):
        data = None
        hdrs = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        hdrs.update(headers or {})
        req = urllib.request.Request(self.base_url + path, data=data, method=method, headers=hdrs)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return 304, e.headers, None
            payload = e.read()
            try:
                err = json.loads(payload)
            except ValueError:
                err = None
            if not isinstance(err, dict):
                raise ApiError(e.code, "", payload.decode(errors="replace"), headers=e.headers) from None
            raise ApiError(e.code, err.get("code", ""), err.get("message", ""), err.get("details"), e.headers) from None
        with resp:
            if raw:
                return resp.status, resp.headers, resp
            payload = resp.read()
            return resp.status, resp.headers, (json.loads(payload) if payload else None)

    def _get(self, path, **query):
        q = urllib.parse.urlencode([(k, v) for k, vs in query.items() if vs is not None
                                    for v in (vs if isinstance(vs, (list, tuple)) else [vs])])
        _, _, body = self._request("GET", path + ("?" + q if q else ""))
        return body

    # -- reads -------------------------------------------------------------------------------------

    def models(self):
        """Every model (a generator over the pages)."""
        cursor = None
        while True:
            page = self._get("/v1/models", cursor=cursor, limit=200)
            yield from page["models"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def model(self, model):
        return self._get(f"/v1/models/{_quote(model)}")

    def versions(self, model=None, stage=None, tags=None, metrics=None, registered_by=None):
        """Versions newest first (of one model, or of every model), filtered: stage is a stage or a
        list of them; tags a dict (value None: any value); metrics a list like ["accuracy>=0.9"]."""
        tag = [k if v is None else f"{k}={v}" for k, v in (tags or {}).items()]
        path = f"/v1/models/{_quote(model)}/versions" if model else "/v1/versions"
        cursor = None
        while True:
            page = self._get(path, stage=stage, tag=tag or None, metric=metrics, registeredBy=registered_by,
                             cursor=cursor, limit=200)
            yield from page["versions"]
            cursor = page.get("nextCursor")
            if not cursor:
                return

    def version(self, model, version):
        """Everything about a version: catalog record, files, audit trail, decisions, live state."""
        return self._get(f"/v1/models/{_quote(model)}/versions/{int(version)}")

    def status(self, model, version):
        """The version's stage."""
        return self.version(model, version)["stage"]

    def policy(self, model):
        return self._get(f"/v1/models/{_quote(model)}/policy")

    def production(self, model):
        """The production version with its artifacts, or None when the model has none."""
        try:
            return self._get(f"/v1/models/{_quote(model)}/production")
        except ApiError as e:
            if e.code == "no_production_version":
                return None
            raise

    def watch_production(self, model, wait=60, stop_after=None):
        """Yields the production version (None while there is none) now and each time it changes,
        long-polling so that nothing is polled in between. stop_after bounds the total time (seconds)."""
        etag = None
        deadline = None if stop_after is None else time.monotonic() + stop_after
        while deadline is None or time.monotonic() < deadline:
            w = wait if deadline is None else max(0, min(wait, deadline - time.monotonic()))
            path = f"/v1/models/{_quote(model)}/production"
            headers = {}
            if etag:
                path += f"?wait={int(w)}s"
                headers["If-None-Match"] = etag
            try:
                status, hdrs, body = self._request("GET", path, headers=headers, timeout=w + 30)
            except ApiError as e:
                # Nothing in production (or no such model yet) is a 404 with the ETag to wait on.
                if e.code not in ("no_production_version", "not_found") or not e.headers.get("ETag"):
                    raise
                status, hdrs, body = e.status, e.headers, None
                if etag == hdrs.get("ETag"):
                    continue
            except (urllib.error.URLError, ConnectionError, TimeoutError, http.client.HTTPException):
                # The registry restarting or a network blip: a watch outlives both.
                time.sleep(1)
                continue
            if status == 304:
                continue
            etag = hdrs.get("ETag")
            yield body

    def wait(self, model, version, until=("PendingApproval", "Production", "Archived"), timeout=300, interval=0.5):
        """Waits until the version's stage is in until, and returns it. A lifecycle that ends Rejected
        or Failed first raises ApiError with code "ended"."""
        until = set(until)
        deadline = time.monotonic() + timeout
        while True:
            stage = self.status(model, version)
            if stage in until:
                return stage
            if stage in TERMINAL:
                raise ApiError(409, "ended", f"{model} v{version} ended {stage}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} v{version} is still {stage} after {timeout}s")
            time.sleep(interval)

    # -- writes ------------------------------------------------------------------------------------

    def _decide(self, kind, model, version, digest, comment):
        if digest is None:
            digest = self.version(model, version)["manifestDigest"]
        body = {"digest": digest}
        if comment:
            body["comment"] = comment
        _, _, res = self._request("POST", f"/v1/models/{_quote(model)}/versions/{int(version)}/{kind}", body)
        return res

    def approve(self, model, version, digest=None, comment=""):
        """Approves as the token's principal. digest defaults to the version's manifest digest; pass
        the one you reviewed to be sure the decision is on those bytes."""
        return self._decide("approve", model, version, digest, comment)

    def reject(self, model, version, digest=None, comment=""):
        return self._decide("reject", model, version, digest, comment)

    def rollback(self, model, to=None, reason=""):
        body = {"reason": reason} if reason else {}
        if to:
            body["to"] = int(to)
        _, _, res = self._request("POST", f"/v1/models/{_quote(model)}/rollback", body)
        return res

    def set_policy(self, model, policy):
        _, _, res = self._request("PUT", f"/v1/models/{_quote(model)}/policy", policy)
        return res

    def register(self, model, directory=None, source_uri=None, files=None, metrics=None, params=None, tags=None,
                 source_run=None, idempotency_key=None):
        """Registers a version from a local directory (its files are uploaded through the API, only
        those the store does not hold yet), an s3:// prefix the worker imports (source_uri), or files
        already in the store (files: [{"path", "size", "sha256"}])."""
        if sum(x is not None for x in (directory, source_uri, files)) != 1:
            raise ValueError("give exactly one of directory, source_uri or files")
        if directory is not None:
            source = self.upload(model, directory)
        elif source_uri is not None:
            source = {"uri": source_uri}
        else:
            source = {"files": files}
        body = {"source": source}
        for k, v in (("metrics", metrics), ("params", params), ("tags", tags), ("sourceRun", source_run),
                     ("idempotencyKey", idempotency_key)):
            if v:
                body[k] = v
        _, _, res = self._request("POST", f"/v1/models/{_quote(model)}/versions", body)
        return res

    def whoami(self, model=None):
        return self._get("/v1/whoami", model=model)

    # -- artifacts ---------------------------------------------------------------------------------

    def upload(self, model, directory):
        """Uploads a directory's files (those the store lacks) and returns the registration source:
        {"files": [...]} or, above 1000 files, {"listing": {...}}."""
        entries, paths = scan_dir(directory)
        if not entries:
            raise ValueError(f"{directory} has no files")
        self._send(model, entries, paths)
        if len(entries) <= MAX_INLINE_FILES:
            return {"files": entries}
        listing = ("[\n" + ",\n".join(json.dumps(e, separators=(",", ":")) for e in sorted(entries, key=lambda e: e["path"])) + "\n]\n").encode()
        with tempfile.NamedTemporaryFile(delete=False) as f:
            f.write(listing)
        try:
            digest = hashlib.sha256(listing).hexdigest()
            self._send(model, [{"path": "listing.json", "size": len(listing), "sha256": digest}], {digest: f.name})
        finally:
            os.unlink(f.name)
        return {"listing": {"sha256": digest, "count": len(entries)}}

    def _send(self, model, entries, paths):
        for i in range(0, len(entries), PLAN_BATCH):
            _, _, plan = self._request("POST", f"/v1/models/{_quote(model)}/uploads", {"files": entries[i:i + PLAN_BATCH]})
            for blob in plan["blobs"]:
                if not blob["present"]:
                    self._put(blob["upload"], paths[blob["sha256"]], blob["size"])

    def _put(self, target, path, size):
        url = target["url"]
        if not url.startswith(("http://", "https://")):
            url = self.base_url + url
        headers = dict(target.get("headers") or {})
        headers["Content-Length"] = str(size)
        if target.get("bearer") and self.token:
            headers["Authorization"] = "Bearer " + self.token
        u = urllib.parse.urlsplit(url)
        conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = conn_cls(u.netloc, timeout=max(self.timeout, 300))
        try:
            with open(path, "rb") as f:
                # http.client streams a file body in blocks; nothing is read into memory whole.
                conn.request(target.get("method", "PUT"), u.path + ("?" + u.query if u.query else ""), body=f, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 300:
            try:
                err = json.loads(payload)
                raise ApiError(resp.status, err.get("code", ""), err.get("message", ""))
            except ValueError:
                raise ApiError(resp.status, "upload_refused", payload.decode(errors="replace")[:500]) from None

    def pull(self, model, out, version=None):
        """Downloads a version's files (the production version by default) into out, verifying each
        file's size and SHA-256 before it gets its name. Returns the version number."""
        if version is None:
            prod = self.production(model)
            if prod is None:
                raise ApiError(404, "no_production_version", f"model {model!r} has no version in production")
            version = prod["version"]
        v = self.version(model, version)
        root = os.path.realpath(out)
        os.makedirs(root, exist_ok=True)
        for f in v.get("files") or []:
            dest = os.path.realpath(os.path.join(root, f["path"]))
            if not dest.startswith(root + os.sep):
                raise DigestMismatch(f"refusing file path {f['path']!r} outside {out}")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            path = "/".join(_quote(p) for p in f["path"].split("/"))
            # No token: a redirect to a presigned URL must not carry this API's credentials.
            req = urllib.request.Request(f"{self.base_url}/v1/models/{_quote(model)}/versions/{int(version)}/files/{path}")
            h = hashlib.sha256()
            n = 0
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(dest), prefix=".pull-")
            try:
                with os.fdopen(fd, "wb") as w, urllib.request.urlopen(req, timeout=max(self.timeout, 300)) as r:
                    while True:
                        b = r.read(1 << 20)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                        w.write(b)
                if n != f["size"] or h.hexdigest() != f["sha256"]:
                    raise DigestMismatch(f"{f['path']}: got {n} bytes with sha256 {h.hexdigest()}, "
                                         f"the manifest says {f['size']} bytes with sha256 {f['sha256']}")
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return version


def scan_dir(directory):
    """The regular files under directory as entries, and their local paths by digest. Symbolic links
    are refused: what is registered is exactly what is in the directory."""
    entries, paths = [], {}
    root = os.path.abspath(directory)
    if not os.path.isdir(root):
        raise ValueError(f"{directory} is not a directory")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                raise ValueError(f"{os.path.join(dirpath, d)} is a symbolic link, not a directory")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                raise ValueError(f"{full} is not a regular file")
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            digest = sha256_file(full)
            entries.append({"path": rel, "size": os.path.getsize(full), "sha256": digest})
            paths[digest] = full
    return entries, paths


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)
