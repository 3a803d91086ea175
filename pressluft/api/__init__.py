"""The HTTP API: routes from `openapi/pressluft.yaml`, errors, request context."""
