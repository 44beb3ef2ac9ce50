"""
Examples shipped with AI Connect, installed as C{aiconnect.examples}
(C{examples/app.py}: the example application C{aiconnect-demo} runs).
"""
