"""Check the import layers (`make lint`): runtime <- domain <- toolchain <- services, the CLI beside
the services, services never importing each other, nothing shipped importing the development tools.

Usage: python scripts/check_layers.py [ROOT]   (exit 1 and one line per violation)
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

# What each shipped layer may import, besides itself, the package root and the generated stubs.
ALLOWED: dict[str, tuple[str, ...]] = {
    "schedcp.runtime": (),
    "schedcp.domain": ("schedcp.runtime",),
    "schedcp.toolchain": ("schedcp.runtime", "schedcp.domain"),
    "schedcp.cli": ("schedcp.runtime", "schedcp.domain", "schedcp.toolchain"),
    "services": ("schedcp.runtime", "schedcp.domain", "schedcp.toolchain"),
}
ALWAYS = ("schedcp.v1",)
# Our own top-level packages; anything else (stdlib, third party) is not checked.
OURS = ("schedcp", "services", "harness", "tests", "bench", "scripts")


def layer_of(module: str) -> str | None:
    """The layer a shipped module belongs to (for services: the service itself), else None."""
    parts = module.split(".")
    if parts[0] == "services" and len(parts) > 1:
        return f"services.{parts[1]}"
    if parts[0] == "schedcp" and len(parts) > 1 and f"schedcp.{parts[1]}" in ALLOWED:
        return f"schedcp.{parts[1]}"
    return None


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import in the file, at any depth (function-local too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from schedcp import bus` imports the module schedcp.bus: check each name as well.
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def allowed(importer: str, imported: str) -> bool:
    """Whether a module of layer `importer` may import `imported`."""
    if imported.split(".")[0] not in OURS or imported == "schedcp" or imported.startswith(ALWAYS):
        return True
    target = layer_of(imported)
    if target is None:
        # A name of the package root (__version__, DATA) is fine; harness, tests, bench, scripts are not.
        return imported.startswith("schedcp.")
    if target == importer:
        return True
    rules = ALLOWED["services"] if importer.startswith("services.") else ALLOWED[importer]
    return target in rules


def violations(root: Path) -> Iterator[str]:
    for path in sorted([*root.glob("schedcp/**/*.py"), *root.glob("services/**/*.py")]):
        relative = path.relative_to(root)
        if relative.parts[:2] == ("schedcp", "v1"):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        importer = layer_of(module)
        if importer is None:
            continue  # schedcp/__init__.py, services/__init__.py: import nothing of ours
        worst: dict[int, str] = {}  # per line, the most specific name not allowed
        for line, imported in imports(path, module):
            if not allowed(importer, imported) and len(imported) > len(worst.get(line, "")):
                worst[line] = imported
        for line, imported in sorted(worst.items()):
            yield (f"{relative}:{line}: {importer} may not import {imported} "
                   f"(layers: runtime <- domain <- toolchain <- services and cli; services stay apart; "
                   f"nothing shipped imports harness, tests or bench)")


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = sorted(set(violations(root)))
    for line in found:
        print(line)
    print(f"import layers: {len(found)} violation(s)" if found else "import layers: ok")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
