# -*- test-case-name: tests.test_call_outputs -*-
"""
Tests for L{aiconnect.call_outputs}.
"""
