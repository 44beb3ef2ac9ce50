"""aiconnect.media."""
