"""berth's shared base: manifest model, etcd keyspace and client, records, errors.

Everything here is imported by both the controller and the agent; nothing here
imports either of them (see the import-linter contracts in pyproject.toml).
"""
