# -*- coding: utf-8 -*-
# Copyright: lay7.ha maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Typed checks of role inputs before they reach a configuration file (private).

Every value a role writes into a daemon's configuration goes through one of the
checkers below, chosen by a *rule* (a small dict, kept as data in each role's
``vars/main.yml``). Checkers parse values (``ipaddress``, a duration parser, path
normalisation) instead of matching them with regexes ending in ``$``, which let a
trailing newline through; every string is first checked for control characters,
because a line break in a configuration value becomes a new directive.

The public entry point is :func:`check_inputs`; ``lay7.ha.input_guard`` is a thin
wrapper around it. Pure functions: no I/O and no Ansible runtime state.
"""

from __future__ import annotations

import ipaddress
import math
import posixpath
import re
import unicodedata
from typing import Any, Callable

# A problem found in one field: (field path, message). Messages never contain the
# value of a secret field.
Problem = tuple


class InputError(ValueError):
    """A value a checker refuses; the message says what is wrong, not where."""


# --- shared primitives -------------------------------------------------------------

# Control characters, line and paragraph separators, and the invisible format characters
# (zero-width, bidirectional overrides, byte-order mark) and lone surrogates, which either
# break a file's encoding or make a value read differently from what it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")


def show(value: Any) -> str:
    """A value as it may appear in a message: quoted, control characters escaped, cut short.

    Never raises: Python refuses to print an int of more than 4,300 digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"(an integer of about {int(value.bit_length() * 0.30103) + 1} digits)"
    if isinstance(value, str):
        text = "'" + value.encode("unicode_escape").decode("ascii").replace("'", "\\'") + "'"
        length = len(value)
    else:
        try:
            text = repr(value)
        except Exception:  # noqa: BLE001 - a foreign __repr__ must not crash the check
            return f"(a {type(value).__name__})"
        length = len(text)
    return text if len(text) <= 80 else text[:60] + f"... ({length} characters)"


def _string(value: Any, allow_empty: bool = False, max_length: int = 255) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InputError(f"must be a string, got a {type(value).__name__}")
    text = str(value)
    match = _CONTROL.search(text)
    if match:
        char = match.group().encode("unicode_escape").decode("ascii")
        raise InputError(
            f"contains the control character {char} at position {match.start()}"
            " (a YAML '|' block adds a trailing newline; use '>-' or a plain scalar)"
        )
    if not text and not allow_empty:
        raise InputError("must not be empty")
    if text != text.strip():
        raise InputError("has leading or trailing white space")
    if len(text) > max_length:
        raise InputError(f"is {len(text)} characters long; at most {max_length}")
    return text


def _charset(text: str, allowed: str, what: str, chars: str | None = None) -> str:
    """``text`` must match ``allowed``; ``chars`` (one character's class) lists the refused ones."""
    if re.fullmatch(allowed, text):
        return text
    detail = ""
    if chars:
        bad = sorted({c for c in text if not re.fullmatch(chars, c)})
        if bad:
            detail = "; refused characters: " + " ".join(repr(c) for c in bad[:8])
    raise InputError(f"must be {what}{detail}")


def _int(value: Any, lo: int, hi: int) -> int:
    """Integers and digit strings only: a float such as 200.0 would reach the file as "200.0"."""
    if isinstance(value, bool):
        raise InputError(f"must be an integer {lo}-{hi}, got a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"0|[1-9][0-9]{0,11}", value):
        number = int(value)
    else:
        raise InputError(f"must be an integer {lo}-{hi}")
    if not lo <= number <= hi:
        raise InputError(f"must be an integer {lo}-{hi}")
    return number


# --- names and HTTP tokens -----------------------------------------------------------

# HAProxy and keepalived identifiers (section, frontend, peer, instance names).
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}"
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = rf"{_LABEL}(?:\.{_LABEL})*\.?"
# RFC 3986 path characters; "%" must start a percent-encoding.
# The single quote, legal in RFC 3986, is left out: it is HAProxy's quoting character.
_URL_PATH = r"/(?:[A-Za-z0-9\-._~!$&()*+,;=:@/]|%[0-9A-Fa-f]{2})*"
# Characters of a file system path the roles write: no space, quote, glob or shell character.
_FS_PATH = r"/[A-Za-z0-9._/+@-]*"


def check_name(value: Any, rule: dict) -> str:
    text = _string(value, allow_empty=bool(rule.get("allow_empty")), max_length=int(rule.get("max_length", 63)))
    if not text:
        return text
    pattern = rule.get("pattern", _NAME)
    _charset(text, pattern, rule.get("what", "a name of letters, digits, '_', '.' and '-' starting with a letter or digit"), r"[A-Za-z0-9_.-]")
    if text in rule.get("reserved", []):
        raise InputError("is a name the role uses itself: " + ", ".join(rule["reserved"]))
    return text


# Headers that carry the message's framing, routing or state: a role setting one of them
# would break every response (Content-Length) or what a proxy or browser makes of it.
_RESERVED_HEADERS = frozenset(
    "content-length transfer-encoding connection keep-alive upgrade te trailer host set-cookie cookie location "
    "content-type content-encoding proxy-connection date server via forwarded".split()
)


def check_header_name(value: Any, rule: dict) -> str:
    """A header name of letters, digits and '-' (what every server parses alike), not a reserved one."""
    text = _string(value, max_length=64)
    _charset(text, r"[A-Za-z0-9][A-Za-z0-9-]*", "a header name of letters, digits and '-'", r"[A-Za-z0-9-]")
    if rule.get("set_by_role") and text.lower() in _RESERVED_HEADERS:
        raise InputError("is a header that carries the message's framing or state; the role must not set it")
    if "pattern" in rule and not re.fullmatch(rule["pattern"], text):
        raise InputError("must be an X- header of its own (e.g. X-Served-By): a standard header would change every response")
    return text


def check_hostname(value: Any, rule: dict) -> str:
    text = _string(value, max_length=253)
    if text.count(":") == 1 or re.fullmatch(r".*\]:[0-9]+", text):
        raise InputError("must be a host name without a port")
    is_ip = ":" in text or "%" in text or bool(re.fullmatch(r"[0-9.]+", text))
    if is_ip:
        ip_fit(parse_ip(text), {"loopback": "allow"})
    if is_ip and not rule.get("allow_ip", True):
        raise InputError("must be a host name, not an IP address")
    if not is_ip:
        _no_numeric_host(text)
        _charset(text, _HOSTNAME, "a host name (RFC 1123 labels of letters, digits and '-', separated by '.')", r"[A-Za-z0-9.-]")
    return text


def _no_numeric_host(text: str) -> None:
    """Names such as 0x0, 0x7f000001 or 127.1 are IPv4 addresses to the C resolver (inet_aton):
    0x0 would be the wildcard address. They are never host names."""
    labels = text.rstrip(".").split(".")
    if len(labels) <= 4 and all(re.fullmatch(r"0[xX][0-9A-Fa-f]*|[0-9]+", label) for label in labels):
        raise InputError("is a numeric (hex, octal or short) IPv4 spelling the resolver would read as an address")


def check_text(value: Any, rule: dict) -> str:
    """Free text on one line (titles, page text); characters its context cannot hold are refused."""
    text = _string(value, max_length=int(rule.get("max_length", 255)))
    forbid = rule.get("forbid", "")
    bad = sorted({c for c in text if c in forbid})
    if bad:
        raise InputError("must not contain " + " ".join(repr(c) for c in bad) + f" ({rule.get('why', 'the configuration cannot quote it')})")
    if rule.get("ascii") and not text.isascii():
        raise InputError("must be ASCII (it is sent in an HTTP header)")
    return text


def check_choice(value: Any, rule: dict) -> str:
    text = _string(value)
    choices = [str(c) for c in rule["choices"]]
    if text not in choices:
        raise InputError("must be one of " + ", ".join(choices))
    return text


def check_url_path(value: Any, rule: dict) -> str:
    text = _string(value, max_length=int(rule.get("max_length", 1024)))
    if not text.startswith("/"):
        raise InputError("must be an absolute URL path starting with '/'")
    if "?" in text or "#" in text:
        raise InputError("must be a path alone: a query string ('?') or fragment ('#') is not supported here")
    _charset(text, _URL_PATH, "a URL path of RFC 3986 characters without ' (percent-encode the rest)", r"[A-Za-z0-9\-._~!$&()*+,;=:@/%]")
    if rule.get("plain") and "%" in text:
        raise InputError("must not be percent-encoded: the web server compares it decoded, the load balancer as written")
    if text == "/" and not rule.get("allow_root", False):
        raise InputError("must not be '/' (that path belongs to the site)")
    if "/../" in text + "/" or "/./" in text + "/" or "//" in text:
        raise InputError("must not contain '.', '..' or empty segments")
    return text


# --- numbers, durations and sizes ------------------------------------------------------

_TIME_UNITS_MS = {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_duration(text: str) -> float:
    """A HAProxy time with its unit ('250ms', '5s', '30m') in milliseconds."""
    match = re.fullmatch(r"([0-9]{1,9})(us|ms|s|m|h|d)", text)
    if not match:
        raise InputError("must be a whole number with its unit, one of us, ms, s, m, h, d (e.g. 5s or 250ms)")
    return int(match.group(1)) * _TIME_UNITS_MS[match.group(2)]


def check_int(value: Any, rule: dict) -> int:
    return _int(value, int(rule.get("min", 0)), int(rule.get("max", 2**31 - 1)))


def check_port(value: Any, rule: dict) -> int:
    return _int(value, int(rule.get("min", 1)), 65535)


def check_number(value: Any, rule: dict) -> float:
    """A decimal number such as 0.1 (no exponent, no '_': the daemons do not read them)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError("must be a number")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,6})?", value):
            raise InputError("must be a decimal number such as 0.1")
        number: float = float(value)
    elif isinstance(value, float) and math.isnan(value):
        raise InputError("must be a number")
    else:
        number = value
    lo, hi = float(rule.get("min", 0)), float(rule.get("max", 1e9))
    if not lo <= number <= hi:
        raise InputError(f"must be a number from {rule.get('min', 0)} to {rule.get('max', 1e9)}")
    return number


def check_duration(value: Any, rule: dict) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise InputError(
            f"is the bare number {value!r}: HAProxy would read it as milliseconds; give the unit (e.g. {value}s or {value}ms)"
        )
    text = _string(value, max_length=16)
    millis = parse_duration(text)
    lo = parse_duration(rule.get("min", "1ms"))
    hi = parse_duration(rule.get("max", "24h"))
    if not lo <= millis <= hi:
        raise InputError(f"must lie between {rule.get('min', '1ms')} and {rule.get('max', '24h')}")
    return text


def check_size(value: Any, rule: dict) -> str:
    text = _string(str(value) if isinstance(value, int) and not isinstance(value, bool) else value, max_length=16)
    match = re.fullmatch(r"([0-9]{1,10})([kmg]?)", text)
    if not match:
        raise InputError("must be a whole number with an optional unit k, m or g (e.g. 100k)")
    number = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not int(rule.get("min", 1)) <= number <= int(rule.get("max", 2**31 - 1)):
        raise InputError(f"must be from {rule.get('min', 1)} to {rule.get('max', 2**31 - 1)} entries")
    return text


# --- addresses --------------------------------------------------------------------------


# IPv6 ranges that stand for IPv4 addresses: a value in them would slip past every IPv4
# check (::ffff:0:0 is 0.0.0.0 to a dual-stack socket). Write the IPv4 address instead.
_IPV4_IN_IPV6 = tuple(ipaddress.ip_network(n) for n in ("::ffff:0:0/96", "64:ff9b::/96", "2002::/16"))


def parse_ip(text: str, version: int | None = None):
    """An IP address in its one canonical spelling (no leading zeros, no '::0' for '::')."""
    if "%" in text:
        raise InputError("has an IPv6 zone (scope) id ('%'), which no configuration here can use")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InputError("is not an IP address" + (" (IPv4 without leading zeros, e.g. 192.0.2.10)" if "." in text else "")) from None
    if version and address.version != version:
        raise InputError(f"must be an IPv{version} address")
    if str(address) != text:
        raise InputError(f"must be written in its canonical form {str(address)!r}")
    return address


# Deprecated IPv4-compatible IPv6 addresses (::a.b.c.d). Only single addresses are checked
# against it: networks such as ::1/128 overlap it legitimately.
_V4_COMPATIBLE = ipaddress.ip_network("::/96")


def ip_fit(address, rule: dict) -> None:
    """Whether one parsed address can be a destination here; raises InputError saying why not.
    The one address check of the collection: the input guard and the route compiler (server
    addresses) both use it. rule: loopback (refuse | require | allow), link_local (bool)."""
    if (address.version == 6 and not address.is_unspecified and not address.is_loopback
            and (any(address in n for n in _IPV4_IN_IPV6) or address in _V4_COMPATIBLE)):
        raise InputError("is an IPv6 form of an IPv4 address (mapped, NAT64, 6to4 or compatible); write the IPv4 address itself")
    if address.is_unspecified:
        raise InputError("is the unspecified (wildcard) address, which means 'any address' or 'this host' here")
    if address.is_multicast:
        raise InputError("is a multicast address")
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        raise InputError("is the broadcast address")
    if address.version == 4 and address in ipaddress.ip_network("0.0.0.0/8"):
        raise InputError("is in 0.0.0.0/8 ('this network'), which is not a destination")
    if address.version == 4 and address.is_reserved:
        raise InputError("is in the reserved range 240.0.0.0/4, not a host")
    loopback = rule.get("loopback", "refuse")
    if loopback == "refuse" and address.is_loopback:
        raise InputError("is a loopback address; other hosts cannot reach it")
    if loopback == "require" and not address.is_loopback:
        raise InputError("must be a loopback address (127.0.0.0/8 or ::1)")
    if address.is_link_local and not rule.get("link_local", False):
        raise InputError("is a link-local address")


def check_ip(value: Any, rule: dict):
    text = _string(value, max_length=64)
    address = parse_ip(text, rule.get("version"))
    ip_fit(address, rule)
    return address


def parse_network(text: str):
    if "%" in text:
        raise InputError("has an IPv6 zone (scope) id ('%'), which no configuration here can use")
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(text, strict=False)
            raise InputError(f"has host bits set; the network is {str(fixed)!r}") from None
        raise InputError("is not an IP address or network (CIDR, e.g. 192.0.2.0/24)") from None
    if "/" in text:
        spelled = str(network)
    else:
        spelled = str(network.network_address)
    if spelled != text:
        raise InputError(f"must be written in its canonical form {spelled!r}")
    return network


def check_ip_list(value: Any, rule: dict) -> list:
    """A list of distinct addresses, each checked as ``ip`` with this rule's options."""
    items = {key: val for key, val in rule.items() if key not in ("kind", "min_items", "differs_from", "prefix_field")}
    return check_list(value, {"items": {**items, "kind": "ip"}, "unique": True, "min_items": rule.get("min_items", 0)})


# Prefix lengths below these cover a large part of the Internet: a "trusted" or
# "allowed" list with such a network lets anyone in (0.0.0.0/1 + 128.0.0.0/1 = everyone).
_WIDEST_PREFIX = {4: 8, 6: 16}


def check_network_list(value: Any, rule: dict) -> list:
    if not isinstance(value, (list, tuple)):
        raise InputError("must be a list of IP addresses or networks (CIDR)")
    if len(value) < int(rule.get("min_items", 0)):
        raise InputError(f"must list at least {rule.get('min_items')} address(es) or network(s)")
    networks: dict = {}
    for index, item in enumerate(value):
        try:
            text = _string(item, max_length=64)
            network = parse_network(text)
            if network.network_address.is_unspecified:
                raise InputError("includes the unspecified address (0.0.0.0 or ::), which stands for any host")
            if network.is_multicast:
                raise InputError("is a multicast address or network")
            if network.is_link_local:
                raise InputError("is a link-local address or network, which no other host reaches through a router")
            if network.version == 4 and network.broadcast_address == ipaddress.IPv4Address("255.255.255.255"):
                raise InputError("includes the broadcast address 255.255.255.255")
            if network.version == 6 and any(network.overlaps(n) for n in _IPV4_IN_IPV6):
                raise InputError("is an IPv6 form of IPv4 addresses (mapped, NAT64, 6to4 or compatible); list the IPv4 networks")
        except InputError as exc:
            raise InputError(f"item {index} {show(item)} {exc}") from None
        if network in networks:
            raise InputError(f"lists {str(network)!r} twice")
        networks[network] = index
    for version in (4, 6):
        collapsed = list(ipaddress.collapse_addresses(n for n in networks if n.version == version))
        for network in collapsed:
            if network.prefixlen < _WIDEST_PREFIX[version]:
                raise InputError(
                    f"covers {network} together, wider than /{_WIDEST_PREFIX[version]}: list the proxies' own "
                    "addresses or subnets, not a large range"
                )
        # Many disjoint blocks can add up to as much: count the addresses, not the blocks. Twice
        # the widest block still admits the private ranges together (10/8 + 172.16/12 + 192.168/16).
        limit = 2 * 2 ** ((32 if version == 4 else 128) - _WIDEST_PREFIX[version])
        if sum(n.num_addresses for n in collapsed) > limit:
            raise InputError(
                f"covers more addresses than two /{_WIDEST_PREFIX[version]} networks in all: that is a large part of "
                "the Internet, not a list of known hosts"
            )
    return list(value)


# --- file system paths --------------------------------------------------------------------

# Directories and files no role may own, write or clean up, whatever the allow-list says.
_SYSTEM_PATHS = frozenset(
    "/ /bin /boot /dev /etc /home /lib /lib64 /media /mnt /opt /proc /root /run /sbin /srv /sys /tmp /usr "
    "/var /var/tmp /var/log /var/lib /var/www /var/cache /var/spool /usr/local /usr/local/sbin /usr/local/bin "
    "/etc/passwd /etc/shadow /etc/group /etc/gshadow /etc/sudoers /etc/hosts /etc/fstab /etc/crontab "
    "/etc/ssh /etc/systemd /etc/sudoers.d /etc/cron.d /etc/profile /etc/environment /etc/apache2 /etc/haproxy "
    "/etc/keepalived /root/.ssh /var/log/apache2".split()
)


# Directories that may never be named as the parent of what a role owns, themselves or
# anything inside them (home directories, SSH, systemd units, sudo and cron).
_REFUSED_PARENTS = frozenset("/ /etc /lib /lib64 /sbin /bin /opt /var /var/lib /var/log /var/cache /var/spool /mnt /media /tmp /var/tmp".split())
_REFUSED_TREES = tuple(
    "/boot /dev /home /proc /root /run /sys /usr /var/lib /var/spool /var/backups /var/cache /var/mail /var/log "
    "/etc/ssh /etc/systemd /etc/sudoers.d /etc/cron.d "
    "/etc/pam.d /etc/security /etc/ssl /etc/apt /etc/default /etc/network /etc/init.d /etc/profile.d".split()
)


def check_path(value: Any, rule: dict) -> str:
    """An absolute, normalised path strictly inside one of rule['under'] (never a system path).

    With ``parent: true`` the path is a directory under which a role may own files: a
    system directory such as /var/www is fine there, but never / or /etc themselves.
    """
    text = _string(value, max_length=255)
    if not text.startswith("/"):
        raise InputError("must be an absolute path")
    _charset(text, _FS_PATH, "a plain path of letters, digits and . _ / + @ -", r"[A-Za-z0-9._/+@-]")
    if posixpath.normpath(text) != text or text.startswith("//"):
        raise InputError(f"must be normalised (no '..', '.', '//' or trailing '/'): {posixpath.normpath(text)!r}")
    if any(part.startswith(".") for part in text.split("/")[1:]):
        raise InputError("has a hidden (dot) component")
    if rule.get("parent"):
        if text in _REFUSED_PARENTS or any(text == tree or text.startswith(tree + "/") for tree in _REFUSED_TREES):
            raise InputError("is a system directory; name a directory of its own inside it")
        # /etc holds every service's secrets (TLS keys, database passwords): only the
        # directories the rule names for this daemon, such as /etc/haproxy.
        allowed_etc = rule.get("etc_allowed", [])
        if text.startswith("/etc/") and not any(text == d or text.startswith(d + "/") for d in allowed_etc):
            raise InputError("lies in /etc, which holds other services' configuration and keys; allowed there: "
                             + (", ".join(allowed_etc) or "nothing"))
    elif text in _SYSTEM_PATHS:
        raise InputError("is a system path the role would take over (chmod, clean up or overwrite)")
    under = rule.get("under", [])
    if under and not any(text.startswith(prefix.rstrip("/") + "/") for prefix in under):
        raise InputError("must lie inside " + " or ".join(under))
    # Files the daemon creates itself (sockets, logs) go straight into a directory that
    # exists; a subdirectory would be missing and the start or reload would fail on the host.
    if rule.get("direct") and posixpath.dirname(text) not in [prefix.rstrip("/") for prefix in under]:
        raise InputError("must be directly inside " + " or ".join(under) + " (no subdirectory: the daemon does not create it)")
    suffix = rule.get("suffix")
    if suffix and not text.endswith(suffix):
        raise InputError(f"must end in {suffix}")
    return text


EXECUTABLE_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/libexec", "/opt")


def check_command(value: Any, rule: dict) -> str:
    """An absolute command with plain arguments; it ends up inside double quotes."""
    text = _string(value, allow_empty=bool(rule.get("allow_empty")), max_length=255)
    if not text:
        return text
    # Run as root: only programs from the directories executables are installed in, never
    # from a directory other users can write to (/tmp, /dev/shm, a home directory).
    check_path(text.split(" ", 1)[0], {"under": list(EXECUTABLE_DIRS)})
    _charset(text, r"[A-Za-z0-9 _./:=@%+,?&~-]+", "a command of plain words: no quotes, backslashes, '$', ';', '|' or '`'", r"[A-Za-z0-9 _./:=@%+,?&~-]")
    if "  " in text:
        raise InputError("has two spaces in a row")
    return text


def check_systemd_unit(value: Any, rule: dict) -> str:
    text = _string(value, max_length=255)
    _charset(text, r"[A-Za-z0-9][A-Za-z0-9:_.@-]*\.service", "a systemd service name such as haproxy.service")
    return text


def check_interface(value: Any, rule: dict) -> str:
    text = _string(value, max_length=15)
    if text == rule.get("auto", "auto"):
        return text
    _charset(text, r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}", "an interface name (up to 15 letters, digits, '_', '.', '@' and '-') or 'auto'")
    return text


def check_log_target(value: Any, rule: dict) -> str:
    """Where HAProxy sends its log: a local socket path, stdout/stderr, or a syslog server ip[:port]."""
    text = _string(value, max_length=255)
    if text in ("stdout", "stderr"):
        return text
    if text.startswith("/"):
        # The syslog sockets only: a path any local user can create would take the log.
        if text == "/dev/log":
            return text
        return check_path(text, {"under": ["/run/systemd/journal", "/var/lib/haproxy/dev"]})
    if text.count(":") > 1 and not text.startswith("["):
        raise InputError("is an IPv6 address without brackets: HAProxy reads the last ':' as the port; write [address]:port")
    if text.startswith("[") and text.endswith("]"):
        host, sep, port = text, "", ""
    else:
        host, sep, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else (text, "", "")
    host = host.removeprefix("[").removesuffix("]")
    if sep:
        try:
            _int(port, 1, 65535)
        except InputError:
            raise InputError("has a port that is not 1-65535") from None
    address = parse_ip(host)
    ip_fit(address, {"loopback": "allow"})
    return text


# --- secrets -------------------------------------------------------------------------------


def _core(text: str, weak: set) -> str:
    """What is left of a password without the weak words in it and the digits and signs around
    them: "password1234", "lay7stats-2024" and "1234567890123" leave next to nothing."""
    for word in sorted((w for w in weak if len(w) >= 4), key=len, reverse=True):
        text = text.replace(word, "")
    return text.strip("0123456789!-_.@#?* ")


def check_secret(value: Any, rule: dict) -> str:
    """A password. Messages say what is wrong, never what the value is."""
    if not isinstance(value, str):
        raise InputError("must be a string")
    if _CONTROL.search(value):
        raise InputError("contains a control character (a line break, tab ...)")
    # crypt(3) (libxcrypt) refuses passwords of 512 bytes or more: HAProxy would never match.
    if len(value.encode("utf-8")) > 511:
        raise InputError("is longer than 511 bytes in UTF-8, which crypt(3) does not hash")
    min_length = int(rule.get("min_length", 12))
    if len(value) < min_length:
        raise InputError(f"must be at least {min_length} characters long")
    if all(c.isspace() or unicodedata.category(c) in ("Cf", "Zs") for c in value):
        raise InputError("is only white space or invisible characters")
    if (value + value).find(value, 1) < len(value):
        raise InputError("is one shorter string repeated")
    if len(set(value)) < int(rule.get("min_distinct", 5)):
        raise InputError(f"must use at least {rule.get('min_distinct', 5)} different characters")
    weak = {str(w).lower() for w in rule.get("weak", [])}
    # P@ssw0rd2024 is "password" to whoever guesses passwords.
    leet = value.lower().translate(str.maketrans("@4013$5!7", "aaoiessit"))
    if value.lower() in weak or len(_core(value.lower(), weak)) < 4 or len(_core(leet, weak)) < 4:
        raise InputError("is a well-known default password, the user name, or only digits and signs around one")
    return value


# SHA-512 / SHA-256 crypt (optional rounds, salt, digest) or yescrypt (params, salt, digest).
_CRYPT_HASH = re.compile(
    r"\$6\$(?:rounds=[1-9][0-9]{3,4}\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}"
    r"|\$5\$(?:rounds=[1-9][0-9]{3,4}\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{43}"
    r"|\$y\$j9T\$[./0-9A-Za-z]{1,86}\$[./0-9A-Za-z]{43}"
)


def check_crypt_hash(value: Any, rule: dict) -> str:
    if not isinstance(value, str):
        raise InputError("must be a string")
    if not value:
        if rule.get("allow_empty"):
            return value
        raise InputError("must not be empty")
    if not _CRYPT_HASH.fullmatch(value):
        raise InputError(
            "must be a crypt(3) hash: SHA-512 ($6$) or SHA-256 ($5$) with at most 99999 rounds, or yescrypt ($y$j9T$) at"
            " its default cost, e.g. from 'mkpasswd -m sha-512' (HAProxy hashes on every stats request: a costlier hash stalls it)"
        )
    return value


# --- structures ----------------------------------------------------------------------------


def check_list(value: Any, rule: dict) -> list:
    if not isinstance(value, (list, tuple)):
        raise InputError("must be a list")
    if len(value) < int(rule.get("min_items", 0)):
        raise InputError(f"must have at least {rule.get('min_items')} item(s)")
    items = rule["items"]
    seen = {}
    for index, item in enumerate(value):
        try:
            checked = check_value(item, items)
        except InputError as exc:
            raise InputError(f"item {index} {show(item)} {exc}") from None
        if rule.get("unique"):
            key = str(checked)
            if key in seen:
                raise InputError(f"lists {show(item)} twice (items {seen[key]} and {index})")
            seen[key] = index
    return list(value)


def check_dict(value: Any, rule: dict) -> dict:
    if not isinstance(value, dict):
        raise InputError("must be a mapping")
    keys = rule["keys"]
    unknown = sorted(set(map(str, value)) - set(keys))
    if unknown:
        raise InputError(f"has unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(keys))}")
    for key, sub in keys.items():
        if key not in value:
            if sub.get("required"):
                raise InputError(f"needs the key {key!r}")
            continue
        try:
            check_value(value[key], sub)
        except InputError as exc:
            raise InputError(f"{key} {show(value[key])} {exc}") from None
    return value


def check_any(value: Any, rule: dict) -> Any:
    """Checked elsewhere (the route compiler, an argument_specs type); named so the rule list is complete."""
    return value


def check_bool(value: Any, rule: dict) -> bool:
    if not isinstance(value, bool):
        raise InputError("must be true or false")
    return value


CHECKERS: dict[str, Callable[[Any, dict], Any]] = {
    "any": check_any,
    "bool": check_bool,
    "choice": check_choice,
    "command": check_command,
    "crypt_hash": check_crypt_hash,
    "dict": check_dict,
    "duration": check_duration,
    "header_name": check_header_name,
    "hostname": check_hostname,
    "int": check_int,
    "interface": check_interface,
    "ip": check_ip,
    "ip_list": check_ip_list,
    "list": check_list,
    "log_target": check_log_target,
    "name": check_name,
    "network_list": check_network_list,
    "number": check_number,
    "path": check_path,
    "port": check_port,
    "secret": check_secret,
    "size": check_size,
    "systemd_unit": check_systemd_unit,
    "text": check_text,
    "url_path": check_url_path,
}


def check_value(value: Any, rule: dict) -> Any:
    kind = rule.get("kind")
    if kind not in CHECKERS:
        raise KeyError(f"unknown rule kind {kind!r}; known: {', '.join(sorted(CHECKERS))}")
    if value is None:
        raise InputError("is null (an empty YAML value); give a value, or '' where empty is allowed")
    if rule.get("allow_empty") and (value == "" or value == []):
        return value
    return CHECKERS[kind](value, rule)


def _relations(values: dict, rules: dict) -> list:
    """Rules between fields: 'differs_from' (parsed values differ) and 'outside_ends_of' (a VIP and its prefix)."""
    problems = []
    for field, rule in rules.items():
        value = values.get(field)
        for other in rule.get("differs_from", []):
            if other in values and value not in ("", None) and _same(value, values[other]):
                problems.append((field, f"{field}: {_shown(field, value, rules)} is the same as {other}"))
        ceiling = rule.get("not_above")
        if ceiling in values and rule.get("kind") == "duration":
            try:
                if parse_duration(str(value)) > parse_duration(str(values[ceiling])):
                    problems.append((field, f"{field}: {show(value)} must not exceed {ceiling} ({show(values[ceiling])})"))
            except InputError:
                pass
        prefix_field = rule.get("prefix_field")
        if prefix_field and prefix_field in values:
            for item in value if isinstance(value, (list, tuple)) else [value]:
                try:
                    address = ipaddress.ip_address(str(item))
                    prefix = int(values[prefix_field])
                    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
                except ValueError:
                    continue
                if network.num_addresses > 2 and address in (network.network_address, network.broadcast_address):
                    kind = "network" if address == network.network_address else "broadcast"
                    problems.append((field, f"{field}: {show(item)} is the {kind} address of {network} ({prefix_field}: {prefix})"))
    return problems


def _same(left: Any, right: Any) -> bool:
    try:
        return ipaddress.ip_address(str(left)) == ipaddress.ip_address(str(right))
    except ValueError:
        return str(left) == str(right)


def _shown(field: str, value: Any, rules: dict) -> str:
    return "(secret, not shown)" if rules.get(field, {}).get("kind") in ("secret", "crypt_hash") or rules.get(field, {}).get("secret") else show(value)


def check_inputs(values: dict, rules: dict) -> list:
    """Every problem in ``values`` under ``rules`` as ``(field, message)``; empty when all pass.

    A field in ``values`` without a rule is a problem too: every input that reaches a
    configuration file must have been given a rule on purpose.
    """
    problems = []
    for field in sorted(set(values) - set(rules)):
        problems.append((field, f"{field}: no input rule is defined for it (a bug in the role, please report it)"))
    for field, rule in rules.items():
        if field not in values:
            continue
        value = values[field]
        try:
            check_value(value, rule)
        except InputError as exc:
            problems.append((field, f"{field}: {_shown(field, value, rules)} {exc}"))
    if not problems:
        problems.extend(_relations(values, rules))
    return problems
