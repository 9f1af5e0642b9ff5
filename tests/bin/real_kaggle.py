#!/usr/bin/env python
"""The installed `kaggle` client (`kaggle.cli.main`) with only its HTTP layer replaced.

`requests.adapters.HTTPAdapter.send` answers from a canned Kaggle kept in a JSON state file, so
the client's own argument parsing, authentication, metadata validation, upload/download code,
paging and output formatting all run as they do for a user. No socket is ever connected.

What the canned Kaggle answers, as the real service does (read from kagglesdk's request and
response types, the client's code and the issues on Kaggle/kaggle-cli):
  - errors as 4xx with the JSON body {"code", "message"} the client turns into its message, or
    a bare "400 Bad Request" (the client prints "400 Client Error: Bad Request for url: ...");
  - a new dataset version is not there at once: the first status call after an upload still
    shows the previous version (its READY and its number; a new dataset: not found), the next
    one the new version processing (BLOBS_RECEIVED), then READY; `datasets version` while the
    latest version is still processing is refused 403 (kaggle-cli#642, kagglehub#182);
  - a kernel passes through QUEUED and RUNNING before COMPLETE (or ERROR);
  - SaveKernel creates the kernel even with sources it cannot attach, naming them in
    invalidCompetitionSources (rules not accepted), invalidDatasetSources, invalidKernelSources;
  - ListKernelSessionOutput pages: pageSize files a page (the client asks 20), nextPageToken
    until the last page.
The words of a refusal whose text Kaggle's sources do not give are marked as this file's.

Environment:
  REAL_KAGGLE_STATE   JSON state file (submissions, datasets and their versions, kernels)
  REAL_KAGGLE_LOG     one JSON line per request: method, URL path, auth scheme
  REAL_KAGGLE_ACCEPT  JSON {"keys": {user: key}, "tokens": {token: user}}: credentials accepted
  REAL_KAGGLE_BLOBS   folder where uploaded files are kept (by upload token)
  REAL_KAGGLE_MODE    comma-separated: offline (DNS fails), hang (never answers), 403 (every
                      call denied), rules-not-accepted, invalid-competition-source (only
                      SaveKernel refuses the competition), dataset-error, bad-sources,
                      bad-kernel-sources, kernel-error (an error field), kernel-refused (a bare
                      400), kernel-fails, kernel-timeout (ERROR after running), no-quota,
                      stuck-processing (a version made now never gets ready),
                      no-version-number,
                      first-page-only (the listing an older client sees: page 1 only)
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
import zipfile
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
RULES_403 = "You must accept this competition's rules before you'll be able to download files."
UPDATE_403 = "Permission 'datasets.update' was denied"
READY_AFTER = 3  # status calls after an upload: 1 the previous version, 2 processing, 3 ready


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


def bare(code: int, reason: bytes) -> tuple[int, dict, bytes]:
    """An error without the JSON body (the client shows requests' 'NNN Client Error: ...')."""
    return code, {"Content-Type": "text/html"}, reason


def ok(body: dict) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()


# -- datasets: versions that take a few status calls to show ---------------------------------
def _shown(ds: dict) -> tuple[dict | None, str]:
    """(the version Kaggle shows now, its status) by how many status calls the latest had."""
    versions = ds["versions"]
    latest = versions[-1]
    calls = latest["calls"]
    if calls >= READY_AFTER and not latest.get("stuck"):
        return latest, "READY"
    if calls >= 2:
        return latest, "BLOBS_RECEIVED"
    return (versions[-2], "READY") if len(versions) > 1 else (None, "")


def dataset_api(method: str, req: dict, user: str, state: dict) -> tuple[int, dict, bytes]:
    datasets = state.setdefault("datasets", {})
    if method in ("GetDatasetStatus", "GetDataset"):
        ds = datasets.get(f"{req['ownerSlug']}/{req['datasetSlug']}")
        if ds is not None and method == "GetDatasetStatus":
            ds["versions"][-1]["calls"] += 1
        shown, status = _shown(ds) if ds is not None else (None, "")
        if shown is None:
            return error(404, "Not found")
        if method == "GetDatasetStatus":
            return ok({"status": status})
        ref = f"{req['ownerSlug']}/{req['datasetSlug']}"
        body = {"id": 7, "ref": ref, "title": req["datasetSlug"]}
        body.update({} if "no-version-number" in MODES else {"currentVersionNumber": shown["n"]})
        return ok(body)
    # CreateDataset / CreateDatasetVersion
    body = req.get("body", req)
    ref = f"{req.get('ownerSlug')}/{req.get('slug') or req.get('datasetSlug')}"
    if "dataset-error" in MODES:
        return ok({"status": "error", "error": "Notebook or dataset slug is already in use"})
    ds = datasets.get(ref)
    if method == "CreateDatasetVersion":
        if ds is None:
            return error(404, "Not found")
        if ds["owner"] != user or _shown(ds)[1] != "READY" or _shown(ds)[0] != ds["versions"][-1]:
            return error(403, UPDATE_403)
    ds = datasets.setdefault(ref, {"owner": user, "versions": []})
    files = {state["blobs"][f["token"]]: f["token"] for f in body.get("files", [])}
    version = {"n": len(ds["versions"]) + 1, "files": files, "calls": 0}
    ds["versions"].append({**version, "stuck": "stuck-processing" in MODES})
    return ok({"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok"})


# -- kernels ---------------------------------------------------------------------------------
def save_kernel(req: dict, state: dict) -> tuple[int, dict, bytes]:
    ref = req["slug"]
    if "kernel-refused" in MODES:  # a refused accelerator, GPU or internet: a bare 400
        return bare(400, b"Bad Request")
    if "kernel-error" in MODES:
        return ok({"error": "Kernel title is too long"})
    attached = {}
    for source in req.get("datasetDataSources", []):
        ds = state.get("datasets", {}).get(source)
        shown = _shown(ds)[0] if ds else None
        attached[source] = shown["n"] if shown else None
    state.setdefault("kernels", {})[ref] = {"polls": 0, "meta": req, "attached": attached}
    body = {"ref": f"/code/{ref}", "url": f"https://www.kaggle.com/code/{ref}", "versionNumber": 1}
    if MODES & {"rules-not-accepted", "invalid-competition-source"}:
        body["invalidCompetitionSources"] = req.get("competitionDataSources", [])
    if "bad-sources" in MODES:
        body["invalidDatasetSources"] = req.get("datasetDataSources", [])
    if "bad-kernel-sources" in MODES:
        body["invalidKernelSources"] = req.get("kernelDataSources", [])
    return ok(body)


def kernel_status(req: dict, state: dict) -> tuple[int, dict, bytes]:
    kernel = state.get("kernels", {}).get(f"{req['userName']}/{req['kernelSlug']}")
    if kernel is None:
        return error(404, "Not found")
    kernel["polls"] += 1
    polls = kernel["polls"]
    if polls < 3:
        return ok({"status": ("QUEUED", "RUNNING")[polls - 1]})
    if "kernel-fails" in MODES:
        return ok({"status": "ERROR", "failureMessage": "ModuleNotFoundError: no smp"})
    if "kernel-timeout" in MODES:  # the words are this file's: Kaggle's are not known here
        return ok({"status": "ERROR", "failureMessage": "(canned) the session reached its limit"})
    return ok({"status": "COMPLETE"})


def kernel_output(req: dict, state: dict) -> tuple[int, dict, bytes]:
    """One page of the kernel's output files (pageSize of them, from pageToken)."""
    if f"{req['userName']}/{req['kernelSlug']}" not in state.get("kernels", {}):
        return error(404, "Not found")
    folder = Path(os.environ["REAL_KAGGLE_OUTPUT"])
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    start = int(base64.b64decode(req["pageToken"]).decode()) if req.get("pageToken") else 0
    size = req.get("pageSize") or 20
    page = names[start : start + size]
    state["output_pages"] = state.get("output_pages", 0) + 1
    files = [{"fileName": n, "url": f"{STORE}kernel-output/{n}"} for n in page]
    body: dict = {"files": files}
    more = start + size < len(names) and "first-page-only" not in MODES
    if more:
        body["nextPageToken"] = base64.b64encode(str(start + size).encode()).decode()
    if not req.get("pageToken"):
        lines = KERNEL_LOG_FAILED if "kernel-fails" in MODES else ["done\n"]
        body["log"] = json.dumps([{"stream_name": "stdout", "data": line} for line in lines])
    return ok(body)


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
    subs = state.setdefault("subs", [])
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
    if method in ("DownloadDataFiles", "DownloadDataFile"):
        if "rules-not-accepted" in MODES:
            return error(403, RULES_403)
        file = req.get("fileName")
        what = f"file/{file}" if file else f"data/{req['competitionName']}.zip"
        return 302, {"Location": f"{STORE}kaggle-competitions-{what}?X-Goog-Signature=x"}, b""
    if service == "datasets.DatasetApiService":
        return dataset_api(method, req, user, state)
    if method == "SaveKernel":
        return save_kernel(req, state)
    if method == "GetKernelSessionStatus":
        return kernel_status(req, state)
    if method == "ListKernelSessionOutput":
        return kernel_output(req, state)
    if method == "GetAcceleratorQuotaStatistics":
        used = 30 * 3600 if "no-quota" in MODES else 4 * 3600 + 1800
        gpu = {"timeUsed": f"{used}s", "totalTimeAllowed": f"{30 * 3600}s"}
        return ok({"quotaRefreshTime": "2026-12-05T00:00:00Z", "gpuQuota": gpu})
    return error(404, f"tests/bin/real_kaggle.py has no canned answer for {name}")


def storage(request) -> tuple[int, dict, bytes]:
    """Google Cloud Storage: uploads kept by token, the competition's files, kernel output."""
    url = request.url.split("?")[0]
    if url.startswith(STORE + "upload/"):
        data = b""
        while hasattr(request.body, "read") and (chunk := request.body.read(1 << 20)):
            data += chunk  # the whole upload, as the client's progress bar expects
        if os.environ.get("REAL_KAGGLE_BLOBS"):
            blobs = Path(os.environ["REAL_KAGGLE_BLOBS"])
            blobs.mkdir(parents=True, exist_ok=True)
            (blobs / url[len(STORE + "upload/") :]).write_bytes(data)
        return 200, {}, b"{}"
    if url.startswith(STORE + "kaggle-competitions-data/"):
        data = Path(os.environ["REAL_KAGGLE_ZIP"]).read_bytes()
        return 200, {"Content-Type": "application/zip", "Content-Length": str(len(data))}, data
    if url.startswith(STORE + "kaggle-competitions-file/"):
        name = unquote(url[len(STORE + "kaggle-competitions-file/") :])
        with zipfile.ZipFile(os.environ["REAL_KAGGLE_ZIP"]) as zf:
            data = zf.read(name)
        return 200, {"Content-Type": "text/csv", "Content-Length": str(len(data))}, data
    if url.startswith(STORE + "kernel-output/"):
        name = unquote(url[len(STORE + "kernel-output/") :])
        data = (Path(os.environ["REAL_KAGGLE_OUTPUT"]) / name).read_bytes()
        return 200, {"Content-Length": str(len(data))}, data
    return 404, {}, b"not found"


def answer(request) -> tuple[int, dict, bytes]:
    if not request.url.startswith(API):
        return storage(request)
    state = load()
    body = json.loads(request.body or b"{}")
    status, headers, data = api(request.url[len(API) :], body, caller(request.headers), state)
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
    reason = HTTPStatus(status).phrase  # as a server's status line gives it ("Bad Request")
    raw = HTTPResponse(
        body=io.BytesIO(data), headers=headers, status=status, reason=reason, preload_content=False
    )
    return self.build_response(request, raw)


requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.argv[0] = "kaggle"
    from kaggle.cli import main

    main()
