"""Central's side of field-hub sync: hub credentials, holdings and receipts, resumable uploads, batches.

The HTTP layer is ``server/api/sync.py``; the ``sarhad hub`` commands are ``server/cli/hubs.py``; the
client that talks to it is ``sync_client``. Every submission that arrives by sync goes through the one
``server.ingest.ingest()`` with ``source=Source.HUB`` and the hub's name as ``source_detail``.
"""
