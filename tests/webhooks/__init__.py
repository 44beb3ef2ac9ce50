"""
Tests for L{aiconnect.webhooks}, one module per module of the package;
L{tests.webhooks.helpers} holds what they share.
"""
