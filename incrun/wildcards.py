"""Named wildcards: `{sample}` in an input pattern matches within one path segment, as `*` does,
and binds its value for that input's outputs, command and deps."""

from __future__ import annotations

import re
from collections.abc import Iterable

WILDCARD = re.compile(r"\{([A-Za-z_]\w*)\}")
# One gitignore-pattern token at a time: the shapes that match more than themselves.
_TOKEN = re.compile(r"\*\*/|/\*\*$|\*\*|\*|\?|\[[^\]/]*\]|\{[A-Za-z_]\w*\}")


def glob_form(pattern: str) -> str:
    """The pattern as gitignore (pathspec) reads it: each wildcard a `*`."""
    return WILDCARD.sub("*", pattern) if "{" in pattern else pattern


def names(pattern: str) -> set[str]:
    return set(WILDCARD.findall(pattern))


class Binder:
    """The wildcards a rule's input patterns share, and their values for one input."""

    def __init__(self, patterns: Iterable[str]):
        positive = [p.strip() for p in patterns
                    if p.strip() and not p.lstrip().startswith(("!", "#"))]
        named = [p for p in positive if names(p)]
        # A wildcard is known when every input pattern binds it: each input then has a value.
        self.names = set.intersection(*(names(p) for p in positive)) if named else set()
        self._matchers = [_regex(p) for p in named]

    def __bool__(self) -> bool:
        return bool(self.names)

    def bind(self, rel: str) -> dict[str, str] | None:
        """Each wildcard's value in this input path; None if no pattern binds them all."""
        for matcher in self._matchers:
            found = matcher.fullmatch(rel)
            if found is not None:
                values = {key: value for key, value in found.groupdict().items()
                          if key in self.names}
                if len(values) == len(self.names):
                    return values
        return None


def _regex(pattern: str) -> re.Pattern:
    """A gitignore pattern as a regex over relative file paths, a group per wildcard."""
    anchored = "/" in pattern.rstrip("/")  # as in git: a slash but at the end anchors it
    body = pattern.lstrip("/").rstrip("/")
    parts, seen, at = [], set(), 0
    for token in _TOKEN.finditer(body):
        parts.append(re.escape(body[at:token.start()]))
        parts.append(_token_regex(token.group(), seen))
        at = token.end()
    parts.append(re.escape(body[at:]))
    prefix = "" if anchored else "(?:.*/)?"
    return re.compile(prefix + "".join(parts) + "(?:/.*)?")  # a folder's files match too


def _token_regex(token: str, seen: set[str]) -> str:
    if token.startswith("{"):
        name = token[1:-1]
        if name in seen:
            return f"(?P={name})"  # the same wildcard twice: the same value
        seen.add(name)
        return f"(?P<{name}>[^/]+)"
    if token == "**/":
        return "(?:.*/)?"
    if token in ("/**", "**"):
        return "/.*" if token == "/**" else ".*"
    if token == "*":
        return "[^/]*"
    if token == "?":
        return "[^/]"
    inner = token[1:-1]
    return "[" + ("^" + inner[1:] if inner.startswith("!") else inner) + "]"
