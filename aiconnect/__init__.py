"""
AI Connect: a Twisted telephony server that receives SIPRec recording sessions,
asks the customer's application what to do, and forwards them as new SIPRec
sessions to external recorders.
"""

__version__ = "0.1.0"
