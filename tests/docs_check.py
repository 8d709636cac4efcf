#!/usr/bin/env python3
"""tests/docs_check.py — what the daemons' docs say about options, held
against the commands' --help (tests/e2e_docs.sh runs it).

    docs_check.py HELPDIR ROOT [-v]   (-v: also every flag and default found)

HELPDIR holds coordinator.txt, client.txt and keygen.txt (each command's
--help) and all.txt (`fedpress help`: every other command's options).
ROOT is the source tree (README.md, docs/). Prints one line per check,
'OK<TAB>name' or 'BAD<TAB>name<TAB>why'; tests/e2e_docs.sh counts them.

Where a flag belongs:
  - a command line: the options after `fedpress CMD` (or `$F CMD`) in a
    code block or a `code span`, continuation lines joined, `$(...)`
    taken apart as commands of their own;
  - a table row of timers and caps whose side column names the coordinator
    or the client;
  - a `- `--flag`` item under daemons.md's '### The coordinator' or
    '### The client'.
A flag named anywhere else must exist in some command's --help. A stated
default is '`--flag` (default N', '`--flag`, N' or '`--flag` (N s)' or
'`--flag` N s'; it must equal --help's '(default N)' for that flag.
"""
import re
import sys

DAEMONS = ("coordinator", "client", "keygen")
DOCS = ("docs/deployment.md", "docs/daemons.md", "docs/protocol.md")
FLAG = re.compile(r"--[a-z][a-z0-9-]*[a-z0-9]")
OPT_LINE = re.compile(r"^ {2}(--[a-z][a-z0-9-]*)")
NUM = r"(\d+(?:\.\d+)?)"


def out(good, name, why=""):
    print(("OK\t%s" % name) if good else ("BAD\t%s\t%s" % (name, why)))


def parse_help(text):
    """Flags of one command's --help and each one's '(default X)'."""
    flags, defaults, cur = set(), {}, None
    lines = text.splitlines()
    for line in lines:
        m = OPT_LINE.match(line)
        if m:
            cur = m.group(1)
            flags.add(cur)
        elif line.startswith("usage:") or (cur is None and line.startswith(" ")):
            flags.update(FLAG.findall(line))
            continue
        elif not line.startswith(" "):
            cur = None  # the closing paragraph belongs to no option
        if cur:
            d = re.search(r"\(default ([^;),]+)", line)
            if d and cur not in defaults:
                defaults[cur] = d.group(1).strip()
    flags.discard("--help")
    return flags, defaults


def strip_subst(s, cmds):
    """Every $(...) of s (innermost first) is a command of its own."""
    while True:
        m = re.search(r"\$\(([^()]*)\)", s)
        if not m:
            return s
        cmds.append(m.group(1))
        s = s[: m.start()] + "X" + s[m.end():]


def command_flags(text):
    """(command, flag) for every daemon command line in text."""
    found = []
    cmds = []
    for seg in re.split(r"[;|&]|&&|\|\|", strip_subst(text, cmds)):
        cmds.append(seg)
    for c in cmds:
        c = re.sub(r"(^|\s)#.*$", "", c)  # a shell comment
        m = re.search(r"(?:\bfedpress|\$F|\$FP|\$\{FP\})\s+(%s)\b(.*)$" % "|".join(DAEMONS), c)
        if m:
            for f in FLAG.findall(m.group(2)):
                found.append((m.group(1), f))
    return found


def blocks_and_prose(path):
    """(kind, text, lineno): fenced blocks, and prose paragraphs with their
    lines joined (a code span or a default may be cut by a line break); a
    heading, a table row or a list item starts a paragraph of its own."""
    items, fence, buf, start = [], None, [], 0
    para, pstart = [], 0
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()

    def flush():
        if para:
            items.append(("prose", " ".join(x.strip() for x in para), pstart))
            para.clear()

    for i, line in enumerate(lines, 1):
        if line.startswith("```"):
            flush()
            if fence is None:
                fence, buf, start = line[3:].strip(), [], i + 1
            else:
                items.append(("block", "\n".join(buf), start))
                fence = None
            continue
        if fence is not None:
            buf.append(line)
        elif not line.strip():
            flush()
        else:
            if re.match(r"^(#|\||- |\d+\. |<!--)", line) or line.startswith("    "):
                flush()
            if not para:
                pstart = i
            para.append(line)
            if line.startswith("#") or line.startswith("|"):
                flush()
    flush()
    return items


def logical_lines(block):
    """A block's lines with backslash continuations joined."""
    outl, cur = [], ""
    for line in block.split("\n"):
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
        else:
            outl.append(cur + line)
            cur = ""
    if cur:
        outl.append(cur)
    return outl


def main():
    helpdir, root = sys.argv[1], sys.argv[2]
    helps = {}
    for c in DAEMONS:
        with open("%s/%s.txt" % (helpdir, c), encoding="utf-8") as fh:
            helps[c] = parse_help(fh.read())
    with open("%s/all.txt" % helpdir, encoding="utf-8") as fh:
        every = set(FLAG.findall(fh.read()))
    for c in DAEMONS:
        every |= helps[c][0]
    # a default is one flag's, whichever daemon has it
    help_default = {}
    for c in ("coordinator", "client"):
        for f, d in helps[c][1].items():
            if f in help_default and help_default[f] != d:
                out(False, "--help: %s has one default" % f, "%s and %s" % (help_default[f], d))
            help_default[f] = d

    attributed = []  # (file, line, command, flag)
    stated = []      # (file, line, flag, value)
    listed = {c: set() for c in DAEMONS}  # '- `--flag' items per command section
    in_docs = set()
    for path in DOCS + ("README.md",):
        section = None
        for kind, text, ln in blocks_and_prose("%s/%s" % (root, path)):
            if kind == "prose" and text.startswith("#"):
                h = text.lower()
                section = ("coordinator" if h.startswith("### the coordinator") else
                           "client" if h.startswith("### the client") else
                           None if text.startswith("## ") or text.startswith("### ") else section)
            units = logical_lines(text) if kind == "block" else re.findall(r"`([^`]*)`", text)
            for u in units:
                for c, f in command_flags(u):
                    attributed.append((path, ln, c, f))
            if path == "README.md":
                continue
            if kind == "prose":
                in_docs.update(FLAG.findall(text))
            if kind == "prose" and path == "docs/daemons.md" and section:
                m = re.match(r"^- `(--[a-z][a-z0-9-]*)", text)
                if m:
                    listed[section].add(m.group(1))
                    attributed.append((path, ln, section, m.group(1)))
            # a table row naming its side
            if kind == "prose" and text.startswith("|"):
                cells = [x.strip() for x in text.strip("|").split("|")]
                side = [s for s in cells if re.match(r"^(coordinator|client)\b", s)]
                if side:
                    who = side[0].split(",")[0].split()[0]
                    for f in FLAG.findall(text):
                        attributed.append((path, ln, who, f))
            for m in re.finditer(r"`(--[a-z][a-z0-9-]*)`(?: \(default |, | \(| )%s( s\b|[);, ]|$)" % NUM,
                                 text):
                stated.append((path, ln, m.group(1), m.group(2)))
            for m in re.finditer(r"- `(--[a-z][a-z0-9-]*)[^`]*` \(default %s" % NUM, text):
                stated.append((path, ln, m.group(1), m.group(2)))

    if "-v" in sys.argv[3:]:
        for a in attributed:
            print("ATTR\t%s:%d\t%s\t%s" % a)
        for a in stated:
            print("DEFAULT\t%s:%d\t%s\t%s" % a)
    # 1. every attributed flag exists in that command's --help
    bad = ["%s:%d: %s %s" % (p, ln, c, f) for p, ln, c, f in attributed
           if not f.startswith("--test-") and f not in helps[c][0]]
    out(not bad, "every --flag of a coordinator/client/keygen command line, timer table row or "
        "daemons.md option item is in that command's --help (%d named)" % len(attributed),
        "; ".join(bad))
    # 2. every other flag in the docs exists in some command's --help
    bad = sorted(f for f in in_docs if not f.startswith("--test-") and f not in every)
    out(not bad, "every other --flag in %s is some fedpress command's option" % ", ".join(DOCS),
        " ".join(bad))
    # 3. every option in --help is documented: coordinator's and client's as a
    #    '- `--flag`' item of its section in daemons.md, keygen's on a
    #    `fedpress keygen` command line in docs/protocol.md
    for c in ("coordinator", "client"):
        missing = sorted(helps[c][0] - listed[c])
        out(not missing, "every option of fedpress %s --help has its item in docs/daemons.md's "
            "'### The %s'" % (c, c), " ".join(missing))
    kg = {f for p, _, c, f in attributed if c == "keygen" and p == "docs/protocol.md"}
    missing = sorted(helps["keygen"][0] - kg)
    out(not missing, "every option of fedpress keygen --help is on a fedpress keygen command line "
        "in docs/protocol.md", " ".join(missing))
    # 4. every default the docs state is --help's
    bad = []
    for p, ln, f, v in stated:
        d = help_default.get(f)
        if d is None or float(v) != float(d):
            bad.append("%s:%d: %s %s, --help: %s" % (p, ln, f, v, d))
    out(stated and not bad, "every default stated for a daemon option (%d) equals --help's "
        "'(default N)'" % len(stated), "; ".join(bad) or "no default found in the docs")
    # 5. every numeric default in --help is stated somewhere in the docs
    said = {f for _, _, f, _ in stated}
    missing = sorted(f for f, d in help_default.items()
                     if re.fullmatch(NUM, d) and f not in said)
    out(not missing, "every numeric '(default N)' of coordinator/client --help is stated in the "
        "docs", " ".join(missing))


if __name__ == "__main__":
    main()
