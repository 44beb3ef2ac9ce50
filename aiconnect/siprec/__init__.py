"""aiconnect.siprec."""
