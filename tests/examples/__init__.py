"""
Tests of the shipped examples (C{examples/}).
"""
