#!/usr/bin/env python3
"""Fails when the crate's files import each other in a circle.

Reads every .rs file of the library (src/) and of the bridge package (mcp-oauth/src/), each
binary a crate of its own; takes the paths it names through `crate::`, `super::` and `self::` (in `use` items and inline), maps each
to the file that defines the module it reaches, and looks for circles among those files. A
module's own file (mod.rs, lib.rs, main.rs) declaring and re-exporting its children is its face,
not an import: those edges are not counted.

    python3 .ci/import_circles.py            # prints each circle with the edges that tie it
"""
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH = re.compile(r"\b(crate|super|self)((?:\s*::\s*" + IDENT + r")+)")
USE = re.compile(r"\buse\s+([^;]*);", re.S)


def crates():
    """(crate root file, its src directory) for the library and each binary."""
    found = []
    lib = os.path.join(SRC, "lib.rs")
    if os.path.exists(lib):
        found.append((lib, SRC))
    bins = os.path.join(SRC, "bin")
    if os.path.isdir(bins):
        for name in sorted(os.listdir(bins)):
            main = os.path.join(bins, name, "main.rs")
            if os.path.exists(main):
                found.append((main, os.path.dirname(main)))
    bridge = os.path.join(ROOT, "mcp-oauth", "src", "main.rs")
    if os.path.exists(bridge):
        found.append((bridge, os.path.dirname(bridge)))
    return found


def module_files(root_file, root_dir):
    """Module path (tuple) -> file, for every file of one crate."""
    modules = {(): root_file}
    for directory, _, files in os.walk(root_dir):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(directory, name)
            if path == root_file:
                continue
            if root_dir == SRC and os.path.join(SRC, "bin") in path:
                continue
            parts = os.path.relpath(path, root_dir)[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            modules[tuple(parts)] = path
    return modules


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand(tree):
    """`a::{b, c::{d, e}}` -> ["a::b", "a::c::d", "a::c::e"] (aliases and globs dropped)."""
    tree = re.sub(r"\s+", "", tree)
    depth, start = 0, None
    for i, ch in enumerate(tree):
        if ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                prefix, inner, rest = tree[:start], tree[start + 1 : i], tree[i + 1 :]
                parts, level, last = [], 0, 0
                for j, c in enumerate(inner):
                    if c == "{":
                        level += 1
                    elif c == "}":
                        level -= 1
                    elif c == "," and level == 0:
                        parts.append(inner[last:j])
                        last = j + 1
                parts.append(inner[last:])
                out = []
                for part in parts:
                    if part:
                        out.extend(expand(prefix + part + rest))
                return out
    tree = re.sub(r"\bas" + IDENT + "$", "", tree)
    return [tree.rstrip(":*")]


def names_in(text):
    """Every `crate::…`, `super::…`, `self::…` path the file names."""
    text = strip_comments(text)
    paths = []
    for use in USE.finditer(text):
        for path in expand(use.group(1)):
            path = path.removeprefix("pub").removeprefix("::")
            paths.append(path)
    for match in PATH.finditer(text):
        paths.append(match.group(1) + re.sub(r"\s+", "", match.group(2)))
    return paths


def resolve(path, here, modules):
    """The module a path reaches, from module `here` (the deepest one that has a file)."""
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] in ("super", "self"):
        base = list(here)
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super" and base:
                base.pop()
            parts = parts[1:]
        base, rest = tuple(base), parts
    else:
        # A child of this module (`use config::X` in a mod.rs).
        base, rest = here, parts
        if here + (parts[0],) not in modules:
            return None
    module = base
    for part in rest:
        if module + (part,) in modules:
            module = module + (part,)
        else:
            break
    return module


def graph():
    edges = defaultdict(lambda: defaultdict(set))
    for root_file, root_dir in crates():
        modules = module_files(root_file, root_dir)
        for module, path in modules.items():
            with open(path, encoding="utf-8") as f:
                text = f.read()
            for named in names_in(text):
                target = resolve(named, module, modules)
                if target is None or target == module:
                    continue
                # A module's face declaring and re-exporting what lies under it.
                if target[: len(module)] == module:
                    continue
                edges[modules[module]][modules[target]].add(named.split("::")[-1])
    return edges


def circles(edges):
    """Strongly connected components of more than one file (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def main():
    edges = graph()
    found = circles(edges)
    rel = lambda p: os.path.relpath(p, ROOT)
    for number, component in enumerate(found, 1):
        print(f"circle {number}: {', '.join(rel(p) for p in component)}")
        for a in component:
            for b in component:
                if b in edges.get(a, {}):
                    print(f"  {rel(a)} -> {rel(b)}: {', '.join(sorted(edges[a][b]))}")
    if found:
        print(f"{len(found)} import circle(s): move what both sides need to a module both import")
        return 1
    print("no import circle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
