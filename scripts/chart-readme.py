#!/usr/bin/python3
"""Writes the "Values" table of deploy/chart/README.md from the comments in
deploy/chart/values.yaml, so the two cannot drift.

Usage: scripts/chart-readme.py [--check] [--values FILE] [--readme FILE]
  --check   change nothing; exit 1 and print a diff when the README is stale

The table replaces what lies between the lines `<!-- values:begin -->` and
`<!-- values:end -->` of the README.  One row per documented key:

- a key's description is the block of comment lines directly above it (no
  blank line between); a line `@default -- TEXT` in that block replaces the
  rendered default (for long values; TEXT is Markdown);
- a map with comments on keys inside it is documented key by key (and gets a
  row itself when it has a comment too); any other value, lists and
  free-form maps such as `resources` included, is one row with its default;
- every row needs a description: a key without a comment is an error, so a
  new value cannot go undocumented.
"""
import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- values:begin -->"
END = "<!-- values:end -->"
MAX_DEFAULT = 60  # longer defaults say "see values.yaml"
DEFAULT_RE = re.compile(r"^@default\s+--\s+(.*)$")


class Error(Exception):
    pass


def comment_above(lines, mark):
    """The comment lines directly above the key at mark (a yaml Mark), in
    order, without their '#'; none for a key that does not start its line
    (inside a flow mapping)."""
    if lines[mark.line][:mark.column].strip():
        return []
    out = []
    i = mark.line - 1
    while i >= 0:
        s = lines[i].strip()
        if not s.startswith("#"):
            break
        out.append(re.sub(r"^#\s?", "", s))
        i -= 1
    return list(reversed(out))


def key_text(node):
    k = node.value
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def render_default(value):
    if isinstance(value, str):
        text = value if value else '""'
    elif isinstance(value, (dict, list)):
        text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6, sort_keys=False).strip()
    else:
        text = yaml.safe_dump(value).strip().removesuffix("\n...").strip()
    if len(text) > MAX_DEFAULT:
        return "see `values.yaml`"
    return "`" + text.replace("`", "'") + "`"


def cell(text):
    """Markdown table cell: a pipe would end it, and outside `code` a <word>
    would be an HTML tag."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).strip()


def rows(values_text, source="values.yaml"):
    """[(key path, default cell, description)] in file order."""
    lines = values_text.splitlines()
    try:
        root = yaml.compose(values_text)
        data = yaml.safe_load(values_text)
    except yaml.YAMLError as e:
        raise Error(f"{source}: {e}")
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise Error(f"{source}: the values must be a map")
    out, undocumented = [], []

    def documented_below(node):
        return isinstance(node, yaml.MappingNode) and any(
            comment_above(lines, k.start_mark) or documented_below(v) for k, v in node.value)

    def walk(node, value, prefix):
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                raise Error(f"{source}:{knode.start_mark.line + 1}: complex keys are not supported")
            key = knode.value
            path = prefix + key_text(knode)
            comment = comment_above(lines, knode.start_mark)
            default = None
            desc = []
            for c in comment:
                m = DEFAULT_RE.match(c)
                if m:
                    default = m.group(1).strip()
                else:
                    desc.append(c)
            desc = " ".join(" ".join(desc).split())
            child = value[key]
            nested = isinstance(child, dict) and documented_below(vnode)
            if nested:
                if desc:
                    out.append((path, default or "see the keys below", desc))
                walk(vnode, child, path + ".")
                continue
            if not desc:
                undocumented.append(f"{source}:{knode.start_mark.line + 1}: {path}")
            out.append((path, default or render_default(child), desc))
    walk(root, data, "")
    if undocumented:
        raise Error("keys without a comment (document them in values.yaml):\n  " + "\n  ".join(undocumented))
    return out


def table(values_text, source="values.yaml"):
    out = [BEGIN,
           "<!-- Generated from the comments in values.yaml by scripts/chart-readme.py: edit those and run it. -->",
           "",
           "| key | default | description |",
           "|---|---|---|"]
    for path, default, desc in rows(values_text, source):
        out.append(f"| `{path}` | {cell(default)} | {cell(desc)} |")
    out.append(END)
    return "\n".join(out)


def updated(readme_text, values_text, source="values.yaml"):
    if readme_text.count(BEGIN) != 1 or readme_text.count(END) != 1 or \
            readme_text.index(BEGIN) > readme_text.index(END):
        raise Error(f"the README needs exactly one {BEGIN} line followed by one {END} line")
    head, rest = readme_text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + table(values_text, source) + tail


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 with a diff when the README is stale")
    ap.add_argument("--values", type=Path, default=REPO / "deploy" / "chart" / "values.yaml")
    ap.add_argument("--readme", type=Path, default=REPO / "deploy" / "chart" / "README.md")
    args = ap.parse_args(argv)
    try:
        old = args.readme.read_text()
        new = updated(old, args.values.read_text(), args.values.name)
    except (OSError, Error) as e:
        print(f"chart-readme: {e}", file=sys.stderr)
        return 2
    if args.check:
        if new != old:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), str(args.readme), str(args.readme) + " (generated)"))
            print(f"chart-readme: {args.readme} is out of date: run scripts/chart-readme.py", file=sys.stderr)
            return 1
        return 0
    if new != old:
        args.readme.write_text(new)
        print(f"chart-readme: wrote {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
