"""The modelreg HTTP API client (standard library only). The API is described by /v1/openapi.json."""

import hashlib
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

TERMINAL = {"Rejected", "Failed"}


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
                # Nothing in production is a 404 with the ETag to wait on for the first version.
                if e.code != "no_production_version":
                    raise
                status, hdrs, body = e.status, e.headers, None
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

    def register(self, model, source_uri=None, files=None, metrics=None, params=None, tags=None,
                 source_run=None, idempotency_key=None):
        """Registers a version from an s3:// prefix the worker imports (source_uri), or from files
        already in the registry's store (files: [{"path", "size", "sha256"}])."""
        if (source_uri is None) == (files is None):
            raise ValueError("give exactly one of source_uri or files")
        body = {"source": {"uri": source_uri} if source_uri else {"files": files}}
        for k, v in (("metrics", metrics), ("params", params), ("tags", tags), ("sourceRun", source_run),
                     ("idempotencyKey", idempotency_key)):
            if v:
                body[k] = v
        _, _, res = self._request("POST", f"/v1/models/{_quote(model)}/versions", body)
        return res

    def whoami(self, model=None):
        return self._get("/v1/whoami", model=model)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                return h.hexdigest()
            h.update(b)
