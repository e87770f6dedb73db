"""Forms and entity lists: what publishing a form that declares or reads entities does.

- A form's entity declarations are checked when it is uploaded (draft or publish): a spec version
  Central accepts, valid list and property names, and **no question tagged ``personal`` saved to a list
  or used in an entity's label** — entity lists go to every tablet of the project as CSV files, so a
  form that would put a name, a phone number or a free text in one is refused (400.25) with the
  question and the list named.
- Publishing creates the lists the form declares that the project does not have yet, and adds the
  properties it saves to that a list does not have yet (Central's dataset publishing).
- A form that reads ``<list>.csv`` (``select_one_from_file``, ``pulldata``, ``search``) where ``<list>`` is
  an entity list of its project gets the list as that media file: the row is linked to the list, is not
  missing, and is served as the list's CSV as it is at the time of the download (Central links dataset
  attachments the same way). A file uploaded under that name is served instead (the coordinator chose it).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import errors
from server.entities import lists
from server.entities.declarations import EntityForm, read_declarations
from server.forms.xform import FieldInfo
from server.models import EntityList, FormMedia, FormVersion, Project, User

CSV_SUFFIX = ".csv"


def check_form(xml: str, fields: Sequence[FieldInfo]) -> EntityForm | None:
    """The form's entity declarations, refused (400.25) when invalid or when they take personal data."""
    if "entity" not in xml:
        return None
    form = read_declarations(xml)
    if form is None:
        return None
    personal = {_plain(f.path): f.name for f in fields if f.sensitivity == "personal"}
    for declaration in form.declarations:
        for path, prop in declaration.property_paths:
            if path in personal:
                raise errors.invalid_entity_form(
                    f"The question {personal[path]!r} is tagged personal and cannot be saved to the entity "
                    f"list {declaration.dataset!r} (property {prop!r}): entity lists are sent to every "
                    "tablet of the project. Remove its save_to, or its personal tag if it identifies nobody."
                )
        for path in declaration.label_paths:
            if path in personal:
                raise errors.invalid_entity_form(
                    f"The question {personal[path]!r} is tagged personal and cannot be part of the label of "
                    f"the entity list {declaration.dataset!r}: entity lists are sent to every tablet of the "
                    "project. Build the label from other questions."
                )
    return form


def _plain(path: str) -> str:
    return "/".join(s.rsplit(":", 1)[-1] for s in path.split("/"))


def publish_lists(session: Session, project: Project, version: FormVersion, actor: User | None) -> None:
    """Create the lists and properties a published form declares, then link its list media."""
    form = check_form(version.xml, [FieldInfo(**f) for f in version.fields or []])
    if form is not None:
        for declaration in form.declarations:
            existing = session.scalar(
                select(EntityList).where(
                    EntityList.project_id == project.id, EntityList.name == declaration.dataset
                )
            )
            entity_list = existing or lists.create_entity_list(
                session, project, declaration.dataset, False, actor
            )
            for _, prop in declaration.properties:
                if all(p.name != prop for p in entity_list.properties):
                    lists.add_property(session, entity_list, prop, actor)
    link_media(session, project.id, version)


def link_media(session: Session, project_id: int, version: FormVersion) -> None:
    """Link the version's ``<list>.csv`` media that no file was given for to the project's lists."""
    wanted = {
        m.name.removesuffix(CSV_SUFFIX): m
        for m in version.media
        if m.name.endswith(CSV_SUFFIX) and m.blob_sha256 is None and m.entity_list_id is None
    }
    if not wanted:
        return
    for entity_list in session.scalars(
        select(EntityList).where(EntityList.project_id == project_id, EntityList.name.in_(list(wanted)))
    ):
        wanted[entity_list.name].entity_list_id = entity_list.id
    session.flush()


def linked(media: FormMedia) -> bool:
    """The row is served from an entity list (it needs no file)."""
    return media.blob_sha256 is None and media.entity_list_id is not None
