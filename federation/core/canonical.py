"""RFC 8785 (JCS) canonical JSON for hashfed's wire models.

Leaf bytes and signed payloads must be byte-identical across implementations, so we accept a
strict subset of JSON where JCS is trivially unambiguous: objects with string keys, arrays,
strings, booleans, null and integers within ±(2^53 − 1) (the IEEE-754 exact range, RFC 8785
§3.2.2.3 / I-JSON).  Floats are rejected outright rather than serialised with ECMAScript number
formatting: no hashfed field needs one, and refusing them removes a classic interop trap.

Keys are sorted by their UTF-16 code units (RFC 8785 §3.2.3); strings are emitted as UTF-8 with
only the escapes JCS requires (§3.2.2.2).  Lone surrogates (not encodable as UTF-8) are rejected.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from federation.errors import InputError

MAX_SAFE_INTEGER = 2**53 - 1

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def _string(value: str, out: list[str], path: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(
            f"string at {path or '$'} is not valid Unicode (lone surrogate)",
            code="non_canonical_json",
            field=path or None,
        ) from None
    out.append('"')
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')


def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be", "surrogatepass")


def _emit(value: object, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise InputError(
                f"integer at {path or '$'} is outside ±(2^53-1)",
                code="non_canonical_json",
                field=path or None,
            )
        out.append(str(value))
    elif isinstance(value, float):
        raise InputError(
            f"number at {path or '$'} is not an integer; hashfed JSON has no floats",
            code="non_canonical_json",
            field=path or None,
        )
    elif isinstance(value, str):
        _string(value, out, path)
    elif isinstance(value, Mapping):
        out.append("{")
        keys = list(value)
        for key in keys:
            if not isinstance(key, str):
                raise InputError(
                    f"object key at {path or '$'} is not a string", code="non_canonical_json"
                )
        for i, key in enumerate(sorted(keys, key=_utf16_key)):
            if i:
                out.append(",")
            _string(key, out, path)
            out.append(":")
            _emit(value[key], out, f"{path}.{key}" if path else key)
        out.append("}")
    elif isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out, f"{path}.{i}" if path else str(i))
        out.append("]")
    else:
        raise InputError(
            f"value at {path or '$'} of type {type(value).__name__} has no JSON form",
            code="non_canonical_json",
            field=path or None,
        )


def _plain(value: object) -> bool:
    """Whether ``value`` is built only from exact dict/list/tuple/str/int/bool/None, with ints
    in range and every object key below U+D800.

    For such values ``json.dumps(sort_keys=True, ensure_ascii=False)`` is byte-identical to
    JCS: below U+D800 code point order equals UTF-16 code unit order, and the stdlib escapes
    exactly the characters JCS escapes (``"``, ``\\``, controls; ``\\u00xx`` in lowercase).

    Every signature and leaf goes through here, so the common cases (str values, ASCII keys)
    are decided inline before any recursion.
    """
    kind = type(value)
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str or not (key.isascii() or max(key) < "\ud800"):
                return False
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item is None:
                continue
            if item_kind is int:
                if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    return False
            elif not _plain(item):
                return False
        return True
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER  # type: ignore[operator]
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)  # type: ignore[attr-defined]
    return False


def canonical_json(value: object) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (see module docstring for the subset).

    Common values take the C-accelerated stdlib encoder (see :func:`_plain`); anything else
    (non-BMP keys, enums, other mappings) and every error goes through the reference emitter,
    which also produces the error messages with their paths.
    """
    if _plain(value):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate: let the reference emitter name where
    return _reference_canonical_json(value)


def _reference_canonical_json(value: object) -> bytes:
    out: list[str] = []
    _emit(value, out, "")
    return "".join(out).encode("utf-8")


def _reject_constant(name: str) -> object:
    raise InputError(f"JSON constant {name} is not allowed", code="non_canonical_json")


def _reject_float(text: str) -> object:
    raise InputError(
        f"number {text} is not an integer; hashfed JSON has no floats", code="non_canonical_json"
    )


def parse_json(data: bytes) -> object:
    """Parse UTF-8 JSON strictly: no NaN/Infinity, no floats, no duplicate keys, valid UTF-8.

    Used wherever bytes from outside are turned into values that may later be signed or hashed,
    so that what we verify is exactly what we parsed.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("body is not valid UTF-8", code="invalid_json") from None

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        result: dict[str, object] = {}
        for key, val in pairs:
            if key in result:
                raise InputError(f"duplicate key {key!r}", code="invalid_json", field=key)
            result[key] = val
        return result

    try:
        return json.loads(
            text,
            parse_float=_reject_float,
            parse_constant=_reject_constant,
            object_pairs_hook=no_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise InputError(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
        ) from None
