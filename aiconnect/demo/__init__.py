# -*- test-case-name: tests.test_demo -*-
"""
C{aiconnect-demo}: one SIPRec call forwarded end to end on 127.0.0.1, in
one process (L{aiconnect.demo.run}), with the demo's SRC and SRS
(L{aiconnect.demo.peers}) and the example application
(C{examples/app.py}).
"""
