#!/usr/bin/python3
"""Every function declared in a header under src/ (and every macro with arguments)
has a kernel-doc comment directly above it, "/** name() - summary", with one @name:
line per parameter and nothing else (a variadic "..." may be left out), and a
"Return:" section unless it returns void. Then, if the kernel's own kernel-doc script
is installed (Debian's linux-kbuild-* packages ship it), runs it with -none -Werror
on the same headers for its own warnings.

Usage: scripts/check-kernel-doc.py [--list] [HEADER...]
  (default: every tracked src/*.h and src/*/*.h)
  --list  print "file:line name() - summary" for each documented symbol: the
          extracted docs, for a reader or another tool.
Prints each violation; exits 1 if there is one."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys

IDENT = re.compile(r"[A-Za-z_]\w*")


def strip_comments_keep_lines(text):
    """Returns the text with comments blanked (newlines kept) and the list of
    (start_line, end_line, body) of every comment, lines counted from 1."""
    out = []
    comments = []
    i = 0
    line = 1
    n = len(text)
    while i < n:
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            body = text[i:j]
            comments.append((line, line + body.count("\n"), body))
            out.append("".join("\n" if c == "\n" else " " for c in body))
            line += body.count("\n")
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text[i] in "\"'":
            q = text[i]
            j = i + 1
            while j < n and text[j] != q:
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        else:
            if text[i] == "\n":
                line += 1
            out.append(text[i])
            i += 1
    return "".join(out), comments


def split_params(params):
    """Splits a parameter list at its top-level commas."""
    parts, depth, cur = [], 0, ""
    for c in params:
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        if c == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += c
    if cur.strip():
        parts.append(cur.strip())
    return parts


def param_name(p):
    p = p.strip()
    if p == "...":
        return "..."
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", p)  # a function pointer
    if m:
        return m.group(1)
    p = re.sub(r"\[[^]]*\]\s*$", "", p)
    names = IDENT.findall(p)
    return names[-1] if names else ""


def declarations(path):
    """Yields (line, kind, name, params, returns_void) for each function declared or
    defined at file scope and each function-like macro."""
    text = open(path, encoding="utf-8").read()
    code, _ = strip_comments_keep_lines(text)
    lines = code.split("\n")
    depth = 0
    in_function = False
    stmt, stmt_line = "", 0
    i = 0
    while i < len(lines):
        raw = lines[i]
        if depth == 0 and raw.lstrip().startswith("#"):
            directive = raw
            start = i
            while directive.endswith("\\") and i + 1 < len(lines):
                i += 1
                directive = directive[:-1] + " " + lines[i]
            m = re.match(r"\s*#\s*define\s+(\w+)\(([^)]*)\)", directive)
            if m:
                params = [x.strip() for x in m.group(2).split(",") if x.strip()]
                yield (start + 1, "macro", m.group(1), params, False)
            i += 1
            continue
        for c in raw:
            if depth == 0 and not stmt.strip() and not c.isspace():
                stmt_line = i + 1
            if c == "{":
                if depth == 0:
                    decl = function_head(stmt)
                    in_function = decl is not None
                    if decl:
                        yield (stmt_line,) + decl
                depth += 1
                stmt += c
            elif c == "}":
                depth -= 1
                stmt += c
                if depth == 0 and in_function:
                    stmt = ""  # the body ends the definition; no ';' follows
            elif c == ";" and depth == 0:
                decl = function_head(stmt)
                if decl:
                    yield (stmt_line,) + decl
                stmt = ""
            else:
                stmt += c
        stmt += " "
        i += 1


def function_head(stmt):
    s = " ".join(stmt.split())
    if not s or s.startswith(("typedef", "static_assert", "_Static_assert")):
        return None
    s = re.sub(r"__attribute__\s*\(\(.*\)\)", "", s).strip()
    if "{" in s or "=" in s:
        s = s.split("{")[0]
    m = re.match(r"^(.*?)\b(\w+)\s*\((.*)\)\s*$", s)
    if not m or "(" in m.group(1):
        return None
    ret = m.group(1).strip()
    if not ret or re.match(r"^(struct|enum|union)\s+\w+$", s):
        return None
    ret_words = ret.replace("static", "").replace("inline", "").replace("extern", "").split()
    returns_void = ret_words == ["void"]
    params = split_params(m.group(3))
    names = [] if params in ([], ["void"]) else [param_name(p) for p in params]
    return ("function", m.group(2), names, returns_void)


def doc_comments(path):
    """Maps the end line of each /** comment to (start, name, summary, params, text)."""
    text = open(path, encoding="utf-8").read()
    _, comments = strip_comments_keep_lines(text)
    docs = {}
    for start, end, body in comments:
        if not body.startswith("/**") or body.startswith("/***"):
            continue
        inner = body[3:-2]
        rows = [re.sub(r"^\s*\* ?", "", r) for r in inner.split("\n")]
        while rows and not rows[0].strip():
            rows.pop(0)
        first = rows[0].strip() if rows else ""
        m = re.match(r"^((?:struct|enum|union|typedef)\s+)?(\w+)(\(\))?\s*-\s*(.*)$", first)
        kind = (m.group(1) or "") if m else ""
        name = m.group(2) if m else ""
        summary = m.group(4) if m else ""
        is_func = bool(m and m.group(3))
        params = re.findall(r"^\s*@(\w+|\.\.\.)\s*:", "\n".join(rows[1:]), re.M)
        docs[end] = (start, name, summary, params, "\n".join(rows), is_func, kind)
    return docs


def check(files, listing):
    problems = []
    count = 0
    for path in files:
        docs = doc_comments(path)
        if listing:
            for end in sorted(docs):
                start, name, summary, _, _, is_func, kind = docs[end]
                if name:
                    print(f"{path}:{start}: {kind}{name}{'()' if is_func else ''} - {summary}")
        for line, kind, name, params, returns_void in declarations(path):
            count += 1
            doc = docs.get(line - 1)
            where = f"{path}:{line}: {name}()"
            if doc is None:
                problems.append(f"{where}: no kernel-doc comment (/** {name}() - ...) directly above")
                continue
            _, dname, summary, dparams, body, is_func, _ = doc
            if dname != name or not is_func:
                problems.append(f"{where}: the comment above documents '{dname}', not {name}()")
                continue
            if not summary.strip():
                problems.append(f"{where}: no one-line summary after '{name}() -'")
            want = [p for p in params if p != "..."]
            have = [p for p in dparams if p != "..."]
            for p in want:
                if p not in have:
                    problems.append(f"{where}: @{p} not described")
            for p in have:
                if p not in want:
                    problems.append(f"{where}: @{p} described but not a parameter")
            if kind == "function" and not returns_void and not re.search(r"^Return:", body, re.M):
                problems.append(f"{where}: returns a value but has no 'Return:' section")
    return problems, count


def kernel_doc_tool():
    found = shutil.which("kernel-doc")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/linux-kbuild-*/scripts/kernel-doc"))
    return candidates[-1] if candidates else None


def main(argv):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # --list | head
    listing = "--list" in argv
    files = [a for a in argv if not a.startswith("--")]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.chdir(root)
    if not files:
        out = subprocess.run(
            ["git", "ls-files", "src/*.h", "src/*/*.h"], capture_output=True, text=True, check=True
        ).stdout
        files = sorted(out.split())
    problems, count = check(files, listing)
    for p in problems:
        print(p)
    if listing:
        return 1 if problems else 0
    tool = kernel_doc_tool()
    tool_note = "kernel-doc tool not installed"
    if tool:
        r = subprocess.run(["perl", tool, "-none", "-Werror"] + files, capture_output=True, text=True)
        output = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or output:
            print(output)
            problems.append("kernel-doc")
            tool_note = f"{tool}: warnings"
        else:
            tool_note = f"{os.path.basename(os.path.dirname(os.path.dirname(tool)))} kernel-doc: no warnings"
    if problems:
        print(f"check-kernel-doc: {len(problems)} problems")
        return 1
    print(f"{len(files)} headers, {count} functions and macros documented; {tool_note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
