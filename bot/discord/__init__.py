"""The Discord front-end (the bot itself arrives with its own issue).

What is here already: the tables only Discord needs (:mod:`bot.discord.models`), declared on
the service's declarative base so that the one Alembic history creates them.
"""
