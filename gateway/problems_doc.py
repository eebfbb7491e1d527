"""docs/problems.md, generated from the error catalogue (`gateway.errors.PROBLEMS`)."""

from __future__ import annotations

from gateway.errors import PROBLEM_BASE, PROBLEMS
from sandbox.errors import SandboxError


def catalogue() -> list[tuple[str, int, str, str, list[str]]]:
    """(code, status, title, meaning, error classes) for every problem type, by code."""
    rows: dict[tuple[str, int], tuple[str, str, list[str]]] = {}
    for cls, entry in PROBLEMS.items():
        code = entry.code or str(getattr(cls, "code", ""))
        title = entry.title or str(getattr(cls, "title", ""))
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        meaning = entry.meaning or (doc if getattr(cls, "__doc__", None) and doc else title)
        name = f"{cls.__module__}.{cls.__qualname__}"
        if (code, entry.status) in rows:
            rows[(code, entry.status)][2].append(name)
        else:
            rows[(code, entry.status)] = (title, meaning, [name])
    return [
        (code, status, title, meaning, names)
        for (code, status), (title, meaning, names) in sorted(rows.items())
    ]


def render_problems_md() -> str:
    """docs/problems.md: every problem type with its status and meaning."""
    lines = [
        "# Problem types",
        "",
        "<!-- Generated from gateway/errors.py PROBLEMS; tests/test_error_catalogue.py checks it.",
        "     Regenerate: python -m gateway.problems_doc > docs/problems.md -->",
        "",
        "Every error response is an RFC 9457 problem document (`application/problem+json`)",
        f"whose `type` is `{PROBLEM_BASE}<code>`. Codes are stable: new ones are added, none is",
        "renamed. `internal-error`, `crypto-failure` and the ledger's 500s carry no detail;",
        "quote their `request_id`.",
        "",
        "| code | status | title | meaning | raised as |",
        "|---|---|---|---|---|",
    ]
    for code, status, title, meaning, names in catalogue():
        raised = ", ".join(f"`{n}`" for n in names)
        lines.append(f"| `{code}` | {status} | {title} | {meaning} | {raised} |")
    lines += [
        "",
        "## Codes recorded on computations",
        "",
        "A failed or rejected computation carries the code of what stopped it in its `error`",
        "(the sandbox's errors, handled inside the platform; one reaching the edge is an",
        "`internal-error`). The same stable codes:",
        "",
        "| code | title |",
        "|---|---|",
    ]
    sandbox = {
        (cls.code, cls.title)
        for cls in PROBLEMS
        if isinstance(cls, type) and issubclass(cls, SandboxError)
    }
    lines += [f"| `{code}` | {title} |" for code, title in sorted(sandbox)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render_problems_md(), end="")
