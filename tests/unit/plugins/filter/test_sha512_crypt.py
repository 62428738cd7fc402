"""lay7.ha.sha512_crypt: the glibc/libxcrypt "$6$" scheme, byte for byte."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.lay7.ha.plugins.filter.sha512_crypt import FilterModule, sha512_crypt

# Test vectors of the SHA-crypt specification (https://www.akkadia.org/drepper/SHA-crypt.txt),
# and one from `openssl passwd -6 -salt abcdefgh12345678 secretpassword12`.
VECTORS = [
    ("Hello world!", "saltstring", 5000,
     "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"),
    ("Hello world!", "saltstringsaltstring", 10000,
     "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."),
    ("This is just a test", "toolongsaltstring", 5000,
     "$6$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"),
    ("secretpassword12", "abcdefgh12345678", 5000,
     "$6$abcdefgh12345678$WqUFxJK1SoOelBrZysa1O1QI0lT4wwhhFEc826CFlKvQ2zlvu8vzzzpNUeN0dBalUCw6fwxZDEiIBURlrfejh0"),
]


@pytest.mark.parametrize(("password", "salt", "rounds", "expected"), VECTORS)
def test_known_vectors(password, salt, rounds, expected):
    assert sha512_crypt(password, salt, rounds) == expected


def test_long_and_non_ascii_passwords_match_the_c_library():
    crypt = pytest.importorskip("crypt", reason="Python's crypt module (gone in 3.13) is the reference")
    for password in ("ü" * 70, "x" * 200, "", "pass word with spaces"):
        assert sha512_crypt(password, "./09AZaz") == crypt.crypt(password, "$6$./09AZaz")


@pytest.mark.parametrize(("salt", "rounds"), [("", 5000), ("bad$salt", 5000), ("salt", 999), ("salt", True), ("salt", "5000")])
def test_bad_salt_or_rounds(salt, rounds):
    with pytest.raises(AnsibleFilterError, match="sha512_crypt"):
        sha512_crypt("password", salt, rounds)


def test_filter_is_registered():
    assert FilterModule().filters()["sha512_crypt"] is sha512_crypt
