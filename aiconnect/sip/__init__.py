"""aiconnect.sip."""
