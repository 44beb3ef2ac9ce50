"""
Tests for L{aiconnect.api}, one module per concern of the package;
L{tests.api.helpers} holds what they share.
"""
