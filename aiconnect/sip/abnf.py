# -*- test-case-name: tests.sip.test_uri -*-
"""
RFC 3261 grammar pieces as regular expressions, each citing its rule.

Pure module: no Twisted, no sockets, no clock.
"""

from __future__ import annotations

import re

# RFC 3261 s25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*"
#                             / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = "[" + TOKEN_CHARS + "]+"
TOKEN_RE = re.compile(TOKEN + r"\Z")

# RFC 3261 s25.1: word = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+"
#   / "`" / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/"
#   / "[" / "]" / "?" / "{" / "}" )   -- used by Call-ID = word [ "@" word ]
WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
CALL_ID_RE = re.compile(WORD + r"(?:@" + WORD + r")?\Z")

# RFC 3261 s25.1: Method = INVITEm / ACKm / ... / extension-method (a token)
METHOD_RE = TOKEN_RE

# RFC 3261 s25.1: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT
SIP_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.IGNORECASE)

# RFC 3261 s25.1: Status-Code = 3DIGIT (we bound it to 100..699 in message.py)
STATUS_CODE_RE = re.compile(r"\d{3}\Z")

# RFC 3261 s25.1: user = 1*( unreserved / escaped / user-unreserved )
#   user-unreserved = "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
#   unreserved = alphanum / mark;  mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
USER_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+\Z")
# RFC 3261 s25.1: password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,%]*\Z")

# RFC 3261 s25.1: hostname = *( domainlabel "." ) toplabel [ "." ]
HOSTNAME_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.)*"
    r"[A-Za-z](?:[A-Za-z0-9\-]*[A-Za-z0-9])?\.?\Z"
)
# RFC 3261 s25.1: IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
IPV4_RE = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\Z")
# RFC 3261 s25.1: IPv6reference = "[" IPv6address "]"  (tolerant: RFC 5118 s4.10)
IPV6_REF_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\]\Z")

# RFC 3261 s25.1: uri-parameter / other-param: pname [ "=" pvalue ]
#   paramchar = param-unreserved / unreserved / escaped
PARAMCHAR = r"A-Za-z0-9\-_.!~*'()\[\]/:&+$%"
PARAM_RE = re.compile(r"[" + PARAMCHAR + r"]+\Z")

# RFC 3261 s25.1: hvalue = *( hnv-unreserved / unreserved / escaped )
HEADER_CHARS_RE = re.compile(r"[A-Za-z0-9\-_.!~*'()\[\]/?:+$%]*\Z")

# RFC 3261 s25.1: generic-param value = token / host / quoted-string
#   (host admits IPv6 references; RFC 5118 s4.5 admits unbracketed IPv6 in received)
GEN_VALUE_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~:\[\]]+\Z")

# RFC 3261 s25.1: absoluteURI = scheme ":" ( hier-part / opaque-part )
SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*):")

# RFC 3261 s25.1: LWS = [*WSP CRLF] 1*WSP ; after unfolding: 1*WSP
LWS = r"[ \t]*"


#: For L{is_digits} where leading zeros are allowed and the caller bounds
#: the value after stripping them (the message size bounds the text).
ANY_LENGTH = 1 << 30


def is_digits(text: str, max_len: int = 20) -> bool:
    """
    Whether C{text} is C{1*DIGIT} of at most C{max_len} characters, so that
    C{int(text)} can neither fail nor cost much: ASCII only (C{str.isdigit}
    also accepts other scripts' digits and superscripts, some of which
    C{int()} refuses), and bounded (C{int()} refuses more than 4,300 digits,
    and a peer controls the length).
    """
    return 0 < len(text) <= max_len and text.isascii() and text.isdigit()
