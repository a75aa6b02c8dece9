"""The wasp operator: one pod per WhatsAppSession, and the resource's status kept true.

A program, not a library: nothing outside this package imports it. It owns
the Kubernetes side (kopf, the Kubernetes client) and never talks to
WhatsApp or imports the session pod.
"""
