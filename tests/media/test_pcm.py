# -*- test-case-name: tests.media.test_pcm -*-
"""
Tests for L{aiconnect.media.pcm}.
"""
