#!/usr/bin/env python3
"""The structure rules of README's Layout section, checked on the source tree.

1. No import circle between files: within each crate, the graph of which
   module file imports which (`use` trees and inline `crate::` / `super::`
   / `self::` paths, test modules included; a parent declaring its child
   with `mod` is not an import) has no cycle.
2. No function longer than MAX_LINES lines (signature to closing brace),
   outside `#[cfg(test)]` modules and `tests/` folders.

Prints every violation (a cycle with the imports that form it, a function
with its length) and exits with status 1 if there is any. `tests/layout.rs`
runs it; run it by hand with `python3 scripts/layout.py [ROOT]`.
"""
import os
import re
import sys
from collections import defaultdict

MAX_LINES = 80
# The tree checked: the repository, or the folder given as the argument.
ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SKIP_DIRS = {"target", "vendor", ".git", "tests", "node_modules"}
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def source_roots():
    """Every crate's `src` folder."""
    roots = []
    for base, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        if "Cargo.toml" in files and os.path.isdir(os.path.join(base, "src")):
            roots.append(os.path.join(base, "src"))
    return sorted(roots)


def modules(src):
    """Module path (a tuple) -> file, for one crate's `src`."""
    out = {}
    for base, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                path = os.path.join(base, f)
                rel = os.path.relpath(path, src)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main"):
                    rel = rel[:-1]
                out[tuple(rel)] = path
    return out


def code_of(text):
    """The text without comments and string contents (same offsets not kept)."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def expand_use(tree):
    """A `use` tree as flat paths."""

    def rec(prefix, s):
        s = s.strip()
        if not s:
            return []
        i = s.find("{")
        if i == -1:
            return [prefix + s]
        head, body = s[:i], s[i + 1 : s.rfind("}")]
        parts, depth, cur = [], 0, ""
        for ch in body:
            depth += (ch == "{") - (ch == "}")
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        out = []
        for p in (p.strip() for p in parts):
            if p == "self":
                out.append(prefix + head.rstrip(":"))
            elif p:
                out += rec(prefix + head, p)
        return out

    return rec("", tree)


def inline_depths(text):
    """For each offset, how many inline `mod x { ... }` blocks enclose it."""
    opens = {m.end() - 1 for m in re.finditer(r"\bmod\s+\w+\s*\{", text)}
    depth_at, stack, brace, cur = [0] * (len(text) + 1), [], 0, 0
    for i, ch in enumerate(text):
        if ch == "{":
            brace += 1
            if i in opens:
                stack.append(brace)
                cur = len(stack)
        elif ch == "}":
            if stack and stack[-1] == brace:
                stack.pop()
                cur = len(stack)
            brace -= 1
        depth_at[i] = cur
    return depth_at


def resolve(mods, here, path, inline):
    """The module file `path` names from module `here` (inside `inline`
    inline modules), or None for another crate or the same file."""
    segs = [s.split(" as ")[0].strip() for s in path.split("::")]
    while inline and segs and segs[0] in ("super", "self"):
        if segs[0] == "super":
            inline -= 1
        segs = segs[1:]
    if inline:
        return None
    if segs and segs[0] == "crate":
        base, segs = (), segs[1:]
    elif segs and segs[0] in ("super", "self"):
        base = list(here)
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
        base = tuple(base)
    else:
        return None
    best, cur = (base if base in mods else None), base
    for s in segs:
        cur = cur + (s,)
        if cur not in mods:
            break
        best = cur
    return best


def import_graph(mods):
    graph, why = defaultdict(set), {}
    for here, path in mods.items():
        text = code_of(open(path, encoding="utf-8").read())
        depth = inline_depths(text)
        children = {k[-1] for k in mods if len(k) == len(here) + 1 and k[: len(here)] == here}
        paths = []
        for u in re.finditer(r"\buse\s+([^;]+);", text):
            paths += [(p, depth[u.start()]) for p in expand_use(u.group(1))]
        paths += [(m.group(0), depth[m.start()]) for m in PATH.finditer(text)]
        for p, inline in paths:
            p = p.strip()
            if p.split("::")[0] in children and inline == 0:
                p = "self::" + p
            if not re.match(r"(crate|super|self)\b", p):
                continue
            target = resolve(mods, here, p, inline)
            if target is not None and target != here:
                graph[here].add(target)
                why.setdefault((here, target), p)
    return graph, why


def cycles(nodes, graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in nodes:
        if v not in index:
            strong(v)
    return out


def long_functions(path):
    """(length, line, name) of every function over MAX_LINES lines."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, depth, test_depth = [], 0, None

    def braces(line):
        c = re.sub(r"//.*", "", line)
        c = re.sub(r'"(?:\\.|[^"\\])*"', '""', c)
        return re.sub(r"'(?:\\.|[^'\\])'", "''", c)

    for i, line in enumerate(lines):
        if test_depth is None and re.match(r"\s*#\[cfg\(test\)\]", line):
            j = i + 1
            while j < len(lines) and lines[j].strip().startswith("#["):
                j += 1
            if j < len(lines) and re.match(r"\s*(pub(\([^)]*\))?\s+)?mod\s+\w+", lines[j]):
                test_depth = depth
        m = FN.match(braces(line))
        if m and test_depth is None:
            d, started, k = 0, False, i
            while k < len(lines):
                c = braces(lines[k])
                if not started and ";" in c and "{" not in c and d == 0:
                    break
                for ch in c:
                    if ch == "{":
                        d += 1
                        started = True
                    elif ch == "}":
                        d -= 1
                if started and d == 0:
                    break
                k += 1
            if started and k - i + 1 > MAX_LINES:
                out.append((k - i + 1, i + 1, m.group(6)))
        for ch in braces(line):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if test_depth is not None and depth == test_depth:
                    test_depth = None
    return out


def main():
    problems = []
    for src in source_roots():
        mods = modules(src)
        graph, why = import_graph(mods)
        crate = os.path.relpath(src, ROOT)
        for comp in cycles(list(mods), graph):
            members = set(comp)
            names = sorted("::".join(c) or "(root)" for c in comp)
            edges = [
                f"    {'::'.join(a) or '(root)'} imports {'::'.join(b) or '(root)'} ({p})"
                for (a, b), p in sorted(why.items())
                if a in members and b in members
            ]
            problems.append(f"import circle in {crate}: {' <-> '.join(names)}\n" + "\n".join(edges))
        for path in sorted(mods.values()):
            for n, line, name in long_functions(path):
                problems.append(
                    f"{os.path.relpath(path, ROOT)}:{line}: fn {name} is {n} lines (at most {MAX_LINES})"
                )
    for p in problems:
        print(p)
    print(f"{len(problems)} layout problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
