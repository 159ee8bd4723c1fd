"""Test upstream servers that speak each provider's exact wire format over real sockets."""
