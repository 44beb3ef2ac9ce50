# -*- test-case-name: tests.outputs.test_orders -*-
"""
Tests for L{aiconnect.outputs.orders}.
"""
