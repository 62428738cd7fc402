"""The regex subset against the PCRE2 library HAProxy itself links (libpcre2-8), not a model of it.

Regex routes are validated with Python's ``re`` and run by PCRE2. The subset accepted by
lay7.ha.route_compile (docs/routing.md, "Regex subset") must mean the same in both; these tests
compile each regex the way HAProxy 2.6 compiles an ACL ``-m reg`` pattern (no UTF, no UCP, no
auto capture; the compiler anchors it as ``^(?:...)$``) and compare matches with Python's bytes
semantics, which the reference matcher uses. The loopback test proves the same on the binary.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import random
import re
import warnings

import pytest
from ansible_collections.lay7.ha.plugins.plugin_utils._route_regex import RegexRejected, check_regex, compile_bytes

PCRE2_NO_AUTO_CAPTURE = 0x00002000
PCRE2_ERROR_NOMATCH = -1


def _load():
    name = ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.pcre2_compile_8.restype = ctypes.c_void_p
    lib.pcre2_compile_8.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p,
    ]  # fmt: skip
    lib.pcre2_code_free_8.argtypes = [ctypes.c_void_p]
    lib.pcre2_match_data_create_from_pattern_8.restype = ctypes.c_void_p
    lib.pcre2_match_data_create_from_pattern_8.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.pcre2_match_data_free_8.argtypes = [ctypes.c_void_p]
    lib.pcre2_match_8.restype = ctypes.c_int
    lib.pcre2_match_8.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p, ctypes.c_void_p,
    ]  # fmt: skip
    return lib


LIB = _load()
pytestmark = pytest.mark.skipif(LIB is None, reason="libpcre2-8 (a dependency of haproxy) is not installed")


class Pcre2:
    """One regex as HAProxy compiles an ACL pattern: anchored by route_compile, no options but
    PCRE2_NO_AUTO_CAPTURE (matching is the same with or without JIT)."""

    def __init__(self, regex: str):
        pattern = ("^(?:" + regex + ")$").encode("ascii")
        err, off = ctypes.c_int(), ctypes.c_size_t()
        self.code = LIB.pcre2_compile_8(pattern, len(pattern), PCRE2_NO_AUTO_CAPTURE, ctypes.byref(err), ctypes.byref(off), None)
        self.error = None if self.code else err.value
        self.data = LIB.pcre2_match_data_create_from_pattern_8(self.code, None) if self.code else None

    def matches(self, subject: bytes) -> bool:
        rc = LIB.pcre2_match_8(self.code, subject, len(subject), 0, 0, self.data, None)
        if rc < 0 and rc != PCRE2_ERROR_NOMATCH:
            raise RuntimeError(f"pcre2_match error {rc}")
        return rc >= 0

    def close(self) -> None:
        if self.data:
            LIB.pcre2_match_data_free_8(self.data)
        if self.code:
            LIB.pcre2_code_free_8(self.code)


def _python(regex: str, subject: bytes) -> bool:
    return compile_bytes(regex).fullmatch(subject) is not None


# What the issue found, and more: each regex means something else to Python than to PCRE2
# (shown on one path), which is why the subset refuses it.
REFUSED = [
    ("/a{,3}", "/aa"),  # repetition in Python 3.11, literal '{,3}' in PCRE2 10.42
    ("/[[:digit:]]+", "/1"),  # POSIX class in PCRE2; '[' ':' 'd' ... then ']+' in Python
    ("/a\\Z", "/a\n"),  # end of string in Python; end or before a final newline in PCRE2
]


@pytest.mark.parametrize(("regex", "path"), REFUSED)
def test_constructs_the_engines_read_differently_are_refused(regex, path):
    subject = path.encode("utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # Python warns about '[[' itself
        python = re.fullmatch(regex.encode("ascii"), subject) is not None
    pcre = Pcre2(regex)
    try:
        assert pcre.error is None
        assert pcre.matches(subject) != python, "the engines agree here; the case shows nothing"
    finally:
        pcre.close()
    with pytest.raises(RegexRejected):
        check_regex(regex)


# These differ only when Python compiles a str pattern (Unicode-aware classes, '.' one code
# point); compiled as bytes, as the compiler and the reference matcher do, they agree, so the
# subset keeps them.
MADE_ALIKE = [
    ("/\\d", "/\u0663"),  # ARABIC-INDIC DIGIT THREE is a digit to a str pattern
    ("/\\w+", "/\u00e9"),
    ("/\\s", "/\u00a0"),
    ("/.", "/\u00e9"),  # one character to a str pattern, two bytes to PCRE2 without UTF
]


@pytest.mark.parametrize(("regex", "path"), MADE_ALIKE)
def test_bytes_semantics_make_unicode_classes_agree(regex, path):
    subject = path.encode("utf-8")
    check_regex(regex)
    pcre = Pcre2(regex)
    try:
        assert pcre.matches(subject) != (re.fullmatch(regex, path) is not None)
        assert pcre.matches(subject) == _python(regex, subject)
    finally:
        pcre.close()


# ---------------------------------------------------------------- random regexes of the subset

_LITERALS = ["a", "b", "0", "1", "-", "_", ",", "~", "%", "\\.", "\\{", "\\}", "\\]", "\\[", "\\/", "\\\\", "\\x41", "\\x2f", "\\-"]
_CLASSES = ["\\d", "\\D", "\\w", "\\W", "\\s", "\\S", ".", "[a-c]", "[^/]", "[-a]", "[a-]", "[\\d_]", "[^\\w]", "[0-9a-f\\-]", "[\\]{}]"]
_QUANTIFIERS = ["", "", "", "*", "+", "?", "*?", "+?", "??", "{2}", "{0,2}", "{1,}", "{1,3}?", "{0}"]


def _random_regex(rng: random.Random, depth: int = 0) -> str:
    parts = []
    for _part in range(rng.randint(1, 4)):
        roll = rng.random()
        if roll < 0.45:
            atom = rng.choice(_LITERALS)
        elif roll < 0.8 or depth >= 3:
            atom = rng.choice(_CLASSES)
        else:
            alts = [_random_regex(rng, depth + 1) for _alt in range(rng.randint(1, 3))]
            atom = rng.choice(["(", "(?:"]) + "|".join(alts) + ")"
        parts.append(atom + rng.choice(_QUANTIFIERS))
    return "".join(parts)


# No LF: HAProxy's path never holds one (it ends the request line), and only there would the
# engines differ: the compiler's '$' also matches before a final newline in PCRE2, not in
# Python's fullmatch. The other bytes cannot arrive raw either; they agree all the same.
_PATH_ALPHABET = ["/", "a", "b", "c", "0", "1", "9", "-", "_", ".", "{", "}", "]", "[", ",", "~", "%", "\\", "A", "x", " ", "\t", "\r", "\x0b", "\xe9"]


def test_random_subset_regexes_match_exactly_as_pcre2_does():
    rng = random.Random(20261010)
    checked = accepted = 0
    for _regex in range(3000):
        regex = "/" + _random_regex(rng)
        if rng.random() < 0.2:
            regex = "(" + regex + "|/" + _random_regex(rng) + ")"
        try:
            check_regex(regex)
        except RegexRejected:
            continue  # e.g. a repeated group that can match empty paths; refused, not run
        accepted += 1
        # check_regex no longer asks Python's re (too slow for 10,000 routes): every accepted
        # pattern must compile there silently, as it does in PCRE2 below.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            compile_bytes(regex)
        pcre = Pcre2(regex)
        try:
            assert pcre.error is None, f"PCRE2 refuses {regex!r} (error {pcre.error}), Python accepted it"
            subjects = set()
            for _subject in range(40):
                subjects.add("/" + "".join(rng.choice(_PATH_ALPHABET) for _char in range(rng.randint(0, 8))))
            for subject in sorted(subjects):
                raw = subject.encode("utf-8")
                assert pcre.matches(raw) == _python(regex, raw), (regex, subject)
                checked += 1
        finally:
            pcre.close()
    assert accepted > 1500 and checked > 40000


def test_regexes_at_the_limits_compile_in_pcre2():
    for regex in ("/" + "a" * 999, "/" + "(" * 32 + "a" + ")" * 32, "/([a-z]){400}", "/a{1000}", "/(a{1000}){10}", "/((ab){30}){20}"):
        check_regex(regex)
        pcre = Pcre2(regex)
        try:
            assert pcre.error is None, regex
        finally:
            pcre.close()
