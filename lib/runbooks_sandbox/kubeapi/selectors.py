"""Label and field selectors, as the API server reads them from ?labelSelector= and ?fieldSelector=."""

import re

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s+\(([^)]*)\)$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*([-A-Za-z0-9_.]*)$")
_EXISTS = re.compile(rf"^(!?)\s*({_KEY})$")


class SelectorError(ValueError):
    pass


def _split(selector):
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def parse_label_selector(selector):
    """'app=web,tier in (a,b),!canary' -> [(key, op, values)], op one of = != in notin exists !."""
    requirements = []
    for part in _split(selector or ""):
        if match := _SET.match(part):
            values = {v.strip() for v in match.group(3).split(",") if v.strip()}
            requirements.append((match.group(1), match.group(2), values))
        elif match := _EQUALITY.match(part):
            op = "!=" if match.group(2) == "!=" else "="
            requirements.append((match.group(1), op, {match.group(3)}))
        elif match := _EXISTS.match(part):
            requirements.append((match.group(2), "!" if match.group(1) else "exists", set()))
        else:
            raise SelectorError(f"unable to parse requirement: {part!r}")
    return requirements


def labels_match(requirements, labels):
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        if op == "=" and not (present and labels[key] in values):
            return False
        if op == "!=" and present and labels[key] in values:
            return False
        if op == "in" and not (present and labels[key] in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


def parse_field_selector(selector, supported):
    """'status.phase=Running,spec.nodeName!=n1' -> [(path, op, value)]; unsupported paths raise."""
    requirements = []
    for part in _split(selector or ""):
        match = re.match(r"^([A-Za-z.]+)\s*(==|=|!=)\s*(.*)$", part)
        if not match:
            raise SelectorError(f"invalid field selector: {part!r}")
        path, op, value = match.group(1), match.group(2), match.group(3).strip()
        if path not in supported:
            raise SelectorError(f"field label not supported: {path}")
        requirements.append((path, "!=" if op == "!=" else "=", value))
    return requirements


def field_value(obj, path):
    """The string a field selector compares with: missing fields are '', booleans 'true'/'false'."""
    value = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def fields_match(requirements, obj):
    return all((field_value(obj, path) == value) == (op == "=") for path, op, value in requirements)
