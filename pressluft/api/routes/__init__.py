"""Route handlers of the API still to move into their contexts, one module per resource."""
