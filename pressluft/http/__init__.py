"""What a context's routes use, below the contexts: the acting context of a
request, at-most-once writes per `Idempotency-Key`, and the answers they give."""
