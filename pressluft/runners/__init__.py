"""Adapters to the servers Pressluft manages: node keys and direct SSH queries.

Only job handlers and node services (pressluft/services/nodes.py) use this
package; nothing here touches the database.
"""
