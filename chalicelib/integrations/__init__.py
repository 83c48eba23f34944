"""Integrations out: the event catalogue, merchants' endpoints (Standard Webhooks), Zapier
REST hooks, Slack and the merchant's EventBridge bus, fed by the outbox."""
