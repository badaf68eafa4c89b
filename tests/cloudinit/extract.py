#!/usr/bin/python3
"""Reads runner-provisioner's cloud-init user data the way cloud-init does
(yaml.safe_load) and hands its parts to the tests.

  extract.py json USERDATA          prints a JSON summary on stdout
  extract.py script USERDATA OUT    writes the boot script's text to OUT
  extract.py apply USERDATA RUNCMD  applies write_files to / as cloud-init's
                                    write_files module would, and writes
                                    runcmd as the shell script cloud-init
                                    would run to RUNCMD (sandbox only)

The shape is checked strictly: a key or an encoding this project does not
generate is an error, so a change in the generator shows up here.
"""

import base64
import binascii
import json
import os
import shlex
import sys

import yaml

STAGED = "/etc/runner-provisioner/circleci-runner-config.yaml"
SETTINGS = "/etc/runner-provisioner/boot.conf"
DISKS = "/etc/runner-provisioner/disks"
USERDATA = "/etc/runner-provisioner/user-data"
SCRIPT = "/usr/local/sbin/runner-provisioner-boot"
ITEM_KEYS = {"path", "owner", "permissions", "content"}
B64_ITEM_KEYS = ITEM_KEYS | {"encoding"}


class ShapeError(Exception):
    pass


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ShapeError(f"user data is not ASCII: {e}") from e
    first = text.split("\n", 1)[0]
    if first != "#cloud-config":
        raise ShapeError(f"first line is {first!r}, not '#cloud-config'")
    doc = yaml.safe_load(text)
    if not isinstance(doc, dict):
        raise ShapeError("user data is not a mapping")
    if set(doc) != {"write_files", "runcmd"}:
        raise ShapeError(f"unexpected top-level keys {sorted(doc)}")
    items = doc["write_files"]
    if not isinstance(items, list) or not items:
        raise ShapeError("write_files is not a non-empty list")
    for item in items:
        if not isinstance(item, dict) or set(item) not in (ITEM_KEYS,
                                                           B64_ITEM_KEYS):
            raise ShapeError(f"write_files item has keys {sorted(item)}")
        for k in item:
            if not isinstance(item[k], str):
                raise ShapeError(f"write_files {k} is not a string")
        if "encoding" in item:
            # cloud-init's b64 (cc_write_files.decode_perms/extract_contents)
            if item["encoding"] != "b64":
                raise ShapeError(f"encoding {item['encoding']!r}")
            try:
                item["content"] = base64.b64decode(
                    item["content"], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ShapeError(f"{item['path']}: bad base64: {e}") from e
            del item["encoding"]
    if not isinstance(doc["runcmd"], list):
        raise ShapeError("runcmd is not a list")
    return first, doc


def item(doc, path):
    found = [i for i in doc["write_files"] if i["path"] == path]
    if len(found) != 1:
        raise ShapeError(f"{len(found)} write_files items for {path}")
    return found[0]


def optional(doc, path):
    found = [i for i in doc["write_files"] if i["path"] == path]
    return item(doc, path)["content"] if found else None


def summary(path):
    first, doc = load(path)
    config = yaml.safe_load(item(doc, STAGED)["content"])
    return {
        "first_line": first,
        "write_files": doc["write_files"],
        "runcmd": doc["runcmd"],
        "runner_config": config,
        "settings": item(doc, SETTINGS)["content"],
        "disks": optional(doc, DISKS),
        "user_data": optional(doc, USERDATA),
        "script": item(doc, SCRIPT)["content"],
    }


def apply(path, runcmd_out):
    """cloud-init's write_files: parent directories 0755, the file written
    then chowned and chmodded (cc_write_files.write_files)."""
    _, doc = load(path)
    for i in doc["write_files"]:
        target = i["path"]
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with open(target, "w", encoding="utf-8") as f:
            f.write(i["content"])
        user, _, group = i["owner"].partition(":")
        os.chown(target, 0 if user == "root" else -1,
                 0 if group == "root" else -1)
        os.chmod(target, int(i["permissions"], 8))
    # cloudinit.config.cc_runcmd / util.shellify: lists are quoted words.
    lines = ["#!/bin/sh"]
    for cmd in doc["runcmd"]:
        if isinstance(cmd, list):
            lines.append(" ".join(shlex.quote(str(w)) for w in cmd))
        else:
            lines.append(str(cmd))
    with open(runcmd_out, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


def main(argv):
    try:
        if len(argv) == 3 and argv[1] == "json":
            json.dump(summary(argv[2]), sys.stdout, indent=1)
            sys.stdout.write("\n")
        elif len(argv) == 4 and argv[1] == "script":
            with open(argv[3], "w", encoding="ascii") as f:
                f.write(summary(argv[2])["script"])
        elif len(argv) == 4 and argv[1] == "apply":
            apply(argv[2], argv[3])
        else:
            sys.stderr.write(__doc__)
            return 2
    except (ShapeError, yaml.YAMLError) as e:
        sys.stderr.write(f"extract.py: {argv[2]}: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
