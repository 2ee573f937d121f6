"""The telemetry boundary: versioned DTOs (``dto``), the one payload builder (``payloads``), and the live
stream (``broadcast`` for the protocol and the fake, ``live`` for the websocket server).

Nothing here imports torch: everything downstream of the registry snapshot sees Python values only.
"""
