"""
Tests for L{aiconnect.siprec}.
"""
