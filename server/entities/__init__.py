"""Entities (ODK's follow-up records): entity lists and their properties (:mod:`.lists`), entities
and their versions (:mod:`.entities`), entities as OData rows (:mod:`.odata`); what a form declares
and a submission carries (:mod:`.declarations`), entities made by submissions through ingest
(:mod:`.from_submissions`), publishing forms that declare or read lists (:mod:`.forms`), a list as a
form's CSV attachment (:mod:`.attachment`), lists at field hubs (:mod:`.mirror`), and lists for
analysts and donors (:mod:`.exports`).
"""
