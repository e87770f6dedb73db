"""Placeholder: filled in with its commands."""

import click


def register(main: click.Group) -> None:
    pass
