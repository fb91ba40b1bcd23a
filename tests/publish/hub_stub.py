"""A stand-in Hugging Face Hub on 127.0.0.1 for upload tests: `HfApi(endpoint=hub.url, token=TOKEN)` talks
to `LocalHub`, which speaks the endpoints an upload uses (create repo, validate README.md metadata,
preupload, commit, repo info, Space variables) and keeps what it receives, per (repo_type, repo_id).

It answers "regular" upload mode for every file, so file contents travel inside the commit (the real
Hub sends large files through LFS/Xet storage, which is not emulated here). Use the `hub` fixture
(tests/publish/conftest.py provides it) for a fresh server per test.
"""

import base64
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from huggingface_hub.utils.sha import git_hash

TOKEN = "hf_local_test_token"


class LocalHub:
    """Repos in memory: {(repo_type, repo_id): {"files": {path: bytes}, "commits": [...], ...}}."""

    def __init__(self):
        self.repos = {}
        self.requests = []  # (method, path, Authorization header)
        self.validated = []  # README.md contents sent to /api/validate-yaml
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def repo(self, repo_id, repo_type="model"):
        return self.repos[(repo_type, repo_id)]

    def seed(self, repo_id, files: dict, repo_type="model"):
        """A repo that already holds `files` (as after an interrupted multi-commit upload)."""
        self.repos[(repo_type, repo_id)] = {"files": dict(files), "commits": [], "variables": {}, "sdk": None}

    # -- request handling

    def _reply(self, handler, status, body, headers=None):
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler, method):
        self.requests.append((method, handler.path, handler.headers.get("Authorization")))
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?")[0]
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(handler, 401, {"error": "Invalid credentials"})
        if method == "POST" and path == "/api/repos/create":
            return self._create(handler, json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":  # the Hub checks README.md metadata before upload
            return self._validate_yaml(handler, json.loads(body)["content"])
        parts = path.split("/")  # ["", "api", "models", org, name, action, *revision]
        if len(parts) < 6 or parts[1] != "api":
            return self._reply(handler, 404, {"error": f"no route {path}"})
        repo_type, repo_id, action = parts[2].rstrip("s"), f"{parts[3]}/{parts[4]}", parts[5]
        if (repo_type, repo_id) not in self.repos:
            return self._reply(handler, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        repo = self.repos[(repo_type, repo_id)]
        if method == "POST" and action == "preupload":
            files = [
                {
                    "path": f["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_hash(repo["files"][f["path"]]) if f["path"] in repo["files"] else None,
                }
                for f in json.loads(body)["files"]
            ]
            return self._reply(handler, 200, {"files": files})
        if method == "POST" and action == "commit":
            return self._commit(handler, repo, repo_type, repo_id, body)
        if method == "GET" and action == "revision":
            head = repo["commits"][-1]["oid"] if repo["commits"] else "0" * 40
            return self._reply(handler, 200, {"id": repo_id, "sha": head,
                                              "siblings": [{"rfilename": p} for p in sorted(repo["files"])]})
        if method == "POST" and action == "variables":
            variable = json.loads(body)
            repo["variables"][variable["key"]] = variable["value"]
            return self._reply(handler, 200, {k: {"value": v} for k, v in repo["variables"].items()})
        return self._reply(handler, 404, {"error": f"no route {method} {path}"})

    def _create(self, handler, payload):
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload['organization']}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        if (repo_type, repo_id) in self.repos:
            return self._reply(handler, 409, {"error": "You already created this repo", "url": f"{self.url}/{prefix}{repo_id}"})
        self.seed(repo_id, {}, repo_type)
        self.repos[(repo_type, repo_id)].update(sdk=payload.get("sdk"), private=payload.get("visibility"))
        return self._reply(handler, 200, {"url": f"{self.url}/{prefix}{repo_id}", "name": repo_id})

    def _validate_yaml(self, handler, content):
        import yaml

        self.validated.append(content)
        _, _, rest = content.partition("---\n")
        metadata, found, _ = rest.partition("\n---")
        try:
            ok = found and isinstance(yaml.safe_load(metadata), dict)
        except yaml.YAMLError:
            ok = False
        if not ok:
            return self._reply(handler, 400, {"errors": [{"message": "invalid or missing YAML metadata"}]})
        return self._reply(handler, 200, {"errors": [], "warnings": []})

    def _commit(self, handler, repo, repo_type, repo_id, body):
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        received = {}
        for line in lines:
            if line["key"] == "file":
                received[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] != "header":
                return self._reply(handler, 400, {"error": f"this stand-in Hub does not take {line['key']}"})
        oid = hashlib.sha1(repr((header, sorted(received), len(repo["commits"]))).encode()).hexdigest()
        repo["files"].update(received)
        repo["commits"].append({"oid": oid, "summary": header["summary"], "files": sorted(received)})
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return self._reply(handler, 200, {"commitUrl": f"{self.url}/{prefix}{repo_id}/commit/{oid}", "commitOid": oid,
                                          "success": True})


@pytest.fixture
def hub(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets it for the rest of the suite
    server = LocalHub()
    yield server
    server.close()
