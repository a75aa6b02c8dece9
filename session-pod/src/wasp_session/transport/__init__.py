"""The WhatsApp side of a session, behind one small interface.

``base`` names the interface, its events and its errors; ``simulator`` (the
sandbox mode) and ``neonize`` (the real connection) implement it.
"""
