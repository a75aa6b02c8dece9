"""The wasp session pod: one tenant's WhatsApp connection and its OTP worker.

A program, not a library: nothing outside this package imports it. It owns
neonize (whatsmeow), the auth state in Redis and the tenant's queue worker,
and never touches the Kubernetes API or imports the operator.
"""
