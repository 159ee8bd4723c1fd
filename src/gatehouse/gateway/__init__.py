"""The request path, one straight line (docs/architecture.md, "Request path").

exchange.py (what is known about one request) · endpoint.py (what a route is: parse a body into a
Call, invoke a deployment) · handle.py (authenticate -> parse -> resolve -> admit -> attempts ->
relay -> settle) · attempts.py (failover over the router's plan, per-attempt hooks) · relay.py (one
reply shape, one relay for unary answers, streams and the splice).
"""
