"""The case database: opening it (store), its schema, loading events into it (ingest), the SQL
macros and views everything else queries, and the event timeline.

Everything downstream (provenance, rules, exports) reads the case; nothing here knows of them.
"""
