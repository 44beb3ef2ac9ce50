"""
twistd plugin pointer: C{twistd -n aiconnect --config etc/aiconnect.toml};
C{twistd aiconnect --check-config FILE} validates a file and exits.

Scanning plugins never imports the implementation (L{aiconnect.tap}).
"""

from twisted.application.service import ServiceMaker

aiconnect = ServiceMaker(
    "AI Connect",
    "aiconnect.tap",
    "SIPRec recording server, forwarder and media relay (--check-config FILE validates a configuration)",
    "aiconnect",
)
