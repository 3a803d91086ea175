"""The API face's own routes: the contract documents (each capability's routes are in
its context)."""
