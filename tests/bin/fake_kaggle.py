#!/usr/bin/env python
"""A stand-in for the `kaggle` CLI: records its arguments and answers like client 2.x
(tests/bin/real_kaggle.py runs the real client instead, with canned HTTP).

FAKE_KAGGLE_LOG: file to append one JSON list of arguments per call.
FAKE_KAGGLE_STATE: JSON file for state across calls (submissions, datasets).
FAKE_KAGGLE_MODE: "ok" (default), "403" (client 2.x text) or "403-v1" (client 1.x text).
FAKE_KAGGLE_ZIP: the zip that `competitions download` delivers.
FAKE_KAGGLE_OUTPUT: folder whose files `kernels output` delivers.
FAKE_KAGGLE_VERSION: what `kaggle --version` says (default 2.2.5; not logged: no Kaggle call).
"""

import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

args = sys.argv[1:]
if args == ["--version"]:
    print(f"Kaggle CLI {os.environ.get('FAKE_KAGGLE_VERSION', '2.2.5')}")
    sys.exit(0)
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
state_path = Path(os.environ["FAKE_KAGGLE_STATE"])
state = json.loads(state_path.read_text()) if state_path.exists() else {}
NOT_FOUND = (
    "Not found\n\nThe resource was not found. Check the spelling of the reference you passed.\n"
)


def save():
    state_path.write_text(json.dumps(state))


def opt(name):
    return args[args.index(name) + 1]


def fail(text):
    print(text, file=sys.stderr)
    sys.exit(1)


mode = os.environ.get("FAKE_KAGGLE_MODE")
if mode == "403":
    fail(
        "Permission 'competitions.participate' was denied\n\nYou don't have access to this "
        "resource.\nIf this is a competition, you may need to accept its rules first at\n"
        "  https://www.kaggle.com/competitions/<competition>/rules"
    )
if mode == "403-v1":
    fail("403 Client Error: Forbidden for url: https://www.kaggle.com/api/v1/...")
group, cmd = args[0], args[1]
if (group, cmd) == ("competitions", "download") and "-f" in args:
    dest = Path(opt("-p")) / opt("-f")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(os.environ["FAKE_KAGGLE_ZIP"]) as zf:
        dest.write_bytes(zf.read(opt("-f")))
elif (group, cmd) == ("competitions", "download"):
    dest = Path(opt("-p")) / f"{opt('-c')}.zip"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(os.environ["FAKE_KAGGLE_ZIP"], dest)
    print(f"Downloading {dest.name} to {dest.parent}")
    print("100%|██████████| 1.00M/1.00M", file=sys.stderr)
elif (group, cmd) == ("competitions", "submit"):
    ref = 100 + len(state.setdefault("subs", []))
    state["subs"].append({"file": Path(opt("-f")).name, "msg": opt("-m"), "polls": 0, "ref": ref})
    save()
    print(f"Submission ref: {ref}\n4 submissions remaining today.")
    print("Successfully submitted to TGS Salt Identification Challenge", end="")
elif (group, cmd) == ("competitions", "submissions"):
    print("ref,fileName,date,description,status,publicScore,privateScore")
    for s in reversed(state.get("subs", [])):
        s["polls"] += 1
        done = s["polls"] >= 2  # pending on the first poll, complete afterwards
        status = "SubmissionStatus.COMPLETE" if done else "SubmissionStatus.PENDING"
        pub, priv = ("0.8123", "0.8345") if done else ("", "")
        print(f"{s['ref']},{s['file']},2026-11-25 10:00:00,{s['msg']},{status},{pub},{priv}")
    save()
elif (group, cmd) == ("datasets", "status"):
    if args[2] not in state.get("datasets", []):
        fail(NOT_FOUND)
    version = state["datasets"].count(args[2])
    print(json.dumps({"status": "ready", "current_version_number": version}))
elif (group, cmd) in (("datasets", "create"), ("datasets", "version")):
    meta = json.loads((Path(opt("-p")) / "dataset-metadata.json").read_text())
    state.setdefault("datasets", []).append(meta["id"])
    save()
    print(f"Your private Dataset is being created. Please check progress at .../{meta['id']}")
elif (group, cmd) == ("kernels", "push"):
    meta = json.loads((Path(opt("-p")) / "kernel-metadata.json").read_text())
    state.setdefault("kernels", []).append(meta["id"])
    save()
    url = f"https://www.kaggle.com/code/{meta['id']}"
    print(f"Kernel version 1 successfully pushed.  Please check progress at {url}")
elif (group, cmd) == ("kernels", "status"):
    if args[2] not in state.get("kernels", []):
        fail(NOT_FOUND)
    print(f'{args[2]} has status "KernelWorkerStatus.COMPLETE"')
elif (group, cmd) == ("kernels", "output"):
    for p in Path(os.environ["FAKE_KAGGLE_OUTPUT"]).iterdir():
        shutil.copy(p, Path(opt("-p")) / p.name)
        print(f"Output file downloaded to {Path(opt('-p')) / p.name}")
elif (group, cmd) == ("config", "view"):
    print(f"Configuration values from {Path.home() / '.kaggle'}\n- username: alice")
else:
    fail(f"usage: kaggle: unknown command {group} {cmd}")
