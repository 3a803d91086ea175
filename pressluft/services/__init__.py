"""Services: commands (one transaction each) and queries over the projections."""
