"""Capabilities, one folder each: its events, projector, commands and queries,
job workers, failure codes, routes and pages, exported as one `Feature`.

A context uses another only through that context's package (its face), never
its tables or inner modules; `pressluft.features` lists them all.
"""
