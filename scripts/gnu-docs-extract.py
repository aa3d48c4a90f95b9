#!/usr/bin/env python3
"""Extract the command examples of GNU parallel's documentation.

Writes crates/fanout-cli/tests/gnu_docs/examples.txt, the list that
crates/fanout-cli/tests/gnu_docs.rs runs with GNU parallel and with fanout.

Sources: the man page (parallel), parallel_tutorial, parallel_examples and
parallel_book, as installed by Debian's `parallel` package in
/usr/share/doc/parallel. Debian ships the .rst versions of these documents
as empty files, so this script reads the .html versions (pod2html output of
the same POD sources); it uses the .rst when it is not empty... except that
parsing reStructuredText is not implemented, so it stops with an error then
rather than silently reading something else.

Every <pre> block of those documents is a candidate. A block is skipped
(and counted, not listed) when it is sample output (the paragraph before
it says "Output ..."), or when no line of it calls `parallel` (a file's
contents, a replacement-string table, a command without parallel). A block
whose complete commands (split with `bash -n`) each call parallel is split
into one example per command; any other block (a function definition, a
variable, `cat` of a result after the parallel call) is one example run as a
whole bash script.

Each example gets an id (`<doc>-<NNN>`, numbered in document order), and
then the hand-written decisions of curation.txt (beside examples.txt) are
applied: a fixture to set up, stand-in programs, an exclusion and its
reason, comparison overrides. Examples that need remote hosts, the network,
a terminal, X, or GNU parallel's sister tools are excluded by the rules in
AUTO_EXCLUDE below (a curation entry can override them).

Usage: scripts/gnu-docs-extract.py [--docdir DIR] [--check]
  --check: do not write; exit 1 if examples.txt is not up to date.

Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "crates", "fanout-cli", "tests", "gnu_docs")

# (id prefix, document name)
DOCS = [
    ("man", "parallel"),
    ("tutorial", "parallel_tutorial"),
    ("examples", "parallel_examples"),
    ("book", "parallel_book"),
]

# The fixture every example of a document starts from (functions of
# tests/gnu_docs/fixtures.sh): the files the document asks the reader to
# create before its examples.
DEFAULT_FIXTURE = {
    "parallel_tutorial": "tutorial_files",
    "parallel_book": "book_files",
}

# Automatic exclusions: (regex over the example's text, reason). The first
# that matches wins; curation.txt can override with `include`.
AUTO_EXCLUDE = [
    (r"(^|\s)-S|(^|\s)(--sshlogin|--slf|--sshloginfile|--sshdelay|--controlmaster|"
     r"--onall|--nonall|--filter-hosts|--hostgroups?|--transferfile|--trc|"
     r"--return|--basefile|--bf|--cleanup|--workdir|--wd|--ssh|--env)\b|\bssh\b|"
     r"\$SERVER|\$server|sshlogin|\brsync\b",
     "remote execution (ssh, -S, file transfer, --env)"),
    (r"--sql|\bsql\b|\bmysql\b|\bpsql\b|sqlite|vendor://|DBURL",
     "needs a database (--sql*)"),
    (r"\b(sem|niceload|parset|parcat|parsort|env_parallel)\b",
     "another tool of the GNU parallel package (sem, parset, env_parallel, ...)"),
    (r"\b(wget|curl|lynx|fetch -o|ping|prips|nmap|dig|traceroute|host|"
     r"youtube-dl|aria2c|lftp|ftp)\b|https?://|pi\.dk",
     "needs the network"),
    (r"--tmux|--tty|--interactive|--open-tty|\b(xterm|zenity|emacs|"
     r"vi|vim|tmux|xdotool|feh|display)\b|DISPLAY",
     "needs a terminal, X or an interactive editor"),
    (r"^\s*#!", "a script file's contents (shebang), not a command line"),
    (r"^\s*(\$|zsh%|bash\$) ", "a shell session transcript with prompts"),
]


def die(msg: str) -> None:
    print(f"gnu-docs-extract: {msg}", file=sys.stderr)
    sys.exit(2)


def text_of(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def blocks(path: str):
    """Yields (section, preceding paragraph, block text) for each <pre>."""
    with open(path, encoding="utf-8") as f:
        page = f.read()
    section = ""
    para = ""
    pattern = re.compile(
        r'<h[1-4] id="([^"]*)">(.*?)</h[1-4]>|<p>(.*?)</p>|<pre><code>(.*?)</code></pre>'
        r'|<dt id="[^"]*">(.*?)</dt>',
        re.S,
    )
    heading = ""
    for m in pattern.finditer(page):
        if m.group(1) is not None:
            heading = section = text_of(m.group(2))
            para = ""
        elif m.group(5) is not None:
            # A man page option (or list item): "OPTIONS: --colsep regexp".
            section = heading + ": " + " ".join(text_of(m.group(5)).split())
            para = ""
        elif m.group(3) is not None:
            para = text_of(m.group(3))
        else:
            yield section, para, textwrap.dedent(html.unescape(m.group(4))).strip("\n")
            para = ""


CALLS_PARALLEL = re.compile(r"(?<![-_./\w])parallel(?![-_.\w])")


def complete(text: str) -> bool:
    r = subprocess.run(["bash", "-n", "-c", text], capture_output=True)
    return r.returncode == 0


def commands(block: str) -> list[str]:
    """Splits a block into complete shell commands (bash -n), dropping
    blank lines between them."""
    out: list[str] = []
    cur: list[str] = []
    for line in block.split("\n"):
        if not cur and not line.strip():
            continue
        cur.append(line)
        joined = "\n".join(cur)
        if not joined.rstrip().endswith("\\") and complete(joined):
            out.append(joined)
            cur = []
    if cur:
        out.append("\n".join(cur))
    return out


def is_output(para: str) -> bool:
    """The documents introduce sample output with a paragraph "Output:",
    "Output (the order may be different):", "Output will be similar to:"..."""
    return para.lower().startswith("output") and para.endswith(":")


def parse_curation(path: str) -> dict[str, dict[str, str]]:
    """curation.txt: records separated by blank lines; `id: X [Y...]`
    first, then `key: value` fields; a value continues on following lines
    that start with `| ` (a multi-line shell snippet). `#` lines are
    comments. An id may appear in several records (their fields merge; a
    field given twice for one id is an error)."""
    records: list[tuple[list[str], dict[str, str], int]] = []
    rec: dict[str, str] | None = None
    key = None
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.startswith("#"):
                continue
            if not line.strip():
                rec, key = None, None
                continue
            if line.startswith("|"):
                if rec is None or key is None:
                    die(f"{path}:{n}: continuation outside a field")
                body = line[2:] if line.startswith("| ") else line[1:]
                rec[key] = (rec[key] + "\n" if rec[key] else "") + body
                continue
            m = re.match(r"([a-z-]+):\s?(.*)$", line)
            if not m:
                die(f"{path}:{n}: expected `key: value`")
            k, v = m.group(1), m.group(2)
            if k == "id":
                rec = {}
                records.append((v.split(), rec, n))
                key = None
                continue
            if rec is None:
                die(f"{path}:{n}: field before `id:`")
            if k not in {
                "fixture", "exclude", "include", "order", "filter", "after",
                "serial", "stdin", "note", "expect-start", "cut", "prelude", "attempts",
            }:
                die(f"{path}:{n}: unknown field {k}")
            rec[k] = v
            key = k
    cur: dict[str, dict[str, str]] = {}
    for ids, fields, n in records:
        for i in ids:
            merged = cur.setdefault(i, {})
            for k, v in fields.items():
                if k in merged:
                    die(f"{path}:{n}: {i}: field {k} given twice")
                merged[k] = v
    return cur


KEEP_ORDER = re.compile(r"^(-k|--keep-order|--keeporder|-j1|-kj1|--jobs=?1|-j\s*1|-[a-zA-Z]*k[a-zA-Z]*)$")


def default_order(cmd: str) -> str:
    """`exact` when every parallel call in the command keeps input order
    (-k/--keep-order or one job at a time), else `sorted`."""
    calls = [m.end() for m in CALLS_PARALLEL.finditer(cmd)]
    if not calls:
        return "sorted"
    for start in calls:
        # The call's own words: up to the end of the (continued) line or a
        # pipe / list operator outside quotes (approximate: unquoted only).
        rest = cmd[start:].replace("\\\n", " ")
        rest = re.split(r"\n|\|\s|;\s|&&|\|\|", rest)[0]
        words = rest.split()
        ok = False
        for i, w in enumerate(words):
            if w in (":::", "::::", ":::+", "::::+"):
                break
            if w in ("-k", "--keep-order", "--keeporder", "-j1", "--jobs=1"):
                ok = True
            if w in ("-j", "--jobs", "-P") and i + 1 < len(words) and words[i + 1] == "1":
                ok = True
            if re.fullmatch(r"-[a-zA-Z]*k[a-zA-Z0-9]*", w) and not w.startswith("--"):
                ok = True
        if not ok:
            return "sorted"
    return "exact"


def extract(docdir: str) -> tuple[list[dict[str, str]], dict[str, int]]:
    examples: list[dict[str, str]] = []
    skipped = {"output": 0, "no-parallel": 0}
    for prefix, doc in DOCS:
        rst = os.path.join(docdir, doc + ".rst")
        if os.path.exists(rst) and os.path.getsize(rst) > 0:
            die(f"{rst} is not empty: this script only reads the .html version")
        n = 0
        for section, para, block in blocks(os.path.join(docdir, doc + ".html")):
            if is_output(para):
                skipped["output"] += 1
                continue
            if not CALLS_PARALLEL.search(block):
                skipped["no-parallel"] += 1
                continue
            cmds = commands(block)
            if len(cmds) > 1 and all(CALLS_PARALLEL.search(c) for c in cmds):
                parts = cmds
            else:
                parts = [block]
            for part in parts:
                n += 1
                examples.append({
                    "id": f"{prefix}-{n:03d}",
                    "doc": doc,
                    "section": section,
                    "command": part,
                })
    return examples, skipped


def render(examples, skipped, curation) -> str:
    seen = set()
    out = [
        "# GNU parallel documentation examples, run by tests/gnu_docs.rs.",
        "# GENERATED by scripts/gnu-docs-extract.py from the GNU parallel",
        "# 20221122 documentation and tests/gnu_docs/curation.txt; edit those.",
        "#",
        "# Records are separated by blank lines. Fields: id, doc, section,",
        "# status (run | exclude), reason (for exclude), order (exact: stdout",
        "# and files compared byte for byte; sorted: compared as multisets of",
        "# lines), serial (run alone: touches fixed paths outside its dir),",
        "# attempts (a documented race: identical if any of N runs is),",
        "# fixture (bash run in the fresh work dir first), filter (bash",
        "# filter applied to stdout before comparing), after (bash run in the",
        "# work dir afterwards), stdin (text given on stdin), command (the",
        "# documentation's text, run with bash -c). Multi-line values continue",
        "# on lines starting with `| `.",
        "#",
        f"# Skipped blocks: {skipped['output']} sample outputs, "
        f"{skipped['no-parallel']} without a parallel call.",
        "",
    ]

    def field(k, v):
        lines = v.split("\n")
        if len(lines) == 1 and not v.startswith(" "):
            out.append(f"{k}: {v}")
        else:
            out.append(f"{k}:")
            out.extend(("| " + ln).rstrip() if ln else "|" for ln in lines)

    counts = {"run": 0, "exclude": 0}
    for ex in examples:
        c = curation.get(ex["id"], {})
        if "cut" in c:
            # Keep the first N lines: the rest of the block is sample
            # output or prose that the documentation put in the same block.
            ex = dict(ex, command="\n".join(ex["command"].split("\n")[: int(c["cut"])]))
        seen.add(ex["id"])
        want = c.get("expect-start")
        if want is not None and not ex["command"].lstrip().startswith(want):
            die(f"curation for {ex['id']} expects a command starting with {want!r}, "
                f"found {ex['command'][:60]!r}: the documentation changed; renumber")
        reason = c.get("exclude")
        if reason is None and "include" not in c:
            for pat, why in AUTO_EXCLUDE:
                if re.search(pat, ex["command"], re.M):
                    reason = why + " [auto]"
                    break
        out.append(f"id: {ex['id']}")
        out.append(f"doc: {ex['doc']}")
        out.append(f"section: {ex['section']}")
        if reason is not None:
            counts["exclude"] += 1
            out.append("status: exclude")
            out.append(f"reason: {reason}")
        else:
            counts["run"] += 1
            out.append("status: run")
            out.append(f"order: {c.get('order', default_order(ex['command']))}")
            if "serial" in c:
                out.append("serial: yes")
            if "attempts" in c:
                out.append(f"attempts: {c['attempts']}")
            fixture = "\n".join(
                f for f in (DEFAULT_FIXTURE.get(ex["doc"]), c.get("fixture")) if f
            )
            if fixture:
                field("fixture", fixture)
            for k in ("prelude", "filter", "after", "stdin"):
                if k in c:
                    field(k, c[k])
        if "note" in c:
            field("note", c["note"])
        field("command", ex["command"])
        out.append("")
    unknown = sorted(set(curation) - seen)
    if unknown:
        die(f"curation.txt names unknown ids: {' '.join(unknown)}")
    out.insert(15, f"# Examples: {counts['run']} run, {counts['exclude']} excluded.")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docdir", default="/usr/share/doc/parallel")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--dump", action="store_true", help="print candidates only")
    args = ap.parse_args()
    examples, skipped = extract(args.docdir)
    if args.dump:
        for ex in examples:
            print(f"=== {ex['id']}  [{ex['section']}]\n{ex['command']}")
        print(skipped, file=sys.stderr)
        return
    curation = parse_curation(os.path.join(DATA, "curation.txt"))
    text = render(examples, skipped, curation)
    target = os.path.join(DATA, "examples.txt")
    if args.check:
        with open(target, encoding="utf-8") as f:
            if f.read() != text:
                print("examples.txt is out of date: run scripts/gnu-docs-extract.py",
                      file=sys.stderr)
                sys.exit(1)
        return
    with open(target, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
