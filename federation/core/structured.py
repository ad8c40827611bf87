"""RFC 8941 Structured Field Values: the subset HTTP message signatures need.

Dictionaries whose members are items or inner lists with parameters, and the bare item
types Integer, String, Token, Byte Sequence and Boolean (Decimals are refused: nothing in
``Signature-Input``, ``Signature`` or ``Content-Digest`` uses them).  Pure and strict: a
malformed field raises :class:`InputError` (code ``malformed_sf``) instead of being repaired,
and duplicate dictionary keys are refused rather than last-one-wins, so a signature header
cannot mean different things to two parsers.
"""

from __future__ import annotations

import base64
import binascii
import re

from federation.errors import InputError


class Token(str):
    """An RFC 8941 Token (serialised bare, unlike a String)."""

    __slots__ = ()


BareItem = int | str | bytes | bool
Params = tuple[tuple[str, BareItem], ...]
InnerList = tuple[tuple[BareItem, Params], ...]
Member = tuple[BareItem | InnerList, Params]

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*")
_INTEGER = re.compile(r"-?[0-9]{1,15}")
_BYTES = re.compile(r":([A-Za-z0-9+/=]*):")
# A whole well-formed sf-string (§3.3.3): printable ASCII, with only \" and \\ escaped.
_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\["\\])*)"')
_UNESCAPE = re.compile(r'\\(["\\])')


class _Parser:
    """A cursor over one field value; raises InputError naming what broke."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> InputError:
        return InputError(f"malformed structured field at {self.pos}: {why}", code="malformed_sf")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip(self, chars: str) -> None:
        while self.peek() and self.peek() in chars:
            self.pos += 1

    def match(self, pattern: re.Pattern[str]) -> re.Match[str] | None:
        found = pattern.match(self.text, self.pos)
        if found is not None:
            self.pos = found.end()
        return found

    def key(self) -> str:
        found = self.match(_KEY)
        if found is None:
            raise self.fail("expected a key")
        return found.group()

    def bare_item(self) -> BareItem:
        char = self.peek()
        if char == '"':
            return self.string()
        if char == "?":
            if self.text[self.pos : self.pos + 2] not in ("?0", "?1"):
                raise self.fail("bad boolean")
            self.pos += 2
            return self.text[self.pos - 1] == "1"
        if char == ":":
            found = self.match(_BYTES)
            if found is None:
                raise self.fail("bad byte sequence")
            try:
                return base64.b64decode(found.group(1), validate=True)
            except (binascii.Error, ValueError):
                raise self.fail("bad base64") from None
        if char == "-" or char.isdigit():
            found = self.match(_INTEGER)
            if found is None or self.peek() == "." or self.peek().isdigit():
                raise self.fail("only integers of at most 15 digits are supported")
            return int(found.group())
        found = self.match(_TOKEN)
        if found is None:
            raise self.fail("expected an item")
        return Token(found.group())

    def string(self) -> str:
        # Fast path: one regex for a well-formed string (signature headers are parsed on
        # every request); the character loop below only runs to say what is wrong.
        found = self.match(_STRING)
        if found is not None:
            return _UNESCAPE.sub(r"\1", found.group(1))
        self.pos += 1
        out: list[str] = []
        while True:
            char = self.peek()
            self.pos += 1
            if char == "":
                raise self.fail("unterminated string")
            if char == '"':
                return "".join(out)
            if char == "\\":
                char = self.peek()
                if char not in ('"', "\\"):
                    raise self.fail("bad escape")
                self.pos += 1
            elif not " " <= char <= "~":
                raise self.fail("non-printable character in string")
            out.append(char)

    def params(self) -> Params:
        result: list[tuple[str, BareItem]] = []
        while self.peek() == ";":
            self.pos += 1
            self.skip(" ")
            name = self.key()
            value: BareItem = True
            if self.peek() == "=":
                self.pos += 1
                value = self.bare_item()
            if any(existing == name for existing, _ in result):
                raise self.fail(f"duplicate parameter {name!r}")
            result.append((name, value))
        return tuple(result)

    def member(self) -> BareItem | InnerList:
        if self.peek() != "(":
            return self.bare_item()
        self.pos += 1
        items: list[tuple[BareItem, Params]] = []
        while True:
            self.skip(" ")
            if self.peek() == ")":
                self.pos += 1
                return tuple(items)
            items.append((self.bare_item(), self.params()))
            if self.peek() not in (" ", ")"):
                raise self.fail("inner list items must be separated by spaces")


def parse_dictionary(text: str) -> dict[str, Member]:
    """Parse an RFC 8941 Dictionary (§4.2.2); duplicate keys are rejected, not merged."""
    parser = _Parser(text.strip(" \t"))
    result: dict[str, Member] = {}
    while parser.peek():
        name = parser.key()
        value: BareItem | InnerList = True
        if parser.peek() == "=":
            parser.pos += 1
            value = parser.member()
        if name in result:
            raise parser.fail(f"duplicate key {name!r}")
        result[name] = (value, parser.params())
        parser.skip(" \t")
        if not parser.peek():
            break
        if parser.peek() != ",":
            raise parser.fail("expected ','")
        parser.pos += 1
        parser.skip(" \t")
        if not parser.peek():
            raise parser.fail("trailing comma")
    return result


def serialize_item(value: BareItem) -> str:
    """RFC 8941 §4.1.3 serialisation of one bare item."""
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    if isinstance(value, Token):
        return str(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def serialize_params(params: Params) -> str:
    """``;name=value`` for each parameter, ``;name`` for a true boolean (§4.1.1.2)."""
    return "".join(
        f";{name}" if value is True else f";{name}={serialize_item(value)}"
        for name, value in params
    )
