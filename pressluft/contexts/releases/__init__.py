"""Releases: an environment's code as release directories beside each other on its
node (`releases/<name>`, `current` a symlink to the one served), listed with their
source and health, activated again (a rollback, or forward), pruned to the newest
few. Deploys, updates and the health gate build on it (changes/releases/).

Its `Feature` is in `feature.py`; no other context uses it yet."""
