"""Adapters to the servers Pressluft manages: SSH queries, Ansible runs, Docker
lab machines, node keys, the node image, HTTP checks of a site; certificates (ACME,
DNS); backups' storage (S3) and engine (restic).

Only contexts' job workers (`workers.py`) and direct node probes (`probes.py`)
use this package, and the CLI's node-image build; nothing here touches the
database.
"""
