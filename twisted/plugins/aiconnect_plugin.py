"""
twistd plugin pointer: C{twistd -n aiconnect --config etc/aiconnect.toml}.

Scanning plugins never imports the implementation (L{aiconnect.tap}).
"""

from twisted.application.service import ServiceMaker

aiconnect = ServiceMaker(
    "AI Connect",
    "aiconnect.tap",
    "SIPRec recording server, forwarder and media relay",
    "aiconnect",
)
