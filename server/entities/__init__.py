"""Entities (ODK's follow-up records): entity lists and their properties (:mod:`.lists`), entities
and their versions (:mod:`.entities`), and entities as OData rows (:mod:`.odata`).

Entities created and updated by submissions through ingest, and the CSV forms read as attachments,
come next (issue 13).
"""
