"""Names and labels: the rules for object names, label keys and values, and label selectors.

Object names are DNS-1123 labels (Kubernetes' rule for most names): lowercase letters, digits and
``-``, starting and ending with a letter or digit, at most 63 characters. Label keys are an optional
DNS-1123 subdomain prefix and ``/`` and a name of up to 63 characters; values up to 63 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid object name, or None."""
    if not name:
        return "must not be empty"
    if len(name) > 63:
        return f"must be at most 63 characters (it has {len(name)})"
    if not _DNS1123_LABEL.match(name):
        return (
            f"{name!r} is not a valid name: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (e.g. 'web-1')"
        )
    return None


def subdomain_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 subdomain (names with dots, as Events use), or None."""
    if not name:
        return "must not be empty"
    if len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return f"{name!r} is not a valid name: use lowercase letters, digits, '-' and '.', at most 253 characters"
    return None


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"label key prefix {prefix!r} must be a DNS subdomain such as 'example.com'"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return (
            f"label key {key!r} is invalid: use up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, optionally after a 'prefix/'"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63 or not _LABEL_NAME.match(value):
        return (
            f"label value {value!r} is invalid: use up to 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit"
        )
    return None


def env_name_problem(name: str) -> str | None:
    if not name or not _ENV_NAME.match(name):
        return f"{name!r} is not a valid environment variable name (letters, digits, '_', '-', '.'; not starting with a digit)"
    return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector: ``key=value``, ``key!=value``, ``key in (a,b)``, ``key``, ``!key``."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        if self.op == "exists":
            return has
        if self.op == "!exists":
            return not has
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and value in self.values
        return not has or value not in self.values  # "!=", "notin"


@dataclass(frozen=True, slots=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_SET_TERM = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s+\(([^()]*)\)\s*$")


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(ch)
    terms.append("".join(current))
    return terms


def parse_selector(text: str) -> Selector:
    """Parse a Kubernetes-style label selector; ValueError names the bad term."""
    if not text.strip():
        return Selector()
    reqs: list[Requirement] = []
    for raw in _split_terms(text):
        term = raw.strip()
        if not term:
            raise ValueError(f"empty term in selector {text!r}")
        if m := _SET_TERM.match(term):
            key, op = m.group(1), m.group(2)
            values = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            if not values:
                raise ValueError(f"{term!r}: '{op}' needs at least one value in parentheses")
            req = Requirement(key, op, values)
        elif "!=" in term:
            key, _, value = term.partition("!=")
            req = Requirement(key.strip(), "!=", (value.strip(),))
        elif "=" in term:
            key, _, value = term.partition("==") if "==" in term else term.partition("=")
            req = Requirement(key.strip(), "=", (value.strip(),))
        elif term.startswith("!"):
            req = Requirement(term[1:].strip(), "!exists")
        else:
            req = Requirement(term, "exists")
        if problem := label_key_problem(req.key):
            raise ValueError(f"{term!r}: {problem}")
        for value in req.values:
            if problem := label_value_problem(value):
                raise ValueError(f"{term!r}: {problem}")
        reqs.append(req)
    return Selector(tuple(reqs))


def selector_from_labels(match_labels: dict[str, str]) -> Selector:
    return Selector(tuple(Requirement(k, "=", (v,)) for k, v in sorted(match_labels.items())))
