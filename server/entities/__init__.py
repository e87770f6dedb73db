"""Entities (ODK's follow-up records): entity lists and their properties so far (:mod:`.lists`).

Entities themselves — rows created and updated by submissions through ingest, their versions, the CSV
forms read and the OData feed — come next (issue 13).
"""
