#!/usr/bin/env python
"""The installed `kaggle` client (`kaggle.cli.main`) with only its HTTP layer replaced.

`requests.adapters.HTTPAdapter.send` answers from a canned Kaggle kept in a JSON state file, so
the client's own argument parsing, authentication, metadata validation, upload/download code
and output formatting all run as they do for a user. No socket is ever connected.

Environment:
  REAL_KAGGLE_STATE   JSON state file (submissions, datasets, kernel polls)
  REAL_KAGGLE_LOG     one JSON line per request: method, URL path, auth scheme
  REAL_KAGGLE_ACCEPT  JSON {"keys": {user: key}, "tokens": {token: user}}: credentials accepted
  REAL_KAGGLE_MODE    comma-separated: offline (DNS fails), hang (never answers), 403,
                      dataset-error, bad-sources, kernel-error, kernel-fails,
                      no-quota (GPU hours used up), accelerator-refused
  REAL_KAGGLE_LATEST  version the server announces (X-Kaggle-APIVersion); default: installed
  REAL_KAGGLE_ZIP     the competition zip `competitions download` delivers
  REAL_KAGGLE_OUTPUT  folder whose files are the kernel's output
"""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests.adapters
from urllib3 import HTTPResponse

API = "https://api.kaggle.com/v1/"
STORE = "https://storage.googleapis.com/"
MODES = set(filter(None, os.environ.get("REAL_KAGGLE_MODE", "").split(",")))
STATE = Path(os.environ["REAL_KAGGLE_STATE"])
_real_send = requests.adapters.HTTPAdapter.send
KERNEL_LOG_FAILED = [
    "== fold 0\n",
    "Traceback (most recent call last):\n",
    '  File "/kaggle/input/tgs-ktiny-train/tgs/train/trainer.py", line 90, in fit\n',
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
]


def _no_network(*args, **kwargs):
    raise OSError("tests/bin/real_kaggle.py: no network in tests")


def _dns_fails(*args, **kwargs):
    raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


socket.socket.connect = _no_network  # type: ignore[method-assign]
socket.create_connection = _no_network  # type: ignore[assignment]
socket.getaddrinfo = _dns_fails if "offline" in MODES else _no_network  # type: ignore[assignment]


def load() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def save(state: dict) -> None:
    STATE.write_text(json.dumps(state))


def caller(headers) -> str | None:
    """The user the request's credentials belong to, or None."""
    accept = json.loads(os.environ.get("REAL_KAGGLE_ACCEPT", "{}"))
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        return user if accept.get("keys", {}).get(user) == key else None
    if auth.startswith("Bearer "):
        return accept.get("tokens", {}).get(auth[7:])
    return None


def error(code: int, message: str) -> tuple[int, dict, bytes]:
    return (
        code,
        {"Content-Type": "application/json"},
        json.dumps({"code": code, "message": message}).encode(),
    )


def ok(body: dict) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


def api(name: str, req: dict, user: str | None, state: dict) -> tuple[int, dict, bytes]:
    """One Kaggle API call: `name` is Service/Method, `req` the JSON request."""
    accept = json.loads(os.environ.get("REAL_KAGGLE_ACCEPT", "{}"))
    if name == "security.OAuthService/IntrospectToken":
        who = accept.get("tokens", {}).get(req.get("token"))
        return ok({"active": bool(who), "username": who or ""})
    if name == "users.AccountService/GenerateAccessToken":
        return ok({"token": req["refreshToken"] + "-access", "expiresIn": 43200})
    if user is None:
        return error(401, "Unauthenticated")
    if "403" in MODES:
        return error(403, "Permission 'competitions.participate' was denied")
    service, method = name.split("/")
    subs, datasets = state.setdefault("subs", []), state.setdefault("datasets", [])
    if method == "ListSubmissions":
        rows = []
        for s in reversed(subs):
            s["polls"] += 1
            done = s["polls"] >= 2  # pending on the first listing, scored afterwards
            row = {"ref": s["ref"], "fileName": s["file"], "description": s["msg"]}
            row.update(date="2026-11-25T10:00:00Z", status="COMPLETE" if done else "PENDING")
            row.update({"publicScore": "0.8123", "privateScore": "0.8345"} if done else {})
            rows.append(row)
        return ok({"submissions": rows})
    if method in ("StartSubmissionUpload", "StartBlobUpload"):
        token = f"blob-{len(state.setdefault('blobs', {}))}"
        state["blobs"][token] = req.get("fileName") or req.get("name")
        return ok({"token": token, "createUrl": f"{STORE}upload/{token}"})
    if method == "CreateSubmission":
        ref = 50000 + len(subs)
        file = state["blobs"][req["blobFileTokens"]]
        subs.append({"ref": ref, "file": file, "msg": req.get("submissionDescription", "")})
        subs[-1]["polls"] = 0
        return ok(
            {"message": "Successfully submitted to TGS Salt Identification Challenge", "ref": ref}
        )
    if method == "GetSubmissionLimits":
        return ok({"numToday": len(subs), "numTotal": len(subs), "numAllowedNow": 5 - len(subs)})
    if method == "DownloadDataFiles":
        url = f"{STORE}kaggle-competitions-data/{req['competitionName']}.zip?X-Goog-Signature=x"
        return 302, {"Location": url}, b""
    if method == "GetDatasetStatus":
        ref = f"{req['ownerSlug']}/{req['datasetSlug']}"
        return ok({"status": "READY"}) if ref in datasets else error(404, "Not found")
    if method in ("CreateDataset", "CreateDatasetVersion"):
        ref = f"{req.get('ownerSlug')}/{req.get('slug') or req.get('datasetSlug')}"
        if "dataset-error" in MODES:
            return ok({"status": "error", "error": "Notebook or dataset slug is already in use"})
        state.setdefault("uploads", {})[ref] = sorted(state["blobs"].values())
        datasets.append(ref)
        return ok({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"})
    if method == "SaveKernel":
        ref = req["slug"]
        state.setdefault("kernels", {})[ref] = {"polls": 0, "meta": req}
        bad = req.get("datasetDataSources", []) if "bad-sources" in MODES else []
        if "kernel-error" in MODES:
            return ok({"error": "Kernel title is too long"})
        if "accelerator-refused" in MODES:  # the words are ours: Kaggle's are not known here
            return ok({"error": f"Accelerator {req.get('machineShape')} is not available"})
        body = {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}"}
        body.update(versionNumber=1, invalidDatasetSources=bad)
        return ok(body)
    if method == "GetKernelSessionStatus":
        kernel = state.get("kernels", {}).get(f"{req['userName']}/{req['kernelSlug']}")
        if kernel is None:
            return error(404, "Not found")
        kernel["polls"] += 1
        if "kernel-fails" in MODES:
            return ok({"status": "ERROR", "failureMessage": "ModuleNotFoundError: no smp"})
        return ok({"status": "RUNNING" if kernel["polls"] < 2 else "COMPLETE"})
    if method == "ListKernelSessionOutput":
        folder = Path(os.environ["REAL_KAGGLE_OUTPUT"])
        names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        files = [{"fileName": n, "url": f"{STORE}kernel-output/{n}"} for n in names]
        lines = KERNEL_LOG_FAILED if "kernel-fails" in MODES else ["done\n"]
        log = json.dumps([{"stream_name": "stdout", "data": line} for line in lines])
        return ok({"files": files, "log": log})
    if method == "GetAcceleratorQuotaStatistics":
        used = 30 * 3600 if "no-quota" in MODES else 4 * 3600 + 1800
        gpu = {"timeUsed": f"{used}s", "totalTimeAllowed": f"{30 * 3600}s"}
        return ok({"quotaRefreshTime": "2026-12-05T00:00:00Z", "gpuQuota": gpu})
    return error(404, f"tests/bin/real_kaggle.py has no canned answer for {name}")


def answer(request) -> tuple[int, dict, bytes]:
    url = request.url
    if url.startswith(STORE + "upload/"):
        while hasattr(request.body, "read") and request.body.read(1 << 20):
            pass  # take the whole upload, as the client's progress bar expects
        return 200, {}, b"{}"
    if url.startswith(STORE + "kaggle-competitions-data/"):
        data = Path(os.environ["REAL_KAGGLE_ZIP"]).read_bytes()
        return 200, {"Content-Type": "application/zip", "Content-Length": str(len(data))}, data
    if url.startswith(STORE + "kernel-output/"):
        name = url[len(STORE + "kernel-output/") :]
        data = (Path(os.environ["REAL_KAGGLE_OUTPUT"]) / name).read_bytes()
        return 200, {"Content-Length": str(len(data))}, data
    if not url.startswith(API):
        return 404, {}, b"not found"
    state = load()
    body = json.loads(request.body or b"{}")
    status, headers, data = api(url[len(API) :], body, caller(request.headers), state)
    save(state)
    headers["X-Kaggle-APIVersion"] = os.environ.get("REAL_KAGGLE_LATEST", kaggle_version())
    return status, headers, data


def kaggle_version() -> str:
    import kaggle

    return kaggle.__version__


def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
    """HTTPAdapter.send: the real one when offline (it fails to resolve), else canned."""
    scheme = request.headers.get("Authorization", "").split(" ")[0] or None
    if os.environ.get("REAL_KAGGLE_LOG"):
        with open(os.environ["REAL_KAGGLE_LOG"], "a") as f:
            entry = {"method": request.method, "path": urlsplit(request.url).path, "auth": scheme}
            f.write(json.dumps(entry) + "\n")
    if "offline" in MODES:
        return _real_send(self, request, stream, timeout, verify, cert, proxies)
    if "hang" in MODES:
        time.sleep(3600)
    status, headers, data = answer(request)
    raw = HTTPResponse(body=io.BytesIO(data), headers=headers, status=status, preload_content=False)
    return self.build_response(request, raw)


requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "kaggle"
    from kaggle.cli import main

    main()
