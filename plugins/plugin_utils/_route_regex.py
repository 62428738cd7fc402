# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The regex subset of route_compile: regexes that mean the same in Python's re and PCRE2 (private).

The compiler validates regex routes with Python's ``re``; HAProxy runs them with PCRE2
(10.42 on Debian 12), compiled without UTF or UCP, so it matches bytes. The two engines
differ in many corners: ``{,3}`` is a repetition in Python 3.11 but literal text in PCRE2
before 10.43; ``[[:digit:]]`` is a POSIX class in PCRE2 and a character set plus ``]+`` in
Python; ``\\u0041`` and ``\\N{...}`` exist only in Python, ``\\x{41}`` only in PCRE2; Python's
str patterns make ``\\d``, ``\\w`` and ``\\s`` Unicode-aware. Rather than list what differs
(and miss something), :func:`check_regex` accepts only an allow-list of constructs both
engines read identically when Python compiles the pattern as *bytes* (``\\d``, ``\\w``, ``\\s``
ASCII-only, ``.`` one byte, as PCRE2 without UTF). docs/routing.md lists the subset.

It is a small recursive-descent parser. Besides the syntax it computes, for each piece, whether
it can match the empty string and which bytes can start a match, so it can require every match
to start with ``/`` (HAProxy's ``path`` fetch always starts with one) and never be empty.
"""

from __future__ import annotations

import re

# Longer regexes are almost certainly generated or hostile; 1,000 characters is far above any
# hand-written route and keeps the config line and PCRE2's compiled code small.
MAX_REGEX_LENGTH = 1000
# PCRE2 caps counted repetitions at 65535 and Python at 2**32-1; a low common cap also bounds
# the size PCRE2 gives a group repeated {n,m} times (it copies the group).
MAX_REPEAT = 1000
# PCRE2 refuses more than 250 nested parentheses by default; Python recurses per level.
MAX_DEPTH = 32
# PCRE2 compiles a counted repetition of a group into that many copies of the group; its
# compiled code is limited (64 KiB with the usual LINK_SIZE 2). This is an estimate in rough
# code units, kept well below that so no accepted regex fails on the host.
MAX_COMPILED_SIZE = 20000

_SLASH = ord("/")
_ALL = frozenset(range(256))
_DIGIT = frozenset(range(0x30, 0x3A))
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# Python (ASCII) and PCRE2 (since 10.0, following Perl 5.18) both include VT (0x0B).
_SPACE = frozenset(b" \t\n\r\f\v")
_CLASS_ESCAPES = {
    "d": _DIGIT,
    "D": _ALL - _DIGIT,
    "w": _WORD,
    "W": _ALL - _WORD,
    "s": _SPACE,
    "S": _ALL - _SPACE,
}
_DOT = _ALL - {ord("\n")}  # neither engine's '.' matches LF by default
# Punctuation is literal after a backslash in both engines (letters and digits are not).
_PUNCT = frozenset(chr(c) for c in range(0x21, 0x7F) if not chr(c).isalnum())
_HEX = "0123456789abcdefABCDEF"

_WHOLE_PATH = "the route regex always has to match the whole path (the compiler anchors it), so anchors are not needed"
_ESCAPE_REASONS = {
    "u": "\\u is a Unicode escape Python knows and PCRE2 does not; write bytes as \\xHH",
    "U": "\\U is a Unicode escape Python knows and PCRE2 does not; write bytes as \\xHH",
    "N": "\\N{...} is a Unicode name escape Python knows and PCRE2 does not; write bytes as \\xHH",
    "p": "\\p{...} is a Unicode property PCRE2 knows and Python does not",
    "P": "\\P{...} is a Unicode property PCRE2 knows and Python does not",
    "A": "\\A is not in the subset: " + _WHOLE_PATH,
    "Z": "\\Z means end of string in Python but 'end or before a final newline' in PCRE2; " + _WHOLE_PATH,
    "z": "\\z is PCRE2 syntax (an error in Python before 3.14); " + _WHOLE_PATH,
    "G": "\\G is PCRE2 syntax Python does not know",
    "b": "word boundaries (\\b, \\B) are not in the subset",
    "B": "word boundaries (\\b, \\B) are not in the subset",
    "k": "named back references are not in the subset",
    "g": "back references are not in the subset",
    "Q": "\\Q...\\E quoting is PCRE2 syntax Python does not know; escape each character",
    "E": "\\Q...\\E quoting is PCRE2 syntax Python does not know; escape each character",
    "K": "\\K is PCRE2 syntax Python does not know",
    "R": "\\R is PCRE2 syntax Python does not know",
    "X": "\\X is PCRE2 syntax Python does not know",
    "C": "\\C is PCRE2 syntax Python does not know",
    "h": "\\h and \\H are PCRE2 syntax Python does not know",
    "H": "\\h and \\H are PCRE2 syntax Python does not know",
    "v": "\\v means a vertical tab in Python and any vertical space in PCRE2",
    "V": "\\V is PCRE2 syntax Python does not know",
    "o": "\\o{...} is PCRE2 syntax Python does not know; write bytes as \\xHH",
    "c": "\\c is PCRE2 syntax Python does not know",
    "e": "\\e is PCRE2 syntax Python does not know; write bytes as \\xHH",
}
_GROUP_REASONS = (
    ("(?P<", "named groups are not in the subset (Python needs (?P<name>...), PCRE2 also takes (?<name>...)); use (...) or (?:...)"),
    ("(?P=", "named back references are not in the subset"),
    ("(?P>", "recursion is PCRE2 syntax Python does not know"),
    ("(?<=", "lookbehind is not in the subset (the engines accept different lookbehind lengths)"),
    ("(?<!", "lookbehind is not in the subset (the engines accept different lookbehind lengths)"),
    ("(?<", "named groups are not in the subset (Python needs (?P<name>...), PCRE2 also takes (?<name>...)); use (...) or (?:...)"),
    ("(?'", "named groups are not in the subset; use (...) or (?:...)"),
    ("(?=", "lookahead is not in the subset"),
    ("(?!", "lookahead is not in the subset"),
    ("(?>", "atomic groups are not in the subset (Python knows them only from 3.11; the controller may run an older one)"),
    ("(?#", "comments are not in the subset"),
    ("(?(", "conditional groups are not in the subset"),
    ("(?|", "branch reset groups are PCRE2 syntax Python does not know"),
)


class RegexRejected(ValueError):
    """Why a regex is outside the subset, and where (0-based character position)."""

    def __init__(self, reason: str, pos: int):
        super().__init__(f"{reason} (at position {pos})")
        self.reason = reason
        self.pos = pos


class _Piece:
    """What the parser knows about a piece of the regex."""

    __slots__ = ("nullable", "first", "size", "repeats")

    def __init__(self, nullable: bool, first: frozenset, size: int, repeats: bool = False):
        self.nullable = nullable  # can match the empty string
        self.first = first  # bytes that can start a non-empty match
        self.size = size  # rough size of PCRE2's compiled code
        self.repeats = repeats  # holds a repetition of variable count (*, +, ?, {n,}, {n,m} with m > n)


def _seq(pieces: list) -> _Piece:
    nullable, first, size = True, frozenset(), 0
    for piece in pieces:
        if nullable:
            first = first | piece.first
        nullable = nullable and piece.nullable
        size += piece.size
    return _Piece(nullable, first, size, any(p.repeats for p in pieces))


class _Parser:
    def __init__(self, pattern: str):
        self.s = pattern
        self.i = 0
        self.depth = 0

    def fail(self, reason: str, pos: int | None = None) -> None:
        raise RegexRejected(reason, self.i if pos is None else pos)

    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    # alternation := sequence ('|' sequence)*
    def alternation(self) -> _Piece:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return _Piece(
            any(b.nullable for b in branches),
            frozenset().union(*(b.first for b in branches)),
            sum(b.size for b in branches) + 3 * len(branches),
            any(b.repeats for b in branches),
        )

    # sequence := (atom quantifier?)*
    def sequence(self) -> _Piece:
        pieces = []
        while self.peek() not in ("", "|", ")"):
            start = self.i
            atom, is_group = self.atom()
            pieces.append(self.quantified(atom, is_group, start))
        return _seq(pieces)

    def atom(self) -> tuple:
        c = self.peek()
        if c in ("*", "+", "?"):
            self.fail(f"{c!r} has nothing to repeat")
        if c == "{":
            self.fail("'{' has nothing to repeat; write \\{ for a literal brace")
        if c == "(":
            return self.group(), True
        if c == "[":
            return self.char_class(), False
        if c == ".":
            self.i += 1
            return _Piece(False, _DOT, 1), False
        if c == "\\":
            kind, value = self.escape(in_class=False)
            return _Piece(False, frozenset([value]) if kind == "lit" else value, 2), False
        if c in ("^", "$"):
            self.fail(f"{c!r} is not in the subset: {_WHOLE_PATH}")
        if c == "]":
            self.fail("a literal ']' must be escaped as \\]")
        if c == "}":
            self.fail("a literal '}' must be escaped as \\}")
        self.i += 1
        return _Piece(False, frozenset([ord(c)]), 2), False

    def group(self) -> _Piece:
        start = self.i
        if self.s.startswith("(?:", start):
            self.i += 3
        elif self.s.startswith("(?", start):
            for prefix, reason in _GROUP_REASONS:
                if self.s.startswith(prefix, start):
                    self.fail(reason)
            self.fail("inline flags such as (?i) are not in the subset (HAProxy matches paths case-sensitively; the engines know different flags)")
        elif self.s.startswith("(*", start):
            self.fail("(*...) starts a PCRE2 verb such as (*UTF), which Python does not know")
        else:
            self.i += 1
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"groups are nested more than {MAX_DEPTH} deep", start)
        body = self.alternation()
        if self.peek() != ")":
            self.fail("missing ')' for the group opened here", start)
        self.i += 1
        self.depth -= 1
        return _Piece(body.nullable, body.first, body.size + 6, body.repeats)

    def escape(self, in_class: bool) -> tuple:
        """One escape at self.i; ('lit', byte) or ('set', frozenset of bytes)."""
        start = self.i
        c = self.peek(1)
        if c == "":
            self.fail("the regex ends with a lone backslash")
        if c in _PUNCT:
            self.i += 2
            return "lit", ord(c)
        if c in _CLASS_ESCAPES:
            self.i += 2
            return "set", _CLASS_ESCAPES[c]
        if c == "x":
            digits = self.s[start + 2 : start + 4]
            if self.peek(2) == "{":
                self.fail("\\x{...} is PCRE2 syntax Python does not know; write bytes as \\xHH")
            if len(digits) != 2 or any(d not in _HEX for d in digits):
                self.fail("\\x must be followed by exactly two hex digits (\\xHH)")
            self.i += 4
            return "lit", int(digits, 16)
        if c.isdigit():
            self.fail("back references and octal escapes (\\1, \\0) are not in the subset; write bytes as \\xHH")
        if in_class and c == "b":
            self.fail("\\b inside [...] is not in the subset; write \\x08")
        self.fail(_ESCAPE_REASONS.get(c, f"the escape \\{c} is not in the subset; write bytes as \\xHH"))
        raise AssertionError  # unreachable: fail() raises

    def class_atom(self) -> tuple:
        c = self.peek()
        if c == "\\":
            return self.escape(in_class=True)
        if c == "[":
            self.fail("'[' inside [...] must be escaped as \\[ (PCRE2 reads [:name:] as a POSIX class, Python as characters)")
        self.i += 1
        return "lit", ord(c)

    def char_class(self) -> _Piece:
        start = self.i
        self.i += 1
        negate = self.peek() == "^"
        if negate:
            self.i += 1
        body_start = self.i
        end = self.s.find("]", body_start)
        body = self.s[body_start:end] if end > body_start else ""
        if len(body) >= 2 and body[0] in ":.=" and body[-1] == body[0]:
            self.fail(f"[{body}] looks like a POSIX class or collating element, which PCRE2 and Python read differently", start)
        members = set()
        while True:
            c = self.peek()
            if c == "":
                self.fail("missing ']' for the character class opened here", start)
            if c == "]":
                if self.i == body_start:
                    self.fail("a ']' right after '[' or '[^' is not in the subset; write \\]")
                self.i += 1
                break
            if self.s.startswith(("&&", "||", "~~"), self.i):
                self.fail(f"{self.s[self.i:self.i + 2]!r} inside [...] is not in the subset (Python may read it as a set operation); escape one of them")
            pos = self.i
            kind, lo = self.class_atom()
            if kind == "lit" and lo == ord("-") and self.s[pos] == "-" and pos != body_start and self.peek() != "]":
                self.fail("a literal '-' inside [...] must come first, last or be escaped as \\-", pos)
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                if kind != "lit":
                    self.fail("a range cannot start with a class escape such as \\d", pos)
                self.i += 1
                hi_pos = self.i
                hi_kind, hi = self.class_atom()
                if hi_kind != "lit":
                    self.fail("a range cannot end with a class escape such as \\d", hi_pos)
                if self.s[hi_pos] == "-":
                    self.fail("a range cannot end with an unescaped '-'; write \\-", hi_pos)
                if hi < lo:
                    self.fail(f"the range {self.s[pos:self.i]!r} is backwards", pos)
                members.update(range(lo, hi + 1))
            elif kind == "lit":
                members.add(lo)
            else:
                members.update(lo)
        first = _ALL - frozenset(members) if negate else frozenset(members)
        return _Piece(False, first, 33)

    def bound(self) -> int:
        start = self.i
        while self.peek().isdigit() and self.peek().isascii():
            self.i += 1
        digits = self.s[start : self.i]
        if len(digits) > 4 or int(digits) > MAX_REPEAT:
            self.fail(f"repetition counts above {MAX_REPEAT} are not in the subset", start)
        return int(digits)

    def quantified(self, atom: _Piece, is_group: bool, atom_start: int) -> _Piece:
        c = self.peek()
        start = self.i
        if c in ("*", "+", "?"):
            self.i += 1
            lo, hi = (0 if c != "+" else 1), (1 if c == "?" else None)
        elif c == "{":
            if self.peek(1) == ",":
                self.fail("{,n} is a repetition in Python 3.11 but literal text in PCRE2 before 10.43; write {0,n}")
            self.i += 1
            if not self.peek().isdigit():
                self.fail("a literal '{' must be escaped as \\{", start)
            lo = self.bound()
            hi = lo
            if self.peek() == ",":
                self.i += 1
                hi = self.bound() if self.peek().isdigit() else None
            if self.peek() != "}":
                self.fail("a repetition must be {n}, {n,} or {n,m}; write \\{ for a literal brace", start)
            self.i += 1
            if hi is not None and hi < lo:
                self.fail(f"the repetition {self.s[start:self.i]} has its minimum above its maximum", start)
        else:
            return atom
        if self.peek() == "?":
            self.i += 1  # lazy: same meaning in both engines
        if self.peek() == "+":
            self.fail("possessive quantifiers are not in the subset (Python knows them only from 3.11; the controller may run an older one)")
        if self.peek() in ("*", "?", "{"):
            self.fail("a repetition of a repetition is not in the subset (Python refuses it, PCRE2 accepts it); use a group")
        many = hi is None or hi > 1
        if is_group and many and atom.repeats:
            # (a+)+, (a*)*, (\w+\s?)*: the ways to split a path between the two repetitions
            # grow exponentially. PCRE2 gives up at its match limit (10,000,000 steps) and
            # HAProxy then treats the route as not matching, where Python would still find a
            # match (slowly): the engines would disagree, and every such request costs HAProxy
            # the whole limit in CPU.
            self.fail(
                "a repeated group that itself holds a repetition, such as (a+)+ or (/[a-z]+)*, can take "
                "exponential time, after which PCRE2 gives up and the route silently stops matching; "
                "repeat the group or its contents, not both",
                atom_start,
            )
        if is_group:
            # PCRE2 copies a group once per mandatory repetition and once per optional one.
            copies = max(lo, 1) + (1 if hi is None else hi - lo)
            size = atom.size * copies
        else:
            size = atom.size + 5
        return _Piece(lo == 0 or atom.nullable, atom.first, size, atom.repeats or hi != lo)


def check_regex(pattern: str, path: bool = True) -> None:
    """Raise RegexRejected unless ``pattern`` is in the subset and, for a path (``path``
    true), matches only non-empty strings starting with '/'. A header or query value regex
    (``path`` false) may match anything, the empty string included. ``pattern`` must already
    be printable ASCII."""
    if len(pattern) > MAX_REGEX_LENGTH:
        raise RegexRejected(f"it is {len(pattern)} characters long; at most {MAX_REGEX_LENGTH} are allowed", MAX_REGEX_LENGTH)
    parser = _Parser(pattern)
    whole = parser.alternation()
    if parser.i < len(pattern):  # only an unmatched ')' stops the top-level alternation early
        parser.fail("this ')' closes no group")
    if not path:
        if whole.size > MAX_COMPILED_SIZE:
            raise RegexRejected(
                "its repetitions of groups would make PCRE2's compiled regex too large; use smaller counts", pos=0
            )
        return
    if "#" in pattern:
        # Clients never send the fragment: a route that needs '#' in the path can never match.
        raise RegexRejected("a request path never contains '#' (browsers keep the fragment to themselves)", pattern.index("#"))
    if whole.nullable:
        raise RegexRejected("it can match an empty path; every path starts with '/'", 0)
    if whole.first - {_SLASH}:
        raise RegexRejected("every match must start with '/' (a path always does), but it can start with another character", 0)
    if whole.size > MAX_COMPILED_SIZE:
        raise RegexRejected(
            "its repetitions of groups would make PCRE2's compiled regex too large; use smaller counts", pos=0
        )
    # Python's re is not asked again here: compiling each regex cost three quarters of the
    # check (10,000 regex routes took over a second). The parser is stricter than re, and the
    # unit tests compile every pattern the parser accepts, random ones included, with
    # compile_bytes and with PCRE2 itself.


def compile_bytes(pattern: str) -> re.Pattern:
    """The pattern as both engines run it: bytes, ASCII classes, '.' one byte."""
    return re.compile(pattern.encode("ascii"))
