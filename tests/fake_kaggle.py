#!/usr/bin/env python
"""A stand-in for the `kaggle` CLI: records its arguments and answers like the real one.

FAKE_KAGGLE_LOG: file to append one JSON list of arguments per call.
FAKE_KAGGLE_STATE: JSON file for state across calls (submissions, datasets).
FAKE_KAGGLE_MODE: "ok" (default) or "403".
FAKE_KAGGLE_ZIP: the zip that `competitions download` delivers.
"""

import json
import os
import shutil
import sys
from pathlib import Path

args = sys.argv[1:]
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as f:
    f.write(json.dumps(args) + "\n")
state_path = Path(os.environ["FAKE_KAGGLE_STATE"])
state = json.loads(state_path.read_text()) if state_path.exists() else {}


def save():
    state_path.write_text(json.dumps(state))


def opt(name):
    return args[args.index(name) + 1]


if os.environ.get("FAKE_KAGGLE_MODE") == "403":
    print("403 Client Error: Forbidden for url: https://www.kaggle.com/api/v1/...", file=sys.stderr)
    sys.exit(1)
group, cmd = args[0], args[1]
if (group, cmd) == ("competitions", "download"):
    dest = Path(opt("-p")) / f"{opt('-c')}.zip"
    shutil.copy(os.environ["FAKE_KAGGLE_ZIP"], dest)
    print(f"Downloading {dest.name} to {dest.parent}\n100%|██████████| 1.00M/1.00M")
elif (group, cmd) == ("competitions", "submit"):
    state.setdefault("subs", []).append(
        {"file": Path(opt("-f")).name, "msg": opt("-m"), "polls": 0}
    )
    save()
    print(
        "100%|██████████| 1.00k/1.00k\nSuccessfully submitted to TGS Salt Identification Challenge"
    )
elif (group, cmd) == ("competitions", "submissions"):
    print("ref,fileName,date,description,status,publicScore,privateScore")
    for i, s in enumerate(state.get("subs", [])):
        s["polls"] += 1
        done = s["polls"] >= 2  # pending on the first poll, complete afterwards
        status = "SubmissionStatus.COMPLETE" if done else "SubmissionStatus.PENDING"
        pub, priv = ("0.8123", "0.8345") if done else ("", "")
        print(f"{100 + i},{s['file']},2026-11-25 10:00:00,{s['msg']},{status},{pub},{priv}")
    save()
elif (group, cmd) == ("datasets", "status"):
    if args[2] in state.get("datasets", []):
        print("ready")
    else:
        print("404 Client Error: Not Found", file=sys.stderr)
        sys.exit(1)
elif (group, cmd) in (("datasets", "create"), ("datasets", "version")):
    meta = json.loads((Path(opt("-p")) / "dataset-metadata.json").read_text())
    state.setdefault("datasets", []).append(meta["id"])
    save()
    print(f"Your private Dataset is being created. Please check progress at .../{meta['id']}")
elif (group, cmd) == ("kernels", "push"):
    meta = json.loads((Path(opt("-p")) / "kernel-metadata.json").read_text())
    print(f"Kernel version 1 successfully pushed.  Please check progress at .../{meta['id']}")
else:
    print(f"usage: kaggle: unknown command {group} {cmd}", file=sys.stderr)
    sys.exit(2)
